/*
** fs_region.h -- frozen regions: control blocks, lifetimes, named registry.
**
**   fs_region_t (fs__malloc'd, writable)           image (arena, PROT_READ)
**   +----------------------+                       +------------------+
**   | refcnt  (atomic)     |-- base -------------> | header           |
**   | id, size, root       |                       | objects ...      |
**   | imports[nimports]    |-- +1 on each older    | import table     |
**   +----------------------+    sealed region (I6) +------------------+
**
** INVARIANTS (DESIGN.md): I1 the image is sealed before the region is
** visible to anyone; I2 the count starts at 1 (owned by the creator), a
** region is reclaimed exactly once, when the count reaches 0: imports are
** released (iteratively: a long chain of imports does not recurse), the
** image is unsealed and returned to the arena, the block freed. I6 imports
** are regions that exist (hence are sealed) when the importer is created.
**
** Counting follows the Arc pattern: increment relaxed, decrement release,
** acquire fence before reclaiming. All functions are thread-safe.
**
** The registry is a process-wide name -> (region, ref) table under one
** mutex; each entry holds one reference to its region.
*/
#ifndef FS_REGION_H
#define FS_REGION_H

#include <stddef.h>
#include <stdint.h>

#include "fs_arena.h"
#include "fs_image.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fs_region_s fs_region_t;

/* The layer's one-time setup (the arena's, then fork handlers for its
** locks): FS_OK or an error. fs_region_create and the registry call it. */
int fs_region_init(void);

/* Finish builder b (root, import table from imports[i]'s ids), seal the image
** and wrap it in a new region with count 1, owned by the caller. Each import
** gets +1 for the life of the new region. Consumes b in every case: on
** failure the image is freed, no import keeps an extra count, nothing leaks.
** Calls fs_arena_install_reporter(). */
int fs_region_create(fs_region_t **out, fs_builder_t *b, fs_ref_t root,
                     fs_region_t *const *imports, uint32_t nimports,
                     int64_t hash_check);

/* ---- regions over images that came from elsewhere ------------------------ */
/* Where a region's image lives. ARENA: frozen or copied here, sealed by us.
** FILE: a read-only shared mapping of a file. BUFFER: memory another owner
** lends (a Python buffer), let go of through the region's release hook. */
enum { FS_BACKING_ARENA = 0, FS_BACKING_FILE = 1, FS_BACKING_BUFFER = 2 };
typedef void (*fs_release_fn)(void *ctx, const void *image, size_t size);

/* A region (count 1) over the image at image (size bytes, 8-aligned,
** read-only for its whole life, already verified or vouched for, importing
** nothing). When the count reaches 0, release(ctx, image, size) is called
** once, on the thread that released last (I5: release must not need Python
** API unless its caller guarantees where the last release happens).
** backing FILE or BUFFER. FS_OK, FS_EINVAL, FS_ENOMEM. */
int fs_region_adopt(fs_region_t **out, const void *image, size_t size, int backing,
                    fs_release_fn release, void *ctx);
/* What a region over bytes from elsewhere needs proven first: verify,
** fs_image_check, else the header alone (fs_image_check_header); and no
** imports (a portable image refers to no other region). FS_OK, or
** FS_ECORRUPT / FS_EVERSION with *why (why may be NULL), FS_ENOMEM. */
int fs_region_check(const void *image, size_t size, int verify, const char **why);
/* Map file fd read-only (MAP_SHARED), check it (fs_region_check) and
** adopt it as a FILE region; the region owns
** the mapping (munmap at reclaim; fd may be closed at once). FS_OK, or
** FS_ECORRUPT / FS_EVERSION with *why, FS_ESYS (errno), FS_ENOMEM. A file
** must not be written in place while mapped (replace it: dump renames). */
int fs_region_map_file(fs_region_t **out, int fd, int verify, const char **why);
/* A new ARENA region holding a sealed copy of the size bytes at image (any
** alignment), the copy checked (fs_region_check) before it is sealed -- the
** copy is what readers see, whatever happens to the source. FS_OK, or FS_ECORRUPT / FS_EVERSION with *why, FS_ENOMEM. */
int fs_region_copy(fs_region_t **out, const void *image, size_t size, int verify,
                   const char **why);
int fs_region_backing(const fs_region_t *r);
/* 1 if the image came from elsewhere (adopted or copied: loads, load, a
** buffer's copy), 0 if fs_region_create built it here. Records of a foreign
** image are built only as classes a reader allows (DESIGN.md "Trust"). */
int fs_region_foreign(const fs_region_t *r);

void fs_region_acquire(fs_region_t *r);            /* +1 (r must be alive) */
void fs_region_release(fs_region_t *r);            /* -1; reclaims at 0; NULL-safe */

uint64_t        fs_region_id(const fs_region_t *r);       /* unique, from 1 */
const uint8_t  *fs_region_base(const fs_region_t *r);     /* the sealed image */
size_t          fs_region_size(const fs_region_t *r);     /* image bytes used */
fs_ref_t        fs_region_root(const fs_region_t *r);
uint64_t        fs_region_object_count(const fs_region_t *r);
uint32_t        fs_region_nimports(const fs_region_t *r);
fs_region_t    *fs_region_import(const fs_region_t *r, uint32_t slot); /* borrowed */
long            fs_region_refcount(const fs_region_t *r); /* a snapshot */

typedef struct fs_region_stats_s {
    uint64_t live_regions;   /* created, not yet reclaimed               */
    uint64_t image_bytes;    /* sum of fs_region_size of live regions     */
    uint64_t created;        /* regions created, ever                     */
    uint64_t reclaims;       /* regions reclaimed, ever                   */
} fs_region_stats_t;

void fs_region_get_stats(fs_region_stats_t *out);

/* ---- named registry ----------------------------------------------------- */
/* Publish (r, ref) under name (len bytes, any bytes): the entry takes +1 on r.
** An existing entry of that name is replaced and its reference released. */
int fs_registry_publish(const char *name, size_t len, fs_region_t *r, fs_ref_t ref);
/* On success *r gets a NEW reference (+1) the caller must release. */
int fs_registry_lookup(const char *name, size_t len, fs_region_t **r, fs_ref_t *ref);
/* FS_OK, or FS_ENOTFOUND. */
int fs_registry_unpublish(const char *name, size_t len);
/* Snapshot of the names: *names is an array of *count NUL-terminated strings
** (lengths in *lens), freed with fs_registry_list_free. */
int fs_registry_list(char ***names, size_t **lens, size_t *count);
void fs_registry_list_free(char **names, size_t *lens, size_t count);
/* Drop every entry (releasing their references). */
void fs_registry_clear(void);
size_t fs_registry_count(void);

#ifdef __cplusplus
}
#endif
#endif /* FS_REGION_H */
