/*
** bench_build.c -- image build throughput of the builder (fs_image.h):
** a dict of 10^5 str -> int and a list of 10^6 floats, built from
** already-canonical inputs, in MB of image per second, against memcpy of
** the finished image's bytes.
**
** Why: freeze() is one pass that writes the image; the Python layer adds
** object traversal on top. This isolates the C side: how far the builder
** (object appends, growth by realloc, dict index construction, finish)
** is from the bandwidth floor of writing the same number of bytes. A ratio
** near 1 means the builder is bound by memory; a large one means per-object
** overhead. Sealing is excluded here (bench_seal measures it).
**
** Method: inputs (key strings and their hashes) are prepared outside the
** timed loop; each case warms up, then builds a fixed number of images
** (create .. finish, then destroy); the memcpy baseline copies an image of
** the same size in the same run. Output, one line per case, plus a comment
** with the throughputs:
**   name  n  ns/op  ratio-vs-baseline        (one op = one whole image)
** Arguments: --smoke (tiny counts, for ctest), --quick (fewer iterations).
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "fs_image.h"



static void fail(const char *what, int err)
{
    fprintf(stderr, "bench_build: %s: %s\n", what, fs_strerror(err));
    exit(1);
}

/* ---- inputs ---------------------------------------------------------------- */

static long nkeys, nfloats;
static char (*keys)[16];          /* "key-%d", ASCII */
static size_t *keylen;
static int64_t *keyhash;
static uint32_t *keymax;          /* exact maxchar: the builder checks it */
static double *floats;

static int64_t fnv1a(const char *s, size_t n)   /* any fixed hash: the builder only stores it */
{
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211u;
    return (int64_t)(h == (uint64_t)-1 ? h - 1 : h);
}

static void make_inputs(void)
{
    keys = malloc((size_t)nkeys * sizeof *keys);
    keylen = malloc((size_t)nkeys * sizeof *keylen);
    keyhash = malloc((size_t)nkeys * sizeof *keyhash);
    keymax = malloc((size_t)nkeys * sizeof *keymax);
    floats = malloc((size_t)nfloats * sizeof *floats);
    if (!keys || !keylen || !keyhash || !keymax || !floats)
        fail("inputs", FS_ENOMEM);
    for (long i = 0; i < nkeys; i++) {
        keylen[i] = (size_t)snprintf(keys[i], sizeof keys[i], "key-%ld", i);
        keyhash[i] = fnv1a(keys[i], keylen[i]);
        keymax[i] = fs_str_maxchar(1, keylen[i], keys[i]);
    }
    for (long i = 0; i < nfloats; i++)      /* image v2: float immediates, no objects */
        floats[i] = (double)i * 0.5 + 0.25;
}

/* ---- the cases: build one finished image into *b ---------------------------- */

static fs_builder_t *build_dict(void)
{
    fs_builder_t *b = NULL;
    fs_ref_t map, k;
    int err;
    if ((err = fs_builder_create(&b, (size_t)nkeys * 64)))
        fail("builder", err);
    if ((err = fs_build_map(b, FS_KIND_DICT, 0, (uint64_t)nkeys, &map)))
        fail("map", err);
    for (long i = 0; i < nkeys; i++) {
        if ((err = fs_build_str(b, 1, keylen[i], keymax[i], keyhash[i], keys[i], &k)))
            fail("str", err);
        fs_build_map_set(b, map, (uint64_t)i, keyhash[i], k, fs_ref_small_int(i));
    }
    fs_build_map_finish(b, map);
    if ((err = fs_builder_finish(b, map, NULL, 0, -1)))
        fail("finish", err);
    return b;
}

static fs_builder_t *build_floats(void)
{
    fs_builder_t *b = NULL;
    fs_ref_t list, f;
    int err;
    if ((err = fs_builder_create(&b, (size_t)nfloats * 24 + 4096)))
        fail("builder", err);
    if ((err = fs_build_seq(b, FS_KIND_LIST, (uint64_t)nfloats, &list)))
        fail("list", err);
    for (long i = 0; i < nfloats; i++) {
        if ((err = fs_build_float(b, floats[i], &f)))
            fail("float", err);
        fs_build_seq_set(b, list, (uint64_t)i, f);
    }
    if ((err = fs_builder_finish(b, list, NULL, 0, -1)))
        fail("finish", err);
    return b;
}

static void run(const char *name, fs_builder_t *(*build)(void), long iters)
{
    /* size of the image, and a copy of it for the baseline */
    fs_builder_t *b = build();
    void *base;
    size_t alloc_size;
    fs_builder_detach(b, &base, &alloc_size);
    size_t bytes = fs_image_header(base)->image_size;
    char *src = malloc(bytes), *dst = malloc(bytes);
    if (!src || !dst)
        fail("baseline buffers", FS_ENOMEM);
    memcpy(src, base, bytes);
    memset(dst, 0, bytes);
    fs_arena_free(base);
    fs_builder_destroy(b);

    long warm = iters / 5 + 1;
    for (long i = 0; i < warm; i++) {
        memcpy(dst, src, bytes);
        clobber(dst);
    }
    double t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        memcpy(dst, src, bytes);
        clobber(dst);
    }
    double copy = (now_ns() - t0) / (double)iters;

    for (long i = 0; i < warm; i++)
        fs_builder_destroy(build());
    t0 = now_ns();
    for (long i = 0; i < iters; i++)
        fs_builder_destroy(build());
    double ns = (now_ns() - t0) / (double)iters;

    char bname[64];
    snprintf(bname, sizeof bname, "memcpy_%s", name);
    printf("%-32s  %6ld  %14.1f  %8.3f\n", bname, iters, copy, 1.0);
    snprintf(bname, sizeof bname, "build_%s", name);
    printf("%-32s  %6ld  %14.1f  %8.3f\n", bname, iters, ns, ns / copy);
    printf("# %s: image %.2f MB, build %.0f MB/s, memcpy %.0f MB/s\n", name,
           (double)bytes / 1e6, (double)bytes / ns * 1e3, (double)bytes / copy * 1e3);
    fflush(stdout);
    free(src);
    free(dst);
}

int main(int argc, char **argv)
{
    int rc, mode = bench_mode(argc, argv, &rc);
    if (mode < 0)
        return rc;
    int smoke = mode == BENCH_SMOKE, quick = mode == BENCH_QUICK;
    nkeys = smoke ? 1000 : 100000;
    nfloats = smoke ? 10000 : 1000000;
    long iters = smoke ? 2 : quick ? 10 : 50;
    make_inputs();

    printf("# bench_build: whole-image build (create..finish, destroy) vs memcpy of its bytes\n");
    printf("# name  n  ns/op  ratio-vs-baseline\n");
    char name[32];
    snprintf(name, sizeof name, "dict_str_int_%ld", nkeys);
    run(name, build_dict, iters);
    snprintf(name, sizeof name, "list_float_%ld", nfloats);
    run(name, build_floats, iters);
    return 0;
}
