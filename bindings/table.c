/*
** table.c -- the bindings' one hash table: (k1, k2) -> u64, open addressing.
**
**   slots[capacity]   capacity a power of two, load <= 1/2
**   +-----+-----+-----+-----+
**   | k1  | k1  |  0  | k1  |   k1 == 0 marks an empty slot
**   | k2  | k2  |     | k2  |
**   | v   | v   |     | v   |
**   +-----+-----+-----+-----+
**
** Linear probing; deletion shifts the following run back (no tombstones), so
** lookups stop at the first empty slot. All storage comes from fs__calloc
** (the allocation hook), so injected failures reach the tables too.
** A table is owned by one interpreter (its GIL serializes access) or, on a
** free-threaded build, by a lock -- except a _shared table, whose readers
** take no lock:
**
**   writer (holds the lock)               reader (any thread, no lock)
**   slot: k2, v stored, then k1 (release) k1 loaded (acquire), then k2, v
**   grow: new array filled, then slots    mask loaded (acquire), then slots
**         (release), then mask (release); (acquire): an array at least
**         the old array kept (retired)    mask + 1 long, never freed
**
** A reader that meets a grow half-way sees the old array (or the new one
** with the old mask: a shorter probe, at worst a miss, which its caller
** settles under the lock). Entries are never changed or removed.
*/
#include "fs_py.h"

static inline size_t tab_hash(uintptr_t k1, uint64_t k2)
{
    return (size_t)fs_keyed_mix((uint64_t)k1 ^ (k2 * UINT64_C(0x9E3779B97F4A7C15)));
}

uint64_t *fs__tab_get(const fs__tab_t *t, uintptr_t k1, uint64_t k2)
{
    if (t->slots == NULL)
        return NULL;
    for (size_t i = tab_hash(k1, k2) & t->mask;; i = (i + 1) & t->mask) {
        fs__slot_t *s = &t->slots[i];
        if (s->k1 == 0)
            return NULL;
        if (s->k1 == k1 && s->k2 == k2)
            return &s->v;
    }
}

/* A grown-out slot array of a _shared table, kept until fini. */
typedef struct retired_s {
    struct retired_s *next;
    fs__slot_t       *slots;
} retired_t;

static int tab_grow(fs__tab_t *t, int shared)
{
    size_t cap = t->slots ? (t->mask + 1) * 2 : 16;
    fs__slot_t *slots = fs__calloc(cap, sizeof(fs__slot_t));
    if (slots == NULL)
        return FS_ENOMEM;
    size_t mask = cap - 1;
    if (t->slots != NULL) {
        for (size_t j = 0; j <= t->mask; j++) {
            fs__slot_t *s = &t->slots[j];
            if (s->k1 == 0)
                continue;
            size_t i = tab_hash(s->k1, s->k2) & mask;
            while (slots[i].k1 != 0)
                i = (i + 1) & mask;
            slots[i] = *s;
        }
        if (!shared) {
            fs__free(t->slots);
        }
        else {
            retired_t *r = fs__calloc(1, sizeof *r);
            if (r == NULL) {
                fs__free(slots);
                return FS_ENOMEM;
            }
            r->slots = t->slots;
            r->next = t->retired;
            t->retired = r;
        }
    }
    __atomic_store_n(&t->slots, slots, __ATOMIC_RELEASE);
    __atomic_store_n(&t->mask, mask, __ATOMIC_RELEASE);
    return FS_OK;
}

static int tab_put(fs__tab_t *t, uintptr_t k1, uint64_t k2, uint64_t v, int shared)
{
    if (t->slots == NULL || (t->used + 1) * 2 > t->mask + 1) {
        int err = tab_grow(t, shared);
        if (err != FS_OK)
            return err;
    }
    for (size_t i = tab_hash(k1, k2) & t->mask;; i = (i + 1) & t->mask) {
        fs__slot_t *s = &t->slots[i];
        if (s->k1 == 0) {
            s->k2 = k2;
            s->v = v;
            __atomic_store_n(&s->k1, k1, __ATOMIC_RELEASE);   /* last: readers */
            __atomic_store_n(&t->used, t->used + 1, __ATOMIC_RELAXED);   /* read unlocked */
            return FS_OK;
        }
        if (s->k1 == k1 && s->k2 == k2) {
            s->v = v;                  /* never for a _shared table (callers) */
            return FS_OK;
        }
    }
}

int fs__tab_put(fs__tab_t *t, uintptr_t k1, uint64_t k2, uint64_t v)
{
    return tab_put(t, k1, k2, v, 0);
}

#ifdef Py_GIL_DISABLED
uint64_t fs__tab_get_shared(const fs__tab_t *t, uintptr_t k1, uint64_t k2)
{
    size_t mask = __atomic_load_n(&t->mask, __ATOMIC_ACQUIRE);
    const fs__slot_t *slots = __atomic_load_n(&t->slots, __ATOMIC_ACQUIRE);
    if (slots == NULL)
        return 0;
    /* at most mask + 1 probes: with the old mask over a new array, the
    ** first mask + 1 slots may all be full */
    for (size_t i = tab_hash(k1, k2) & mask, n = 0; n <= mask; i = (i + 1) & mask, n++) {
        uintptr_t k = __atomic_load_n(&slots[i].k1, __ATOMIC_ACQUIRE);
        if (k == 0)
            return 0;
        if (k == k1 && slots[i].k2 == k2)
            return slots[i].v;
    }
    return 0;
}

int fs__tab_put_shared(fs__tab_t *t, uintptr_t k1, uint64_t k2, uint64_t v)
{
    return tab_put(t, k1, k2, v, 1);
}
#else
uint64_t fs__tab_get_shared(const fs__tab_t *t, uintptr_t k1, uint64_t k2)
{
    uint64_t *v = fs__tab_get(t, k1, k2);
    return v != NULL ? *v : 0;
}

int fs__tab_put_shared(fs__tab_t *t, uintptr_t k1, uint64_t k2, uint64_t v)
{
    return tab_put(t, k1, k2, v, 0);
}
#endif

int fs__tab_del(fs__tab_t *t, uintptr_t k1, uint64_t k2)
{
    if (t->slots == NULL)
        return 0;
    size_t i = tab_hash(k1, k2) & t->mask;
    for (;; i = (i + 1) & t->mask) {
        fs__slot_t *s = &t->slots[i];
        if (s->k1 == 0)
            return 0;
        if (s->k1 == k1 && s->k2 == k2)
            break;
    }
    /* Backward shift: move later members of the run into the hole when
    ** their home slot does not lie cyclically in (hole, j]. */
    size_t hole = i;
    for (size_t j = (i + 1) & t->mask;; j = (j + 1) & t->mask) {
        fs__slot_t *s = &t->slots[j];
        if (s->k1 == 0)
            break;
        size_t home = tab_hash(s->k1, s->k2) & t->mask;
        int stays = (hole <= j) ? (hole < home && home <= j)
                                : (hole < home || home <= j);
        if (!stays) {
            t->slots[hole] = *s;
            hole = j;
        }
    }
    t->slots[hole].k1 = 0;
    t->slots[hole].k2 = 0;
    t->slots[hole].v = 0;
    t->used--;
    return 1;
}

void fs__tab_fini(fs__tab_t *t)
{
    while (t->retired != NULL) {
        retired_t *r = t->retired;
        t->retired = r->next;
        fs__free(r->slots);
        fs__free(r);
    }
    fs__free(t->slots);
    t->slots = NULL;
    t->mask = 0;
    t->used = 0;
}
