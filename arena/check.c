/*
** check.c -- fs_image_check: prove that an untrusted image is well formed.
**
** Three passes, none recursive, none reading outside [image, image_size):
**   1. header: magic, version, the fixed layout
**        header | objects [80, objects_end) | imports | xrefs | = image_size
**   2. object walk: from the header to objects_end, object by object (each
**      object's size follows from its own header fields, every field read
**      only after its bytes were proven present), marking object starts in
**      a bitmap; per kind: canonical strings, minimal big ints, map sizes.
**   3. references: every ref in a sequence, map entry, xref target and the
**      root is an immediate, a constant, an xref < nxrefs, or the start of
**      an object; every map index slot is -1 or a distinct entry.
** Accepted images are safe for the inline readers of fs_image.h (the fuzz
** target tests/fuzz/fuzz_image.c holds the check to that).
*/
#include <string.h>

#include "fs_image.h"

typedef struct ck_s {
    const uint8_t *base;     /* image                                        */
    uint64_t       end;      /* objects_end                                  */
    uint32_t       nxrefs;   /* from the header                              */
    uint8_t       *starts;   /* bit per 8-byte word: an object starts there  */
} ck_t;

#define BAD FS_ECORRUPT

static int is_start(const ck_t *c, uint64_t off)
{
    return (c->starts[off / 64] >> ((off / 8) % 8)) & 1;
}

static int ref_ok(const ck_t *c, fs_ref_t r)
{
    switch (fs_ref_tag(r)) {
    case FS_TAG_OBJ:   return r >= FS_IMAGE_HEADER_SIZE && r < c->end && is_start(c, r);
    case FS_TAG_INT:   return 1;
    case FS_TAG_CONST: return (r >> 3) <= 2;
    case FS_TAG_XREF:  return (r >> 3) < c->nxrefs;
    default:           return 0;
    }
}

/* a * b + c <= limit, without overflow */
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
    if (cs != want || s->h.flags != (s->maxchar < 128 ? FS_FLAG_ASCII : 0))
        return BAD;
    uint32_t max = 0;
    for (uint64_t i = 0; i <= s->length; i++) {
        uint32_t ch = cs == 1 ? s->data[i]
                    : cs == 2 ? ((const uint16_t *)(const void *)s->data)[i]
                    : ((const uint32_t *)(const void *)s->data)[i];
        if (i == s->length)
            return ch == 0 ? (max == s->maxchar ? FS_OK : BAD) : BAD;
        if (ch > max)
            max = ch;
    }
    return BAD;
}

static int check_bigint(const fs_bigint_t *o)
{
    uint64_t n = o->nbytes;
    if (n == 0 || o->h.flags)
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

/* Pass 2 for one object at off: its total size into *size, or BAD. */
static int walk_object(const ck_t *c, uint64_t off, uint64_t *size)
{
    uint64_t room = c->end - off;
    const fs_obj_hdr_t *h = (const fs_obj_hdr_t *)(const void *)(c->base + off);
    if (room < sizeof *h || h->zero16 || h->zero32)
        return BAD;
    switch (h->kind) {
    case FS_KIND_FLOAT:
    case FS_KIND_COMPLEX:
        *size = h->kind == FS_KIND_FLOAT ? sizeof(fs_float_t) : sizeof(fs_complex_t);
        return h->flags == 0 && *size <= room ? FS_OK : BAD;
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
            !fits(s->length + 1, s->charsize, sizeof *s, room) || s->zero[0] || s->zero[1] || s->zero[2])
            return BAD;
        *size = sizeof *s + (s->length + 1) * s->charsize;
        return check_str(s);
    }
    case FS_KIND_BYTES:
    case FS_KIND_BYTEARRAY: {
        const fs_bytes_t *o = (const void *)h;
        if (h->flags || room < sizeof *o || o->length == UINT64_MAX ||
            !fits(o->length + 1, 1, sizeof *o, room))
            return BAD;
        *size = sizeof *o + o->length + 1;
        return o->data[o->length] == 0 ? FS_OK : BAD;
    }
    case FS_KIND_TUPLE:
    case FS_KIND_LIST: {
        const fs_seq_t *o = (const void *)h;
        if (h->flags || room < sizeof *o || !fits(o->count, sizeof(fs_ref_t), sizeof *o, room))
            return BAD;
        *size = sizeof *o + o->count * sizeof(fs_ref_t);
        return FS_OK;
    }
    case FS_KIND_DICT:
    case FS_KIND_SET:
    case FS_KIND_FROZENSET: {
        const fs_map_t *m = (const void *)h;
        unsigned allowed = h->kind == FS_KIND_DICT ? FS_FLAG_FROZENDICT : 0;
        if ((h->flags & ~allowed) || room < sizeof *m || m->count > INT32_MAX)
            return BAD;
        uint64_t is = m->index_size;
        if (m->count == 0 ? is != 0 : (is == 0 || (is & (is - 1)) || is > ((uint64_t)1 << 33) ||
                                      m->count * 3 > is * 2))
            return BAD;
        if (!fits(m->count, sizeof(fs_map_entry_t), sizeof *m, room) ||
            !fits(is, sizeof(int32_t), sizeof *m + m->count * sizeof(fs_map_entry_t), room))
            return BAD;
        *size = sizeof *m + m->count * sizeof(fs_map_entry_t) + is * sizeof(int32_t);
        return FS_OK;
    }
    default:
        return BAD;
    }
}

/* Pass 3 for one object: its references and, for maps, the index. */
static int check_refs(const ck_t *c, uint64_t off, uint8_t **seen, uint64_t *seen_cap)
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
            return BAD;
        (*seen)[e / 8] |= (uint8_t)(1u << (e % 8));
        used++;
    }
    return used == m->count ? FS_OK : BAD;
}

int fs_image_check(const void *image, size_t size)
{
    if (image == NULL || size < FS_IMAGE_HEADER_SIZE || (uintptr_t)image % 8)
        return BAD;
    const fs_image_header_t *h = image;
    uint64_t n = h->image_size;
    if (memcmp(h->magic, FS_IMAGE_MAGIC, 8) || h->version != FS_IMAGE_VERSION || h->flags ||
        n > size || n < FS_IMAGE_HEADER_SIZE || n % 8)
        return BAD;
    uint64_t end = h->objects_end;
    if (end < FS_IMAGE_HEADER_SIZE || end > n || end % 8 || h->import_off != end ||
        !fits(h->nimports, 8, end, n) || h->xref_off != end + (uint64_t)h->nimports * 8 ||
        !fits(h->nxrefs, sizeof(fs_xref_t), h->xref_off, n) ||
        h->xref_off + (uint64_t)h->nxrefs * sizeof(fs_xref_t) != n)
        return BAD;

    ck_t c = { image, end, h->nxrefs, fs__calloc(end / 64 + 1, 1) };
    if (c.starts == NULL)
        return FS_ENOMEM;
    int err = BAD;
    uint8_t *seen = NULL;
    uint64_t seen_cap = 0, count = 0, off = FS_IMAGE_HEADER_SIZE, osize;
    while (off < end) {
        if (walk_object(&c, off, &osize) != FS_OK)
            goto done;
        c.starts[off / 64] |= (uint8_t)(1u << ((off / 8) % 8));
        count++;
        off += (osize + 7) & ~(uint64_t)7;
        if (off > end)
            goto done;
    }
    if (count != h->object_count || !ref_ok(&c, h->root))
        goto done;
    const fs_xref_t *x = (const fs_xref_t *)(const void *)((const uint8_t *)image + h->xref_off);
    for (uint32_t i = 0; i < h->nxrefs; i++)
        if (x[i].import_slot >= h->nimports || x[i].zero || fs_ref_tag(x[i].target) > FS_TAG_CONST)
            goto done;
    for (off = FS_IMAGE_HEADER_SIZE; off < end; off += (osize + 7) & ~(uint64_t)7) {
        walk_object(&c, off, &osize);                 /* proven in pass 2 */
        if ((err = check_refs(&c, off, &seen, &seen_cap)) != FS_OK)
            goto done;
    }
    err = FS_OK;
done:
    fs__free(seen);
    fs__free(c.starts);
    return err;
}
