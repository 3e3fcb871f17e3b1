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
** A table is owned by one interpreter (its GIL serializes access).
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

static int tab_grow(fs__tab_t *t)
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
        fs__free(t->slots);
    }
    t->slots = slots;
    t->mask = mask;
    return FS_OK;
}

int fs__tab_put(fs__tab_t *t, uintptr_t k1, uint64_t k2, uint64_t v)
{
    if (t->slots == NULL || (t->used + 1) * 2 > t->mask + 1) {
        int err = tab_grow(t);
        if (err != FS_OK)
            return err;
    }
    for (size_t i = tab_hash(k1, k2) & t->mask;; i = (i + 1) & t->mask) {
        fs__slot_t *s = &t->slots[i];
        if (s->k1 == 0) {
            s->k1 = k1; s->k2 = k2; s->v = v;
            t->used++;
            return FS_OK;
        }
        if (s->k1 == k1 && s->k2 == k2) {
            s->v = v;
            return FS_OK;
        }
    }
}

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
    fs__free(t->slots);
    t->slots = NULL;
    t->mask = 0;
    t->used = 0;
}
