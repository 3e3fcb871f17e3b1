/*
** image.c -- the image builder (format: fs_image.h).
**
**   fs_builder_t (heap, fs__malloc)       image (arena, unsealed, may move)
**   +-------------------+                 +--------+----------------+.......+
**   | base, used, cap,  |---------------> | header | objects ...    | spare |
**   | alloc, objects    |                 +--------+----------------+.......+
**   | xrefs[], xmap[]   |  (import and xref tables are appended at finish)
**   +-------------------+
**
** Objects are appended at the end of the used area, 8-byte aligned and
** zero-padded, and are referred to by offset only (I3): the image grows
** geometrically (capacity doubles, so appends are amortized O(1)) with
** fs_arena_realloc and may move, so no pointer into it survives a call that
** can allocate. fs_builder_finish appends the import and xref tables, writes
** the header and shrinks the allocation to whole pages.
**
** Shared objects. Every reference stored into the image (items, entries, the
** root) is counted in a bitmap with one bit per 8-byte word of the image: the
** second reference to an object sets its FS_FLAG_SHARED. The bitmap is sized
** with the image's capacity (in grow), so the void setters never allocate.
** Storing into a slot twice may over-count; a spurious flag is harmless (a
** reader memoizes one object too many), a missing one is impossible.
**
** Map index sizing. fs_map_find (fs_image.h) gives up after index_size
** probes, so every entry must sit within its first index_size probes. The
** first 13 probes of a hash depend on its perturbation bits and may revisit
** one slot (hash -2, CPython's hash of both -1 and -2, stays on one slot of a
** 8-slot index); from probe 12 on the sequence is i -> 5i+1 mod index_size,
** which has full period. So probes 12 .. index_size-1 are distinct slots, and
** choosing index_size >= count + 12 (as well as count <= index_size * 2/3)
** guarantees a free slot for every entry within the lookup's probe budget.
** Only maps of 2..42 entries pay for this (a larger index); beyond that the
** load bound alone implies it.
**
** Failure leaves the builder valid: every function checks sizes and
** allocates before it changes anything, so a failed call (FS_ENOMEM,
** FS_ETOOBIG, FS_EINVAL) leaves the image as it was, and
** fs_builder_destroy frees all of it (an image that grew or moved is
** still "as it was": offsets only, I3). `alloc` always holds the true,
** page-multiple size of the image block and `cap` only bounds appends (by
** what the reference bitmap covers), so a failure of the bitmap's growth
** after the image's, or of the shrink at finish, can never hand
** fs_arena_seal a size that is not the block's (D11).
**
** INVARIANTS (DESIGN.md): I3 offsets only; I4 nothing but plain data is
** written; I1 the builder never touches an image after fs_builder_detach
** (the caller seals it).
*/
#include <string.h>

#include "fs_image.h"

struct fs_builder_s {
    uint8_t   *base;         /* image start (arena); NULL once detached       */
    size_t     used;         /* bytes in use, header included                 */
    size_t     alloc;        /* usable size of the arena allocation: what
                                detach reports and seal needs (whole pages)   */
    size_t     cap;          /* appends end at or below: min(alloc, bytes the
                                reference bitmap covers)                      */
    uint64_t   objects;      /* objects appended (header.object_count)        */
    fs_xref_t *xrefs;        /* xref table in creation order (fs__malloc)     */
    uint32_t   nxrefs;       /* entries in xrefs                              */
    uint32_t   xcap;         /* capacity of xrefs                             */
    uint32_t  *xmap;         /* open addressing: (slot,target) -> xref + 1    */
    uint32_t   xmap_size;    /* power of two, or 0; load <= 1/2               */
    uint8_t   *refd;         /* bit per 8-byte word: referenced once already  */
    size_t     refd_size;    /* bytes in refd: covers cap                     */
    int        finished;     /* fs_builder_finish succeeded: no more appends  */
};

#define ALIGN8(n)     (((n) + 7u) & ~(size_t)7u)
#define MAX_PROBE_LAG 12u    /* probes before i -> 5i+1 is pure (see above)   */

/* Grow the reference bitmap (zeroed) to cover an image of cap bytes: offsets
** below refd_size * 64 are covered. */
static int refd_reserve(fs_builder_t *b, size_t cap)
{
    size_t need = cap / 64 + 1;
    if (need <= b->refd_size)
        return FS_OK;
    uint8_t *p = fs__realloc(b->refd, need);
    if (p == NULL)
        return FS_ENOMEM;
    memset(p + b->refd_size, 0, need - b->refd_size);
    b->refd = p;
    b->refd_size = need;
    return FS_OK;
}

/* Count one reference stored into the image (see the header comment). */
static inline void note_ref(fs_builder_t *b, fs_ref_t r)
{
    if (fs_ref_tag(r) != FS_TAG_OBJ || r >= b->used)
        return;
    uint8_t bit = (uint8_t)(1u << ((r / 8) % 8));
    if (b->refd[r / 64] & bit)
        ((fs_obj_hdr_t *)(void *)(b->base + r))->flags |= FS_FLAG_SHARED;
    else
        b->refd[r / 64] |= bit;
}

int fs_builder_create(fs_builder_t **out, size_t size_hint)
{
    fs_builder_t *b = fs__calloc(1, sizeof *b);
    if (b == NULL)
        return FS_ENOMEM;
    size_t want = size_hint > FS_IMAGE_HEADER_SIZE ? size_hint : 4096;
    int err = fs_arena_alloc(want, (void **)&b->base, &b->alloc);
    if (!err && (err = refd_reserve(b, b->alloc)) != FS_OK)
        fs_arena_free(b->base);
    if (err) {
        fs__free(b);
        return err;
    }
    b->cap = b->alloc;                    /* refd_reserve covered all of it */
    memset(b->base, 0, FS_IMAGE_HEADER_SIZE);
    b->used = FS_IMAGE_HEADER_SIZE;
    *out = b;
    return FS_OK;
}

void fs_builder_destroy(fs_builder_t *b)
{
    if (b == NULL)
        return;
    fs_arena_free(b->base);               /* NULL-safe (detached) */
    fs__free(b->xrefs);
    fs__free(b->xmap);
    fs__free(b->refd);
    fs__free(b);
}

size_t fs_builder_size(const fs_builder_t *b) { return b->used; }
uint8_t *fs_builder_base(fs_builder_t *b) { return b->base; }

/* Reserve n more bytes (rounded up to 8) at the end; *off gets their offset.
** All of them are zeroed except [skip_from, skip_to), which the caller fills
** (a payload copied in: zeroing it first would touch every page twice).
** Capacity at least doubles on growth: amortized O(1) appends. */
static int grow_fill(fs_builder_t *b, size_t n, size_t skip_from, size_t skip_to, uint64_t *off)
{
    size_t need = ALIGN8(n);
    if (need < n || b->used + need < b->used)
        return FS_ETOOBIG;
    if (b->used + need > b->cap) {
        size_t cap = b->alloc > SIZE_MAX / 2 ? SIZE_MAX : b->alloc * 2;
        if (cap < b->used + need)
            cap = b->used + need;
        void *p = b->base;
        size_t usable = 0;
        int err = fs_arena_realloc(&p, cap, &usable);
        if (err)
            return err;                   /* b->base still valid, unchanged */
        b->base = p;
        b->alloc = usable;                /* the block is this size, whatever follows */
        /* Appends stay within what the bitmap covers; if it cannot grow, the
        ** larger block is kept (alloc) and only cap lags behind (D11). */
        (void)refd_reserve(b, usable);
        b->cap = usable < b->refd_size * 64 ? usable : b->refd_size * 64;
        if (b->used + need > b->cap)
            return FS_ENOMEM;
    }
    memset(b->base + b->used, 0, skip_from);
    memset(b->base + b->used + skip_to, 0, need - skip_to);
    *off = b->used;
    b->used += need;
    return FS_OK;
}

/* grow_fill with every byte zeroed. */
static int grow(fs_builder_t *b, size_t n, uint64_t *off)
{
    return grow_fill(b, n, 0, 0, off);
}

/* Append an object of `size` bytes with header kind/flags, zeroed except
** for a payload of `payload` bytes the caller copies in right after its
** `head` bytes (header included). */
static int new_object_with(fs_builder_t *b, int kind, unsigned flags, size_t size, size_t head,
                           size_t payload, fs_ref_t *out)
{
    if (b->base == NULL || b->finished)
        return FS_EINVAL;
    uint64_t off;
    int err = grow_fill(b, size, head, head + payload, &off);
    if (err)
        return err;
    fs_obj_hdr_t *h = (fs_obj_hdr_t *)(void *)(b->base + off);
    h->kind = (uint8_t)kind;
    h->flags = (uint8_t)flags;
    b->objects++;
    *out = off;
    return FS_OK;
}

/* Append an object of `size` bytes (zeroed) with header kind/flags. */
static int new_object(fs_builder_t *b, int kind, unsigned flags, size_t size, fs_ref_t *out)
{
    return new_object_with(b, kind, flags, size, 0, 0, out);
}

/* n * size + extra, or SIZE_MAX on overflow. */
static size_t sized(uint64_t n, size_t size, size_t extra)
{
    if (size && n > (SIZE_MAX - extra) / size)
        return SIZE_MAX;
    return (size_t)n * size + extra;
}

int fs_build_float(fs_builder_t *b, double v, fs_ref_t *out)
{
    int err = new_object(b, FS_KIND_FLOAT, 0, sizeof(fs_float_t), out);
    if (!err)
        ((fs_float_t *)(void *)(b->base + *out))->value = v;
    return err;
}

int fs_build_complex(fs_builder_t *b, double real, double imag, fs_ref_t *out)
{
    int err = new_object(b, FS_KIND_COMPLEX, 0, sizeof(fs_complex_t), out);
    if (!err) {
        fs_complex_t *c = (fs_complex_t *)(void *)(b->base + *out);
        c->real = real;
        c->imag = imag;
    }
    return err;
}

int fs_build_int64(fs_builder_t *b, int64_t v, fs_ref_t *out)
{
    if (v >= FS_SMALL_INT_MIN && v <= FS_SMALL_INT_MAX) {
        *out = fs_ref_small_int(v);
        return FS_OK;
    }
    uint8_t le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)((uint64_t)v >> (8 * i));
    return fs_build_bigint(b, le, 8, out);
}

int fs_build_bigint(fs_builder_t *b, const uint8_t *le, size_t nbytes, fs_ref_t *out)
{
    if (nbytes == 0 || le == NULL)
        return FS_EINVAL;
    /* Minimal two's complement: drop top bytes that only repeat the sign. */
    int neg = (le[nbytes - 1] & 0x80) != 0;
    uint8_t fill = neg ? 0xff : 0x00;
    while (nbytes > 1 && le[nbytes - 1] == fill &&
           ((le[nbytes - 2] & 0x80) != 0) == neg)
        nbytes--;
    if (nbytes <= 8) {
        uint64_t u = neg ? UINT64_MAX : 0;          /* sign-extend to 64 bits */
        for (size_t i = 0; i < nbytes; i++) {
            u &= ~((uint64_t)0xff << (8 * i));
            u |= (uint64_t)le[i] << (8 * i);
        }
        int64_t v = (int64_t)u;
        if (v >= FS_SMALL_INT_MIN && v <= FS_SMALL_INT_MAX) {
            *out = fs_ref_small_int(v);
            return FS_OK;
        }
    }
    size_t size = sized(nbytes, 1, sizeof(fs_bigint_t));
    if (size == SIZE_MAX)
        return FS_ETOOBIG;
    int err = new_object(b, FS_KIND_INT, 0, size, out);
    if (!err) {
        fs_bigint_t *o = (fs_bigint_t *)(void *)(b->base + *out);
        o->nbytes = nbytes;
        memcpy(o->data, le, nbytes);
    }
    return err;
}

uint32_t fs_str_maxchar(unsigned charsize, uint64_t length, const void *data)
{
    uint32_t max = 0;
    if (charsize == 1) {
        const uint8_t *d = data;
        for (uint64_t i = 0; i < length; i++)
            max = d[i] > max ? d[i] : max;
    }
    else if (charsize == 2) {
        const uint16_t *d = data;
        for (uint64_t i = 0; i < length; i++)
            max = d[i] > max ? d[i] : max;
    }
    else {
        const uint32_t *d = data;
        for (uint64_t i = 0; i < length; i++)
            max = d[i] > max ? d[i] : max;
    }
    return max;
}

int fs_build_str(fs_builder_t *b, unsigned charsize, uint64_t length,
                 uint32_t maxchar, int64_t hash, const void *data, fs_ref_t *out)
{
    if (charsize != 1 && charsize != 2 && charsize != 4)
        return FS_EINVAL;
    int scanned = maxchar == FS_MAXCHAR_SCAN;
    if (scanned)
        maxchar = fs_str_maxchar(charsize, length, data);
    unsigned want = maxchar < 256 ? 1 : maxchar < 65536 ? 2 : 4;
    if (want != charsize || maxchar > 0x10ffff || (length && data == NULL))
        return FS_EINVAL;
    if (length >= SIZE_MAX / 4)
        return FS_ETOOBIG;
    size_t size = sized(length + 1, charsize, sizeof(fs_str_t));
    if (size == SIZE_MAX)
        return FS_ETOOBIG;
    /* Canonical form is what fs_image_check demands and what readers compare
    ** with memcmp: refuse a maxchar that is not the true maximum. */
    if (!scanned && fs_str_maxchar(charsize, length, data) != maxchar)
        return FS_EINVAL;
    int err = new_object_with(b, FS_KIND_STR, maxchar < 128 ? FS_FLAG_ASCII : 0, size,
                              sizeof(fs_str_t), (size_t)length * charsize, out);
    if (!err) {
        fs_str_t *s = (fs_str_t *)(void *)(b->base + *out);
        s->length = length;
        s->hash = hash;
        s->maxchar = maxchar;
        s->charsize = (uint8_t)charsize;
        if (length)
            memcpy(s->data, data, (size_t)length * charsize);   /* NUL: zeroed by grow_fill */
    }
    return err;
}

int fs_build_bytes(fs_builder_t *b, int kind, const void *data, uint64_t length, fs_ref_t *out)
{
    if ((kind != FS_KIND_BYTES && kind != FS_KIND_BYTEARRAY) || (length && data == NULL))
        return FS_EINVAL;
    size_t size = sized(length, 1, sizeof(fs_bytes_t) + 1);
    if (size == SIZE_MAX)
        return FS_ETOOBIG;
    int err = new_object_with(b, kind, 0, size, sizeof(fs_bytes_t), (size_t)length, out);
    if (!err) {
        fs_bytes_t *o = (fs_bytes_t *)(void *)(b->base + *out);
        o->length = length;
        if (length)
            memcpy(o->data, data, (size_t)length);          /* NUL: zeroed by grow_fill */
    }
    return err;
}

int fs_build_seq(fs_builder_t *b, int kind, uint64_t count, fs_ref_t *out)
{
    if (kind != FS_KIND_TUPLE && kind != FS_KIND_LIST)
        return FS_EINVAL;
    size_t size = sized(count, sizeof(fs_ref_t), sizeof(fs_seq_t));
    if (size == SIZE_MAX)
        return FS_ETOOBIG;
    int err = new_object(b, kind, 0, size, out);
    if (!err) {
        fs_seq_t *s = (fs_seq_t *)(void *)(b->base + *out);
        s->count = count;
        for (uint64_t i = 0; i < count; i++)
            s->items[i] = FS_REF_NONE;
    }
    return err;
}

void fs_build_seq_set(fs_builder_t *b, fs_ref_t seq, uint64_t i, fs_ref_t item)
{
    ((fs_seq_t *)(void *)(b->base + seq))->items[i] = item;
    note_ref(b, item);
}

/* The index size for count entries: 0 when empty, else the smallest power of
** two with count <= size * 2/3 and (count > 1) size >= count + 12 (see the
** header comment: every entry then lies within size probes). */
static uint64_t index_size_for(uint64_t count)
{
    if (count == 0)
        return 0;
    uint64_t n = 8;
    while (n * 2 < count * 3 || (count > 1 && n < count + MAX_PROBE_LAG))
        n *= 2;
    return n;
}

int fs_build_map(fs_builder_t *b, int kind, unsigned flags, uint64_t count, fs_ref_t *out)
{
    if (kind != FS_KIND_DICT && kind != FS_KIND_SET && kind != FS_KIND_FROZENSET)
        return FS_EINVAL;
    if ((flags & ~(unsigned)FS_FLAG_FROZENDICT) ||
        (flags && kind != FS_KIND_DICT))
        return FS_EINVAL;
    if (count > INT32_MAX)                   /* index entries are i32 */
        return FS_ETOOBIG;
    uint64_t isize = index_size_for(count);
    size_t size = sized(count, sizeof(fs_map_entry_t), sizeof(fs_map_t));
    size_t idx = sized(isize, sizeof(int32_t), 0);
    if (size == SIZE_MAX || idx == SIZE_MAX || size + idx < size)
        return FS_ETOOBIG;
    int err = new_object(b, kind, flags, size + idx, out);
    if (!err) {
        fs_map_t *m = (fs_map_t *)(void *)(b->base + *out);
        m->count = count;
        m->index_size = isize;
        for (uint64_t i = 0; i < count; i++) {
            m->entries[i].key = FS_REF_NONE;
            m->entries[i].value = FS_REF_NONE;
        }
        int32_t *index = (int32_t *)(void *)(m->entries + count);
        for (uint64_t i = 0; i < isize; i++)    /* finish rebuilds it; until  */
            index[i] = -1;                      /* then lookups simply miss   */
    }
    return err;
}

void fs_build_map_set(fs_builder_t *b, fs_ref_t map, uint64_t i, int64_t hash,
                      fs_ref_t key, fs_ref_t value)
{
    fs_map_entry_t *e = &((fs_map_t *)(void *)(b->base + map))->entries[i];
    e->hash = hash;
    e->key = key;
    e->value = value;
    note_ref(b, key);
    note_ref(b, value);
}

void fs_build_map_finish(fs_builder_t *b, fs_ref_t map)
{
    fs_map_t *m = (fs_map_t *)(void *)(b->base + map);
    if (m->index_size == 0)
        return;
    int32_t *index = (int32_t *)(void *)(m->entries + m->count);
    uint64_t mask = m->index_size - 1;
    for (uint64_t i = 0; i < m->index_size; i++)
        index[i] = -1;
    /* Entries go in insertion order along the probing sequence of fs_map_find
    ** (fs_image.h). index_size_for() guarantees a free slot within
    ** index_size probes, so the loop ends and every entry is found. */
    for (uint64_t e = 0; e < m->count; e++) {
        uint64_t perturb = (uint64_t)m->entries[e].hash;
        uint64_t i = perturb & mask;
        while (index[i] >= 0) {
            perturb >>= 5;
            i = (i * 5 + perturb + 1) & mask;
        }
        index[i] = (int32_t)e;
    }
}

static uint32_t xhash(uint32_t slot, fs_ref_t target)
{
    uint64_t h = (target ^ ((uint64_t)slot << 47) ^ slot) * UINT64_C(0x9e3779b97f4a7c15);
    return (uint32_t)(h >> 32);
}

/* Make room in xmap for n entries at load <= 1/2 (rehashing into a new
** table; on failure the old one is intact). */
static int xmap_reserve(fs_builder_t *b, uint32_t n)
{
    if (n <= b->xmap_size / 2)
        return FS_OK;
    uint64_t size = b->xmap_size ? (uint64_t)b->xmap_size * 2 : 16;
    while (size / 2 < n)
        size *= 2;
    if (size > UINT32_MAX)
        return FS_ETOOBIG;
    uint32_t *map = fs__calloc((size_t)size, sizeof *map);
    if (map == NULL)
        return FS_ENOMEM;
    uint32_t mask = (uint32_t)size - 1;
    for (uint32_t x = 0; x < b->nxrefs; x++) {
        uint32_t i = xhash(b->xrefs[x].import_slot, b->xrefs[x].target) & mask;
        while (map[i])
            i = (i + 1) & mask;
        map[i] = x + 1;
    }
    fs__free(b->xmap);
    b->xmap = map;
    b->xmap_size = (uint32_t)size;
    return FS_OK;
}

static fs_ref_t xref_ref(uint32_t x) { return ((fs_ref_t)x << 3) | FS_TAG_XREF; }

int fs_build_xref(fs_builder_t *b, uint32_t slot, fs_ref_t target, fs_ref_t *out)
{
    if (b->base == NULL || b->finished)
        return FS_EINVAL;
    /* The target is a reference inside the imported image: never itself an
    ** xref (the imported image resolves its own), never a bad constant. */
    if (fs_ref_tag(target) == FS_TAG_XREF ||
        (fs_ref_tag(target) == FS_TAG_CONST && (target >> 3) > 2) ||
        fs_ref_tag(target) > FS_TAG_XREF)
        return FS_EINVAL;
    if (b->xmap_size) {
        uint32_t mask = b->xmap_size - 1;
        for (uint32_t i = xhash(slot, target) & mask; b->xmap[i]; i = (i + 1) & mask) {
            const fs_xref_t *x = &b->xrefs[b->xmap[i] - 1];
            if (x->import_slot == slot && x->target == target) {
                *out = xref_ref(b->xmap[i] - 1);
                return FS_OK;
            }
        }
    }
    if (b->nxrefs >= INT32_MAX)               /* header.nxrefs, xmap's x + 1 */
        return FS_ETOOBIG;
    if (b->nxrefs == b->xcap) {
        uint32_t cap = b->xcap ? b->xcap * 2 : 8;
        fs_xref_t *x = fs__realloc(b->xrefs, (size_t)cap * sizeof *x);
        if (x == NULL)
            return FS_ENOMEM;
        b->xrefs = x;
        b->xcap = cap;
    }
    int err = xmap_reserve(b, b->nxrefs + 1);
    if (err)
        return err;
    uint32_t x = b->nxrefs++;
    b->xrefs[x] = (fs_xref_t){ slot, 0, target };
    uint32_t mask = b->xmap_size - 1, i = xhash(slot, target) & mask;
    while (b->xmap[i])
        i = (i + 1) & mask;
    b->xmap[i] = x + 1;
    *out = xref_ref(x);
    return FS_OK;
}

int fs_builder_finish(fs_builder_t *b, fs_ref_t root, const uint64_t *import_ids,
                      uint32_t nimports, int64_t hash_check)
{
    if (b->base == NULL || b->finished || (nimports && import_ids == NULL))
        return FS_EINVAL;
    for (uint32_t x = 0; x < b->nxrefs; x++)
        if (b->xrefs[x].import_slot >= nimports)
            return FS_EINVAL;
    size_t objects_end = b->used;
    uint64_t objects = b->objects, imp, xr;
    int err = grow(b, sized(nimports, sizeof(uint64_t), 0), &imp);
    if (err)
        goto fail_tables;
    err = grow(b, sized(b->nxrefs, sizeof(fs_xref_t), 0), &xr);
    if (err)
        goto fail_tables;
    if (nimports)
        memcpy(b->base + imp, import_ids, (size_t)nimports * sizeof(uint64_t));
    if (b->nxrefs)
        memcpy(b->base + xr, b->xrefs, (size_t)b->nxrefs * sizeof(fs_xref_t));
    fs_image_header_t *h = (fs_image_header_t *)(void *)b->base;
    memcpy(h->magic, FS_IMAGE_MAGIC, 8);
    h->version = FS_IMAGE_VERSION;
    h->flags = 0;
    h->image_size = b->used;
    note_ref(b, root);
    h->root = root;
    h->import_off = imp;
    h->nimports = nimports;
    h->nxrefs = b->nxrefs;
    h->xref_off = xr;
    h->object_count = objects;
    h->hash_check = hash_check;
    h->objects_end = objects_end;
    /* Shrink to whole pages. Not fatal when it fails: the larger block is
    ** still a valid image allocation (alloc stays its usable size). */
    void *p = b->base;
    size_t usable = 0;
    if (b->used < b->alloc && fs_arena_realloc(&p, b->used, &usable) == FS_OK) {
        b->base = p;
        b->alloc = usable;
        b->cap = b->cap < usable ? b->cap : usable;
    }
    b->finished = 1;
    return FS_OK;
fail_tables:
    b->used = objects_end;                /* the builder is as before the call */
    return err;
}

void fs_builder_detach(fs_builder_t *b, void **base, size_t *alloc_size)
{
    *base = b->base;
    *alloc_size = b->base ? b->alloc : 0;
    b->base = NULL;
    b->used = b->cap = b->alloc = 0;
}
