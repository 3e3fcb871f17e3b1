/*
** test_region.c -- regions: counts (I2) under threads, sealing and the
** violation reporter (I1), reclamation and reuse of image memory, import
** chains and DAGs (I6), allocation failure at every site, many live
** regions, and the named registry.
**
** Criterion runs each test in a freshly exec'd process, so process-wide
** stats and region ids start from zero in every test, and signal tests may
** die. Heap accounting: this binary interposes malloc & co. (forwarding to
** glibc's __libc_* entry points) to count live heap blocks, which lets the
** allocation-failure tests prove that a failed call leaked nothing. Under
** valgrind (which replaces malloc itself) and under sanitizers (which
** intercept it; the interposition is compiled out) the count stays 0 and
** their own leak checks do that job.
*/
#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fs_region.h"

/* ---- heap accounting ------------------------------------------------------ */

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define FS_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define FS_SANITIZED 1
#endif
#endif

static atomic_long heap_blocks;   /* malloc'd minus free'd, process-wide */

#ifndef FS_SANITIZED
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void  __libc_free(void *);

void *malloc(size_t n)
{
    void *p = __libc_malloc(n);
    if (p)
        atomic_fetch_add_explicit(&heap_blocks, 1, memory_order_relaxed);
    return p;
}

void *calloc(size_t n, size_t size)
{
    void *p = __libc_calloc(n, size);
    if (p)
        atomic_fetch_add_explicit(&heap_blocks, 1, memory_order_relaxed);
    return p;
}

void *realloc(void *p, size_t n)
{
    void *q = __libc_realloc(p, n);
    if (p == NULL && q != NULL)
        atomic_fetch_add_explicit(&heap_blocks, 1, memory_order_relaxed);
    else if (p != NULL && n == 0)
        atomic_fetch_sub_explicit(&heap_blocks, 1, memory_order_relaxed);
    return q;
}

void free(void *p)
{
    if (p)
        atomic_fetch_sub_explicit(&heap_blocks, 1, memory_order_relaxed);
    __libc_free(p);
}
#endif /* FS_SANITIZED */

/* ---- helpers -------------------------------------------------------------- */

/* A region whose root is the list [value, import 0's root, import 1's root,
** ...], the imported roots as xrefs. Returns the error of the failed step. */
static int try_region(fs_region_t **out, int64_t value, fs_region_t *const *imports, uint32_t n)
{
    fs_builder_t *b = NULL;
    fs_ref_t list, x;
    int err = fs_builder_create(&b, 0);
    if (err)
        return err;
    if ((err = fs_build_seq(b, FS_KIND_LIST, 1 + (uint64_t)n, &list)))
        goto fail;
    fs_build_seq_set(b, list, 0, fs_ref_small_int(value));
    for (uint32_t i = 0; i < n; i++) {
        if ((err = fs_build_xref(b, i, fs_region_root(imports[i]), &x)))
            goto fail;
        fs_build_seq_set(b, list, 1 + i, x);
    }
    return fs_region_create(out, b, list, imports, n, -1);
fail:
    fs_builder_destroy(b);
    return err;
}

static fs_region_t *new_region(int64_t value, fs_region_t *const *imports, uint32_t n)
{
    fs_region_t *r = NULL;
    int err = try_region(&r, value, imports, n);
    cr_assert_eq(err, FS_OK, "region create: %s", fs_strerror(err));
    cr_assert_not_null(r);
    return r;
}

/* A region whose root is a bytes object of len bytes of `fill`. */
static fs_region_t *bytes_region(size_t len, int fill)
{
    fs_builder_t *b = NULL;
    fs_region_t *r = NULL;
    fs_ref_t ref;
    char *data = malloc(len);
    cr_assert_not_null(data);
    memset(data, fill, len);
    cr_assert_eq(fs_builder_create(&b, len + 256), FS_OK);
    cr_assert_eq(fs_build_bytes(b, FS_KIND_BYTES, data, len, &ref), FS_OK);
    cr_assert_eq(fs_region_create(&r, b, ref, NULL, 0, -1), FS_OK);
    free(data);
    return r;
}

static int64_t list_value(const fs_region_t *r)
{
    const fs_seq_t *s = fs_seq(fs_region_base(r), fs_region_root(r));
    return fs_ref_int_value(fs_seq_items(s)[0]);
}

static fs_region_stats_t rstats(void)
{
    fs_region_stats_t s;
    fs_region_get_stats(&s);
    return s;
}

static fs_arena_stats_t astats(void)
{
    fs_arena_stats_t s;
    fs_arena_get_stats(&s);
    return s;
}

/* Everything created so far is reclaimed, each exactly once (I2). */
static void assert_all_reclaimed(uint64_t expected_created)
{
    fs_region_stats_t s = rstats();
    fs_arena_stats_t a = astats();
    cr_assert_eq(s.created, expected_created);
    cr_assert_eq(s.reclaims, expected_created);
    cr_assert_eq(s.live_regions, 0);
    cr_assert_eq(s.image_bytes, 0);
    cr_assert_eq(a.seals, expected_created);
    cr_assert_eq(a.unseals, expected_created);
    cr_assert_eq(a.live_images, 0);
    cr_assert_eq(a.image_bytes, 0);
}

/* ---- region_refcount ------------------------------------------------------- */

Test(region_refcount, new_region_has_count_one_and_accessors_match_image)
{
    fs_region_t *r[3];
    uint64_t bytes = 0;
    for (int i = 0; i < 3; i++) {
        r[i] = new_region(100 + i, NULL, 0);
        cr_assert_eq(fs_region_refcount(r[i]), 1);
        cr_assert_eq(fs_region_id(r[i]), (uint64_t)i + 1, "ids count from 1");
        const fs_image_header_t *h = fs_image_header(fs_region_base(r[i]));
        cr_assert_eq(memcmp(h->magic, FS_IMAGE_MAGIC, 8), 0);
        cr_assert_eq(fs_region_size(r[i]), h->image_size);
        cr_assert_eq(fs_region_root(r[i]), h->root);
        cr_assert_eq(fs_region_object_count(r[i]), h->object_count);
        cr_assert_eq(fs_region_nimports(r[i]), 0);
        cr_assert_null(fs_region_import(r[i], 0));
        cr_assert_eq(list_value(r[i]), 100 + i);
        cr_assert_eq(fs_image_check(fs_region_base(r[i]), fs_region_size(r[i])), FS_OK);
        bytes += fs_region_size(r[i]);
    }
    fs_region_stats_t s = rstats();
    cr_assert_eq(s.live_regions, 3);
    cr_assert_eq(s.created, 3);
    cr_assert_eq(s.image_bytes, bytes);
    cr_assert_eq(s.reclaims, 0);
    for (int i = 0; i < 3; i++)
        fs_region_release(r[i]);
    fs_region_release(NULL);
    assert_all_reclaimed(3);
}

Test(region_refcount, acquire_release_balances_and_last_release_reclaims)
{
    fs_region_t *r = new_region(1, NULL, 0);
    for (int i = 0; i < 10; i++)
        fs_region_acquire(r);
    cr_assert_eq(fs_region_refcount(r), 11);
    for (int i = 0; i < 10; i++)
        fs_region_release(r);
    cr_assert_eq(fs_region_refcount(r), 1);
    cr_assert_eq(rstats().live_regions, 1);
    cr_assert_eq(rstats().reclaims, 0);
    fs_region_release(r);
    assert_all_reclaimed(1);
}

#define NREG    8
#define NTHR    4
#define NITER   100000

static fs_region_t *shared[NREG];

/* Balanced acquire/release bursts on every shared region, then keeps one
** extra reference on each (released by the main thread). */
static void *hammer(void *arg)
{
    unsigned t = (unsigned)(uintptr_t)arg;
    for (unsigned i = 0; i < NITER; i++) {
        fs_region_t *r = shared[(i + t) % NREG];
        unsigned burst = 1 + (i % 3);
        for (unsigned k = 0; k < burst; k++)
            fs_region_acquire(r);
        for (unsigned k = 0; k < burst; k++)
            fs_region_release(r);
    }
    for (unsigned j = 0; j < NREG; j++)
        fs_region_acquire(shared[j]);
    return NULL;
}

Test(region_refcount, concurrent_acquire_release_balances)
{
    pthread_t th[NTHR];
    for (int j = 0; j < NREG; j++)
        shared[j] = new_region(j, NULL, 0);
    for (uintptr_t t = 0; t < NTHR; t++)
        cr_assert_eq(pthread_create(&th[t], NULL, hammer, (void *)t), 0);
    for (int t = 0; t < NTHR; t++)
        pthread_join(th[t], NULL);
    for (int j = 0; j < NREG; j++) {
        cr_assert_eq(fs_region_refcount(shared[j]), 1 + NTHR);
        for (int t = 0; t < NTHR; t++)
            fs_region_release(shared[j]);
        cr_assert_eq(fs_region_refcount(shared[j]), 1);
    }
    cr_assert_eq(rstats().reclaims, 0);
    for (int j = 0; j < NREG; j++)
        fs_region_release(shared[j]);
    assert_all_reclaimed(NREG);
}

#define NROUNDS 1500

static pthread_barrier_t round_start, round_end;
static fs_region_t *round_region;

/* Each round: churn the count, then drop the one reference this thread was
** given; exactly one of the threads reaches 0 and reclaims. */
static void *round_worker(void *arg)
{
    (void)arg;
    for (int round = 0; round < NROUNDS; round++) {
        pthread_barrier_wait(&round_start);
        fs_region_t *r = round_region;
        for (int k = 0; k < 50; k++) {
            fs_region_acquire(r);
            fs_region_release(r);
        }
        fs_region_release(r);
        pthread_barrier_wait(&round_end);
    }
    return NULL;
}

Test(region_refcount, concurrent_last_release_reclaims_exactly_once)
{
    enum { T = 2 };
    pthread_t th[T];
    pthread_barrier_init(&round_start, NULL, T + 1);
    pthread_barrier_init(&round_end, NULL, T + 1);
    for (int t = 0; t < T; t++)
        cr_assert_eq(pthread_create(&th[t], NULL, round_worker, NULL), 0);
    for (int round = 0; round < NROUNDS; round++) {
        round_region = new_region(round, NULL, 0);
        fs_region_acquire(round_region);             /* one reference per thread */
        pthread_barrier_wait(&round_start);
        pthread_barrier_wait(&round_end);
        fs_region_stats_t s = rstats();
        cr_assert_eq(s.reclaims, (uint64_t)round + 1, "round %d: reclaims %" PRIu64, round, s.reclaims);
        cr_assert_eq(s.live_regions, 0);
    }
    for (int t = 0; t < T; t++)
        pthread_join(th[t], NULL);
    assert_all_reclaimed(NROUNDS);
}

/* ---- region_reclaim: sealing, the reporter, reuse, imports ----------------- */

Test(region_reclaim, write_to_sealed_image_faults, .signal = SIGSEGV)
{
    fs_region_t *r = new_region(1, NULL, 0);
    volatile uint8_t *p = (volatile uint8_t *)fs_region_base(r);
    p[FS_IMAGE_HEADER_SIZE] = 0x55;                  /* I1 */
    cr_log_error("the write to a sealed image did not fault");
}

Test(region_reclaim, write_to_sealed_image_reports_region_and_offset)
{
    size_t pg = fs_arena_page_size();
    fs_region_t *a = new_region(1, NULL, 0), *b = new_region(2, NULL, 0);
    fs_region_t *c = bytes_region(3 * pg, 'x');      /* a multi-page image */
    uint64_t off = 2 * pg + 0x28;
    cr_assert_lt(off, fs_region_size(c));
    uint8_t *target = (uint8_t *)fs_region_base(c) + off;
    cr_assert(fs_arena_reporter_installed());

    int fd[2];
    cr_assert_eq(pipe(fd), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        dup2(fd[1], 2);
        close(fd[0]);
        *(volatile uint8_t *)target = 1;
        _exit(0);                                    /* not reached if I1 holds */
    }
    close(fd[1]);
    char out[1024];
    size_t got = 0;
    ssize_t k;
    while (got < sizeof out - 1 && (k = read(fd[0], out + got, sizeof out - 1 - got)) > 0)
        got += (size_t)k;
    out[got] = '\0';
    close(fd[0]);
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status), "child was not killed (status %#x), stderr: %s", status, out);
    cr_assert_eq(WTERMSIG(status), SIGSEGV);

    char want[256];
    snprintf(want, sizeof want,
             "frozenshare: write to frozen memory at 0x%" PRIxPTR " (region #%" PRIu64
             ", offset 0x%" PRIx64 ")\n", (uintptr_t)target, fs_region_id(c), off);
    cr_assert_eq(fs_region_id(c), 3);
    cr_assert_not_null(strstr(out, want), "stderr %s lacks %s", out, want);
    fs_region_release(a);
    fs_region_release(b);
    fs_region_release(c);
    assert_all_reclaimed(3);
}

Test(region_reclaim, writes_before_seal_succeed_and_survive_sealing)
{
    fs_builder_t *b = NULL;
    fs_region_t *r = NULL;
    fs_ref_t ref;
    uint64_t id, off;
    cr_assert_eq(fs_builder_create(&b, 0), FS_OK);
    cr_assert_eq(fs_build_bytes(b, FS_KIND_BYTES, "aaaaaaaa", 8, &ref), FS_OK);
    fs_bytes_t *w = (fs_bytes_t *)(void *)(fs_builder_base(b) + ref);
    uint8_t *wd = (uint8_t *)fs_bytes_data(w);
    memcpy(wd, "written!", 8);                       /* unsealed: allowed */
    cr_assert_not(fs_arena_locate(wd, &id, &off), "not sealed yet");
    cr_assert_eq(fs_region_create(&r, b, ref, NULL, 0, -1), FS_OK);
    const fs_bytes_t *rd = fs_bytes(fs_region_base(r), fs_region_root(r));
    cr_assert_eq(fs_bytes_len(rd), 8);
    cr_assert_eq(memcmp(fs_bytes_data(rd), "written!", 8), 0);
    cr_assert(fs_arena_locate(fs_bytes_data(rd), &id, &off));
    cr_assert_eq(id, fs_region_id(r));
    cr_assert_eq(off, (uint64_t)(fs_bytes_data(rd) - fs_region_base(r)));
    fs_region_release(r);
    assert_all_reclaimed(1);
}

Test(region_reclaim, reclaimed_image_is_unsealed_and_reused_by_new_builders)
{
    fs_region_t *r = new_region(1, NULL, 0);
    const uint8_t *old = fs_region_base(r);
    uint64_t id, off;
    cr_assert(fs_arena_locate(old, &id, &off));
    fs_region_release(r);
    cr_assert_not(fs_arena_locate(old, &id, &off), "page map cleared at reclaim");
    /* The same shape again: jemalloc hands the freed extent back. */
    int reused = 0;
    fs_region_t *again[4] = { 0 };
    for (int i = 0; i < 4 && !reused; i++) {
        again[i] = new_region(2, NULL, 0);
        reused = fs_region_base(again[i]) == old;
    }
    cr_assert(reused, "reclaimed image memory at %p was not reused", (void *)old);
    for (int i = 0; i < 4; i++)
        fs_region_release(again[i]);
}

Test(region_reclaim, region_importing_several_holds_each_until_reclaimed)
{
    fs_region_t *im[3];
    for (int i = 0; i < 3; i++)
        im[i] = new_region(10 + i, NULL, 0);
    fs_region_t *d = new_region(99, im, 3);
    cr_assert_eq(fs_region_nimports(d), 3);
    const uint8_t *base = fs_region_base(d);
    const fs_image_header_t *h = fs_image_header(base);
    cr_assert_eq(h->nimports, 3);
    const fs_seq_t *root = fs_seq(base, fs_region_root(d));
    for (uint32_t i = 0; i < 3; i++) {
        cr_assert_eq(fs_region_import(d, i), im[i]);
        cr_assert_eq(fs_region_refcount(im[i]), 2);
        cr_assert_eq(fs_image_imports(base)[i], fs_region_id(im[i]));
        /* The xref resolves through the import table to the import's root. */
        fs_ref_t x = fs_seq_items(root)[1 + i];
        cr_assert_eq(fs_ref_tag(x), FS_TAG_XREF);
        const fs_xref_t *xr = fs_xref(base, x);
        cr_assert_eq(xr->import_slot, i);
        cr_assert_eq(list_value(fs_region_import(d, xr->import_slot)), 10 + i);
    }
    cr_assert_null(fs_region_import(d, 3));
    for (int i = 0; i < 3; i++)
        fs_region_release(im[i]);                    /* d still holds them */
    fs_region_stats_t s = rstats();
    cr_assert_eq(s.live_regions, 4);
    cr_assert_eq(s.reclaims, 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(fs_region_refcount(im[i]), 1);
    fs_region_release(d);
    assert_all_reclaimed(4);
}

Test(region_reclaim, diamond_of_imports_reclaims_each_once)
{
    fs_region_t *a = new_region(1, NULL, 0);
    fs_region_t *b = new_region(2, &a, 1), *c = new_region(3, &a, 1);
    fs_region_t *bc[2] = { b, c };
    fs_region_t *d = new_region(4, bc, 2);
    cr_assert_eq(fs_region_refcount(a), 3);
    fs_region_release(a);
    fs_region_release(b);
    fs_region_release(c);
    cr_assert_eq(fs_region_refcount(a), 2);
    cr_assert_eq(rstats().live_regions, 4);
    fs_region_release(d);
    assert_all_reclaimed(4);
}

static long count_mappings(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    cr_assert_not_null(f);
    long n = 0;
    int c;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

/* Releasing every other one of many adjacent sealed images splits the
** kernel mapping each time; at vm.max_map_count mprotect fails. Such images
** must stay sealed (never freed sealed, I1) and be unsealed later, not
** leaked. The limit is approached by splitting a scratch mapping first. */
Test(region_reclaim, unseal_at_the_mapping_limit_is_deferred_then_completed, .timeout = 120)
{
    enum { NR = 48, SPARE = 30 };
    size_t pg = fs_arena_page_size();
    long limit = 0;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    cr_assert_not_null(f);
    cr_assert_eq(fscanf(f, "%ld", &limit), 1);
    fclose(f);
    fs_region_t *r[NR];
    for (int i = 0; i < NR; i++)
        r[i] = new_region(i, NULL, 0);
    long have = count_mappings();
    long splits = (limit - SPARE - have) / 2;        /* each costs 2 mappings */
    cr_assert_gt(splits, 0);
    size_t scratch_len = (size_t)(2 * splits + 2) * pg;
    char *scratch = mmap(NULL, scratch_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    cr_assert_neq(scratch, MAP_FAILED);
    for (long k = 0; k < splits; k++)
        if (mprotect(scratch + (size_t)(2 * k + 1) * pg, pg, PROT_READ) != 0)
            break;
    for (int i = 0; i < NR; i += 2)                  /* checkerboard */
        fs_region_release(r[i]);
    fs_region_stats_t s = rstats();
    fs_arena_stats_t a = astats();
    cr_assert_eq(s.live_regions, NR / 2);
    cr_assert_gt(a.live_images, NR / 2, "the mapping limit was not reached: no unseal deferred");
    cr_log_info("%" PRIu64 " unseals deferred at the mapping limit", a.live_images - NR / 2);
    munmap(scratch, scratch_len);
    for (int i = 1; i < NR; i += 2)
        fs_region_release(r[i]);
    assert_all_reclaimed(NR);
    cr_assert_eq(astats().allocated_bytes, 0, "every deferred image was freed");
}

/* The arena keeps its sealed runs within a quarter of vm.max_map_count on
** unseal (arena.c, "Mapping budget"), so the rest of the process keeps
** mappings to spare: a checkerboard of dead images past that budget stays
** sealed (deferred), and the deferred images unseal as a cascade once their
** live neighbours die. */
Test(region_reclaim, checkerboard_stays_within_the_mapping_budget, .timeout = 120)
{
    fs_arena_stats_t a0 = astats();
    size_t budget_runs = (size_t)(a0.max_map_count / 8);
    int nr = (int)(2 * budget_runs + 4000);
    fs_region_t **r = malloc((size_t)nr * sizeof *r);
    cr_assert_not_null(r);
    for (int i = 0; i < nr; i++)
        r[i] = new_region(i, NULL, 0);
    for (int i = 0; i < nr; i += 2)                  /* checkerboard */
        fs_region_release(r[i]);
    fs_arena_stats_t a = astats();
    cr_assert_eq(rstats().live_regions, (uint64_t)(nr - nr / 2));
    cr_assert_leq(a.sealed_runs, budget_runs + 1, "runs %" PRIu64 " > budget %zu",
                  a.sealed_runs, budget_runs);
    cr_assert_gt(a.live_images, (uint64_t)(nr - nr / 2), "nothing was deferred");
    cr_assert_lt(count_mappings(), (long)(a0.max_map_count / 2));
    for (int i = 1; i < nr; i += 2)
        fs_region_release(r[i]);
    free(r);
    assert_all_reclaimed((uint64_t)nr);
    a = astats();
    cr_assert_eq(a.allocated_bytes, 0, "every deferred image was freed");
    cr_assert_eq(a.sealed_runs, 0);
}

/* 10^6 links; under sanitizers (shadow memory for every touched image page,
** 5-15x slower) 10^5, which the small release stack below still makes a
** proof of iteration. */
#ifdef FS_SANITIZED
#define CHAIN 100000
#else
#define CHAIN 1000000
#endif
#define RELEASE_STACK (256 * 1024)

static void *release_on_small_stack(void *r)
{
    fs_region_release(r);
    return NULL;
}

Test(region_reclaim, million_long_import_chain_released_from_head_without_recursion,
     .timeout = 150)
{
    fs_region_t *prev = NULL;
    for (int64_t i = 0; i < CHAIN; i++) {
        fs_region_t *r = NULL;
        int err = try_region(&r, i, &prev, prev ? 1 : 0);
        cr_assert_eq(err, FS_OK, "link %" PRId64 ": %s", i, fs_strerror(err));
        fs_region_release(prev);                     /* r keeps it alive */
        prev = r;
    }
    fs_region_t *head = prev;
    cr_assert_eq(fs_region_refcount(head), 1);
    cr_assert_eq(fs_region_nimports(head), 1);
    cr_assert_eq(fs_region_refcount(fs_region_import(head, 0)), 1);
    cr_assert_eq(list_value(fs_region_import(head, 0)), CHAIN - 2);
    cr_assert_eq(rstats().live_regions, CHAIN);
    /* A recursive release would need CHAIN frames; this thread has 256 KiB. */
    pthread_attr_t attr;
    pthread_t th;
    cr_assert_eq(pthread_attr_init(&attr), 0);
    cr_assert_eq(pthread_attr_setstacksize(&attr, RELEASE_STACK), 0);
    cr_assert_eq(pthread_create(&th, &attr, release_on_small_stack, head), 0);
    pthread_join(th, NULL);
    pthread_attr_destroy(&attr);
    assert_all_reclaimed(CHAIN);
}

/* ---- region_alloc ----------------------------------------------------------- */

#define NIMP 20          /* more than region.c keeps on its stack */

Test(region_alloc, failure_at_every_allocation_site_is_clean)
{
    fs_region_t *imports[NIMP];
    for (int i = 0; i < NIMP; i++)
        imports[i] = new_region(i, NULL, 0);
    /* Warm up one-time allocations (arena, reporter, registry table). */
    fs_region_t *w = new_region(-1, imports, NIMP);
    cr_assert_eq(fs_registry_publish("warm", 4, w, fs_region_root(w)), FS_OK);
    fs_region_release(w);
    cr_assert_eq(fs_registry_unpublish("warm", 4), FS_OK);

    fs_region_stats_t rs0 = rstats();
    fs_arena_stats_t as0 = astats();
    long heap0 = atomic_load(&heap_blocks);
    int done = 0;
    long n;
    for (n = 0; !done && n < 1000; n++) {
        fs_region_t *r = NULL;
        fs_alloc_fail_after(n);
        int err = try_region(&r, 42, imports, NIMP);
        if (err == FS_OK) {
            err = fs_registry_publish("the name", 8, r, fs_region_root(r));
            fs_region_release(r);                    /* the entry keeps it */
            done = err == FS_OK;
        }
        fs_alloc_fail_after(-1);
        long heap = atomic_load(&heap_blocks);
        if (done)
            break;
        cr_assert_eq(err, FS_ENOMEM, "N=%ld: %s", n, fs_strerror(err));
        fs_region_stats_t rs = rstats();
        fs_arena_stats_t as = astats();
        cr_assert_eq(rs.live_regions, rs0.live_regions, "N=%ld", n);
        cr_assert_eq(rs.image_bytes, rs0.image_bytes, "N=%ld", n);
        cr_assert_eq(as.live_images, as0.live_images, "N=%ld", n);
        cr_assert_eq(as.allocated_bytes, as0.allocated_bytes, "N=%ld: arena bytes leaked", n);
        cr_assert_eq(heap, heap0, "N=%ld: %ld heap blocks leaked", n, heap - heap0);
        cr_assert_eq(fs_registry_count(), 0, "N=%ld", n);
        for (int i = 0; i < NIMP; i++)
            cr_assert_eq(fs_region_refcount(imports[i]), 1, "N=%ld: import %d", n, i);
    }
    cr_assert(done, "never succeeded");
    /* Sites: builder, image, seq growth, xref table, control block, ids,
    ** finish, registry name copy, at the least several of them. */
    cr_assert_geq(n, 4, "only %ld allocation sites were exercised", n);
    cr_log_info("failed cleanly at each of the first %ld allocations", n);
    fs_region_t *got = NULL;
    cr_assert_eq(fs_registry_lookup("the name", 8, &got, NULL), FS_OK);
    cr_assert_eq(fs_region_nimports(got), NIMP);
    for (int i = 0; i < NIMP; i++)
        cr_assert_eq(fs_region_refcount(imports[i]), 2);
    fs_region_release(got);
    fs_registry_clear();
    for (int i = 0; i < NIMP; i++)
        fs_region_release(imports[i]);
    cr_assert_eq(rstats().live_regions, 0);
    cr_assert_eq(astats().live_images, 0);
}

Test(region_alloc, registry_allocation_failures_change_nothing)
{
    fs_region_t *r = new_region(1, NULL, 0);
    cr_assert_eq(fs_registry_publish("keep", 4, r, 0), FS_OK);
    long heap0 = atomic_load(&heap_blocks);
    /* A new name needs a copy (and maybe a bigger table). */
    fs_alloc_fail_after(0);
    int err = fs_registry_publish("new", 3, r, 0);
    fs_alloc_fail_after(-1);
    cr_assert_eq(err, FS_ENOMEM);
    cr_assert_eq(fs_registry_count(), 1);
    cr_assert_eq(fs_region_refcount(r), 2);
    cr_assert_eq(atomic_load(&heap_blocks), heap0);
    /* Replacing an existing name allocates nothing. */
    fs_alloc_fail_after(0);
    err = fs_registry_publish("keep", 4, r, 8);
    fs_alloc_fail_after(-1);
    cr_assert_eq(err, FS_OK);
    cr_assert_eq(fs_region_refcount(r), 2);
    /* The list snapshot. */
    char **names = NULL;
    size_t *lens = NULL, cnt = 77;
    fs_alloc_fail_after(0);
    err = fs_registry_list(&names, &lens, &cnt);
    fs_alloc_fail_after(-1);
    cr_assert_eq(err, FS_ENOMEM);
    cr_assert_eq(cnt, 77, "outputs untouched on failure");
    cr_assert_eq(atomic_load(&heap_blocks), heap0);
    fs_registry_clear();
    cr_assert_eq(fs_region_refcount(r), 1);
    fs_region_release(r);
    assert_all_reclaimed(1);
}

#define MANY 100000

Test(region_alloc, hundred_thousand_live_regions_work_or_fail_cleanly, .timeout = 120)
{
    fs_region_t **v = calloc(MANY, sizeof *v);
    cr_assert_not_null(v);
    uint64_t allocated0 = astats().allocated_bytes;
    size_t n = 0;
    int err = FS_OK;
    for (; n < MANY; n++) {
        err = try_region(&v[n], (int64_t)n, NULL, 0);
        if (err != FS_OK)
            break;
    }
    if (n < MANY)
        cr_assert_eq(err, FS_ENOMEM, "region %zu: %s", n, fs_strerror(err));
    cr_log_info("%zu of %d small regions alive at once", n, MANY);
    fs_region_stats_t s = rstats();
    cr_assert_eq(s.live_regions, n);
    cr_assert_eq(astats().live_images, n);
    for (size_t i = 0; i < n; i += 997)              /* all readable, right ids */
        cr_assert_eq(list_value(v[i]), (int64_t)i);
    for (size_t i = 0; i < n; i++)
        fs_region_release(v[i]);
    assert_all_reclaimed(n);
    cr_assert_eq(astats().allocated_bytes, allocated0);
    free(v);
    /* Still usable afterwards. */
    fs_region_t *r = new_region(5, NULL, 0);
    cr_assert_eq(list_value(r), 5);
    fs_region_release(r);
}

/* ---- region_registry -------------------------------------------------------- */

Test(region_registry, publish_lookup_unpublish_round_trip)
{
    fs_region_t *r = new_region(7, NULL, 0), *got = NULL;
    fs_ref_t ref = 0;
    cr_assert_eq(fs_registry_count(), 0);
    cr_assert_eq(fs_registry_lookup("alpha", 5, &got, &ref), FS_ENOTFOUND);
    cr_assert_eq(fs_registry_publish("alpha", 5, r, fs_region_root(r)), FS_OK);
    cr_assert_eq(fs_registry_count(), 1);
    cr_assert_eq(fs_region_refcount(r), 2, "the entry holds +1");
    cr_assert_eq(fs_registry_lookup("alpha", 5, &got, &ref), FS_OK);
    cr_assert_eq(got, r);
    cr_assert_eq(ref, fs_region_root(r));
    cr_assert_eq(fs_region_refcount(r), 3, "lookup returns a new reference");
    fs_region_release(got);
    cr_assert_eq(fs_registry_lookup("alph", 4, &got, &ref), FS_ENOTFOUND);
    cr_assert_eq(fs_registry_lookup("alphaa", 6, &got, &ref), FS_ENOTFOUND);
    cr_assert_eq(fs_registry_unpublish("alpha", 5), FS_OK);
    cr_assert_eq(fs_registry_unpublish("alpha", 5), FS_ENOTFOUND);
    cr_assert_eq(fs_registry_lookup("alpha", 5, &got, &ref), FS_ENOTFOUND);
    cr_assert_eq(fs_registry_count(), 0);
    cr_assert_eq(fs_region_refcount(r), 1);
    cr_assert_eq(fs_registry_publish("x", 1, NULL, 0), FS_EINVAL);
    fs_region_release(r);
    assert_all_reclaimed(1);
}

Test(region_registry, names_are_arbitrary_bytes_and_list_snapshots_them)
{
    static const struct { const char *s; size_t len; } nm[] = {
        { "a\0b", 3 }, { "a\0c", 3 }, { "a", 1 }, { "", 0 }, { "\xff\x00\x01", 3 }, { "b", 1 },
    };
    enum { N = sizeof nm / sizeof nm[0] };
    fs_region_t *r = new_region(1, NULL, 0);
    for (int i = 0; i < N; i++)
        cr_assert_eq(fs_registry_publish(nm[i].s, nm[i].len, r, (fs_ref_t)i << 3), FS_OK);
    cr_assert_eq(fs_registry_count(), N);
    cr_assert_eq(fs_region_refcount(r), 1 + N);
    for (int i = 0; i < N; i++) {
        fs_region_t *got;
        fs_ref_t ref;
        cr_assert_eq(fs_registry_lookup(nm[i].s, nm[i].len, &got, &ref), FS_OK);
        cr_assert_eq(ref, (fs_ref_t)i << 3, "name %d", i);
        fs_region_release(got);
    }
    char **names;
    size_t *lens, cnt;
    cr_assert_eq(fs_registry_list(&names, &lens, &cnt), FS_OK);
    fs_registry_clear();                             /* the snapshot stays valid */
    cr_assert_eq(fs_registry_count(), 0);
    cr_assert_eq(fs_region_refcount(r), 1);
    cr_assert_eq(cnt, N);
    int seen[N] = { 0 };
    for (size_t k = 0; k < cnt; k++) {
        cr_assert_eq(names[k][lens[k]], '\0');
        for (int i = 0; i < N; i++)
            if (lens[k] == nm[i].len && memcmp(names[k], nm[i].s, lens[k]) == 0)
                seen[i]++;
    }
    for (int i = 0; i < N; i++)
        cr_assert_eq(seen[i], 1, "name %d listed %d times", i, seen[i]);
    fs_registry_list_free(names, lens, cnt);
    cr_assert_eq(fs_registry_list(&names, &lens, &cnt), FS_OK);
    cr_assert_eq(cnt, 0);
    fs_registry_list_free(names, lens, cnt);
    fs_region_release(r);
    assert_all_reclaimed(1);
}

Test(region_registry, publish_replaces_and_releases_the_old_reference)
{
    fs_region_t *r1 = new_region(1, NULL, 0), *r2 = new_region(2, NULL, 0), *got;
    cr_assert_eq(fs_registry_publish("k", 1, r1, 0), FS_OK);
    fs_region_release(r1);                           /* the entry is the only owner */
    cr_assert_eq(rstats().reclaims, 0);
    cr_assert_eq(fs_registry_publish("k", 1, r2, 8), FS_OK);
    cr_assert_eq(rstats().reclaims, 1, "replacement released r1's last reference");
    cr_assert_eq(fs_registry_count(), 1);
    cr_assert_eq(fs_region_refcount(r2), 2);
    fs_ref_t ref;
    cr_assert_eq(fs_registry_lookup("k", 1, &got, &ref), FS_OK);
    cr_assert_eq(got, r2);
    cr_assert_eq(ref, 8);
    fs_region_release(got);
    cr_assert_eq(fs_registry_publish("k", 1, r2, 16), FS_OK);   /* same region */
    cr_assert_eq(fs_region_refcount(r2), 2);
    fs_region_release(r2);
    cr_assert_eq(fs_registry_unpublish("k", 1), FS_OK);         /* last reference */
    assert_all_reclaimed(2);
}

Test(region_registry, clear_releases_every_entry)
{
    fs_region_t *r[5];
    char name[32];
    for (int i = 0; i < 5; i++)
        r[i] = new_region(i, NULL, 0);
    for (int i = 0; i < 200; i++) {                  /* grows the table several times */
        int len = snprintf(name, sizeof name, "entry-%d", i);
        cr_assert_eq(fs_registry_publish(name, (size_t)len, r[i % 5], 0), FS_OK);
    }
    cr_assert_eq(fs_registry_count(), 200);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(fs_region_refcount(r[i]), 41);
        fs_region_release(r[i]);
    }
    cr_assert_eq(rstats().live_regions, 5);
    fs_registry_clear();
    cr_assert_eq(fs_registry_count(), 0);
    assert_all_reclaimed(5);
}

#define RT     4        /* threads */
#define RPRIV  32       /* private names per thread */
#define RSHARE 8        /* names every thread publishes */
#define RITER  20000

static fs_region_t *reg_r[RT];
static atomic_int reg_errors;

static void *registry_worker(void *arg)
{
    int t = (int)(uintptr_t)arg;
    char name[32];
    for (int i = 0; i < RITER; i++) {
        int len = snprintf(name, sizeof name, "t%d-%d", t, i % RPRIV);
        int had = i >= RPRIV;                        /* published in an earlier lap */
        fs_region_t *got = NULL;
        if (had && fs_registry_unpublish(name, (size_t)len) != FS_OK)
            atomic_fetch_add(&reg_errors, 1);
        if (fs_registry_lookup(name, (size_t)len, &got, NULL) != FS_ENOTFOUND)
            atomic_fetch_add(&reg_errors, 1);
        if (fs_registry_publish(name, (size_t)len, reg_r[t], (fs_ref_t)i << 3) != FS_OK)
            atomic_fetch_add(&reg_errors, 1);
        fs_ref_t ref = 0;
        if (fs_registry_lookup(name, (size_t)len, &got, &ref) != FS_OK || got != reg_r[t] ||
            ref != (fs_ref_t)i << 3)
            atomic_fetch_add(&reg_errors, 1);
        fs_region_release(got);

        len = snprintf(name, sizeof name, "shared-%d", i % RSHARE);
        if (fs_registry_publish(name, (size_t)len, reg_r[t], 0) != FS_OK)
            atomic_fetch_add(&reg_errors, 1);
        got = NULL;
        if (fs_registry_lookup(name, (size_t)len, &got, NULL) != FS_OK || got == NULL)
            atomic_fetch_add(&reg_errors, 1);            /* never unpublished: always found */
        fs_region_release(got);
        if (i % 64 == 0) {
            char **names;
            size_t *lens, cnt;
            if (fs_registry_list(&names, &lens, &cnt) != FS_OK || cnt < RSHARE / 2)
                atomic_fetch_add(&reg_errors, 1);
            else
                fs_registry_list_free(names, lens, cnt);
        }
    }
    return NULL;
}

Test(region_registry, concurrent_publish_lookup_unpublish_balances)
{
    pthread_t th[RT];
    for (int t = 0; t < RT; t++)
        reg_r[t] = new_region(t, NULL, 0);
    /* Every shared name exists before the threads start, so lookups of
    ** shared names must always succeed. */
    for (int i = 0; i < RSHARE; i++) {
        char name[32];
        int len = snprintf(name, sizeof name, "shared-%d", i);
        cr_assert_eq(fs_registry_publish(name, (size_t)len, reg_r[0], 0), FS_OK);
    }
    for (uintptr_t t = 0; t < RT; t++)
        cr_assert_eq(pthread_create(&th[t], NULL, registry_worker, (void *)t), 0);
    for (int t = 0; t < RT; t++)
        pthread_join(th[t], NULL);
    cr_assert_eq(atomic_load(&reg_errors), 0);
    cr_assert_eq(fs_registry_count(), RT * RPRIV + RSHARE);
    long entries = 0;
    for (int t = 0; t < RT; t++) {
        long c = fs_region_refcount(reg_r[t]);
        cr_assert_geq(c, 1 + RPRIV, "thread %d's private names hold %d", t, RPRIV);
        entries += c - 1;
    }
    cr_assert_eq(entries, RT * RPRIV + RSHARE, "one reference per entry, exactly");
    for (int t = 0; t < RT; t++)
        fs_region_release(reg_r[t]);
    cr_assert_eq(rstats().live_regions, RT);
    fs_registry_clear();
    assert_all_reclaimed(RT);
}

/* ---- fork --------------------------------------------------------------- */
/* Threads build, publish, look up and reclaim regions (the registry lock,
** deferred_lock, the arena's prot_lock and jemalloc's locks all change
** hands all the time) while the main thread forks again and again. Each
** child does the same once, alone: a lock left held by a thread that does
** not exist in the child would hang it (the alarm turns that into a
** failure), a half-updated table would crash it. The parent's regions are
** readable in the child. */
#define FORK_THREADS 2
#define FORKS 60
static atomic_int fork_stop;

static void *fork_churn(void *arg)
{
    char name[32];
    int len = snprintf(name, sizeof name, "churn-%d", (int)(uintptr_t)arg);
    while (!atomic_load(&fork_stop)) {
        fs_region_t *r = bytes_region(3 * 4096 + 17, 'c');
        fs_region_t *got = NULL;
        if (fs_registry_publish(name, (size_t)len, r, fs_region_root(r)) == FS_OK &&
            fs_registry_lookup(name, (size_t)len, &got, NULL) == FS_OK)
            fs_region_release(got);
        fs_registry_unpublish(name, (size_t)len);
        fs_region_release(r);
    }
    return NULL;
}

static int fork_child_body(fs_region_t *parents)
{
    alarm(10);
    if (list_value(parents) != 4242)
        return 2;
    for (int i = 0; i < 20; i++) {
        fs_region_t *r = NULL, *got = NULL;
        if (try_region(&r, i, &parents, 1) != FS_OK)
            return 3;
        if (fs_registry_publish("child", 5, r, fs_region_root(r)) != FS_OK ||
            fs_registry_lookup("child", 5, &got, NULL) != FS_OK || got != r)
            return 4;
        fs_region_release(got);
        fs_registry_unpublish("child", 5);
        fs_region_release(r);
    }
    fs_region_release(bytes_region(1 << 20, 'x'));
    return 0;
}

Test(region_fork, fork_while_threads_churn_leaves_the_child_consistent, .timeout = 120)
{
    fs_region_t *parents = new_region(4242, NULL, 0);
    pthread_t th[FORK_THREADS];
    atomic_store(&fork_stop, 0);
    for (uintptr_t t = 0; t < FORK_THREADS; t++)
        cr_assert_eq(pthread_create(&th[t], NULL, fork_churn, (void *)t), 0);
    int bad = 0;
    for (int k = 0; k < FORKS; k++) {
        usleep(2000 + 997 * (unsigned)(k % 7));   /* land anywhere in the loop */
        pid_t pid = fork();
        cr_assert_neq(pid, -1);
        if (pid == 0)
            _exit(fork_child_body(parents));
        int status = 0;
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            cr_log_error("child %d: %s %d", k, WIFEXITED(status) ? "exit" : "signal",
                         WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
            bad++;
        }
    }
    atomic_store(&fork_stop, 1);
    for (int t = 0; t < FORK_THREADS; t++)
        pthread_join(th[t], NULL);
    cr_assert_eq(bad, 0, "%d of %d children failed", bad, FORKS);
    fs_region_release(parents);
}

/* ---- region_foreign: regions over files, lent buffers and copies ----------- */

#define OK(e) cr_assert_eq((e), FS_OK, "%s failed", #e)

static int releases;
static void count_release(void *ctx, const void *image, size_t size)
{
    cr_assert_eq(ctx, &releases);
    cr_assert_not_null(image);
    cr_assert_geq(size, FS_IMAGE_HEADER_SIZE);
    releases++;
}

/* A temporary file holding the n bytes at data; its descriptor, open for reading. */
static int temp_file(const void *data, size_t n)
{
    char path[] = "/tmp/fs-test-region-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    unlink(path);
    cr_assert_eq(write(fd, data, n), (ssize_t)n);
    return fd;
}

Test(region_foreign, adopted_and_mapped_images_read_the_same_and_are_let_go_once)
{
    fs_region_t *src = bytes_region(100000, 'q');
    size_t n = fs_region_size(src);
    uint64_t created = rstats().created;

    /* a lent buffer: released exactly once, at the last release */
    uint8_t *copy = malloc(n);
    memcpy(copy, fs_region_base(src), n);
    fs_region_t *a = NULL;
    releases = 0;
    OK(fs_region_adopt(&a, copy, n, FS_BACKING_BUFFER, count_release, &releases));
    cr_assert_eq(fs_region_backing(a), FS_BACKING_BUFFER);
    cr_assert_eq(fs_region_root(a), fs_region_root(src));
    cr_assert_eq(fs_region_size(a), n);
    fs_region_acquire(a);
    fs_region_release(a);
    cr_assert_eq(releases, 0);
    fs_region_release(a);
    cr_assert_eq(releases, 1);
    free(copy);

    /* a mapped file: the same bytes, unmapped at reclaim */
    int fd = temp_file(fs_region_base(src), n);
    fs_region_t *m = NULL;
    const char *why = NULL;
    OK(fs_region_map_file(&m, fd, 1, &why));
    close(fd);                                       /* the mapping outlives it */
    cr_assert_eq(fs_region_backing(m), FS_BACKING_FILE);
    cr_assert_eq(memcmp(fs_region_base(m), fs_region_base(src), n), 0);
    const uint8_t *mb = fs_region_base(m);
    fs_region_release(m);
    cr_assert_eq(mincore((void *)(uintptr_t)mb, 4096, (unsigned char[1]){0}), -1,
                 "the mapping is gone after the last release");

    /* a sealed copy */
    fs_region_t *c = NULL;
    OK(fs_region_copy(&c, fs_region_base(src), n, 1, NULL));
    cr_assert_eq(fs_region_backing(c), FS_BACKING_ARENA);
    cr_assert_eq(memcmp(fs_region_base(c), fs_region_base(src), n), 0);
    fs_region_release(c);
    fs_region_release(src);
    fs_region_stats_t s = rstats();
    cr_assert_eq(s.created, created + 3);
    cr_assert_eq(s.live_regions, 0);
    cr_assert_eq(s.image_bytes, 0);
}

Test(region_foreign, bad_files_are_refused_with_a_reason)
{
    const char *why = NULL;
    fs_region_t *m = (fs_region_t *)1;
    int fd = temp_file("", 0);
    cr_assert_eq(fs_region_map_file(&m, fd, 1, &why), FS_ECORRUPT);
    cr_assert_null(m);
    cr_assert(why != NULL && strstr(why, "empty"), "%s", why);
    close(fd);
    fd = temp_file("FRZSHARE not really an image, but long enough to hold a header? "
                   "......................................................................", 130);
    cr_assert_neq(fs_region_map_file(&m, fd, 0, &why), FS_OK);   /* verify=0 still checks the header */
    cr_assert_not_null(why);
    close(fd);
    /* an image that imports another region is never adopted */
    fs_region_t *base = new_region(1, NULL, 0);
    fs_region_t *imp = new_region(2, &base, 1);
    fd = temp_file(fs_region_base(imp), fs_region_size(imp));
    cr_assert_eq(fs_region_map_file(&m, fd, 1, &why), FS_ECORRUPT);
    cr_assert(strstr(why, "imports"), "%s", why);
    close(fd);
    cr_assert_eq(fs_region_copy(&m, fs_region_base(imp), fs_region_size(imp), 1, &why), FS_ECORRUPT);
    cr_assert(strstr(why, "imports"), "%s", why);
    cr_assert_eq(fs_region_map_file(&m, -1, 1, &why), FS_ESYS);
    fs_region_release(imp);
    fs_region_release(base);
    cr_assert_eq(rstats().live_regions, 0);
}
