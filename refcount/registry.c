/*
** registry.c -- the process-wide named registry (like Erlang's
** persistent_term): name -> (region, ref), each entry holding +1 on its
** region.
**
**   entries (fs__realloc'd, sorted by name: length-then-bytes order)
**   +-------------------------------+-------------------------------+----
**   | name* len | region* | ref     | name* len | region* | ref     | ...
**   +-------------------------------+-------------------------------+----
**     0 .. count-1 in use, capacity cap; lookups are binary searches
**
** Names are arbitrary bytes (NULs allowed); each entry keeps a private,
** NUL-terminated copy. The table is a sorted array rather than a hash
** table: O(log n) lookups, and fs_registry_list is ordered for free.
**
** Lock rule: `lock` guards every field below. A reference is acquired under
** the lock (the entry's +1 keeps the region alive until then, I2) but
** released only after unlocking, because a release may reclaim a region and
** reclamation must not run under the registry's lock (it can be long, and
** it frees memory). Allocation failures return FS_ENOMEM with the table's
** contents unchanged.
*/
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fs_region.h"

typedef struct entry_s {
    char        *name;       /* fs__malloc'd copy, len bytes + NUL          */
    size_t       len;        /* bytes of name, NUL excluded                 */
    fs_region_t *region;     /* +1 owned by this entry (I2)                 */
    fs_ref_t     ref;        /* the published object inside region         */
} entry_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static entry_t *entries;     /* sorted by (len, bytes); guarded by lock     */
static size_t   count;       /* entries in use                              */
static size_t   cap;         /* entries allocated                           */

/* fork: lock is held across it, taken first (it nests outside the region
** layer's locks: a publish may release a region); registered after the
** region layer's handler (fs_region_init), so its prepare runs first. */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static void registry_prefork(void) { pthread_mutex_lock(&lock); }
static void registry_postfork(void) { pthread_mutex_unlock(&lock); }
static void init_once(void)
{
    /* Without a handler (ENOMEM: never seen) the registry still works; only
    ** a fork racing another thread's publish could leave the child's lock
    ** held. */
    if (fs_region_init() == FS_OK)
        (void)pthread_atfork(registry_prefork, registry_postfork, registry_postfork);
}
static void lock_registry(void)
{
    pthread_once(&once, init_once);
    pthread_mutex_lock(&lock);
}

static int name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return alen < blen ? -1 : 1;
    return alen ? memcmp(a, b, alen) : 0;
}

/* Index of name if present (*found = 1), else where it would be inserted.
** lock held. */
static size_t find(const char *name, size_t len, int *found)
{
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(entries[mid].name, entries[mid].len, name, len);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

int fs_registry_publish(const char *name, size_t len, fs_region_t *r, fs_ref_t ref)
{
    if (r == NULL || (name == NULL && len > 0) || len == SIZE_MAX)
        return FS_EINVAL;
    fs_region_t *old = NULL;
    int found, err = FS_OK;

    lock_registry();
    size_t at = find(name, len, &found);
    if (found) {
        old = entries[at].region;
        fs_region_acquire(r);
        entries[at].region = r;
        entries[at].ref = ref;
        goto done;
    }
    if (count == cap) {
        size_t ncap = cap ? cap * 2 : 16;
        entry_t *grown = fs__realloc(entries, ncap * sizeof *grown);
        if (grown == NULL) {
            err = FS_ENOMEM;
            goto done;
        }
        entries = grown;
        cap = ncap;
    }
    char *copy = fs__malloc(len + 1);
    if (copy == NULL) {
        err = FS_ENOMEM;
        goto done;
    }
    if (len)
        memcpy(copy, name, len);
    copy[len] = '\0';
    memmove(&entries[at + 1], &entries[at], (count - at) * sizeof *entries);
    fs_region_acquire(r);
    entries[at] = (entry_t){ copy, len, r, ref };
    count++;
done:
    pthread_mutex_unlock(&lock);
    fs_region_release(old);       /* outside the lock: may reclaim (NULL-safe) */
    return err;
}

int fs_registry_lookup(const char *name, size_t len, fs_region_t **r, fs_ref_t *ref)
{
    if (r == NULL || (name == NULL && len > 0))
        return FS_EINVAL;
    int found;
    lock_registry();
    size_t at = find(name, len, &found);
    if (found) {
        fs_region_acquire(entries[at].region);   /* alive: the entry holds +1 */
        *r = entries[at].region;
        if (ref)
            *ref = entries[at].ref;
    }
    pthread_mutex_unlock(&lock);
    return found ? FS_OK : FS_ENOTFOUND;
}

int fs_registry_unpublish(const char *name, size_t len)
{
    if (name == NULL && len > 0)
        return FS_EINVAL;
    int found;
    entry_t gone = { 0 };
    lock_registry();
    size_t at = find(name, len, &found);
    if (found) {
        gone = entries[at];
        memmove(&entries[at], &entries[at + 1], (count - at - 1) * sizeof *entries);
        count--;
    }
    pthread_mutex_unlock(&lock);
    if (!found)
        return FS_ENOTFOUND;
    fs__free(gone.name);
    fs_region_release(gone.region);
    return FS_OK;
}

/* One allocation holds the whole snapshot, so failure has nothing to undo:
**   [ char *names[n] | size_t lens[n] | name bytes, each + NUL ... ]
** fs_registry_list_free frees it through names. */
int fs_registry_list(char ***names, size_t **lens, size_t *n_out)
{
    if (names == NULL || lens == NULL || n_out == NULL)
        return FS_EINVAL;
    int err = FS_OK;
    lock_registry();
    size_t n = count, bytes = n * (sizeof(char *) + sizeof(size_t));
    for (size_t i = 0; i < n; i++)
        bytes += entries[i].len + 1;
    char **v = NULL;
    size_t *l = NULL;
    if (n > 0) {
        v = fs__malloc(bytes);
        if (v == NULL) {
            err = FS_ENOMEM;
            goto done;
        }
        l = (size_t *)(void *)(v + n);
        char *p = (char *)(l + n);
        for (size_t i = 0; i < n; i++) {
            v[i] = p;
            l[i] = entries[i].len;
            memcpy(p, entries[i].name, entries[i].len + 1);
            p += entries[i].len + 1;
        }
    }
    *names = v;
    *lens = l;
    *n_out = n;
done:
    pthread_mutex_unlock(&lock);
    return err;
}

void fs_registry_list_free(char **names, size_t *lens, size_t n)
{
    (void)lens;                   /* lives inside the names block */
    (void)n;
    fs__free(names);
}

void fs_registry_clear(void)
{
    lock_registry();
    entry_t *v = entries;
    size_t n = count;
    entries = NULL;
    count = cap = 0;
    pthread_mutex_unlock(&lock);
    for (size_t i = 0; i < n; i++) {   /* outside the lock: may reclaim */
        fs__free(v[i].name);
        fs_region_release(v[i].region);
    }
    fs__free(v);
}

size_t fs_registry_count(void)
{
    lock_registry();
    size_t n = count;
    pthread_mutex_unlock(&lock);
    return n;
}
