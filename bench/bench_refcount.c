/*
** bench_refcount.c -- what a region reference costs: one fs_region_acquire
** + fs_region_release pair, uncontended and contended (2 threads on one
** region), against a plain (non-atomic, volatile) increment/decrement and
** an uncontended atomic increment/decrement.
**
** Why: DESIGN.md biases counts per interpreter so that proxies never touch
** the atomic; an interpreter pays this pair only when it first acquires or
** finally drops a region (hand-off, lookup). The plain baseline is what a
** GIL-protected Py_INCREF/DECREF pair costs; the atomic baseline is the
** floor for any shared count; the contended case is two interpreters
** handing the same region back and forth (the cache line ping-pongs).
**
** Method: one op = one +1 and one -1. Each case warms up, then runs a fixed
** number of ops; baselines run in the same process first. Contended cases
** report wall time per op of one thread while the other does the same.
** Output, one line per case (ratio vs the plain baseline):
**   name  n  ns/op  ratio-vs-baseline
** Arguments: --smoke (tiny counts, for ctest), --quick (fewer ops).
*/
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "fs_region.h"


static long n_ops;
static fs_region_t *region;
static atomic_long shared_counter;
static pthread_barrier_t go;

static double plain_incdec(long n)
{
    volatile long x = 0;
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        x = x + 1;
        x = x - 1;
    }
    return (now_ns() - t0) / (double)n;
}

static double atomic_incdec(atomic_long *c, long n)
{
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(c, 1, memory_order_release);
    }
    return (now_ns() - t0) / (double)n;
}

static double acquire_release(long n)
{
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        fs_region_acquire(region);
        fs_region_release(region);
    }
    return (now_ns() - t0) / (double)n;
}

static void *contender(void *arg)
{
    int atomic_only = (int)(intptr_t)arg;
    pthread_barrier_wait(&go);
    double *ns = malloc(sizeof *ns);
    if (ns)
        *ns = atomic_only ? atomic_incdec(&shared_counter, n_ops) : acquire_release(n_ops);
    return ns;
}

/* Two threads on one count; returns the mean per-op time of the two. */
static double contended(int atomic_only)
{
    pthread_t th[2];
    double sum = 0;
    pthread_barrier_init(&go, NULL, 2);
    for (int t = 0; t < 2; t++)
        if (pthread_create(&th[t], NULL, contender, (void *)(intptr_t)atomic_only) != 0)
            exit(1);
    for (int t = 0; t < 2; t++) {
        void *ns;
        pthread_join(th[t], &ns);
        if (ns == NULL)
            exit(1);
        sum += *(double *)ns;
        free(ns);
    }
    pthread_barrier_destroy(&go);
    return sum / 2;
}

static void line(const char *name, long n, double ns, double base)
{
    printf("%-30s  %10ld  %8.2f  %8.3f\n", name, n, ns, ns / base);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int rc, mode = bench_mode(argc, argv, &rc);
    if (mode < 0)
        return rc;
    int smoke = mode == BENCH_SMOKE, quick = mode == BENCH_QUICK;
    n_ops = smoke ? 10000 : quick ? 2000000 : 20000000;

    fs_builder_t *b = NULL;
    fs_ref_t root;
    if (fs_builder_create(&b, 0) != FS_OK || fs_build_int64(b, 1, &root) != FS_OK ||
        fs_region_create(&region, b, root, NULL, 0, -1) != FS_OK) {
        fprintf(stderr, "bench_refcount: cannot create a region\n");
        return 1;
    }
    atomic_long local = 0;

    /* warm-up: caches, frequency, the region's cache line */
    plain_incdec(n_ops / 10 + 1);
    atomic_incdec(&local, n_ops / 10 + 1);
    acquire_release(n_ops / 10 + 1);

    printf("# bench_refcount: one op = +1 and -1 on a count; ratio vs plain_volatile_incdec\n");
    printf("# name  n  ns/op  ratio-vs-baseline\n");
    double plain = plain_incdec(n_ops);
    line("plain_volatile_incdec", n_ops, plain, plain);
    double atom = atomic_incdec(&local, n_ops);
    line("atomic_incdec_uncontended", n_ops, atom, plain);
    double ar = acquire_release(n_ops);
    line("acquire_release_uncontended", n_ops, ar, plain);
    double atom2 = contended(1);
    line("atomic_incdec_contended_2t", n_ops, atom2, plain);
    double ar2 = contended(0);
    line("acquire_release_contended_2t", n_ops, ar2, plain);
    printf("# vs atomic_incdec_uncontended: acquire_release uncontended %.2fx, contended %.2fx\n",
           ar / atom, ar2 / atom);

    if (fs_region_refcount(region) != 1) {
        fprintf(stderr, "bench_refcount: count drifted to %ld\n", fs_region_refcount(region));
        return 1;
    }
    fs_region_release(region);
    return 0;
}
