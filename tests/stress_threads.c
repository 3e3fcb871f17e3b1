/*
** stress_threads.c -- concurrency of regions and the registry, as a plain
** program (no Criterion: its worker set-up does not start under
** ThreadSanitizer), so scripts/sanitize.sh can run it under TSan and ctest
** runs it in the normal build.
**
** Threads at once, for a fixed number of rounds each:
**   - acquire/release a shared region (I2: exact final count);
**   - create regions importing the shared one, publish them under a few
**     names, look names up and release, unpublish (replacements race);
** At the end: the shared region's count is back to 1, every created region
** was reclaimed exactly once (created == reclaims), arena images and bytes
** are back to the start. Exit status 0 on success, 1 with a message if not.
**   stress_threads [threads] [rounds]
*/
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs_region.h"

static fs_region_t *shared;
static long rounds = 2000;

static fs_region_t *make_importer(void)
{
    fs_builder_t *b;
    fs_ref_t x, list;
    fs_region_t *r = NULL;
    if (fs_builder_create(&b, 0) != FS_OK)
        return NULL;
    if (fs_build_xref(b, 0, fs_region_root(shared), &x) != FS_OK ||
        fs_build_seq(b, FS_KIND_LIST, 2, &list) != FS_OK) {
        fs_builder_destroy(b);
        return NULL;
    }
    fs_build_seq_set(b, list, 0, x);
    fs_build_seq_set(b, list, 1, fs_ref_small_int(7));
    if (fs_region_create(&r, b, list, &shared, 1, -1) != FS_OK)
        return NULL;
    return r;
}

static void *worker(void *arg)
{
    unsigned seed = (unsigned)(size_t)arg;
    char name[16];
    for (long i = 0; i < rounds; i++) {
        fs_region_acquire(shared);
        fs_region_release(shared);
        seed = seed * 1103515245u + 12345u;
        snprintf(name, sizeof name, "n%u", (seed >> 16) % 4);
        switch ((seed >> 8) % 3) {
        case 0: {
            fs_region_t *r = make_importer();
            if (r == NULL)
                return (void *)1;
            if (fs_registry_publish(name, strlen(name), r, fs_region_root(r)) != FS_OK)
                return (void *)1;
            fs_region_release(r);
            break;
        }
        case 1: {
            fs_region_t *r;
            fs_ref_t ref;
            if (fs_registry_lookup(name, strlen(name), &r, &ref) == FS_OK) {
                if (fs_seq_count(fs_seq(fs_region_base(r), ref)) != 2)
                    return (void *)1;
                fs_region_release(r);
            }
            break;
        }
        default:
            fs_registry_unpublish(name, strlen(name));
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int nthreads = argc > 1 ? atoi(argv[1]) : 4;
    if (argc > 2)
        rounds = atol(argv[2]);
    if (nthreads < 1 || nthreads > 64 || rounds < 1) {
        fprintf(stderr, "usage: stress_threads [threads 1..64] [rounds]\n");
        return 2;
    }
    fs_region_stats_t r0, r1;
    fs_arena_stats_t a0, a1;
    fs_region_get_stats(&r0);
    fs_arena_get_stats(&a0);

    fs_builder_t *b;
    fs_ref_t s;
    if (fs_builder_create(&b, 0) || fs_build_str(b, 1, 6, 'z', 1, "frozen", &s) ||
        fs_region_create(&shared, b, s, NULL, 0, -1)) {
        fprintf(stderr, "stress_threads: set-up failed\n");
        return 1;
    }
    pthread_t t[64];
    for (int i = 0; i < nthreads; i++)
        pthread_create(&t[i], NULL, worker, (void *)(size_t)(i + 1));
    int bad = 0;
    for (int i = 0; i < nthreads; i++) {
        void *ret;
        pthread_join(t[i], &ret);
        bad |= ret != NULL;
    }
    fs_registry_clear();                 /* published importers hold +1 on shared */
    long count = fs_region_refcount(shared);
    fs_region_release(shared);
    fs_region_get_stats(&r1);
    fs_arena_get_stats(&a1);
    uint64_t created = r1.created - r0.created, reclaimed = r1.reclaims - r0.reclaims;
    printf("stress_threads: %d threads x %ld rounds: %llu regions created, %llu reclaimed, "
           "shared count after clear %ld\n", nthreads, rounds,
           (unsigned long long)created, (unsigned long long)reclaimed, count);
    if (bad || count != 1 || created != reclaimed || r1.live_regions != r0.live_regions ||
        r1.image_bytes != r0.image_bytes || a1.live_images != a0.live_images ||
        a1.image_bytes != a0.image_bytes || a1.allocated_bytes != a0.allocated_bytes) {
        fprintf(stderr, "stress_threads: FAILED (worker error %d, live %llu, arena images %llu, "
                "allocated %llu -> %llu)\n", bad, (unsigned long long)r1.live_regions,
                (unsigned long long)a1.live_images, (unsigned long long)a0.allocated_bytes,
                (unsigned long long)a1.allocated_bytes);
        return 1;
    }
    return 0;
}
