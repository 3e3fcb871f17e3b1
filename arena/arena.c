/*
** arena.c -- the private jemalloc arena of frozen memory, seal/unseal, the
** page map and the violation reporter.
**
**   res[0]             res[1] (>= 2x res[0])           res[nres-1]
**   [start, end)       [start, end)                    [start, end)
**   | extents given to jemalloc in bump order | unused tail ... |
**   pages[]: one fs_pageinfo_t per page, in a separate lazily-touched mapping
**
** jemalloc asks the extent hooks for memory; the hooks carve it from the
** current reservation (an anonymous MAP_NORESERVE mapping) or reserve a new,
** larger one. Extents are never unmapped: dalloc opts out, so jemalloc
** retains them (opt.retain) and purges their pages back to the OS through
** the purge hooks (madvise). The arena is created with
** metadata_use_hooks = false, so jemalloc's own bookkeeping never lands in a
** reservation and every reserved byte is image memory.
**
** Reservations are published by a release store of nres after their fields
** are written; readers (fs_arena_contains, the signal handler) load nres with
** acquire and scan at most FS_ARENA_MAX_RES entries: O(1), lock-free and
** async-signal-safe.
**
** INVARIANTS (DESIGN.md): I1 a sealed image's pages are PROT_READ and its
** page-map entries name its region until fs_arena_unseal; images own whole
** pages, so sealing protects nothing else.
*/
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <jemalloc/jemalloc.h>

#include "fs_arena.h"

#define FS_ARENA_MAX_RES   48                    /* 1 GiB * 2^47: never the limit */
#define FIRST_RES_BYTES    ((size_t)1 << 30)     /* first reservation, if possible */
#define RETAIN_BYTES       ((size_t)32 << 20)    /* dirty beyond this: purge now   */

typedef struct fs_pageinfo_s {
    uint64_t region_id;      /* 0: page not sealed                              */
    uint64_t page_in_image;  /* page number from the image base                 */
} fs_pageinfo_t;

typedef struct fs_res_s {
    uintptr_t      start;    /* first byte; written once before publication     */
    uintptr_t      end;      /* one past the last byte                          */
    fs_pageinfo_t *pages;    /* page map, (end - start) / page entries          */
    uintptr_t      bump;     /* next free byte (res_lock); only the last
                                reservation's moves                            */
} fs_res_t;

/* Mirror of jemalloc's arena_config_t (experimental.arenas_create_ext). */
typedef struct je_arena_config_s {
    extent_hooks_t *extent_hooks;
    bool            metadata_use_hooks;
} je_arena_config_t;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int            init_err;              /* result of arena_init_once          */
static unsigned       arena_ind;             /* jemalloc arena index               */
static size_t         page;                  /* system page size                   */

static fs_res_t       res[FS_ARENA_MAX_RES]; /* entries < nres are immutable       */
static atomic_uint    nres;                  /* published reservations             */
static pthread_mutex_t res_lock = PTHREAD_MUTEX_INITIALIZER; /* guards bumps, next_size */
static size_t         next_size = FIRST_RES_BYTES;

static atomic_uint_fast64_t st_live, st_bytes, st_seals, st_unseals, st_reserved;
static atomic_size_t  unpurged;              /* bytes freed since the last purge   */

/* Mapping budget. Sealing a run of pages inside a read-write reservation
** splits its mapping in up to three; vm.max_map_count (65530 by default)
** bounds the mappings of the whole process, and CPython aborts when it
** cannot munmap one of its arenas for lack of a mapping. So the arena keeps
** count of its sealed runs (maximal runs of sealed pages; each costs at most
** two extra mappings) and stays well below the limit: an unseal that would
** split a run is refused past a quarter of it (the region layer keeps the
** image sealed and retries later), a seal that would start a new run is
** refused past a half (freeze raises MemoryError). Guarded by prot_lock,
** which also orders seal/unseal with the neighbour checks. */
static pthread_mutex_t prot_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t sig_lock = PTHREAD_MUTEX_INITIALIZER;  /* serializes reporter installs */
static size_t sealed_runs;                  /* guarded by prot_lock            */
static size_t max_maps = 65530;             /* vm.max_map_count, read at init  */

/* ---- reservations --------------------------------------------------------- */

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

static void *map_noreserve(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* Reserve a new range holding at least `need` bytes; res_lock held.
** Tries the preferred (doubling) size first, then halves down to `need`, so
** a lowered RLIMIT_AS still gets what the request needs. */
static int reserve(size_t need)
{
    unsigned n = atomic_load_explicit(&nres, memory_order_relaxed);
    if (n == FS_ARENA_MAX_RES)
        return FS_ENOMEM;
    need = round_up(need, page);
    size_t size = next_size > need ? next_size : need;
    for (;;) {
        size_t npages = size / page;
        void *mem = map_noreserve(size);
        void *map = mem ? map_noreserve(round_up(npages * sizeof(fs_pageinfo_t), page)) : NULL;
        if (mem && map) {
            res[n].start = (uintptr_t)mem;
            res[n].end = (uintptr_t)mem + size;
            res[n].pages = map;
            res[n].bump = (uintptr_t)mem;      /* whole before it is published */
            atomic_store_explicit(&nres, n + 1, memory_order_release);
            atomic_fetch_add(&st_reserved, size);
            next_size = size * 2;
            return FS_OK;
        }
        if (mem)
            munmap(mem, size);
        if (size == need)
            return FS_ENOMEM;
        size = round_up(size / 2, page) > need ? round_up(size / 2, page) : need;
    }
}

static const fs_res_t *find_res(uintptr_t a)
{
    unsigned n = atomic_load_explicit(&nres, memory_order_acquire);
    for (unsigned i = 0; i < n; i++)
        if (a >= res[i].start && a < res[i].end)
            return &res[i];
    return NULL;
}

/* ---- extent hooks (called by jemalloc, under its own locks) --------------- */

static void *hook_alloc(extent_hooks_t *h, void *new_addr, size_t size,
                        size_t alignment, bool *zero, bool *commit, unsigned ind)
{
    (void)h; (void)ind;
    if (alignment < page)
        alignment = page;
    void *ret = NULL;
    pthread_mutex_lock(&res_lock);
    unsigned n = atomic_load_explicit(&nres, memory_order_relaxed);
    uintptr_t at = n ? round_up(res[n - 1].bump, alignment) : 0;
    if (n == 0 || at + size > res[n - 1].end || at < res[n - 1].bump) {
        if (new_addr == NULL && reserve(size + alignment) == FS_OK) {
            n = atomic_load_explicit(&nres, memory_order_relaxed);
            at = round_up(res[n - 1].bump, alignment);
        } else {
            goto done;
        }
    }
    if (new_addr != NULL && (uintptr_t)new_addr != at)
        goto done;                  /* can only extend at the bump pointer */
    res[n - 1].bump = at + size;    /* one store: whole at any instant (fork) */
    ret = (void *)at;
    *zero = true;                   /* fresh anonymous pages read as zero */
    *commit = true;
done:
    pthread_mutex_unlock(&res_lock);
    return ret;
}

/* Opt out of deallocation: jemalloc retains the extent for reuse. */
static bool hook_dalloc(extent_hooks_t *h, void *addr, size_t size, bool committed, unsigned ind)
{ (void)h; (void)addr; (void)size; (void)committed; (void)ind; return true; }

static void hook_destroy(extent_hooks_t *h, void *addr, size_t size, bool committed, unsigned ind)
{ (void)h; (void)addr; (void)size; (void)committed; (void)ind; }

static bool hook_commit(extent_hooks_t *h, void *addr, size_t size, size_t off, size_t len, unsigned ind)
{ (void)h; (void)addr; (void)size; (void)off; (void)len; (void)ind; return false; }

static bool hook_purge_lazy(extent_hooks_t *h, void *addr, size_t size, size_t off, size_t len, unsigned ind)
{
    (void)h; (void)size; (void)ind;
    return madvise((char *)addr + off, len, MADV_FREE) != 0;
}

static bool hook_purge_forced(extent_hooks_t *h, void *addr, size_t size, size_t off, size_t len, unsigned ind)
{
    (void)h; (void)size; (void)ind;
    return madvise((char *)addr + off, len, MADV_DONTNEED) != 0;
}

static bool hook_split(extent_hooks_t *h, void *addr, size_t size, size_t a, size_t b, bool committed, unsigned ind)
{ (void)h; (void)addr; (void)size; (void)a; (void)b; (void)committed; (void)ind; return false; }

/* Merge only within one reservation (two reservations may be adjacent in
** the address space by chance; an extent must not straddle them). */
static bool hook_merge(extent_hooks_t *h, void *a, size_t sa, void *b, size_t sb, bool committed, unsigned ind)
{
    (void)h; (void)sa; (void)sb; (void)committed; (void)ind;
    return find_res((uintptr_t)a) != find_res((uintptr_t)b);
}

static extent_hooks_t hooks = {
    hook_alloc, hook_dalloc, hook_destroy, hook_commit, NULL,
    hook_purge_lazy, hook_purge_forced, hook_split, hook_merge,
};

/* ---- init ------------------------------------------------------------------ */

static void read_max_map_count(void)
{
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    unsigned long v = 0;
    if (f != NULL) {
        if (fscanf(f, "%lu", &v) == 1 && v >= 1024)
            max_maps = (size_t)v;
        fclose(f);
    }
}

/* fork (DESIGN.md I1 holds in the child: sealed pages stay sealed and
** shared). prot_lock and sig_lock are held across fork() so that the child
** finds them free and what they guard whole. Prepare handlers run in the
** reverse order of registration and jemalloc registered its own at load
** (its constructor), so ours run first: the refcount layer's (registered
** after this one) take theirs, then prot_lock and sig_lock here, then
** jemalloc takes its arena locks.
** res_lock cannot be held across fork: jemalloc calls hook_alloc both with
** its grow lock held (which its prepare takes after ours: taking res_lock
** here would deadlock against such a thread) and with no lock at all (so
** a thread may be inside hook_alloc at the fork). Instead every state
** change under res_lock is one store that leaves the reservations whole
** (a reservation is filled in before nres publishes it; a bump moves in one
** store), and the child re-initializes res_lock: whatever the vanished
** thread was allocating was never handed to the child's jemalloc. (Found
** by the fork test under ASan: a child hung on res_lock.) */
static void arena_prefork(void)
{
    pthread_mutex_lock(&sig_lock);
    pthread_mutex_lock(&prot_lock);
}
static void arena_postfork_parent(void)
{
    pthread_mutex_unlock(&prot_lock);
    pthread_mutex_unlock(&sig_lock);
}
static void arena_postfork_child(void)
{
    arena_postfork_parent();
    pthread_mutex_init(&res_lock, NULL); /* its holder, if any, is not here */
}

static void arena_init_once(void)
{
    read_max_map_count();
    long ps = sysconf(_SC_PAGESIZE);
    page = ps > 0 ? (size_t)ps : 4096;
    je_arena_config_t cfg = { &hooks, false };
    size_t sz = sizeof(arena_ind);
    if (fsje_mallctl("experimental.arenas_create_ext", &arena_ind, &sz, &cfg, sizeof(cfg)) != 0) {
        init_err = FS_ENOMEM;
        return;
    }
    /* Dirty pages of freed images go back to the OS within a second while
    ** the arena is in use; fs_arena_free bounds what waits (RETAIN_BYTES). */
    char name[64];
    ssize_t decay = 1000, muzzy = 0;
    snprintf(name, sizeof name, "arena.%u.dirty_decay_ms", arena_ind);
    fsje_mallctl(name, NULL, NULL, &decay, sizeof decay);
    snprintf(name, sizeof name, "arena.%u.muzzy_decay_ms", arena_ind);
    fsje_mallctl(name, NULL, NULL, &muzzy, sizeof muzzy);
    /* jemalloc purges a freed extent of >= 8 MiB (its oversize threshold) at
    ** once; fs_arena_free's RETAIN_BYTES budget decides that instead. */
    size_t never = SIZE_MAX;
    snprintf(name, sizeof name, "arena.%u.oversize_threshold", arena_ind);
    fsje_mallctl(name, NULL, NULL, &never, sizeof never);
    if (pthread_atfork(arena_prefork, arena_postfork_parent, arena_postfork_child) != 0) {
        init_err = FS_ENOMEM;
        return;
    }
    init_err = FS_OK;
}

int fs_arena_init(void)
{
    pthread_once(&init_once, arena_init_once);
    return init_err;
}

size_t fs_arena_page_size(void)
{
    fs_arena_init();
    return page;
}

static int flags(void)
{
    return (int)(MALLOCX_ARENA(arena_ind) | MALLOCX_ALIGN(page) | MALLOCX_TCACHE_NONE);
}

/* ---- image memory ---------------------------------------------------------- */

int fs_arena_alloc(size_t size, void **out, size_t *usable)
{
    int err = fs_arena_init();
    if (err)
        return err;
    if (size > ((size_t)1 << 46))
        return FS_ETOOBIG;
    if (fs__alloc_should_fail())
        return FS_ENOMEM;
    void *p = fsje_mallocx(size ? round_up(size, page) : page, flags());
    if (p == NULL)
        return FS_ENOMEM;
    *out = p;
    if (usable)
        *usable = fsje_sallocx(p, flags());
    return FS_OK;
}

/* Bytes of the arena's dirty pages (freed, not yet purged): jemalloc's own
** count, refreshed by an epoch bump (a few microseconds); SIZE_MAX when the
** stats cannot be read. */
static size_t dirty_bytes(void)
{
    uint64_t epoch = 1;
    size_t sz = sizeof epoch, pdirty = 0, je_page = page;
    if (fsje_mallctl("epoch", &epoch, &sz, &epoch, sz) != 0)
        return SIZE_MAX;
    char name[64];
    snprintf(name, sizeof name, "stats.arenas.%u.pdirty", arena_ind);
    sz = sizeof pdirty;
    if (fsje_mallctl(name, &pdirty, &sz, NULL, 0) != 0)
        return SIZE_MAX;
    sz = sizeof je_page;
    if (fsje_mallctl("arenas.page", &je_page, &sz, NULL, 0) != 0)
        return SIZE_MAX;
    return pdirty * je_page;
}

/* Freed pages stay mapped for the next image, up to RETAIN_BYTES of dirty
** pages (a freeze after a drop then writes warm pages instead of faulting
** in zeroed ones); beyond that they go back to the OS now, since decay only
** runs when the arena is used again. Every way pages are freed counts:
** fs_arena_free, and a realloc that moves or shrinks a block. unpurged, the
** bytes freed since the last purge, only grows and overstates what waits
** (the next image reuses freed pages), so past the budget jemalloc's count
** of dirty pages decides (counting freed bytes alone, a loop that freezes
** and drops a 10 MB image purged every fourth round and faulted 2,560
** zeroed pages back in). */
static void note_freed(size_t size)
{
    size_t before = atomic_fetch_add_explicit(&unpurged, size, memory_order_relaxed);
    if (before + size > RETAIN_BYTES) {
        size_t dirty = dirty_bytes();
        if (dirty <= RETAIN_BYTES) {
            atomic_store_explicit(&unpurged, dirty, memory_order_relaxed);
            return;
        }
        atomic_store_explicit(&unpurged, 0, memory_order_relaxed);
        fs_arena_purge();
    }
}

int fs_arena_realloc(void **p, size_t new_size, size_t *usable)
{
    if (new_size > ((size_t)1 << 46))
        return FS_ETOOBIG;
    if (fs__alloc_should_fail())
        return FS_ENOMEM;
    size_t old = *p ? fsje_sallocx(*p, flags()) : 0;
    void *q = fsje_rallocx(*p, new_size ? round_up(new_size, page) : page, flags());
    if (q == NULL)
        return FS_ENOMEM;
    size_t now = fsje_sallocx(q, flags());
    if (q != *p)
        note_freed(old);                  /* moved: the old block is free */
    else if (now < old)
        note_freed(old - now);            /* shrunk in place */
    *p = q;
    if (usable)
        *usable = now;
    return FS_OK;
}

void fs_arena_free(void *p)
{
    if (p == NULL)
        return;
    size_t size = fsje_sallocx(p, flags());
    fsje_dallocx(p, flags());
    note_freed(size);
}

void fs_arena_purge(void)
{
    if (fs_arena_init())
        return;
    char name[64];
    snprintf(name, sizeof name, "arena.%u.purge", arena_ind);
    fsje_mallctl(name, NULL, NULL, NULL, 0);
}

/* ---- seal / unseal --------------------------------------------------------- */

/* The reservation that holds all of [p, p + size), or NULL when the range
** is not whole pages (at least one), or leaves the reservation its start
** lies in: seal and unseal write a page-map entry for every page of the
** range, and the page map ends with its reservation. */
static const fs_res_t *range_res(const void *p, size_t size)
{
    if (p == NULL || page == 0 || (uintptr_t)p % page || size == 0 || size % page)
        return NULL;
    const fs_res_t *r = find_res((uintptr_t)p);
    if (r == NULL || size > r->end - (uintptr_t)p)
        return NULL;
    return r;
}

/* p, size: checked by range_res. */
static void mark_pages(const fs_res_t *r, void *p, size_t size, uint64_t region_id)
{
    size_t first = ((uintptr_t)p - r->start) / page, n = size / page;
    for (size_t i = 0; i < n; i++) {
        r->pages[first + i].region_id = region_id;
        r->pages[first + i].page_in_image = region_id ? i : 0;
    }
}

/* Region ids of the pages right before p and right after p + size (0: not
** sealed, or outside the reservation). p lies in a reservation. */
static void neighbour_ids(const void *p, size_t size, uint64_t *before, uint64_t *after)
{
    const fs_res_t *r = find_res((uintptr_t)p);
    size_t first = ((uintptr_t)p - r->start) / page, n = size / page;
    *before = first > 0 ? r->pages[first - 1].region_id : 0;
    *after = first + n < (r->end - r->start) / page ? r->pages[first + n].region_id : 0;
}

/* Sealed runs after sealing (+1) or unsealing (-1) [p, p + size): sealing
** joins the neighbouring runs, unsealing may split one. */
static size_t runs_after(const void *p, size_t size, int sealing)
{
    uint64_t before, after;
    neighbour_ids(p, size, &before, &after);
    int sides = (before != 0) + (after != 0);
    if (sealing)
        return sealed_runs + 1 - (size_t)sides;   /* 0 sides: new run; 2: joins two */
    return sealed_runs - 1 + (size_t)sides;       /* 2 sides: splits one run in two */
}

int fs_arena_seal(void *p, size_t size, uint64_t region_id)
{
    const fs_res_t *r = range_res(p, size);
    if (r == NULL || region_id == 0)
        return FS_EINVAL;
    pthread_mutex_lock(&prot_lock);
    size_t runs = runs_after(p, size, 1);
    int err = FS_OK;
    if (runs > sealed_runs && 2 * runs > max_maps / 2)
        err = FS_ENOMEM;                          /* see "Mapping budget" */
    else if (mprotect(p, size, PROT_READ) != 0)
        err = errno == ENOMEM ? FS_ENOMEM : FS_ESYS;
    else {
        sealed_runs = runs;
        mark_pages(r, p, size, region_id);
    }
    pthread_mutex_unlock(&prot_lock);
    if (err)
        return err;
    atomic_fetch_add(&st_live, 1);
    atomic_fetch_add(&st_bytes, size);
    atomic_fetch_add(&st_seals, 1);
    return FS_OK;
}

int fs_arena_unseal(void *p, size_t size)
{
    const fs_res_t *r = range_res(p, size);
    if (r == NULL)
        return FS_EINVAL;
    /* Making pages writable again can split a mapping: refused with ENOMEM
    ** past the budget (see "Mapping budget") or when the kernel refuses; the
    ** image stays sealed and the region layer retries later. */
    pthread_mutex_lock(&prot_lock);
    size_t runs = runs_after(p, size, 0);
    int err = FS_OK;
    if (runs > sealed_runs && 2 * runs > max_maps / 4)
        err = FS_ENOMEM;
    else if (mprotect(p, size, PROT_READ | PROT_WRITE) != 0)
        err = errno == ENOMEM ? FS_ENOMEM : FS_ESYS;
    else {
        sealed_runs = runs;
        mark_pages(r, p, size, 0);
    }
    pthread_mutex_unlock(&prot_lock);
    if (err)
        return err;
    atomic_fetch_sub(&st_live, 1);
    atomic_fetch_sub(&st_bytes, size);
    atomic_fetch_add(&st_unseals, 1);
    return FS_OK;
}

void fs_arena_sealed_neighbours(const void *p, size_t size, uint64_t *before, uint64_t *after)
{
    *before = *after = 0;
    if (p == NULL || (uintptr_t)p % page || size % page || !fs_arena_contains(p))
        return;
    pthread_mutex_lock(&prot_lock);
    neighbour_ids(p, size, before, after);
    pthread_mutex_unlock(&prot_lock);
}

int fs_arena_contains(const void *addr)
{
    return find_res((uintptr_t)addr) != NULL;
}

int fs_arena_locate(const void *addr, uint64_t *region_id, uint64_t *offset)
{
    const fs_res_t *r = find_res((uintptr_t)addr);
    if (r == NULL || page == 0)
        return 0;
    uintptr_t a = (uintptr_t)addr;
    const fs_pageinfo_t *pi = &r->pages[(a - r->start) / page];
    if (pi->region_id == 0)
        return 0;
    *region_id = pi->region_id;
    *offset = pi->page_in_image * page + a % page;
    return 1;
}

/* ---- foreign images: named by the reporter, not held ---------------------- */
/* A slot is claimed by CAS on start (0: free) and filled before id is
** published; the reporter reads id, then start and size (a slot changing
** under a crash report at worst names nothing). */
#define FOREIGN_SLOTS 64
static struct {
    atomic_uintptr_t     start;
    atomic_size_t        size;
    atomic_uint_fast64_t id;    /* 0: not (yet) published */
} foreign[FOREIGN_SLOTS];

void fs_arena_note_foreign(const void *p, size_t size, uint64_t region_id)
{
    for (int i = 0; i < FOREIGN_SLOTS; i++) {
        uintptr_t free_ = 0;
        if (atomic_compare_exchange_strong(&foreign[i].start, &free_, (uintptr_t)p)) {
            atomic_store(&foreign[i].size, size);
            atomic_store_explicit(&foreign[i].id, region_id, memory_order_release);
            return;
        }
    }
}

void fs_arena_forget_foreign(const void *p)
{
    for (int i = 0; i < FOREIGN_SLOTS; i++)
        if (atomic_load(&foreign[i].start) == (uintptr_t)p && atomic_load(&foreign[i].id) != 0) {
            atomic_store(&foreign[i].id, 0);
            atomic_store(&foreign[i].size, 0);
            atomic_store(&foreign[i].start, 0);
            return;
        }
}

/* Async-signal-safe: the foreign image holding addr, as fs_arena_locate. */
static int locate_foreign(const void *addr, uint64_t *region_id, uint64_t *offset)
{
    uintptr_t a = (uintptr_t)addr;
    for (int i = 0; i < FOREIGN_SLOTS; i++) {
        uint64_t id = atomic_load_explicit(&foreign[i].id, memory_order_acquire);
        uintptr_t s = atomic_load_explicit(&foreign[i].start, memory_order_relaxed);
        size_t n = atomic_load_explicit(&foreign[i].size, memory_order_relaxed);
        if (id != 0 && a >= s && a - s < n) {
            *region_id = id;
            *offset = a - s;
            return 1;
        }
    }
    return 0;
}

/* ---- violation reporter ---------------------------------------------------- */
/*
** One SIGSEGV/SIGBUS handler for the process (DESIGN.md, "Violation
** reporter"): it writes one line for a fault inside a sealed image, then
** chains to the handler it replaced, or to the default action. Everything
** the handler touches is a fixed static table read and claimed with atomics:
** no malloc, no lock, no _Thread_local (in a shared library that may call
** __tls_get_addr, which is not async-signal-safe).
**
**   chain[sig][CHAIN_RING]   the replaced sigaction, a seqlock'd ring        written under sig_lock,
**   chain_pub[sig]           number of the last published entry (release)   read lock-free
**   slots[REPORTER_SLOTS]    one per thread inside the reporter, claimed by CAS on its tid
**
** R1 a thread owns at most one slot; its `frame` is the address of a local of
**    its outermost live reporter call, holding `token`. An invocation that
**    finds its tid in a slot is nested (a chained handler re-raised, or
**    faulted) only if that frame is live: above ours on the stack, close,
**    and still holding the token. Otherwise a chained handler left by
**    siglongjmp and the slot is stale: it is taken over, not trusted.
** R2 a chained handler that returns from a real fault (si_code > 0) either
**    resolved it (a GC write barrier, a lazy mapping) or ignored it (a
**    faulthandler after faulthandler.disable(), whose previous handler is
**    us). The first must keep working, so returning is not failure by
**    itself; the second re-executes the same instruction in the same state.
**    So the returned-from fault is recorded in the slot, and when the same
**    thread takes the same fault again (signal, code, address and the
**    interrupted registers all equal) the chain is not called again: the
**    default action is restored and the fault re-executes into it, so the
**    process dies by the signal with the fault's own siginfo.
** R3 an entry of chain[] is rewritten only CHAIN_RING - 1 publications after
**    it was current; a reader validates its copy by `seq` and retries, and
**    never waits for the writer (who may be the interrupted thread).
*/
#define REPORTER_SLOTS 64                    /* threads inside the reporter at once  */
#define CHAIN_RING     4
#define NEST_SPAN      ((uintptr_t)1 << 20)  /* a nested call is this close above us */

typedef struct chain_s {
    atomic_uint      seq;      /* publication it holds; 0 while rewritten (R3)      */
    atomic_int       flags;    /* sa_flags of the replaced handler                  */
    atomic_uintptr_t fn;       /* its sa_sigaction or sa_handler (SIG_DFL, SIG_IGN) */
} chain_t;

typedef struct reporter_slot_s {
    atomic_long owner;         /* tid inside the reporter; 0: free (CAS to claim)    */
    atomic_long last;          /* tid whose returned-from fault is recorded (R2)     */
    uintptr_t   frame;         /* owner's outermost live frame (R1); owner only      */
    uint64_t    token;         /* what *frame holds while that call is live          */
    int         sig, code;     /* the fault a chained handler returned from (R2)     */
    uintptr_t   addr;
    uint64_t    ctx;           /* hash of the interrupted registers                  */
} reporter_slot_t;

static chain_t         chain[2][CHAIN_RING];                  /* [0] SIGSEGV, [1] SIGBUS */
static atomic_uint     chain_pub[2];
static reporter_slot_t slots[REPORTER_SLOTS];
static atomic_uint_fast64_t tokens;
static atomic_int      reporter_on;

static char *put_str(char *p, const char *s) { while (*s) *p++ = *s++; return p; }

static char *put_hex(char *p, uint64_t v)
{
    char tmp[16];
    int n = 0;
    do { tmp[n++] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v);
    p = put_str(p, "0x");
    while (n) *p++ = tmp[--n];
    return p;
}

static char *put_dec(char *p, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n) *p++ = tmp[--n];
    return p;
}

/* Restore the default action. A real fault (si_code > 0) is left to
** re-execute into it, so the process dies with the fault's siginfo (core
** dumps keep the address); a sent signal would not recur: raise it. */
static void die_by_default(int sig, int real)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(sig, &dfl, NULL);
    if (!real)
        raise(sig);
}

/* FNV-1a of the interrupted general registers: equal when the same
** instruction faults again in the same state (R2). */
static uint64_t context_hash(const void *uc)
{
    const unsigned char *p = NULL;
    size_t n = 0;
#if defined(__x86_64__) || defined(__i386__)
    p = (const unsigned char *)((const ucontext_t *)uc)->uc_mcontext.gregs;
    n = sizeof(gregset_t);
#elif defined(__aarch64__)
    p = (const unsigned char *)&((const ucontext_t *)uc)->uc_mcontext;
    n = offsetof(mcontext_t, __reserved);        /* fault_address, regs, sp, pc, pstate */
#endif
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; uc != NULL && i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3u;
    return h;
}

/* The slot `tid` owns, or a free one claimed for it (preferring the one that
** holds its record, R2); NULL when all are taken. *owned says which. */
static reporter_slot_t *slot_for(long tid, int *owned)
{
    *owned = 1;
    for (int i = 0; i < REPORTER_SLOTS; i++)
        if (atomic_load_explicit(&slots[i].owner, memory_order_acquire) == tid)
            return &slots[i];
    *owned = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < REPORTER_SLOTS; i++) {
            long free_ = 0;
            if (pass == 0 && atomic_load_explicit(&slots[i].last, memory_order_relaxed) != tid)
                continue;
            if (atomic_compare_exchange_strong_explicit(&slots[i].owner, &free_, tid,
                                                        memory_order_acquire, memory_order_relaxed))
                return &slots[i];
        }
    return NULL;
}

/* R1: is the call that owns s live above `here` on this thread's stack? */
static int nested(const reporter_slot_t *s, uintptr_t here)
{
    return s->frame > here && s->frame - here < NEST_SPAN &&
           *(const volatile uint64_t *)s->frame == s->token;
}

/* R3: copy the current chain entry of signal k; 0 if none could be read. */
static int load_chain(int k, int *flags, uintptr_t *fn)
{
    for (int tries = 0; tries < 8; tries++) {
        unsigned n = atomic_load_explicit(&chain_pub[k], memory_order_acquire);
        if (n == 0)
            return 0;
        chain_t *c = &chain[k][n % CHAIN_RING];
        if (atomic_load_explicit(&c->seq, memory_order_acquire) != n)
            continue;
        *flags = atomic_load_explicit(&c->flags, memory_order_relaxed);
        *fn = atomic_load_explicit(&c->fn, memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&c->seq, memory_order_relaxed) == n)
            return 1;
    }
    return 0;
}

/* Writer side of R3; caller holds sig_lock. */
static void publish_chain(int k, const struct sigaction *prev)
{
    unsigned n = atomic_load_explicit(&chain_pub[k], memory_order_relaxed) + 1;
    if (n == 0)
        n = 1;                                   /* 0 means "never published" */
    chain_t *c = &chain[k][n % CHAIN_RING];
    atomic_store_explicit(&c->seq, 0, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    uintptr_t fn = (prev->sa_flags & SA_SIGINFO) ? (uintptr_t)prev->sa_sigaction
                                                 : (uintptr_t)prev->sa_handler;
    atomic_store_explicit(&c->flags, prev->sa_flags, memory_order_relaxed);
    atomic_store_explicit(&c->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&c->seq, n, memory_order_release);
    atomic_store_explicit(&chain_pub[k], n, memory_order_release);
}

/* 1 if the fault in context uc is known to be a read (x86-64: the page-fault
** error code's write bit is clear). A sealed image is readable, so a read
** fault there means its pages lost their protection: never expected, and
** named apart from the stray write the reporter exists for. 0 elsewhere. */
static int fault_was_read(void *uc)
{
#if defined(__x86_64__) && defined(REG_ERR)
    return uc != NULL && !(((ucontext_t *)uc)->uc_mcontext.gregs[REG_ERR] & 2);
#else
    (void)uc;
    return 0;
#endif
}

static void reporter(int sig, siginfo_t *si, void *uc)
{
    int saved = errno;
    volatile uint64_t canary = atomic_fetch_add(&tokens, 1) ^ 0x9e3779b97f4a7c15u;
    uintptr_t here = (uintptr_t)&canary;
    int real = si != NULL && si->si_code > 0;
    long tid = (long)syscall(SYS_gettid);
    int owned;
    reporter_slot_t *s = slot_for(tid, &owned);
    if (owned && nested(s, here)) {              /* a chained handler re-raised or faulted */
        die_by_default(sig, real);
        errno = saved;
        return;
    }
    if (s != NULL) {                             /* fresh, or taking over a stale slot (R1) */
        s->frame = here;
        s->token = canary;
    }
    uint64_t ctx = real ? context_hash(uc) : 0;
    if (real && s != NULL && atomic_load_explicit(&s->last, memory_order_relaxed) == tid &&
        s->sig == sig && s->code == si->si_code && s->addr == (uintptr_t)si->si_addr &&
        s->ctx == ctx) {                         /* R2: the chain returned from this very fault */
        die_by_default(sig, real);
        goto out;
    }
    uint64_t id, off;
    int mapped = 0;
    if (real && (fs_arena_locate(si->si_addr, &id, &off) ||
                 (mapped = locate_foreign(si->si_addr, &id, &off)))) {
        char line[200], *p = line;
        /* SIGBUS in a mapped file: a read past its end (cut while loaded) */
        p = put_str(p, mapped && sig == SIGBUS
                           ? "frozenshare: read past the end of a mapped image file (truncated "
                             "while loaded?) at "
                           : fault_was_read(uc) ? "frozenshare: read of unreadable frozen memory at "
                                                : "frozenshare: write to frozen memory at ");
        p = put_hex(p, (uint64_t)(uintptr_t)si->si_addr);
        p = put_str(p, " (region #");
        p = put_dec(p, id);
        p = put_str(p, ", offset ");
        p = put_hex(p, off);
        p = put_str(p, ")\n");
        ssize_t w = write(2, line, (size_t)(p - line));
        (void)w;
    }
    int flags = 0;
    uintptr_t fn = (uintptr_t)SIG_DFL;
    load_chain(sig == SIGBUS, &flags, &fn);
    if (fn == (uintptr_t)SIG_DFL || fn == (uintptr_t)SIG_IGN) {
        die_by_default(sig, real);
        goto out;
    }
    if (flags & SA_SIGINFO)
        ((void (*)(int, siginfo_t *, void *))fn)(sig, si, uc);
    else
        ((void (*)(int))fn)(sig);
    if (real && s != NULL) {                     /* it returned: remember the fault (R2) */
        s->sig = sig;
        s->code = si->si_code;
        s->addr = (uintptr_t)si->si_addr;
        s->ctx = ctx;
        atomic_store_explicit(&s->last, tid, memory_order_relaxed);
    }
out:
    if (s != NULL)
        atomic_store_explicit(&s->owner, 0, memory_order_release);
    errno = saved;
}

static int install_one(int sig)
{
    struct sigaction cur;
    if (sigaction(sig, NULL, &cur) != 0)
        return FS_ESYS;
    if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == reporter)
        return FS_OK;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = reporter;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    publish_chain(sig == SIGBUS, &cur);          /* chain to whoever was there */
    return sigaction(sig, &sa, NULL) == 0 ? FS_OK : FS_ESYS;
}

int fs_arena_install_reporter(void)
{
    const char *opt = getenv("FROZENSHARE_NO_SIGNAL_HANDLER");
    if (opt != NULL && opt[0] != '\0' && strcmp(opt, "0") != 0)
        return FS_OK;
    fs_arena_init();
    pthread_mutex_lock(&sig_lock);
    int err = install_one(SIGSEGV);
    if (err == FS_OK)
        err = install_one(SIGBUS);
    if (err == FS_OK)
        atomic_store(&reporter_on, 1);
    pthread_mutex_unlock(&sig_lock);
    return err;
}

int fs_arena_reporter_installed(void)
{
    struct sigaction cur;
    return atomic_load(&reporter_on) && sigaction(SIGSEGV, NULL, &cur) == 0 &&
           (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == reporter;
}

/* ---- statistics ------------------------------------------------------------ */

static uint64_t arena_stat(const char *what)
{
    char name[96];
    snprintf(name, sizeof name, "stats.arenas.%u.%s", arena_ind, what);
    size_t v = 0, sz = sizeof v;
    return fsje_mallctl(name, &v, &sz, NULL, 0) == 0 ? v : 0;
}

void fs_arena_get_stats(fs_arena_stats_t *out)
{
    memset(out, 0, sizeof *out);
    out->live_images = atomic_load(&st_live);
    out->image_bytes = atomic_load(&st_bytes);
    out->seals = atomic_load(&st_seals);
    out->unseals = atomic_load(&st_unseals);
    out->reserved_bytes = atomic_load(&st_reserved);
    out->reservations = atomic_load(&nres);
    pthread_mutex_lock(&prot_lock);
    out->sealed_runs = sealed_runs;
    pthread_mutex_unlock(&prot_lock);
    out->max_map_count = max_maps;
    if (fs_arena_init())
        return;
    uint64_t epoch = 1;
    size_t sz = sizeof epoch;
    fsje_mallctl("epoch", &epoch, &sz, &epoch, sz);
    out->mapped_bytes = arena_stat("mapped");
    out->resident_bytes = arena_stat("resident");
    out->allocated_bytes = arena_stat("small.allocated") + arena_stat("large.allocated");
}
