/*
** bench_seal.c -- what sealing costs: one fs_arena_seal + fs_arena_unseal
** pair on an image of 4 KiB .. 64 MiB, against memcpy of the same bytes.
**
** Why: a region is sealed once (I1: one mprotect per region, never per
** object) and unsealed once at reclamation, while building it writes every
** byte at least once. memcpy of the image is therefore the floor of any
** freeze, and the ratio says when the mprotect pair stops mattering (tiny
** images, where the syscall and TLB flush dominate) and when it is noise
** (large ones, where it costs per page table entry, not per byte).
** PLATFORM.md measured the RO+RW toggle at 2 us (4 KiB) .. 1.2 ms (64 MiB).
**
** Method: pages are populated first (sealing untouched pages is cheaper and
** not what a finished image looks like); each case warms up, then runs a
** fixed number of iterations; the memcpy baseline runs in the same process
** on the same image just before. Output, one line per case:
**   name  n  ns/op  ratio-vs-baseline
** Arguments: --smoke (tiny counts, for ctest), --quick (fewer iterations).
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "fs_arena.h"



static void size_name(char *buf, size_t n, size_t bytes)
{
    if (bytes >= ((size_t)1 << 20))
        snprintf(buf, n, "%zuMiB", bytes >> 20);
    else
        snprintf(buf, n, "%zuKiB", bytes >> 10);
}

int main(int argc, char **argv)
{
    int rc, mode = bench_mode(argc, argv, &rc);
    if (mode < 0)
        return rc;
    int smoke = mode == BENCH_SMOKE, quick = mode == BENCH_QUICK;
    static const size_t sizes[] = {
        (size_t)4 << 10, (size_t)64 << 10, (size_t)1 << 20, (size_t)2 << 20,
        (size_t)16 << 20, (size_t)64 << 20,
    };
    size_t budget = smoke ? (size_t)4 << 20 : quick ? (size_t)256 << 20 : (size_t)2 << 30;
    int nsizes = smoke ? 3 : (int)(sizeof sizes / sizeof sizes[0]);

    printf("# bench_seal: seal+unseal (mprotect RO then RW) vs memcpy of the same bytes\n");
    printf("# name  n  ns/op  ratio-vs-baseline\n");
    for (int s = 0; s < nsizes; s++) {
        size_t size = sizes[s], usable = 0;
        void *img = NULL;
        if (fs_arena_alloc(size, &img, &usable) != FS_OK) {
            fprintf(stderr, "bench_seal: cannot allocate %zu bytes\n", size);
            return 1;
        }
        char *dst = malloc(usable);
        if (dst == NULL)
            return 1;
        memset(img, 0x5a, usable);          /* populate every page */
        memset(dst, 0, usable);
        long iters = (long)(budget / usable);
        if (iters < (smoke ? 2 : 10))
            iters = smoke ? 2 : 10;
        if (iters > 20000)
            iters = 20000;
        long warm = iters / 10 + 1;
        char nm[32];
        size_name(nm, sizeof nm, size);

        for (long i = 0; i < warm; i++) {
            memcpy(dst, img, usable);
            clobber(dst);
        }
        double t0 = now_ns();
        for (long i = 0; i < iters; i++) {
            memcpy(dst, img, usable);
            clobber(dst);
        }
        double base = (now_ns() - t0) / (double)iters;

        for (long i = 0; i < warm; i++) {
            if (fs_arena_seal(img, usable, 1) != FS_OK || fs_arena_unseal(img, usable) != FS_OK) {
                fprintf(stderr, "bench_seal: seal/unseal failed\n");
                return 1;
            }
        }
        t0 = now_ns();
        for (long i = 0; i < iters; i++) {
            fs_arena_seal(img, usable, 1);
            fs_arena_unseal(img, usable);
        }
        double seal = (now_ns() - t0) / (double)iters;

        char line[64];
        snprintf(line, sizeof line, "memcpy_%s", nm);
        printf("%-24s  %6ld  %12.1f  %8.3f\n", line, iters, base, 1.0);
        snprintf(line, sizeof line, "seal_unseal_%s", nm);
        printf("%-24s  %6ld  %12.1f  %8.3f\n", line, iters, seal, seal / base);
        fflush(stdout);
        free(dst);
        fs_arena_free(img);
    }
    return 0;
}
