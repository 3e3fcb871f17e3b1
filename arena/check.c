/*
** check.c -- fs_image_check: prove that an untrusted image is well formed.
**
** Three passes, none recursive, none reading outside [image, image + size):
**   1. header: magic, version, flags, and the fixed layout
**        | header 80 | objects [80, objects_end) | imports | xrefs | = image_size
**      (image_size <= size; every sum and product overflow-checked).
**   2. object walk: from FS_IMAGE_HEADER_SIZE to objects_end, object by
**      object. Each object's size follows from its own header fields, and a
**      field is read only after its bytes were proven present. Object starts
**      are marked in a bitmap (one bit per 8-byte word, fs__calloc'd, size/64
**      bytes). Per kind: zero padding fields and known flags, canonical
**      strings (charsize minimal for maxchar, maxchar the true maximum and
**      <= 0x10FFFF, NUL terminator), minimal big ints that do not fit an
**      immediate, NUL-terminated bytes, map sizes (index_size 0 for an empty
**      map, else a power of two with count <= index_size * 2/3).
**   3. references: the root, every xref target's tag, and, for each object
**      start in the bitmap, every ref of a sequence or map entry is an
**      immediate, a constant 0..2, an xref < nxrefs (slot < nimports), or
**      the start of an object; set values are None; every map index slot is
**      -1 or an entry number < count, and every entry appears exactly once.
**      A second bitmap counts object references (the root's included): an
**      object referenced twice must carry FS_FLAG_SHARED.
**
** The object count must equal header.object_count. Accepted images are safe
** for the inline readers of fs_image.h: every offset they follow, every
** length they read and every index entry they dereference was proven in
** bounds here (tests/fuzz/fuzz_image.c holds the check to that). What is
** not checked: whether xref targets exist in the imported images (the
** region layer owns those), and whether each entry is reachable by its own
** hash (a misplaced entry is a missed lookup, never an out-of-bounds read).
*/
#include <string.h>

#include "fs_image.h"

typedef struct ck_s {
    const uint8_t *base;     /* image                                        */
    uint64_t       end;      /* objects_end                                  */
    uint32_t       nxrefs;   /* from the header                              */
    uint8_t       *starts;   /* bit per 8-byte word: an object starts there  */
    uint8_t       *refd;     /* same layout: referenced once already (pass 3) */
} ck_t;

#define BAD FS_ECORRUPT

static int is_start(const ck_t *c, uint64_t off)
{
    return (c->starts[off / 64] >> ((off / 8) % 8)) & 1;
}

/* A well-formed reference. Object references are also counted: a second one
** to an object without FS_FLAG_SHARED is corrupt (readers rely on the flag
** to find every object they must memoize, cycles included). */
static int ref_ok(ck_t *c, fs_ref_t r)
{
    switch (fs_ref_tag(r)) {
    case FS_TAG_OBJ: {
        if (r < FS_IMAGE_HEADER_SIZE || r >= c->end || !is_start(c, r))
            return 0;
        uint8_t bit = (uint8_t)(1u << ((r / 8) % 8));
        if ((c->refd[r / 64] & bit) && !fs_obj_shared(c->base, r))
            return 0;
        c->refd[r / 64] |= bit;
        return 1;
    }
    case FS_TAG_INT:   return 1;
    case FS_TAG_CONST: return (r >> 3) <= 2;
    case FS_TAG_XREF:  return (r >> 3) < c->nxrefs;
    default:           return 0;
    }
}

/* a * b + c <= limit, computed without overflow. */
static int fits(uint64_t a, uint64_t b, uint64_t c, uint64_t limit)
{
    if (c > limit)
        return 0;
    return b == 0 || a <= (limit - c) / b;
}

static int check_str(const fs_str_t *s)
{
    unsigned cs = s->charsize;
    if ((cs != 1 && cs != 2 && cs != 4) || s->maxchar > 0x10ffff)
        return BAD;
    unsigned want = s->maxchar < 256 ? 1 : s->maxchar < 65536 ? 2 : 4;
    if (cs != want ||
        (s->h.flags & ~FS_FLAG_SHARED) != (s->maxchar < 128 ? FS_FLAG_ASCII : 0))
        return BAD;
    uint64_t n = s->length;
    uint32_t max = 0, nul;
    if (cs == 1) {
        const uint8_t *d = s->data;
        for (uint64_t i = 0; i < n; i++)
            max = d[i] > max ? d[i] : max;
        nul = d[n];
    }
    else if (cs == 2) {
        const uint16_t *d = (const uint16_t *)(const void *)s->data;
        for (uint64_t i = 0; i < n; i++)
            max = d[i] > max ? d[i] : max;
        nul = d[n];
    }
    else {
        const uint32_t *d = (const uint32_t *)(const void *)s->data;
        for (uint64_t i = 0; i < n; i++)
            max = d[i] > max ? d[i] : max;
        nul = d[n];
    }
    return nul == 0 && max == s->maxchar ? FS_OK : BAD;
}

static int check_bigint(const fs_bigint_t *o)
{
    uint64_t n = o->nbytes;
    if (n == 0 || (o->h.flags & ~FS_FLAG_SHARED))
        return BAD;
    int neg = (o->data[n - 1] & 0x80) != 0;
    if (n > 1 && o->data[n - 1] == (neg ? 0xff : 0) && ((o->data[n - 2] & 0x80) != 0) == neg)
        return BAD;                                   /* not minimal */
    if (n <= 8) {
        uint64_t u = neg ? UINT64_MAX : 0;
        for (uint64_t i = 0; i < n; i++) {
            u &= ~((uint64_t)0xff << (8 * i));
            u |= (uint64_t)o->data[i] << (8 * i);
        }
        int64_t v = (int64_t)u;
        if (v >= FS_SMALL_INT_MIN && v <= FS_SMALL_INT_MAX)
            return BAD;                               /* must be an immediate */
    }
    return FS_OK;
}

/* Pass 2 for the object at off (8-aligned, < end): its size in *size. */
static int walk_object(const ck_t *c, uint64_t off, uint64_t *size)
{
    uint64_t room = c->end - off;
    const fs_obj_hdr_t *h = (const fs_obj_hdr_t *)(const void *)(c->base + off);
    if (room < sizeof *h || h->zero16 || h->zero32)
        return BAD;
    unsigned flags = h->flags & ~FS_FLAG_SHARED;      /* allowed on any kind */
    switch (h->kind) {
    case FS_KIND_FLOAT:
    case FS_KIND_COMPLEX:
        *size = h->kind == FS_KIND_FLOAT ? sizeof(fs_float_t) : sizeof(fs_complex_t);
        return flags == 0 && *size <= room ? FS_OK : BAD;
    case FS_KIND_INT: {
        const fs_bigint_t *o = (const void *)h;
        if (room < sizeof *o || !fits(o->nbytes, 1, sizeof *o, room))
            return BAD;
        *size = sizeof *o + o->nbytes;
        return check_bigint(o);
    }
    case FS_KIND_STR: {
        const fs_str_t *s = (const void *)h;
        if (room < sizeof *s || s->charsize == 0 || s->length == UINT64_MAX ||
            !fits(s->length + 1, s->charsize, sizeof *s, room) ||
            s->zero[0] || s->zero[1] || s->zero[2])
            return BAD;
        *size = sizeof *s + (s->length + 1) * s->charsize;
        return check_str(s);
    }
    case FS_KIND_BYTES:
    case FS_KIND_BYTEARRAY: {
        const fs_bytes_t *o = (const void *)h;
        if (flags || room < sizeof *o || o->length == UINT64_MAX ||
            !fits(o->length + 1, 1, sizeof *o, room))
            return BAD;
        *size = sizeof *o + o->length + 1;
        return o->data[o->length] == 0 ? FS_OK : BAD;
    }
    case FS_KIND_TUPLE:
    case FS_KIND_LIST: {
        const fs_seq_t *o = (const void *)h;
        if (flags || room < sizeof *o ||
            !fits(o->count, sizeof(fs_ref_t), sizeof *o, room))
            return BAD;
        *size = sizeof *o + o->count * sizeof(fs_ref_t);
        return FS_OK;
    }
    case FS_KIND_DICT:
    case FS_KIND_SET:
    case FS_KIND_FROZENSET: {
        const fs_map_t *m = (const void *)h;
        unsigned allowed = h->kind == FS_KIND_DICT ? FS_FLAG_FROZENDICT : 0;
        if ((flags & ~allowed) || room < sizeof *m || m->count > INT32_MAX)
            return BAD;
        uint64_t cnt = m->count, is = m->index_size;
        if (!fits(cnt, sizeof(fs_map_entry_t), sizeof *m, room))
            return BAD;
        uint64_t head = sizeof *m + cnt * sizeof(fs_map_entry_t);
        if (!fits(is, sizeof(int32_t), head, room))
            return BAD;
        /* is <= room / 4 < 2^62 here, so is * 2 cannot overflow */
        if (cnt == 0 ? is != 0 : ((is & (is - 1)) != 0 || cnt * 3 > is * 2))
            return BAD;
        *size = head + is * sizeof(int32_t);
        return FS_OK;
    }
    default:
        return BAD;
    }
}

/* Pass 3 for one object: its references and, for maps, the index. *seen is
** a scratch bitmap of *seen_cap bytes, grown here to one bit per entry. */
static int check_refs(ck_t *c, uint64_t off, uint8_t **seen, uint64_t *seen_cap)
{
    const fs_obj_hdr_t *h = (const fs_obj_hdr_t *)(const void *)(c->base + off);
    if (h->kind == FS_KIND_TUPLE || h->kind == FS_KIND_LIST) {
        const fs_seq_t *s = (const void *)h;
        for (uint64_t i = 0; i < s->count; i++)
            if (!ref_ok(c, s->items[i]))
                return BAD;
        return FS_OK;
    }
    if (h->kind != FS_KIND_DICT && h->kind != FS_KIND_SET && h->kind != FS_KIND_FROZENSET)
        return FS_OK;
    const fs_map_t *m = (const void *)h;
    for (uint64_t i = 0; i < m->count; i++) {
        const fs_map_entry_t *e = &m->entries[i];
        if (!ref_ok(c, e->key) || !ref_ok(c, e->value) ||
            (h->kind != FS_KIND_DICT && e->value != FS_REF_NONE))
            return BAD;
    }
    if (m->count == 0)
        return FS_OK;
    uint64_t need = m->count / 8 + 1;
    if (need > *seen_cap) {
        uint8_t *p = fs__realloc(*seen, need);
        if (p == NULL)
            return FS_ENOMEM;
        *seen = p;
        *seen_cap = need;
    }
    memset(*seen, 0, need);
    const int32_t *index = fs_map_index(m);
    uint64_t used = 0;
    for (uint64_t i = 0; i < m->index_size; i++) {
        int32_t e = index[i];
        if (e == -1)
            continue;
        if (e < 0 || (uint64_t)e >= m->count || ((*seen)[e / 8] >> (e % 8)) & 1)
            return BAD;                               /* out of range or twice */
        (*seen)[e / 8] |= (uint8_t)(1u << (e % 8));
        used++;
    }
    return used == m->count ? FS_OK : BAD;            /* each entry exactly once */
}

int fs_image_check(const void *image, size_t size)
{
    /* Pass 1: the header and the fixed layout. */
    if (image == NULL || size < FS_IMAGE_HEADER_SIZE || (uintptr_t)image % 8)
        return BAD;
    const fs_image_header_t *h = image;
    uint64_t n = h->image_size;
    if (memcmp(h->magic, FS_IMAGE_MAGIC, 8) || h->version != FS_IMAGE_VERSION || h->flags ||
        n > size || n < FS_IMAGE_HEADER_SIZE || n % 8)
        return BAD;
    uint64_t end = h->objects_end;
    if (end < FS_IMAGE_HEADER_SIZE || end > n || end % 8 || h->import_off != end ||
        !fits(h->nimports, sizeof(uint64_t), end, n) ||
        h->xref_off != end + (uint64_t)h->nimports * sizeof(uint64_t) ||
        !fits(h->nxrefs, sizeof(fs_xref_t), h->xref_off, n) ||
        h->xref_off + (uint64_t)h->nxrefs * sizeof(fs_xref_t) != n)
        return BAD;
    /* objects_end > 80 needs at least one object, and each is >= 16 bytes */
    if (h->object_count > (end - FS_IMAGE_HEADER_SIZE) / 16)
        return BAD;

    /* Pass 2: walk the objects, mark their starts. */
    ck_t c = { image, end, h->nxrefs, fs__calloc((size_t)(end / 64 + 1), 1),
               fs__calloc((size_t)(end / 64 + 1), 1) };
    if (c.starts == NULL || c.refd == NULL) {
        fs__free(c.starts);
        fs__free(c.refd);
        return FS_ENOMEM;
    }
    int err = BAD;
    uint8_t *seen = NULL;
    uint64_t seen_cap = 0, count = 0, off = FS_IMAGE_HEADER_SIZE, osize;
    while (off < end) {
        if (walk_object(&c, off, &osize) != FS_OK)
            goto done;
        c.starts[off / 64] |= (uint8_t)(1u << ((off / 8) % 8));
        count++;
        off += (osize + 7) & ~(uint64_t)7;            /* osize <= end - off */
        if (off > end)
            goto done;
    }
    if (count != h->object_count || !ref_ok(&c, h->root))
        goto done;

    /* Pass 3: xref entries, then the refs inside every container. */
    const fs_xref_t *x = (const fs_xref_t *)(const void *)((const uint8_t *)image + h->xref_off);
    for (uint32_t i = 0; i < h->nxrefs; i++) {
        fs_ref_t t = x[i].target;
        if (x[i].import_slot >= h->nimports || x[i].zero ||
            fs_ref_tag(t) == FS_TAG_XREF || fs_ref_tag(t) > FS_TAG_XREF ||
            (fs_ref_tag(t) == FS_TAG_CONST && (t >> 3) > 2))
            goto done;
    }
    for (uint64_t w = 0; w <= end / 64; w++) {
        for (unsigned bits = c.starts[w]; bits; bits &= bits - 1) {
            off = w * 64 + (uint64_t)__builtin_ctz(bits) * 8;
            if ((err = check_refs(&c, off, &seen, &seen_cap)) != FS_OK)
                goto done;
        }
    }
    err = FS_OK;
done:
    fs__free(seen);
    fs__free(c.starts);
    fs__free(c.refd);
    return err;
}
