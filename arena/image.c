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
** Only maps of 9..42 entries pay for this (a larger index; smaller ones have
** none); beyond that the load bound alone implies it.
**
** Stored once (fs_image.h, format v2). Equal str and short bytes values
** are looked up in `vals` by value before they are appended: the second
** one is the first one's ref, whose second store flags it SHARED. Dicts
** whose hashes and keys are given up front (fs_build_dict) are looked up
** in `shapes` by their key refs: keys are deduplicated, so equal key refs
** mean equal keys, and the first dict with a key sequence is stored
** unshaped and becomes the shape of every later one. Both tables are heap
** memory of the builder, grown before the object is appended. A complete
** dict (fs_build_record) that is shaped stores its values narrow when they
** fit, boxing its few float immediates in FLOAT objects appended after it.
**
** Failure leaves the builder valid: every function checks sizes and
** allocates before it changes anything, so a failed call (FS_ENOMEM,
** FS_ETOOBIG, FS_EINVAL) leaves the image as it was (or, when a narrow
** record's float box fails, with that record complete and all None), and
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

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__ || UINTPTR_MAX != UINT64_MAX
#  error "the image format is written little-endian, 64-bit (fs_image.h)"
#endif
_Static_assert(sizeof(fs_image_header_t) == FS_IMAGE_HEADER_SIZE, "header layout");
_Static_assert(sizeof(fs_map_t) == 16 && sizeof(fs_shaped_t) == 8, "map layouts");

/* The builder's two lookup tables (value dedup, shapes): open addressing
** over (hash, ref), ref 0 a free slot (no object lives at offset 0), load
** <= 1/2, grown before the object they would name is appended. A slot is 8
** bytes, the low 32 bits of the hash (which also place it) and ref / 8: a
** freeze of unique strings costs a table miss each, and half the bytes is
** fewer misses. Objects beyond 32 GiB are not entered (dtab_put). */
typedef struct fs_dedup_s { uint32_t h; uint32_t ref8; } fs_dedup_t;
typedef struct fs_dtab_s { fs_dedup_t *slots; uint64_t size, used; } fs_dtab_t;

static inline fs_ref_t dslot_ref(const fs_dedup_t *d) { return (fs_ref_t)d->ref8 << 3; }
/* Enter ref with hash h in free slot i (a no-op past 32 GiB). */
static inline void dtab_put(fs_dtab_t *t, uint64_t i, uint64_t h, fs_ref_t ref)
{
    if ((ref >> 3) > UINT32_MAX)
        return;
    t->slots[i] = (fs_dedup_t){ (uint32_t)h, (uint32_t)(ref >> 3) };
    t->used++;
}

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
    fs_dtab_t  vals;         /* equal str/bytes/floats -> the one stored      */
    fs_dtab_t  shapes;       /* key refs -> the dict owning them (shapes)     */
    uint64_t   dedup_hits, nshapes, shaped;   /* fs_builder_stats             */
    int        no_dedup;     /* fs_builder_dedup(b, 0) in force               */
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
    fs__free(b->vals.slots);
    fs__free(b->shapes.slots);
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

static int vals_reserve(fs_builder_t *b);
static fs_ref_t vals_find(const fs_builder_t *b, uint64_t h, int kind, unsigned aux,
                          const void *data, uint64_t nbytes, uint64_t *slot);
static inline uint64_t mix64(uint64_t x);

/* A FLOAT object for v, stored once by its bits (NaN excepted). */
static int float_object(fs_builder_t *b, double v, fs_ref_t *out);

int fs_build_float(fs_builder_t *b, double v, fs_ref_t *out)
{
    if (fs_ref_float_imm(v, out))
        return FS_OK;
    return float_object(b, v, out);
}

static int float_object(fs_builder_t *b, double v, fs_ref_t *out)
{
    if (b->base == NULL || b->finished)
        return FS_EINVAL;
    if (v != v || b->no_dedup) { /* NaN: two NaN keys of one dict stay two */
        int err = new_object(b, FS_KIND_FLOAT, 0, sizeof(fs_float_t), out);
        if (!err)
            ((fs_float_t *)(void *)(b->base + *out))->value = v;
        return err;
    }
    int err = vals_reserve(b);
    if (err)
        return err;
    uint64_t bits, slot = 0;
    memcpy(&bits, &v, sizeof bits);
    uint64_t h = mix64(bits ^ UINT64_C(0xf10a7));
    fs_ref_t hit = vals_find(b, h, FS_KIND_FLOAT, 0, &v, 8, &slot);
    if (hit) {
        b->dedup_hits++;
        *out = hit;
        return FS_OK;
    }
    err = new_object(b, FS_KIND_FLOAT, 0, sizeof(fs_float_t), out);
    if (!err) {
        ((fs_float_t *)(void *)(b->base + *out))->value = v;
        dtab_put(&b->vals, slot, h, *out);
    }
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
    if (nbytes >= FS_N_LONG)                        /* hdr.n holds nbytes */
        return FS_ETOOBIG;
    int err = new_object_with(b, FS_KIND_INT, 0, sizeof(fs_bigint_t) + nbytes,
                              sizeof(fs_bigint_t), nbytes, out);
    if (!err) {
        fs_bigint_t *o = (fs_bigint_t *)(void *)(b->base + *out);
        o->h.n = (uint32_t)nbytes;
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

uint32_t fs_str_scan_class(unsigned charsize, uint64_t length, const void *data)
{
    if (charsize == 4)
        return fs_str_maxchar(charsize, length, data);
    /* The OR of the code points has a bit above 7 (above 15) exactly when
    ** one of them does: for charsizes 1 and 2 it answers the class, read a
    ** word at a time. */
    const uint8_t *d = data;
    uint64_t bytes = length * charsize, acc = 0, w, i = 0;
    for (; i + 8 <= bytes; i += 8) {
        memcpy(&w, d + i, 8);
        acc |= w;
    }
    for (; i < bytes; i++)
        acc |= (uint64_t)d[i] << (8 * (i % 8));
    acc |= acc >> 32;                 /* fold the lanes: 8 bytes or 4 u16s */
    acc |= acc >> 16;
    if (charsize == 1) {
        acc |= acc >> 8;
        return (uint32_t)(acc & 0xff);
    }
    return (uint32_t)(acc & 0xffff);
}

/* ---- value dedup: equal str and bytes stored once ----------------------- */
/* vals: open addressing over (key hash, ref); key hash mixes the kind into
** the str's own hash, or hashes the bytes. Load <= 1/2, grown before the
** object is appended, so an insert after it cannot fail. */

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x *= UINT64_C(0xc4ceb9fe1a85ec53);
    return x ^ (x >> 33);
}

/* A fast hash of n bytes (dedup only: never stored). */
static uint64_t bytes_hash(const uint8_t *p, uint64_t n)
{
    uint64_t h = n * UINT64_C(0x9e3779b97f4a7c15), w;
    for (; n >= 8; n -= 8, p += 8) {
        memcpy(&w, p, 8);
        h = mix64(h ^ w);
    }
    w = 0;
    if (n)                                  /* p may be NULL when length is 0 */
        memcpy(&w, p, (size_t)n);
    return mix64(h ^ w ^ 0xb5);
}

/* Room for one more entry in t (first: the size of a new table). */
static int dtab_reserve(fs_dtab_t *t, uint64_t first)
{
    if (t->used + 1 <= t->size / 2)
        return FS_OK;
    uint64_t size = t->size ? t->size * 2 : first;
    fs_dedup_t *n = fs__calloc((size_t)size, sizeof *n);
    if (n == NULL)
        return FS_ENOMEM;
    for (uint64_t i = 0; i < t->size; i++) {
        if (t->slots[i].ref8 == 0)
            continue;
        uint64_t j = t->slots[i].h & (size - 1);
        while (n[j].ref8)
            j = (j + 1) & (size - 1);
        n[j] = t->slots[i];
    }
    fs__free(t->slots);
    t->slots = n;
    t->size = size;
    return FS_OK;
}

static int vals_reserve(fs_builder_t *b) { return dtab_reserve(&b->vals, 256); }

/* The stored str/bytes equal to (kind, aux, data, length) with key hash h,
** or 0. *slot: where to insert it when absent. */
static fs_ref_t vals_find(const fs_builder_t *b, uint64_t h, int kind, unsigned aux,
                          const void *data, uint64_t nbytes, uint64_t *slot)
{
    uint64_t mask = b->vals.size - 1, i = h & mask;
    for (; b->vals.slots[i].ref8; i = (i + 1) & mask) {
        if (b->vals.slots[i].h != (uint32_t)h)
            continue;
        fs_ref_t ref = dslot_ref(&b->vals.slots[i]);
        const fs_obj_hdr_t *o = (const fs_obj_hdr_t *)(const void *)(b->base + ref);
        if (o->kind != kind || o->aux != aux)
            continue;
        if (kind != FS_KIND_FLOAT && fs_obj_len(o) * (aux ? aux : 1) != nbytes)
            continue;
        const uint8_t *d = kind == FS_KIND_FLOAT ? (const uint8_t *)(o + 1) : fs_obj_body(o);
        if (nbytes == 0 || memcmp(d, data, (size_t)nbytes) == 0)   /* data may be NULL */
            return ref;
    }
    *slot = i;
    return 0;
}

/* Append a STR or BYTES-like object: header (kind, flags, aux, n), the
** long length when needed, `pre` bytes (the str's hash), then the payload. */
static int new_blob(fs_builder_t *b, int kind, unsigned flags, unsigned aux, uint64_t n,
                    const void *pre, size_t npre, const void *data, size_t nbytes,
                    fs_ref_t *out)
{
    size_t lng = n >= FS_N_LONG ? 8 : 0, head = sizeof(fs_obj_hdr_t) + lng + npre;
    if (nbytes > SIZE_MAX - head - 8)
        return FS_ETOOBIG;
    int err = new_object_with(b, kind, flags, head + nbytes, head, nbytes, out);
    if (err)
        return err;
    uint8_t *o = b->base + *out;
    fs_obj_hdr_t *h = (fs_obj_hdr_t *)(void *)o;
    h->aux = (uint8_t)aux;
    h->n = lng ? FS_N_LONG : (uint32_t)n;
    if (lng)
        memcpy(o + sizeof *h, &n, 8);
    if (npre)
        memcpy(o + sizeof *h + lng, pre, npre);
    if (nbytes)
        memcpy(o + head, data, nbytes);
    return FS_OK;
}

/* The dedup table's key hash of a str. */
static inline uint64_t str_key(unsigned charsize, int64_t hash)
{ return mix64((uint64_t)hash ^ ((uint64_t)charsize << 56)); }

void fs_builder_prefetch_str(const fs_builder_t *b, unsigned charsize, int64_t hash)
{
    if (b->vals.slots != NULL && !b->no_dedup)
        __builtin_prefetch(&b->vals.slots[str_key(charsize, hash) & (b->vals.size - 1)]);
}

int fs_build_str(fs_builder_t *b, unsigned charsize, uint64_t length,
                 uint32_t maxchar, int64_t hash, const void *data, fs_ref_t *out)
{
    if (charsize != 1 && charsize != 2 && charsize != 4)
        return FS_EINVAL;
    int scanned = maxchar == FS_MAXCHAR_SCAN;
    if (scanned)
        maxchar = fs_str_scan_class(charsize, length, data);   /* class is all it needs */
    unsigned want = maxchar < 256 ? 1 : maxchar < 65536 ? 2 : 4;
    if (want != charsize || maxchar > 0x10ffff || (length && data == NULL))
        return FS_EINVAL;
    if (length >= SIZE_MAX / 4)
        return FS_ETOOBIG;
    /* Canonical form is what fs_image_check demands and what readers compare
    ** with memcmp: refuse a maxchar that is not the true maximum. */
    if (!scanned && fs_str_maxchar(charsize, length, data) != maxchar)
        return FS_EINVAL;
    if (b->base == NULL || b->finished)
        return FS_EINVAL;
    size_t nbytes = (size_t)length * charsize;
    if (b->no_dedup)
        return new_blob(b, FS_KIND_STR, maxchar < 128 ? FS_FLAG_ASCII : 0, charsize, length,
                        NULL, 0, data, nbytes, out);
    int err = vals_reserve(b);
    if (err)
        return err;
    uint64_t h = str_key(charsize, hash), slot = 0;
    fs_ref_t hit = vals_find(b, h, FS_KIND_STR, charsize, data, nbytes, &slot);
    if (hit) {
        b->dedup_hits++;
        *out = hit;
        return FS_OK;
    }
    err = new_blob(b, FS_KIND_STR, maxchar < 128 ? FS_FLAG_ASCII : 0, charsize, length,
                   NULL, 0, data, nbytes, out);
    if (!err) {
        dtab_put(&b->vals, slot, h, *out);
    }
    return err;
}

int fs_build_bytes(fs_builder_t *b, int kind, const void *data, uint64_t length, fs_ref_t *out)
{
    if ((kind != FS_KIND_BYTES && kind != FS_KIND_BYTEARRAY) || (length && data == NULL))
        return FS_EINVAL;
    if (length > SIZE_MAX / 2)
        return FS_ETOOBIG;
    if (b->base == NULL || b->finished)
        return FS_EINVAL;
    int dedup = kind == FS_KIND_BYTES && length <= FS_DEDUP_BYTES_MAX && !b->no_dedup;
    uint64_t h = 0, slot = 0;
    if (dedup) {
        int err = vals_reserve(b);
        if (err)
            return err;
        h = bytes_hash(data, length);
        fs_ref_t hit = vals_find(b, h, kind, 0, data, length, &slot);
        if (hit) {
            b->dedup_hits++;
            *out = hit;
            return FS_OK;
        }
    }
    int err = new_blob(b, kind, 0, 0, length, NULL, 0, data, (size_t)length, out);
    if (!err && dedup) {
        dtab_put(&b->vals, slot, h, *out);
    }
    return err;
}

int fs_build_seq(fs_builder_t *b, int kind, uint64_t count, fs_ref_t *out)
{
    if (kind != FS_KIND_TUPLE && kind != FS_KIND_LIST)
        return FS_EINVAL;
    size_t lng = count >= FS_N_LONG ? 8 : 0;
    size_t size = sized(count, sizeof(fs_ref_t), sizeof(fs_obj_hdr_t) + lng);
    if (size == SIZE_MAX)
        return FS_ETOOBIG;
    int err = new_object(b, kind, 0, size, out);
    if (!err) {
        uint8_t *o = b->base + *out;
        fs_obj_hdr_t *h = (fs_obj_hdr_t *)(void *)o;
        h->n = lng ? FS_N_LONG : (uint32_t)count;
        if (lng)
            memcpy(o + sizeof *h, &count, 8);
        fs_ref_t *items = (fs_ref_t *)(void *)(o + sizeof *h + lng);
        for (uint64_t i = 0; i < count; i++)
            items[i] = FS_REF_NONE;
    }
    return err;
}

void fs_build_seq_set(fs_builder_t *b, fs_ref_t seq, uint64_t i, fs_ref_t item)
{
    ((fs_ref_t *)(void *)fs_seq_items(fs_seq(b->base, seq)))[i] = item;
    note_ref(b, item);
}

/* ---- maps ---------------------------------------------------------------- */

/* The index size for count entries: 0 up to FS_MAP_SCAN_MAX (a lookup scans
** the hashes: no index), else the smallest power of two with count <=
** size * 2/3 and size >= count + 12 (see the header comment: every entry
** then lies within size probes). */
static uint64_t index_size_for(uint64_t count)
{
    if (count <= FS_MAP_SCAN_MAX)
        return 0;
    uint64_t n = 16;
    while (n * 2 < count * 3 || n < count + MAX_PROBE_LAG)
        n *= 2;
    return n;
}

static inline fs_map_t *map_at(fs_builder_t *b, fs_ref_t r)
{ return (fs_map_t *)(void *)(b->base + r); }

/* Entry e of unshaped map m: hash, key and (DICT) value, wide or narrow as
** m's flags say (the refs fit, when narrow: the caller checked). */
static void entry_put(fs_map_t *m, uint64_t e, int64_t hash, fs_ref_t key, fs_ref_t value)
{
    uint64_t *en = (uint64_t *)(uintptr_t)fs_keyset_entry(m, e);
    en[0] = (uint64_t)hash;
    if (fs_keyset_narrow(m))
        en[1] = (uint32_t)key | ((uint64_t)(uint32_t)value << 32);
    else {
        en[1] = key;
        if (m->h.kind == FS_KIND_DICT)
            en[2] = value;
    }
}

/* An unshaped map of count entries (hash 0, keys and values None), narrow
** entries when `narrow`, its index all empty. */
static int new_map(fs_builder_t *b, int kind, unsigned flags, uint64_t count, int narrow,
                   fs_ref_t *out)
{
    uint64_t isize = index_size_for(count);
    size_t per = kind == FS_KIND_DICT && !narrow ? 24 : 16;
    size_t size = sized(count, per, sizeof(fs_map_t));
    size_t idx = sized(isize, fs_index_width(count), 0);
    if (size == SIZE_MAX || idx == SIZE_MAX || size + idx < size)
        return FS_ETOOBIG;
    int err = new_object(b, kind, flags | (narrow ? FS_FLAG_NARROW : 0), size + idx, out);
    if (!err) {
        fs_map_t *m = map_at(b, *out);
        m->h.n = (uint32_t)count;
        m->index_size = (uint32_t)isize;
        for (uint64_t e = 0; e < count; e++)
            entry_put(m, e, 0, FS_REF_NONE, FS_REF_NONE);
        /* finish builds the index; until then lookups simply miss */
        memset((void *)(uintptr_t)fs_keyset_index(m), 0xff, idx);
    }
    return err;
}

int fs_build_map(fs_builder_t *b, int kind, unsigned flags, uint64_t count, fs_ref_t *out)
{
    if (kind != FS_KIND_DICT && kind != FS_KIND_SET && kind != FS_KIND_FROZENSET)
        return FS_EINVAL;
    if ((flags & ~(unsigned)FS_FLAG_FROZENDICT) ||
        (flags && kind != FS_KIND_DICT))
        return FS_EINVAL;
    if (count > FS_MAP_MAX)
        return FS_ETOOBIG;
    return new_map(b, kind, flags, count, 0, out);
}

void fs_build_map_set(fs_builder_t *b, fs_ref_t map, uint64_t i, int64_t hash,
                      fs_ref_t key, fs_ref_t value)
{
    fs_map_t *m = map_at(b, map);                /* never narrow: refs unknown */
    int dict = m->h.kind == FS_KIND_DICT;
    entry_put(m, i, hash, key, dict ? value : FS_REF_NONE);
    note_ref(b, key);
    if (dict)
        note_ref(b, value);
}


void fs_build_map_finish(fs_builder_t *b, fs_ref_t map)
{
    fs_map_reindex(map_at(b, map));    /* portable.c: shared with fs_image_rekey */
}

/* ---- records and typed buffers ------------------------------------------ */

int fs_build_rec(fs_builder_t *b, unsigned flavor, fs_ref_t *out)
{
    if (flavor < 1 || flavor > FS_REC__MAX)
        return FS_EINVAL;
    int err = new_object(b, FS_KIND_RECORD, 0, sizeof(fs_rec_t), out);
    if (!err) {
        fs_rec_t *r = (fs_rec_t *)(void *)(b->base + *out);
        r->h.aux = (uint8_t)flavor;
        r->cls = r->state = FS_REF_NONE;
    }
    return err;
}

void fs_build_rec_set(fs_builder_t *b, fs_ref_t rec, fs_ref_t cls, fs_ref_t state)
{
    fs_rec_t *r = (fs_rec_t *)(void *)(b->base + rec);
    r->cls = cls;
    r->state = state;
    note_ref(b, cls);
    note_ref(b, state);
}

uint32_t fs_buf_format_size(const char *f)
{
    int native = 1;
    if (*f == '@')
        f++;
    else if (*f == '<' || *f == '>' || *f == '=' || *f == '!') {
        native = 0;
        f++;
    }
    uint32_t scale = 1;
    if (*f == 'Z') {                       /* complex: two of the float type */
        scale = 2;
        f++;
        if (*f != 'f' && *f != 'd' && !(native && *f == 'g'))
            return 0;
    }
    if (f[0] == 0 || f[1] != 0)
        return 0;
    uint32_t n;
    switch (*f) {
    case '?': case 'b': case 'B': case 'c':  n = 1; break;
    case 'h': case 'H': case 'e':            n = 2; break;
    case 'i': case 'I': case 'f':            n = 4; break;
    case 'q': case 'Q': case 'd':            n = 8; break;
    case 'l': case 'L':                      n = native ? (uint32_t)sizeof(long) : 4; break;
    case 'n': case 'N':                      n = native ? (uint32_t)sizeof(size_t) : 0; break;
    case 'g':                                n = native ? (uint32_t)sizeof(long double) : 0; break;
    case 'u': case 'w':                      n = native ? 4 : 0; break;   /* wchar_t, Py_UCS4 */
    default:                                 n = 0; break;
    }
    return n * scale;
}

int fs_rec_value_class(const char *name, size_t n)
{
    static const char *const names[] = {
        "datetime:date", "datetime:time", "datetime:datetime", "datetime:timedelta",
        "datetime:timezone", "decimal:Decimal", "uuid:UUID", "fractions:Fraction",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i]) == n && memcmp(names[i], name, n) == 0)
            return 1;
    return 0;
}

int fs_build_buffer(fs_builder_t *b, unsigned source, const char *format, uint32_t itemsize,
                    unsigned ndim, const uint64_t *shape, const void *data, uint64_t nbytes,
                    fs_ref_t *out)
{
    size_t flen = strnlen(format, FS_BUF_FORMAT_MAX);
    if (source < 1 || source > FS_BUF__MAX || ndim > FS_BUF_MAX_NDIM ||
        flen == FS_BUF_FORMAT_MAX || itemsize == 0 || fs_buf_format_size(format) != itemsize ||
        (nbytes && data == NULL))
        return FS_EINVAL;
    uint64_t items = 1;
    for (unsigned d = 0; d < ndim; d++) {
        if (shape[d] && items > UINT64_MAX / shape[d])
            return FS_EINVAL;
        items *= shape[d];
    }
    if (items > UINT64_MAX / itemsize || items * itemsize != nbytes)
        return FS_EINVAL;
    size_t head = sizeof(fs_buf_t) + (size_t)ndim * 8;
    if (b->base != NULL && (b->used + head) % 16)
        head += 8;                         /* data 16-aligned in the image */
    if (nbytes > SIZE_MAX - head)
        return FS_ETOOBIG;
    int err = new_object_with(b, FS_KIND_BUFFER, 0, head + (size_t)nbytes, head,
                              (size_t)nbytes, out);
    if (err)
        return err;
    fs_buf_t *o = (fs_buf_t *)(void *)(b->base + *out);
    o->h.aux = (uint8_t)source;
    o->h.n = ndim;
    o->nbytes = nbytes;
    o->itemsize = itemsize;
    o->data_off = (uint32_t)head;
    memcpy(o->format, format, flen);
    for (unsigned d = 0; d < ndim; d++)
        o->shape[d] = shape[d];
    if (nbytes)
        memcpy(b->base + *out + head, data, (size_t)nbytes);
    return FS_OK;
}

/* ---- shapes: dicts with the same keys in the same order ------------------ */
/* shapes: open addressing over (hash of the key refs, owner dict ref), load
** <= 1/2, grown before the dict is appended. */

/* 1 if unshaped dict m's keys are keys[0 .. m's count). */
static int same_keys(const fs_map_t *m, const fs_ref_t *keys)
{
    for (uint64_t k = 0; k < m->h.n; k++)
        if (fs_keyset_key(m, k) != keys[k])
            return 0;
    return 1;
}

static uint64_t keys_hash(uint64_t count, const fs_ref_t *keys)
{
    uint64_t h = mix64(count);
    for (uint64_t i = 0; i < count; i++)
        h = mix64(h ^ keys[i]) + i;
    return h;
}

/* A shaped dict over the unshaped dict `owner`: its values `values`
** (narrow when all fit), or None when values is NULL. */
static int new_shaped(fs_builder_t *b, unsigned flags, fs_ref_t owner, const fs_ref_t *values,
                      fs_ref_t *out)
{
    if ((owner >> 3) > UINT32_MAX)             /* beyond what hdr.n can name */
        return FS_ETOOBIG;
    uint64_t count = map_at(b, owner)->h.n, nfloat = 0;
    int narrow = values != NULL;
    for (uint64_t k = 0; narrow && k < count; k++) {
        nfloat += fs_ref_tag(values[k]) == FS_TAG_FLOAT;
        narrow = fs_ref_tag(values[k]) == FS_TAG_FLOAT || fs_ref_fits_narrow(values[k]);
    }
    if (narrow && nfloat * 4 >= count)        /* boxes would cost more than */
        narrow = 0;                           /* the narrow refs save       */
    size_t size = sized(count, narrow ? 4 : sizeof(fs_ref_t), sizeof(fs_shaped_t));
    if (size == SIZE_MAX)
        return FS_ETOOBIG;
    if (narrow && b->used + size + nfloat * sizeof(fs_float_t) > UINT32_MAX)
        narrow = 0;                           /* the boxes must be narrow too */
    int err = new_object(b, FS_KIND_DICT, flags | FS_FLAG_SHAPED | (narrow ? FS_FLAG_NARROW : 0),
                         size, out);
    if (err)
        return err;
    fs_shaped_t *d = (fs_shaped_t *)(void *)(b->base + *out);
    d->h.n = (uint32_t)(owner >> 3);
    for (uint64_t k = 0; narrow && k < count; k++)   /* valid before the boxes */
        ((uint32_t *)(void *)d->values)[k] = (uint32_t)FS_REF_NONE;
    for (uint64_t k = 0; k < count; k++) {
        fs_ref_t v = values ? values[k] : FS_REF_NONE;
        if (narrow && fs_ref_tag(v) == FS_TAG_FLOAT) {
            /* Boxed after the dict (its header is written): a failure leaves
            ** a valid dict of None values behind, never a dangling ref. */
            fs_ref_t box;             /* not deduplicated: data rarely repeats a
                                         float, the table would cost a miss each */
            err = new_object(b, FS_KIND_FLOAT, 0, sizeof(fs_float_t), &box);
            if (err)
                return err;
            ((fs_float_t *)(void *)(b->base + box))->value = fs_ref_float(v);
            d = (fs_shaped_t *)(void *)(b->base + *out);   /* the image may move */
            v = box;
        }
        if (narrow)
            ((uint32_t *)(void *)d->values)[k] = (uint32_t)v;
        else
            d->values[k] = v;
        note_ref(b, fs_keyset_key(map_at(b, owner), k));   /* it refers to its keys */
        note_ref(b, v);
    }
    b->shaped++;
    return FS_OK;
}

int fs_build_dict_shape(fs_builder_t *b, unsigned flags, fs_ref_t dict, fs_ref_t *out)
{
    return fs_build_record_like(b, flags, dict, NULL, out);
}

int fs_build_record_like(fs_builder_t *b, unsigned flags, fs_ref_t dict,
                         const fs_ref_t *values, fs_ref_t *out)
{
    if ((flags & ~(unsigned)FS_FLAG_FROZENDICT) || b->base == NULL || b->finished ||
        fs_ref_tag(dict) != FS_TAG_OBJ || dict >= b->used)
        return FS_EINVAL;
    fs_map_t *m = map_at(b, dict);
    if (m->h.kind != FS_KIND_DICT || m->h.n == 0)
        return FS_EINVAL;
    /* An unshaped dict is a shape as soon as its keys are final: true of
    ** whatever fs_build_dict returned (fs_image.h). */
    fs_ref_t owner = fs_map_shaped(m) ? fs_map_shape(m) : dict;
    return new_shaped(b, flags, owner, values, out);
}

int fs_build_dict(fs_builder_t *b, unsigned flags, uint64_t count,
                  const int64_t *hashes, const fs_ref_t *keys, fs_ref_t *out)
{
    return fs_build_record(b, flags, count, hashes, keys, NULL, out);
}

int fs_build_record(fs_builder_t *b, unsigned flags, uint64_t count, const int64_t *hashes,
                    const fs_ref_t *keys, const fs_ref_t *values, fs_ref_t *out)
{
    if ((flags & ~(unsigned)FS_FLAG_FROZENDICT) || (count && (hashes == NULL || keys == NULL)))
        return FS_EINVAL;
    if (count > FS_MAP_MAX)
        return FS_ETOOBIG;
    if (b->base == NULL || b->finished)
        return FS_EINVAL;
    if (count == 0)
        return fs_build_map(b, FS_KIND_DICT, flags, 0, out);
    int err = dtab_reserve(&b->shapes, 64);
    if (err)
        return err;
    uint64_t h = keys_hash(count, keys), mask = b->shapes.size - 1, i = h & mask;
    for (; b->shapes.slots[i].ref8; i = (i + 1) & mask) {
        fs_ref_t owner = dslot_ref(&b->shapes.slots[i]);
        fs_map_t *m = map_at(b, owner);
        if (b->shapes.slots[i].h == (uint32_t)h && m->h.n == count && same_keys(m, keys))
            return new_shaped(b, flags, owner, values, out);
    }
    /* Not found: this dict is stored unshaped and becomes the shape for its
    ** key sequence from now on (unless it lies beyond 32 GiB, where shaped
    ** dicts could not name it). Narrow entries when every key and value is
    ** known and fits. */
    int narrow = values != NULL;
    for (uint64_t k = 0; narrow && k < count; k++)
        narrow = fs_ref_fits_narrow(keys[k]) && fs_ref_fits_narrow(values[k]);
    err = new_map(b, FS_KIND_DICT, flags, count, narrow, out);
    if (err)
        return err;
    fs_map_t *m = map_at(b, *out);
    for (uint64_t k = 0; k < count; k++) {
        entry_put(m, k, hashes[k], keys[k], values ? values[k] : FS_REF_NONE);
        note_ref(b, keys[k]);
        if (values)
            note_ref(b, values[k]);
    }
    fs_build_map_finish(b, *out);
    dtab_put(&b->shapes, i, h, *out);
    b->nshapes++;
    return FS_OK;
}

void fs_build_dict_value(fs_builder_t *b, fs_ref_t dict, uint64_t i, fs_ref_t value)
{
    fs_map_t *m = map_at(b, dict);             /* never narrow: values unknown */
    if (fs_map_shaped(m))
        ((fs_shaped_t *)(void *)m)->values[i] = value;
    else
        ((uint64_t *)(uintptr_t)fs_keyset_entry(m, i))[2] = value;
    note_ref(b, value);
}

void fs_builder_dedup(fs_builder_t *b, int on) { b->no_dedup = !on; }

void fs_builder_stats(const fs_builder_t *b, fs_build_stats_t *out)
{
    out->dedup_hits = b->dedup_hits;
    out->shapes = b->nshapes;
    out->shaped = b->shaped;
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
        (fs_ref_tag(target) == FS_TAG_CONST && (target >> 3) > 2))
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
    memset(h, 0, sizeof *h);
    memcpy(h->magic, FS_IMAGE_MAGIC, 8);
    h->version = FS_IMAGE_VERSION;
    h->byte_order = FS_BYTE_ORDER_LITTLE;
    h->word_size = 8;
    h->hash_domain = FS_HASH_PROCESS;
    h->header_size = FS_IMAGE_HEADER_SIZE;
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
