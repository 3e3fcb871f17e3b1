/*
** fs_arena.h -- public API of the frozen-memory arena (plain C, no Python.h).
**
** The arena is a private jemalloc arena whose extents come only from address
** ranges the arena reserved itself ("reservations"):
**
**   reservation 0            reservation 1 (2x larger)        ... (<= FS_ARENA_MAX_RES)
**   +----------------------+ +------------------------------+
**   | extents handed to    | | ...                          |
**   | jemalloc, bump order | |                              |
**   +----------------------+ +------------------------------+
**   page map: one fs_pageinfo per page of each reservation (side mapping,
**   touched lazily): (region id, page index inside its image) of sealed pages.
**
** jemalloc's own metadata never lives in a reservation (arena created with
** metadata_use_hooks = false), so every byte inside a reservation is image
** memory. fs_arena_contains() is a bounded scan of <= FS_ARENA_MAX_RES
** (start, end) pairs published with release stores: O(1) and safe inside a
** signal handler.
**
** Images are allocated whole pages, page aligned, never sharing a page with
** anything else, so that sealing (mprotect PROT_READ, I1) protects nothing
** but the image.
**
** INVARIANTS (DESIGN.md): I1 a sealed image is PROT_READ until
** fs_arena_unseal(); nothing is freed or reallocated while sealed.
**
** All of frozenshare's own heap allocations go through fs__malloc/fs__free
** (one hook, as in Lua's lua_Alloc) so tests can fail the Nth allocation.
*/
#ifndef FS_ARENA_H
#define FS_ARENA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- error codes: 0 or negative ---------------------------------------- */
#define FS_OK        0
#define FS_ENOMEM   (-1)   /* allocation failed (heap, arena or mprotect)  */
#define FS_EINVAL   (-2)   /* bad argument                                  */
#define FS_ETOOBIG  (-3)   /* size beyond a format limit                    */
#define FS_ECORRUPT (-4)   /* fs_image_check: image is not well formed      */
#define FS_ENOTFOUND (-5)  /* registry/lookup: no such entry                */
#define FS_ESYS     (-6)   /* unexpected system error (see errno)           */
#define FS_EVERSION (-7)   /* fs_image_check: another format version or platform */

const char *fs_strerror(int err);  /* static string, never NULL */

/* ---- the allocation hook ------------------------------------------------ */
/* Every allocation frozenshare makes (heap and arena) passes through
** fs__alloc_should_fail() first. fs_alloc_fail_after(n): the allocation that
** comes after n successful ones fails, and so do all later ones until
** fs_alloc_fail_after(-1) disables the trap. fs_alloc_count() counts the
** allocations attempted since the last fs_alloc_fail_after() call.
** Thread-safe (atomics). */
void  fs_alloc_fail_after(long n);
long  fs_alloc_count(void);
int   fs__alloc_should_fail(void);

void *fs__malloc(size_t n);
void *fs__calloc(size_t count, size_t size);
void *fs__realloc(void *p, size_t n);
void  fs__free(void *p);

/* ---- the arena ---------------------------------------------------------- */
/* Idempotent and thread-safe; every function below calls it. */
int fs_arena_init(void);

size_t fs_arena_page_size(void);

/* Image memory: page-aligned, size rounded up to whole pages (*usable gets
** the rounded size). Contents are NOT zeroed. Thread-safe. */
int  fs_arena_alloc(size_t size, void **out, size_t *usable);
/* Grow or shrink an UNSEALED image; may move (I3: images hold offsets only).
** On failure *p is unchanged and still valid. */
int  fs_arena_realloc(void **p, size_t new_size, size_t *usable);
void fs_arena_free(void *p);     /* must be unsealed */

/* Seal: mprotect(PROT_READ) the pages of [p, p+size) and record region_id
** in the page map. size must be the usable size from alloc/realloc.
** FS_EINVAL unless p is page aligned and [p, p+size) is one or more whole
** pages inside one reservation. On failure (e.g. ENOMEM from too many
** mappings) the image stays writable and unsealed. */
int  fs_arena_seal(void *p, size_t size, uint64_t region_id);
/* Unseal: back to read-write, page map entries cleared. Same FS_EINVAL
** checks as seal. */
int  fs_arena_unseal(void *p, size_t size);

/* Region ids of the sealed pages right before p and right after p + size
** (0: not sealed, or outside the reservation). The region layer uses them to
** retry deferred unseals next to one that succeeded. */
void fs_arena_sealed_neighbours(const void *p, size_t size, uint64_t *before, uint64_t *after);

/* Return unused dirty pages of the arena to the OS now (instead of waiting
** for jemalloc's decay). */
void fs_arena_purge(void);

/* 1 if addr lies inside a reservation. Async-signal-safe. */
int  fs_arena_contains(const void *addr);
/* For a sealed address: region id and offset from the image base.
** Returns 1 if addr is inside a sealed image, else 0. Async-signal-safe. */
int  fs_arena_locate(const void *addr, uint64_t *region_id, uint64_t *offset);

/* Read-only images the arena does not hold (a region over a mapped file):
** noted so that the reporter names them too. Up to 64 at once are named;
** beyond that they fault unnamed. Thread-safe; forget before unmapping. */
void fs_arena_note_foreign(const void *p, size_t size, uint64_t region_id);
void fs_arena_forget_foreign(const void *p);

/* ---- violation reporter ------------------------------------------------- */
/* Install the SIGSEGV/SIGBUS reporter if it is not the current handler
** (called again at each freeze: it re-installs itself on top of handlers
** installed later, such as faulthandler, and chains to them).
** Returns 0, or FS_ESYS. Honours FROZENSHARE_NO_SIGNAL_HANDLER=1 (then it
** installs nothing and returns 0). */
int  fs_arena_install_reporter(void);
int  fs_arena_reporter_installed(void);

/* ---- statistics --------------------------------------------------------- */
typedef struct fs_arena_stats_s {
    uint64_t live_images;      /* sealed, not yet unsealed images          */
    uint64_t image_bytes;      /* bytes of sealed images                   */
    uint64_t seals;            /* fs_arena_seal successes, ever            */
    uint64_t unseals;          /* fs_arena_unseal successes, ever          */
    uint64_t reserved_bytes;   /* address space reserved by the arena      */
    uint64_t reservations;     /* number of reservations                   */
    uint64_t mapped_bytes;     /* jemalloc stats.arenas.<i>.mapped         */
    uint64_t allocated_bytes;  /* bytes currently allocated from the arena */
    uint64_t resident_bytes;   /* jemalloc stats.arenas.<i>.resident       */
    uint64_t sealed_runs;      /* maximal runs of sealed pages: each costs
                                  the process up to 2 mappings (arena.c)   */
    uint64_t max_map_count;    /* vm.max_map_count as read at init         */
} fs_arena_stats_t;

void fs_arena_get_stats(fs_arena_stats_t *out);

#ifdef __cplusplus
}
#endif
#endif /* FS_ARENA_H */
