/*
** test_arena.c -- the frozen-memory arena: allocation, reservations, seal
** (I1), the page map, the violation reporter and its chaining, stats, purge.
** Criterion runs each test in a fresh process, so signal tests may die.
*/
#include <criterion/criterion.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fs_arena.h"

static void *alloc_or_die(size_t size, size_t *usable)
{
    void *p = NULL;
    cr_assert_eq(fs_arena_alloc(size, &p, usable), FS_OK);
    return p;
}

Test(arena_alloc, images_are_whole_pages_inside_reservations)
{
    size_t pg = fs_arena_page_size(), sizes[] = { 1, 100, 4096, 5000, 12288, 20000, 1 << 20 };
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t usable = 0;
        char *p = alloc_or_die(sizes[i], &usable);
        cr_assert_eq((uintptr_t)p % pg, 0);
        cr_assert_eq(usable % pg, 0);
        cr_assert_geq(usable, sizes[i]);
        cr_assert(fs_arena_contains(p));
        cr_assert(fs_arena_contains(p + usable - 1));
        memset(p, 0xab, usable);                 /* writable before seal */
        fs_arena_free(p);
    }
    int on_stack = 0;
    void *heap = malloc(64);
    cr_assert_not(fs_arena_contains(&on_stack));
    cr_assert_not(fs_arena_contains(heap));
    free(heap);
}

Test(arena_alloc, reservations_grow_past_the_first)
{
    /* 3 x 600 MiB does not fit the first 1 GiB reservation; pages are never
    ** touched, so this costs address space only. */
    void *p[3];
    for (int i = 0; i < 3; i++)
        p[i] = alloc_or_die((size_t)600 << 20, NULL);
    fs_arena_stats_t st;
    fs_arena_get_stats(&st);
    cr_assert_geq(st.reservations, 2);
    cr_assert_geq(st.reserved_bytes, (uint64_t)1800 << 20);
    for (int i = 0; i < 3; i++) {
        cr_assert(fs_arena_contains(p[i]));
        fs_arena_free(p[i]);
    }
}

Test(arena_alloc, realloc_keeps_contents_and_may_move)
{
    size_t usable;
    char *p = alloc_or_die(4096, &usable);
    memset(p, 7, 4096);
    void *q = p;
    cr_assert_eq(fs_arena_realloc(&q, (size_t)4 << 20, &usable), FS_OK);
    cr_assert_geq(usable, (size_t)4 << 20);
    for (int i = 0; i < 4096; i++)
        cr_assert_eq(((char *)q)[i], 7);
    fs_arena_free(q);
}

Test(arena_alloc, injected_failure_is_clean)
{
    void *p = NULL, *keep = alloc_or_die(4096, NULL);
    fs_alloc_fail_after(0);
    cr_assert_eq(fs_arena_alloc(4096, &p, NULL), FS_ENOMEM);
    void *q = keep;
    cr_assert_eq(fs_arena_realloc(&q, 1 << 20, NULL), FS_ENOMEM);
    cr_assert_eq(q, keep);                       /* unchanged on failure */
    cr_assert_eq(fs__malloc(10), NULL);
    cr_assert_geq(fs_alloc_count(), 3);
    fs_alloc_fail_after(-1);
    cr_assert_eq(fs_arena_alloc(4096, &p, NULL), FS_OK);
    fs_arena_free(p);
    fs_arena_free(keep);
}

Test(arena_seal, write_after_seal_faults, .signal = SIGSEGV)
{
    size_t usable;
    char *p = alloc_or_die(10000, &usable);
    p[0] = 1;
    cr_assert_eq(fs_arena_seal(p, usable, 7), FS_OK);
    cr_assert_eq(p[0], 1);                       /* reads still work */
    ((volatile char *)p)[usable - 1] = 2;        /* dies here */
}

Test(arena_seal, unseal_makes_writable_and_clears_page_map)
{
    size_t usable, pg = fs_arena_page_size();
    char *p = alloc_or_die(3 * pg, &usable);
    cr_assert_eq(fs_arena_seal(p, usable, 99), FS_OK);
    uint64_t id = 0, off = 0;
    cr_assert(fs_arena_locate(p + 2 * pg + 5, &id, &off));
    cr_assert_eq(id, 99);
    cr_assert_eq(off, 2 * pg + 5);
    cr_assert_eq(fs_arena_unseal(p, usable), FS_OK);
    cr_assert_not(fs_arena_locate(p, &id, &off));
    memset(p, 1, usable);
    fs_arena_free(p);
}

Test(arena_seal, bad_arguments_are_rejected)
{
    size_t usable;
    char *p = alloc_or_die(4096, &usable);
    char heap_page[8192];
    cr_assert_eq(fs_arena_seal(p + 1, 4096, 1), FS_EINVAL);
    cr_assert_eq(fs_arena_seal(p, 100, 1), FS_EINVAL);
    cr_assert_eq(fs_arena_seal(p, usable, 0), FS_EINVAL);
    cr_assert_eq(fs_arena_seal(heap_page, 4096, 1), FS_EINVAL);
    fs_arena_free(p);
}

Test(arena_stats, seals_and_bytes_balance)
{
    fs_arena_stats_t a, b, c;
    fs_arena_get_stats(&a);
    size_t usable;
    char *p = alloc_or_die(50000, &usable);
    cr_assert_eq(fs_arena_seal(p, usable, 3), FS_OK);
    fs_arena_get_stats(&b);
    cr_assert_eq(b.live_images, a.live_images + 1);
    cr_assert_eq(b.image_bytes, a.image_bytes + usable);
    cr_assert_eq(b.seals, a.seals + 1);
    cr_assert_geq(b.allocated_bytes, a.allocated_bytes + usable);
    cr_assert_gt(b.mapped_bytes, 0);
    cr_assert_eq(fs_arena_unseal(p, usable), FS_OK);
    fs_arena_free(p);
    fs_arena_get_stats(&c);
    cr_assert_eq(c.live_images, a.live_images);
    cr_assert_eq(c.image_bytes, a.image_bytes);
    cr_assert_eq(c.unseals, a.unseals + 1);
    cr_assert_eq(c.allocated_bytes, a.allocated_bytes);
}

Test(arena_stats, freeing_a_large_image_returns_its_pages)
{
    size_t size = (size_t)64 << 20, usable;
    char *p = alloc_or_die(size, &usable);
    memset(p, 1, usable);
    fs_arena_stats_t full, after;
    fs_arena_get_stats(&full);
    cr_assert_geq(full.resident_bytes, size);
    fs_arena_free(p);                            /* > RETAIN_BYTES: purged at once */
    fs_arena_get_stats(&after);
    cr_assert_lt(after.resident_bytes + size / 2, full.resident_bytes,
                 "resident %llu -> %llu", (unsigned long long)full.resident_bytes,
                 (unsigned long long)after.resident_bytes);
}

/* A realloc that moves a block frees the old one: its pages must count
** toward the purge budget like fs_arena_free's (the builder's doubling
** growth otherwise left every intermediate copy resident). A block sits
** right after the first one so it cannot grow in place. */
Test(arena_stats, realloc_that_moves_returns_the_old_pages)
{
    size_t size = (size_t)40 << 20, usable, bu;
    char *p = alloc_or_die(size, &usable);
    memset(p, 1, usable);
    char *blocker = alloc_or_die(size, &bu);
    void *q = p;
    cr_assert_eq(fs_arena_realloc(&q, 3 * size, &usable), FS_OK);
    memset(q, 2, usable);
    fs_arena_stats_t st;
    fs_arena_get_stats(&st);
    cr_log_info("moved: %d, resident %llu MiB", q != (void *)p,
                (unsigned long long)(st.resident_bytes >> 20));
    cr_assert_neq(q, (void *)p, "grew in place: the test needs a move");
    /* jemalloc counts every active page as resident: the 120 MiB block and
    ** the 40 MiB blocker; the freed 40 MiB must not be (+ 16 MiB slack for
    ** metadata and rounding, well under 40) */
    cr_assert_lt(st.resident_bytes, usable + bu + ((size_t)16 << 20),
                 "the old 40 MiB block is still resident: %llu MiB",
                 (unsigned long long)(st.resident_bytes >> 20));
    fs_arena_free(q);
    fs_arena_free(blocker);
}

/* A loop that allocates, fills and frees a 10 MiB image (freeze and drop,
** again and again) reuses warm pages: the purge budget counts the pages
** that wait, not every byte ever freed (which purged every fourth time and
** faulted 2,560 zeroed pages back in). Counted in minor page faults. */
Test(arena_stats, a_freeze_and_drop_loop_keeps_its_pages_warm)
{
    size_t size = (size_t)10 << 20, usable;
    char *p = alloc_or_die(size, &usable);      /* the first round faults */
    memset(p, 1, usable);
    fs_arena_free(p);
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    for (int i = 0; i < 8; i++) {
        p = alloc_or_die(size, &usable);
        memset(p, 2, usable);
        fs_arena_free(p);
    }
    getrusage(RUSAGE_SELF, &after);
    long faults = after.ru_minflt - before.ru_minflt;
    cr_log_info("minor faults over 8 rounds of 10 MiB: %ld", faults);
    cr_assert_lt(faults, 1000, "%ld minor faults: freed pages were purged and faulted in again",
                 faults);
}

/* Fork a child that runs body() with stderr to *err and a watchdog alarm (a
** chain that spins dies by SIGALRM instead of hanging the suite). Returns the
** child's wait status. */
static int child_runs(void (*body)(void), char *err, size_t errsz)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        alarm(10);
        body();
        _exit(5);
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < errsz && (r = read(fds[0], err + n, errsz - 1 - n)) > 0)
        n += (size_t)r;
    err[n] = '\0';
    close(fds[0]);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return status;
}

static struct {              /* child_writes_sealed's arguments, for its child */
    uint64_t id;
    size_t   off;
    void   (*setup)(void);
} sealed_write;

static void sealed_write_body(void)
{
    if (sealed_write.setup)
        sealed_write.setup();
    size_t usable;
    char *p = NULL;
    if (fs_arena_alloc(sealed_write.off + 1, (void **)&p, &usable) != FS_OK ||
        fs_arena_seal(p, usable, sealed_write.id) != FS_OK)
        _exit(3);
    if (fs_arena_install_reporter() != FS_OK)
        _exit(4);
    ((volatile char *)p)[sealed_write.off] = 1;
}

/* Fork a child that seals an image as region `id`, then writes at `off`.
** Returns the child's wait status; its stderr goes to *err. */
static int child_writes_sealed(uint64_t id, size_t off, void (*setup)(void), char *err, size_t errsz)
{
    sealed_write.id = id;
    sealed_write.off = off;
    sealed_write.setup = setup;
    return child_runs(sealed_write_body, err, errsz);
}

Test(arena_reporter, names_region_and_offset_then_dies_by_sigsegv)
{
    char err[512];
    int status = child_writes_sealed(1234, 0x5238, NULL, err, sizeof err);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "status %d, stderr: %s", status, err);
    cr_assert(strstr(err, "frozenshare: write to frozen memory at 0x") != NULL, "stderr: %s", err);
    cr_assert(strstr(err, "(region #1234, offset 0x5238)") != NULL, "stderr: %s", err);
}

static void earlier_handler(int sig) { (void)sig; _exit(77); }
static void install_earlier(void) { signal(SIGSEGV, earlier_handler); }

Test(arena_reporter, chains_to_the_previous_handler)
{
    char err[512];
    int status = child_writes_sealed(8, 16, install_earlier, err, sizeof err);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 77, "status %d", status);
    cr_assert(strstr(err, "(region #8, offset 0x10)") != NULL, "stderr: %s", err);
}

static void opt_out(void) { setenv("FROZENSHARE_NO_SIGNAL_HANDLER", "1", 1); }

Test(arena_reporter, opt_out_installs_nothing)
{
    char err[512];
    int status = child_writes_sealed(9, 0, opt_out, err, sizeof err);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
    cr_assert(strstr(err, "frozenshare") == NULL, "stderr: %s", err);
}

Test(arena_reporter, reinstalls_on_top_of_a_later_handler)
{
    cr_assert_eq(fs_arena_install_reporter(), FS_OK);
    cr_assert(fs_arena_reporter_installed());
    signal(SIGSEGV, earlier_handler);            /* someone replaces us */
    cr_assert_not(fs_arena_reporter_installed());
    cr_assert_eq(fs_arena_install_reporter(), FS_OK);
    cr_assert(fs_arena_reporter_installed());
}

/* One past the last byte of the reservation holding p (it is contiguous from
** p on, so fs_arena_contains answers a binary search). */
static char *reservation_end(char *p)
{
    size_t pg = fs_arena_page_size(), lo = 0, hi = 1;     /* pages: lo inside, hi outside? */
    while (fs_arena_contains(p + hi * pg))
        lo = hi, hi *= 2;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (fs_arena_contains(p + mid * pg))
            lo = mid;
        else
            hi = mid;
    }
    return p + hi * pg;
}

/* Seal and unseal write a page-map entry per page of the range: a range
** that starts in a reservation but ends past it (a wrong size) would write
** past the page map, and mprotect memory that is not the arena's. */
Test(arena_seal, range_leaving_its_reservation_is_einval)
{
    size_t usable, pg = fs_arena_page_size();
    char *p = alloc_or_die(2 * pg, &usable);
    char *end = reservation_end(p);
    cr_assert(fs_arena_contains(end - 1));
    size_t to_end = (size_t)(end - p);
    size_t too_long[] = { to_end + pg, to_end + 64 * pg, SIZE_MAX / pg * pg, 0 };
    fs_arena_stats_t a, b;
    fs_arena_get_stats(&a);
    for (size_t i = 0; i < sizeof too_long / sizeof *too_long; i++)
        cr_assert_eq(fs_arena_seal(p, too_long[i], 5), FS_EINVAL, "size %zu", too_long[i]);
    fs_arena_get_stats(&b);
    cr_assert_eq(b.seals, a.seals);
    cr_assert_eq(b.live_images, a.live_images);
    memset(p, 1, usable);                        /* still writable */

    cr_assert_eq(fs_arena_seal(p, usable, 6), FS_OK);
    for (size_t i = 0; i < sizeof too_long / sizeof *too_long; i++)
        cr_assert_eq(fs_arena_unseal(p, too_long[i]), FS_EINVAL, "size %zu", too_long[i]);
    uint64_t id = 0, off = 0;
    cr_assert(fs_arena_locate(p + pg, &id, &off));   /* still sealed, page map intact */
    cr_assert_eq(id, 6);
    cr_assert_eq(off, pg);
    cr_assert_eq(fs_arena_unseal(p, usable), FS_OK);
    memset(p, 2, usable);
    fs_arena_free(p);
}

/* ---- the reporter's chain: handlers that return, leave, or run at once ---- */


static size_t count_of(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static char *sealed_or_exit(size_t size, uint64_t id)
{
    size_t usable;
    char *p = NULL;
    if (fs_arena_alloc(size, (void **)&p, &usable) != FS_OK || fs_arena_seal(p, usable, id) != FS_OK)
        _exit(3);
    return p;
}

static void on_segv(void (*fn)(int, siginfo_t *, void *))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fn;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
}

/* A chained handler that returns without resolving the fault, as Python's
** faulthandler does after faulthandler.disable() (issue 10, D2). */
static volatile sig_atomic_t returned;
static void ignoring_handler(int sig, siginfo_t *si, void *uc) { (void)sig; (void)si; (void)uc; returned++; }

static void write_with_ignoring_chain(void)
{
    char *p = sealed_or_exit(4096, 41);
    on_segv(ignoring_handler);
    if (fs_arena_install_reporter() != FS_OK)
        _exit(4);
    ((volatile char *)p)[0x30] = 1;              /* must die by SIGSEGV, not spin */
}

Test(arena_reporter, chained_handler_returning_from_a_fault_dies_by_sigsegv)
{
    char err[2048];
    int status = child_runs(write_with_ignoring_chain, err, sizeof err);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV,
              "status %d (SIGALRM = %d: the fault re-executed forever), stderr: %s", status, SIGALRM, err);
    cr_assert_eq(count_of(err, "(region #41, offset 0x30)"), 1, "stderr: %s", err);
}

/* A chained handler that resolves the fault (a GC write barrier) must keep
** getting the faults after its first return: R2 does not give up on it. */
static char *barrier_page;
static volatile sig_atomic_t resolved;
static void resolving_handler(int sig, siginfo_t *si, void *uc)
{
    (void)sig; (void)uc;
    char *a = si->si_addr;
    if (a < barrier_page || a >= barrier_page + 4096)
        _exit(6);
    mprotect(barrier_page, 4096, PROT_READ | PROT_WRITE);
    resolved++;
}

static void writes_with_resolving_chain(void)
{
    barrier_page = sealed_or_exit(4096, 42);
    on_segv(resolving_handler);
    if (fs_arena_install_reporter() != FS_OK)
        _exit(4);
    for (int i = 0; i < 3; i++) {
        mprotect(barrier_page, 4096, PROT_READ);
        ((volatile char *)barrier_page)[0x10] = (char)i;   /* same instruction, same address */
    }
    _exit(resolved == 3 ? 0 : 7);
}

Test(arena_reporter, chained_handler_resolving_faults_keeps_running)
{
    char err[4096];
    int status = child_runs(writes_with_resolving_chain, err, sizeof err);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d, stderr: %s", status, err);
    cr_assert_eq(count_of(err, "(region #42, offset 0x10)"), 3, "stderr: %s", err);
}

/* Two threads fault at once; the chained handler holds each until both have
** arrived. A process-wide "in handler" flag made the second one die by the
** default action, losing its report. */
static atomic_int arrived;
static void meeting_handler(int sig, siginfo_t *si, void *uc)
{
    (void)sig; (void)si; (void)uc;
    atomic_fetch_add(&arrived, 1);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        if (atomic_load(&arrived) == 2)
            _exit(77);
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while (t.tv_sec - t0.tv_sec < 5);
    _exit(78);
}

static void *write_sealed(void *p) { ((volatile char *)p)[0x40] = 1; return NULL; }

static void two_threads_write(void)
{
    char *a = sealed_or_exit(4096, 51), *b = sealed_or_exit(4096, 52);
    on_segv(meeting_handler);
    if (fs_arena_install_reporter() != FS_OK)
        _exit(4);
    pthread_t ta, tb;
    pthread_create(&ta, NULL, write_sealed, a);
    pthread_create(&tb, NULL, write_sealed, b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
}

Test(arena_reporter, two_threads_faulting_at_once_both_report)
{
    char err[2048];
    int status = child_runs(two_threads_write, err, sizeof err);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 77, "status %d, stderr: %s", status, err);
    cr_assert(strstr(err, "(region #51, offset 0x40)") != NULL, "stderr: %s", err);
    cr_assert(strstr(err, "(region #52, offset 0x40)") != NULL, "stderr: %s", err);
}

/* A chained handler that leaves by siglongjmp never returns into the
** reporter; the next fault of that thread must still be reported and
** chained (R1: the slot left behind is stale), also from deeper down the
** stack, where the old frame's memory has been reused. */
static sigjmp_buf recover;
static void leaving_handler(int sig, siginfo_t *si, void *uc) { (void)sig; (void)si; (void)uc; siglongjmp(recover, 1); }

static int write_deep(char *p, int depth)
{
    volatile char pad[512];
    memset((char *)pad, 0x5a, sizeof pad);
    if (depth > 0)
        return write_deep(p, depth - 1) + pad[depth];
    if (sigsetjmp(recover, 1) == 0) {
        ((volatile char *)p)[0x8] = 1;
        return -1000;                            /* not reached */
    }
    return 0;
}

static void leaves_by_longjmp(void)
{
    char *p = sealed_or_exit(4096, 61);
    on_segv(leaving_handler);
    if (fs_arena_install_reporter() != FS_OK)
        _exit(4);
    if (sigsetjmp(recover, 1) == 0)
        ((volatile char *)p)[0x4] = 1;
    if (sigsetjmp(recover, 1) == 0)
        ((volatile char *)p)[0x6] = 1;           /* same depth as the first */
    if (write_deep(p, 16) < 0)                   /* 16 frames deeper */
        _exit(8);
    _exit(0);
}

Test(arena_reporter, chained_handler_leaving_by_siglongjmp_keeps_reporting)
{
    char err[2048];
    int status = child_runs(leaves_by_longjmp, err, sizeof err);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d, stderr: %s", status, err);
    cr_assert(strstr(err, "(region #61, offset 0x4)") != NULL, "stderr: %s", err);
    cr_assert(strstr(err, "(region #61, offset 0x6)") != NULL, "stderr: %s", err);
    cr_assert(strstr(err, "(region #61, offset 0x8)") != NULL, "stderr: %s", err);
}

/* A chained handler that puts back its own previous handler (the reporter)
** and re-raises, as faulthandler does: the nested call must end in the
** default action, not chain again. */
static struct sigaction before_raiser;
static void raising_handler(int sig, siginfo_t *si, void *uc)
{
    (void)si; (void)uc;
    sigaction(sig, &before_raiser, NULL);
    raise(sig);
}

static void write_with_reraising_chain(void)
{
    char *p = sealed_or_exit(4096, 71);
    if (fs_arena_install_reporter() != FS_OK)    /* reporter, chaining to SIG_DFL */
        _exit(4);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = raising_handler;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, &before_raiser);     /* its previous: the reporter */
    if (fs_arena_install_reporter() != FS_OK)    /* reporter on top again */
        _exit(4);
    ((volatile char *)p)[0x50] = 1;
}

Test(arena_reporter, chained_handler_reraising_to_the_reporter_dies_once_reported)
{
    char err[2048];
    int status = child_runs(write_with_reraising_chain, err, sizeof err);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "status %d, stderr: %s", status, err);
    cr_assert_eq(count_of(err, "(region #71, offset 0x50)"), 1, "stderr: %s", err);
}
