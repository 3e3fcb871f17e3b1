/*
** region.c -- control blocks and lifetimes of frozen regions.
**
**   fs_region_t (fs__malloc'd, writable)            image (arena, PROT_READ)
**   +----------------------+                        +------------------+
**   | refcnt (atomic)      |-- base --------------> | header           |
**   | id, sizes, root      |                        | objects ...      |
**   | next_dead            |  (reclaim worklist)    | import table     |
**   | imports[nimports]    |-- +1 on each older     | xref table       |
**   +----------------------+   sealed region (I6)   +------------------+
**
** Life of a region:
**
**   builder --finish/detach--> image --seal--> region, refcnt 1 (creator)
**      acquire: +1 (relaxed)   release: -1 (release); at 0: acquire fence,
**      reclaim: imports -1 each (worklist), unseal, arena free, block free
**
** fs_region_create consumes the builder on every path and unwinds through
** labels named after the step that failed; imports are acquired only after
** the last step that can fail, so a failed create changes no count.
**
** Reclamation is iterative: a region whose count reaches 0 is pushed on a
** worklist threaded through the dead blocks' next_dead field, so releasing
** the head of a 10^6-long import chain uses O(1) stack (DESIGN.md, "decref
** imports iteratively, not recursively"). An image the kernel will not
** unseal yet (mapping budget or limit) stays sealed in a deferred table and
** is retried when a neighbouring image is unsealed (see "Deferred images").
**
** INVARIANTS (DESIGN.md): I1 the image is sealed before the region exists
** for anyone but its creator, and is written again only after unseal, by
** the arena; I2 the count starts at 1 and the region is reclaimed exactly
** once, by the thread whose decrement reached 0; I6 imports are live
** regions when the importer is created, hence older and sealed: the import
** graph is a DAG and reclamation never meets a cycle.
*/
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "fs_region.h"

/* The acquire fence of the Arc pattern. ThreadSanitizer does not model
** fences, so under it use the equivalent acquire load of the count that
** reached 0 (as Rust's Arc does); the ordering is the same. */
#if defined(__SANITIZE_THREAD__)
#define FS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define FS_TSAN 1
#endif
#endif
#ifdef FS_TSAN
#define ACQUIRE_FENCE(r) ((void)atomic_load_explicit(&(r)->refcnt, memory_order_acquire))
#else
#define ACQUIRE_FENCE(r) atomic_thread_fence(memory_order_acquire)
#endif

/* Imports named to fs_builder_finish come from a stack buffer up to this
** many; beyond it a temporary heap array. */
#define IDS_ON_STACK 16

/* Lock rule: no lock. refcnt is the only field written after create (and
** next_dead, by the one thread that reclaims the block, I2). */
struct fs_region_s {
    atomic_long   refcnt;       /* counted references (I2); 0 => being reclaimed */
    uint64_t      id;           /* unique, from next_id; names the sealed pages  */
    uint8_t      *base;         /* the sealed image (I1)                         */
    size_t        alloc_size;   /* whole pages sealed at base (arena usable)     */
    size_t        size;         /* header image_size: bytes in use               */
    fs_ref_t      root;         /* the frozen object                             */
    uint64_t      object_count; /* from the header                               */
    fs_region_t  *next_dead;    /* reclaim worklist link, only while refcnt == 0 */
    int           backing;      /* FS_BACKING_*                                  */
    int           foreign;      /* the image was not built by this process       */
    fs_release_fn release;      /* foreign backings: lets go of the image        */
    void         *release_ctx;
    uint32_t      nimports;     /* entries of imports[]                          */
    fs_region_t  *imports[];    /* +1 each, slot i = import table entry i (I6)   */
};

static atomic_uint_fast64_t next_id = 1;        /* region ids start at 1      */
static atomic_uint_fast64_t st_live;            /* fs_region_stats_t fields   */
static atomic_uint_fast64_t st_bytes;
static atomic_uint_fast64_t st_created;
static atomic_uint_fast64_t st_reclaims;

/* Deferred images. A dead region's image is unsealed before the arena gets
** it back (I1), but the arena refuses an unseal that would split a run of
** sealed pages past its mapping budget, and the kernel refuses one past
** vm.max_map_count (ENOMEM; e.g. releasing every other one of 10^5 adjacent
** regions). Such an image stays sealed and its block waits in `deferred`, an
** open-addressing table keyed by region id (linear probing, backward-shift
** deletion). An unseal that succeeds asks the arena for the ids of its sealed
** neighbours and retries those that are deferred: the freed pages made them
** the edge of their run, and unsealing an edge never splits a mapping, so
** a run of dead images unseals as a cascade once one end of it can. A run's
** ends are live regions or already unsealed, so no dead image waits forever
** once its live neighbours die; creates and reclaims also retry one deferred
** image each (for refusals by the kernel alone).
** The table always has room for every block in existence (reserved at
** create, which can fail), so a reclaim never allocates. One lock guards it
** and orders unseal attempts with the neighbour lookups. */
typedef struct dslot_s {
    uint64_t     id;            /* 0: empty                                      */
    fs_region_t *r;
} dslot_t;

static pthread_mutex_t deferred_lock = PTHREAD_MUTEX_INITIALIZER;
static dslot_t *deferred;                       /* guarded by deferred_lock     */
static size_t   dcap;                           /* 0 or a power of two          */
static size_t   nblocks;                        /* blocks alive: dcap >= 2 * it  */
static size_t   dcursor;                        /* where retry_one looks next   */
static atomic_size_t ndeferred;                 /* entries; read without lock   */

static size_t dslot_of(uint64_t id, size_t mask)
{
    return (size_t)((id * UINT64_C(0x9E3779B97F4A7C15)) >> 17) & mask;
}

/* Room for one more block (create). FS_OK or FS_ENOMEM. */
static int blocks_reserve(void)
{
    pthread_mutex_lock(&deferred_lock);
    int err = FS_OK;
    if (2 * (nblocks + 1) > dcap) {
        size_t cap = dcap ? dcap * 2 : 64;
        dslot_t *t = fs__calloc(cap, sizeof *t);
        if (t == NULL) {
            err = FS_ENOMEM;
        }
        else {
            for (size_t i = 0; i < dcap; i++) {
                if (deferred[i].id == 0)
                    continue;
                size_t j = dslot_of(deferred[i].id, cap - 1);
                while (t[j].id != 0)
                    j = (j + 1) & (cap - 1);
                t[j] = deferred[i];
            }
            fs__free(deferred);
            deferred = t;
            dcap = cap;
        }
    }
    if (err == FS_OK)
        nblocks++;
    pthread_mutex_unlock(&deferred_lock);
    return err;
}

/* A block reserved by blocks_reserve was freed. Caller holds deferred_lock. */
static void block_gone_locked(void) { nblocks--; }

static void block_gone(void)
{
    pthread_mutex_lock(&deferred_lock);
    block_gone_locked();
    pthread_mutex_unlock(&deferred_lock);
}

/* Caller holds deferred_lock; there is room (blocks_reserve). */
static void defer_locked(fs_region_t *d)
{
    size_t mask = dcap - 1, i = dslot_of(d->id, mask);
    while (deferred[i].id != 0)
        i = (i + 1) & mask;
    deferred[i] = (dslot_t){ d->id, d };
    atomic_fetch_add_explicit(&ndeferred, 1, memory_order_relaxed);
}

/* Remove and return the deferred block at slot i. Caller holds deferred_lock. */
static fs_region_t *take_slot_locked(size_t i)
{
    size_t mask = dcap - 1;
    fs_region_t *d = deferred[i].r;
    deferred[i] = (dslot_t){ 0, NULL };
    for (size_t j = (i + 1) & mask; deferred[j].id != 0; j = (j + 1) & mask) {
        size_t home = dslot_of(deferred[j].id, mask);
        /* move j back into the hole at i unless its home lies in (i, j] */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            deferred[i] = deferred[j];
            deferred[j] = (dslot_t){ 0, NULL };
            i = j;
        }
    }
    atomic_fetch_sub_explicit(&ndeferred, 1, memory_order_relaxed);
    return d;
}

/* The deferred block of region id, removed; NULL if none. Caller holds the lock. */
static fs_region_t *take_locked(uint64_t id)
{
    if (id == 0 || dcap == 0)
        return NULL;
    size_t mask = dcap - 1;
    for (size_t i = dslot_of(id, mask); deferred[i].id != 0; i = (i + 1) & mask)
        if (deferred[i].id == id)
            return take_slot_locked(i);
    return NULL;
}

/* Unseal and free dead block d's image, or defer it; on success retry its
** deferred neighbours, and theirs, as a worklist through next_dead (d is off
** the reclaim worklist by now). Caller holds deferred_lock. */
static void unseal_or_defer_locked(fs_region_t *d)
{
    fs_region_t *work = d;
    d->next_dead = NULL;
    while (work != NULL) {
        fs_region_t *x = work;
        work = x->next_dead;
        if (fs_arena_unseal(x->base, x->alloc_size) != FS_OK) {
            defer_locked(x);
            continue;
        }
        uint64_t before = 0, after = 0;
        fs_arena_sealed_neighbours(x->base, x->alloc_size, &before, &after);
        fs_arena_free(x->base);
        fs__free(x);
        block_gone_locked();
        fs_region_t *n;
        if ((n = take_locked(before)) != NULL) {
            n->next_dead = work;
            work = n;
        }
        if ((n = take_locked(after)) != NULL) {
            n->next_dead = work;
            work = n;
        }
    }
}

/* Retry one deferred image, if one is found within 64 slots of a rotating
** cursor (bounded work per create and reclaim). */
static void retry_one(void)
{
    if (atomic_load_explicit(&ndeferred, memory_order_relaxed) == 0)
        return;
    pthread_mutex_lock(&deferred_lock);
    for (size_t k = 0; k < dcap && k < 64; k++) {
        size_t i = (dcursor + k) & (dcap - 1);
        if (deferred[i].id != 0) {
            dcursor = i + 1;
            unseal_or_defer_locked(take_slot_locked(i));
            break;
        }
    }
    pthread_mutex_unlock(&deferred_lock);
}

/* fork: deferred_lock is held across it (see arena.c, "fork"); this
** handler registers after the arena's, so its prepare runs before it, in
** the order the locks nest (deferred_lock, then the arena's). */
static pthread_once_t region_once = PTHREAD_ONCE_INIT;
static int region_init_err;
static void region_prefork(void) { pthread_mutex_lock(&deferred_lock); }
static void region_postfork(void) { pthread_mutex_unlock(&deferred_lock); }
static void region_init_once(void)
{
    region_init_err = fs_arena_init();
    if (region_init_err == FS_OK &&
        pthread_atfork(region_prefork, region_postfork, region_postfork) != 0)
        region_init_err = FS_ENOMEM;
}

int fs_region_init(void)
{
    pthread_once(&region_once, region_init_once);
    return region_init_err;
}

/* Fill in a new block for the image at base (alloc_size bytes held) and
** count it live. Nothing here fails. */
static void block_init(fs_region_t *r, uint8_t *base, size_t alloc_size, int backing,
                       fs_release_fn release, void *ctx)
{
    const fs_image_header_t *h = fs_image_header(base);
    atomic_init(&r->refcnt, 1);
    r->base = base;
    r->alloc_size = alloc_size;
    r->size = (size_t)h->image_size;
    r->root = h->root;
    r->object_count = h->object_count;
    r->next_dead = NULL;
    r->backing = backing;
    r->foreign = backing != FS_BACKING_ARENA;   /* fs_region_copy sets it too */
    r->release = release;
    r->release_ctx = ctx;
    r->nimports = 0;
    atomic_fetch_add_explicit(&st_live, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st_bytes, r->size, memory_order_relaxed);
    atomic_fetch_add_explicit(&st_created, 1, memory_order_relaxed);
}

int fs_region_create(fs_region_t **out, fs_builder_t *b, fs_ref_t root,
                     fs_region_t *const *imports, uint32_t nimports,
                     int64_t hash_check)
{
    uint64_t ids_stack[IDS_ON_STACK], *ids = ids_stack;
    fs_region_t *r = NULL;
    void *base = NULL;
    size_t alloc_size = 0;
    int err = FS_EINVAL;

    if (out == NULL || b == NULL || (nimports > 0 && imports == NULL))
        goto fail_args;
    *out = NULL;
    for (uint32_t i = 0; i < nimports; i++)
        if (imports[i] == NULL)
            goto fail_args;

    err = fs_region_init();
    if (err != FS_OK)
        goto fail_args;
    err = FS_ENOMEM;
    r = fs__malloc(sizeof *r + (size_t)nimports * sizeof r->imports[0]);
    if (r == NULL)
        goto fail_block;
    if (nimports > IDS_ON_STACK) {
        ids = fs__malloc((size_t)nimports * sizeof *ids);
        if (ids == NULL)
            goto fail_ids;
    }
    for (uint32_t i = 0; i < nimports; i++)
        ids[i] = imports[i]->id;

    err = fs_builder_finish(b, root, ids, nimports, hash_check);
    if (err != FS_OK)
        goto fail_finish;
    fs_builder_detach(b, &base, &alloc_size);
    fs_builder_destroy(b);                 /* empty now: frees the builder only */
    b = NULL;
    if (ids != ids_stack)
        fs__free(ids);
    ids = ids_stack;

    err = blocks_reserve();                /* room to defer it, one day */
    if (err != FS_OK)
        goto fail_seal;
    r->id = atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed);
    err = fs_arena_seal(base, alloc_size, r->id);
    if (err != FS_OK) {
        block_gone();
        goto fail_seal;
    }

    /* Nothing below fails: from here the region exists. */
    block_init(r, base, alloc_size, FS_BACKING_ARENA, NULL, NULL);
    r->nimports = nimports;
    for (uint32_t i = 0; i < nimports; i++) {
        fs_region_acquire(imports[i]);     /* I6: held for r's lifetime */
        r->imports[i] = imports[i];
    }
    /* The reporter only explains a fault that kills the process anyway; a
    ** region without it is still sealed (I1), so its failure is not ours. */
    (void)fs_arena_install_reporter();
    retry_one();
    *out = r;
    return FS_OK;

fail_seal:
    fs_arena_free(base);                   /* still unsealed: seal failed */
    fs__free(r);
    return err;
fail_finish:
    if (ids != ids_stack)
        fs__free(ids);
fail_ids:
    fs__free(r);
fail_block:
fail_args:
    fs_builder_destroy(b);                 /* consumes b (NULL-safe) */
    return err;
}

/* A new block without an image yet, counted in the deferred table (so its
** reclaim never allocates), for adopt and copy. FS_OK or an error. */
static int block_new(fs_region_t **out)
{
    int err = fs_region_init();
    if (err != FS_OK)
        return err;
    fs_region_t *r = fs__malloc(sizeof *r);
    if (r == NULL)
        return FS_ENOMEM;
    if ((err = blocks_reserve()) != FS_OK) {
        fs__free(r);
        return err;
    }
    r->id = atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed);
    *out = r;
    return FS_OK;
}

/* A block_new block that never got its image. */
static void block_discard(fs_region_t *r)
{
    block_gone();
    fs__free(r);
}

int fs_region_check(const void *image, size_t size, int verify, const char **why)
{
    static const char *dummy;
    if (why == NULL)
        why = &dummy;
    int err = verify ? fs_image_check_why(image, size, why) : fs_image_check_header(image, size, why);
    if (err == FS_OK && fs_image_header(image)->nimports != 0) {
        *why = "the image imports other regions (a portable image never does)";
        err = FS_ECORRUPT;
    }
    return err;
}

/* A region over an image someone else holds (fs_region_adopt). */
int fs_region_adopt(fs_region_t **out, const void *image, size_t size, int backing,
                    fs_release_fn release, void *ctx)
{
    if (out == NULL || image == NULL || release == NULL || size < FS_IMAGE_HEADER_SIZE ||
        (backing != FS_BACKING_FILE && backing != FS_BACKING_BUFFER))
        return FS_EINVAL;
    *out = NULL;
    const fs_image_header_t *h = fs_image_header(image);
    if (h->nimports != 0 || h->image_size > size)
        return FS_EINVAL;
    fs_region_t *r;
    int err = block_new(&r);
    if (err != FS_OK)
        return err;
    block_init(r, (uint8_t *)(uintptr_t)image, size, backing, release, ctx);
    if (backing == FS_BACKING_FILE) {      /* PROT_READ: a stray write faults */
        fs_arena_note_foreign(image, size, r->id);
        (void)fs_arena_install_reporter();
    }
    *out = r;
    return FS_OK;
}

static void unmap_release(void *ctx, const void *image, size_t size)
{
    (void)ctx;
    munmap((void *)(uintptr_t)image, size);
}

int fs_region_map_file(fs_region_t **out, int fd, int verify, const char **why)
{
    static const char *dummy;
    if (why == NULL)
        why = &dummy;
    *why = NULL;
    if (out == NULL)
        return FS_EINVAL;
    *out = NULL;
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        return FS_ESYS;
    if (!S_ISREG(sb.st_mode) && !S_ISBLK(sb.st_mode)) {
        *why = "not a regular file";
        return FS_ECORRUPT;
    }
    if ((uint64_t)sb.st_size < FS_IMAGE_HEADER_SIZE) {
        *why = sb.st_size == 0 ? "an empty file" : "truncated: shorter than a header";
        return FS_ECORRUPT;
    }
    if ((uint64_t)sb.st_size > SIZE_MAX)
        return FS_ETOOBIG;
    size_t size = (size_t)sb.st_size;
    /* Read-only and shared: every process mapping the file reads the same
    ** page-cache pages (I1: nothing can write through this mapping).
    ** MAP_POPULATE when verifying: the check reads every page, and one call
    ** maps them faster than a fault each (~1 ms of 26 for 34 MB). */
    void *p = mmap(NULL, size, PROT_READ, MAP_SHARED | (verify ? MAP_POPULATE : 0), fd, 0);
    if (p == MAP_FAILED)
        return FS_ESYS;
    int err = fs_region_check(p, size, verify, why);
    if (err == FS_OK)
        err = fs_region_adopt(out, p, size, FS_BACKING_FILE, unmap_release, NULL);
    if (err != FS_OK)
        munmap(p, size);
    return err;
}

int fs_region_copy(fs_region_t **out, const void *image, size_t size, int verify,
                   const char **why)
{
    static const char *dummy;
    if (why == NULL)
        why = &dummy;
    *why = NULL;
    if (out == NULL || image == NULL)
        return FS_EINVAL;
    *out = NULL;
    fs_region_t *r;
    int err = block_new(&r);
    if (err != FS_OK)
        return err;
    void *base = NULL;
    size_t usable = 0;
    if ((err = fs_arena_alloc(size ? size : 1, &base, &usable)) != FS_OK) {
        block_discard(r);
        return err;
    }
    memcpy(base, image, size);
    memset((uint8_t *)base + size, 0, usable - size);
    /* the copy, not the source, is what readers will see: check the copy */
    if ((err = fs_region_check(base, size, verify, why)) != FS_OK ||
        (err = fs_arena_seal(base, usable, r->id)) != FS_OK) {
        fs_arena_free(base);               /* unsealed: the check or the seal failed */
        block_discard(r);
        return err;
    }
    block_init(r, base, usable, FS_BACKING_ARENA, NULL, NULL);
    r->foreign = 1;
    (void)fs_arena_install_reporter();
    *out = r;
    return FS_OK;
}

int fs_region_backing(const fs_region_t *r) { return r->backing; }
int fs_region_foreign(const fs_region_t *r) { return r->foreign; }

void fs_region_acquire(fs_region_t *r)
{
    /* Relaxed: the caller already holds a reference, which orders
    ** everything it could see (the Arc pattern). */
    long old = atomic_fetch_add_explicit(&r->refcnt, 1, memory_order_relaxed);
    if (old <= 0 || old > LONG_MAX / 2)
        abort();                           /* NEVER: use after free or overflow */
}

/* Free one dead region's own resources (its imports are handled by the
** caller's worklist). I1: unseal before the arena may reuse or write the
** pages; an image that cannot be unsealed now is deferred, never freed
** sealed. The region counts as reclaimed either way: it is unreachable. */
static void region_destroy(fs_region_t *r)
{
    atomic_fetch_sub_explicit(&st_live, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&st_bytes, r->size, memory_order_relaxed);
    atomic_fetch_add_explicit(&st_reclaims, 1, memory_order_relaxed);
    if (r->backing != FS_BACKING_ARENA) {  /* not ours: hand it back */
        if (r->backing == FS_BACKING_FILE)
            fs_arena_forget_foreign(r->base);
        r->release(r->release_ctx, r->base, r->alloc_size);
        fs__free(r);
        block_gone();
        return;
    }
    pthread_mutex_lock(&deferred_lock);
    unseal_or_defer_locked(r);
    pthread_mutex_unlock(&deferred_lock);
    retry_one();
}

/* r's count reached 0 (after the acquire fence). Every region on the
** worklist has count 0 and is owned by this thread alone (I2). */
static void region_reclaim(fs_region_t *r)
{
    fs_region_t *work = r;
    r->next_dead = NULL;
    while (work != NULL) {
        fs_region_t *d = work;
        work = d->next_dead;
        for (uint32_t i = 0; i < d->nimports; i++) {
            fs_region_t *im = d->imports[i];
            if (atomic_fetch_sub_explicit(&im->refcnt, 1, memory_order_release) == 1) {
                ACQUIRE_FENCE(im);                  /* I2: last reference */
                im->next_dead = work;
                work = im;
            }
        }
        region_destroy(d);
    }
}

void fs_region_release(fs_region_t *r)
{
    if (r == NULL)
        return;
    long old = atomic_fetch_sub_explicit(&r->refcnt, 1, memory_order_release);
    if (old != 1) {
        if (old <= 0)
            abort();                       /* NEVER: released more than acquired */
        return;
    }
    ACQUIRE_FENCE(r);                      /* I2: last reference */
    region_reclaim(r);
}

uint64_t fs_region_id(const fs_region_t *r) { return r->id; }
const uint8_t *fs_region_base(const fs_region_t *r) { return r->base; }
size_t fs_region_size(const fs_region_t *r) { return r->size; }
fs_ref_t fs_region_root(const fs_region_t *r) { return r->root; }
uint64_t fs_region_object_count(const fs_region_t *r) { return r->object_count; }
uint32_t fs_region_nimports(const fs_region_t *r) { return r->nimports; }

fs_region_t *fs_region_import(const fs_region_t *r, uint32_t slot)
{
    return slot < r->nimports ? r->imports[slot] : NULL;
}

long fs_region_refcount(const fs_region_t *r)
{
    return atomic_load_explicit(&((fs_region_t *)r)->refcnt, memory_order_relaxed);
}

void fs_region_get_stats(fs_region_stats_t *out)
{
    out->live_regions = atomic_load_explicit(&st_live, memory_order_relaxed);
    out->image_bytes = atomic_load_explicit(&st_bytes, memory_order_relaxed);
    out->created = atomic_load_explicit(&st_created, memory_order_relaxed);
    out->reclaims = atomic_load_explicit(&st_reclaims, memory_order_relaxed);
}
