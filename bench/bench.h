/*
** bench.h -- what the C benchmarks share: a monotonic clock, an optimizer
** barrier, and the command line (--smoke: tiny counts for ctest; --quick:
** fewer iterations; default: full runs).
*/
#ifndef FS_BENCH_H
#define FS_BENCH_H

#include <stdio.h>
#include <string.h>
#include <time.h>

typedef enum { BENCH_FULL, BENCH_QUICK, BENCH_SMOKE } bench_mode_t;

static inline double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* Keep the compiler from dropping or hoisting work on *p. */
static inline void clobber(void *p) { __asm__ volatile("" : : "r"(p) : "memory"); }

/* The mode from argv, or -1 after printing usage (exit code in *rc). */
static inline int bench_mode(int argc, char **argv, int *rc)
{
    int mode = BENCH_FULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--smoke") == 0)
            mode = BENCH_SMOKE;
        else if (strcmp(argv[i], "--quick") == 0)
            mode = BENCH_QUICK;
        else {
            fprintf(stderr, "usage: %s [--smoke | --quick]\n", argv[0]);
            *rc = strcmp(argv[i], "--help") == 0 ? 0 : 2;
            return -1;
        }
    }
    return mode;
}

#endif /* FS_BENCH_H */
