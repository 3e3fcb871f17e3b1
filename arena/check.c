/*
** check.c -- fs_image_check: prove that an untrusted image is well formed.
**
** Three passes, none recursive, none reading outside [image, image + size):
**   1. header: magic, version, byte order, word size, hash domain (and
**      its seed), zero fields, the checksum when there is one, and the
**      fixed layout
**        | header 128 | objects [128, objects_end) | imports | xrefs | = image_size
**      (image_size <= size; every sum and product overflow-checked). An image
**      of another version or platform is FS_EVERSION, anything else wrong
**      FS_ECORRUPT; *why names it.
**   2. object walk: from FS_IMAGE_HEADER_SIZE to objects_end, object by
**      object. Each object's size follows from its own header fields, and a
**      field is read only after its bytes were proven present. Object starts
**      are marked in a bitmap (one bit per 8-byte word, size/64 bytes), and
**      those with FS_FLAG_SHARED in another; with pass 3's two they are one
**      zeroed scratch block, interleaved (a reference's bits share a cache
**      line) and mapped for itself when large so that no heap keeps it).
**      Per kind: zero padding and reserved fields, known flags, lengths in
**      their shortest form (the u64 only for n >= FS_N_LONG),
**      canonical strings (charsize the smallest for the largest code point,
**      FS_FLAG_ASCII exactly when all are < 128, none above 0x10FFFF),
**      minimal big ints that do not fit an immediate, shaped
**      dicts whose shape (an earlier unshaped DICT) sizes them, map sizes (no index up
**      to FS_MAP_SCAN_MAX entries, else a power of two with count <=
**      index_size * 2/3), records of a known flavor, typed buffers of a
**      known source and format whose item size, shape, byte count and data
**      offset agree.
**   3. references: the root, every xref target's tag, and, for each object
**      start in the bitmap, every ref of a sequence, map or record (its class
**      name a STR, its state of its flavor's kind) is an immediate, a
**      constant 0..2, an xref < nxrefs (slot < nimports), or the start of an
**      object; every map index slot is -1 or an entry number < count, and
**      every entry appears exactly once. A second bitmap counts object
**      references (the root's included, a shaped dict counting one for each
**      key of its shape -- the first dict of a shape only: a third count
**      proves nothing a second did not): an object referenced twice must
**      carry FS_FLAG_SHARED.
**
** Work is linear in the image size: each object is walked once, each
** reference counted once per place that holds it (a shape's keys once for
** the shape and once for its first shaped dict).
** The object count must equal header.object_count. Accepted images are safe
** for the inline readers of fs_image.h: every offset they follow, every
** length they read and every index entry they dereference was proven in
** bounds here (tests/fuzz/fuzz_image.c holds the check to that). What is
** not checked: whether xref targets exist in the imported images (the
** region layer owns those), and whether each entry is reachable by its own
** hash (a misplaced entry is a missed lookup, never an out-of-bounds read).
*/
#include <string.h>
#include <sys/mman.h>

#include "fs_image.h"

typedef struct ck_s {
    const uint8_t *base;     /* image                                        */
    uint64_t       end;      /* objects_end                                  */
    uint32_t       nxrefs;   /* from the header                              */
    uint8_t       *bm;       /* the bitmaps, one bit per 8-byte word of the
                                image, interleaved: for each 64 image bytes
                                one byte of each (BM_*), so that everything
                                a reference needs is in one cache line     */
    const char    *why;      /* the first defect found                       */
} ck_t;

/* Record the defect and return FS_ECORRUPT. */
#define BAD(c, msg) ((c)->why = (msg), FS_ECORRUPT)

enum {
    BM_START = 0,            /* an object starts there (pass 2)             */
    BM_SHARED = 1,           /* ... and carries FS_FLAG_SHARED (pass 2)     */
    BM_REFD = 2,             /* referenced once already (pass 3)            */
    BM_COUNTED = 3,          /* a shape whose keys a shaped dict counted (3) */
    BM_N = 4
};
#define BM_BYTE(c, which, off) ((c)->bm[((off) / 64) * BM_N + (which)])
#define BM_BIT(off) ((uint8_t)(1u << (((off) / 8) % 8)))

static int is_start(const ck_t *c, uint64_t off)
{
    return (BM_BYTE(c, BM_START, off) & BM_BIT(off)) != 0;
}

/* A well-formed reference. Object references are also counted: a second one
** to an object without FS_FLAG_SHARED is corrupt (readers rely on the flag
** to find every object they must memoize, cycles included). */
static inline int ref_ok(ck_t *c, fs_ref_t r)
{
    switch (fs_ref_tag(r)) {
    case FS_TAG_OBJ: {
        if (r < FS_IMAGE_HEADER_SIZE || r >= c->end || !is_start(c, r)) {
            c->why = "a reference points outside the objects or between them";
            return 0;
        }
        uint8_t bit = BM_BIT(r);
        if ((BM_BYTE(c, BM_REFD, r) & bit) && !(BM_BYTE(c, BM_SHARED, r) & bit)) {
            c->why = "an object referenced twice lacks FS_FLAG_SHARED";
            return 0;
        }
        BM_BYTE(c, BM_REFD, r) |= bit;
        return 1;
    }
    case FS_TAG_INT:   return 1;
    case FS_TAG_CONST:
        if ((r >> 3) <= 2)
            return 1;
        c->why = "an unknown constant";
        return 0;
    case FS_TAG_XREF:
        if ((r >> 3) < c->nxrefs)
            return 1;
        c->why = "an xref beyond the xref table";
        return 0;
    default:                                          /* FS_TAG_FLOAT */
        return 1;
    }
}

/* a * b + c <= limit, computed without overflow. */
static int fits(uint64_t a, uint64_t b, uint64_t c, uint64_t limit)
{
    if (c > limit)
        return 0;
    return b == 0 || a <= (limit - c) / b;
}

static int check_bigint(ck_t *c, const fs_bigint_t *o)
{
    uint64_t n = o->h.n;
    int neg = (o->data[n - 1] & 0x80) != 0;
    if (n > 1 && o->data[n - 1] == (neg ? 0xff : 0) && ((o->data[n - 2] & 0x80) != 0) == neg)
        return BAD(c, "a big int that is not minimal");
    if (n <= 8) {
        uint64_t u = neg ? UINT64_MAX : 0;
        for (uint64_t i = 0; i < n; i++) {
            u &= ~((uint64_t)0xff << (8 * i));
            u |= (uint64_t)o->data[i] << (8 * i);
        }
        int64_t v = (int64_t)u;
        if (v >= FS_SMALL_INT_MIN && v <= FS_SMALL_INT_MAX)
            return BAD(c, "a big int that fits an immediate");
    }
    return FS_OK;
}

/* The length of a STR, BYTES or sequence at h, given `room` bytes from h:
** *n, and *body, the bytes before its payload. 0 if malformed. */
static int blob_len(ck_t *c, const fs_obj_hdr_t *h, uint64_t room, uint64_t *n, uint64_t *body)
{
    *body = sizeof *h;
    *n = h->n;
    if (h->n != FS_N_LONG)
        return 1;
    if (room < sizeof *h + 8) {
        c->why = "an object runs past the end of the objects";
        return 0;
    }
    memcpy(n, h + 1, 8);
    *body += 8;
    if (*n < FS_N_LONG) {
        c->why = "a long length that fits the header";
        return 0;
    }
    return 1;
}

/* Pass 2 for a BUFFER at off with room bytes to the end of the objects. */
static int walk_buffer(ck_t *c, uint64_t off, const fs_buf_t *b, uint64_t room, uint64_t *size)
{
    const char *past = "an object runs past the end of the objects";
    if (room < sizeof *b)
        return BAD(c, past);
    uint64_t ndim = b->h.n, head = sizeof *b + ndim * 8;
    if ((b->h.flags & ~FS_FLAG_SHARED) || b->h.aux < 1 || b->h.aux > FS_BUF__MAX ||
        ndim > FS_BUF_MAX_NDIM)
        return BAD(c, "a buffer of unknown source, with flags or too many dimensions");
    if (room < head)
        return BAD(c, past);
    size_t flen = strnlen(b->format, FS_BUF_FORMAT_MAX);
    for (size_t i = flen; i < FS_BUF_FORMAT_MAX; i++)
        if (b->format[i])
            return BAD(c, "a buffer format that is not NUL-terminated and padded");
    if (b->itemsize == 0 || fs_buf_format_size(b->format) != b->itemsize)
        return BAD(c, "a buffer of an unknown format or a wrong item size");
    uint64_t items = 1;
    for (uint64_t d = 0; d < ndim; d++) {
        if (b->shape[d] >= (UINT64_C(1) << 62) || (b->shape[d] && items > UINT64_MAX / b->shape[d]))
            return BAD(c, "a buffer shape that overflows");
        items *= b->shape[d];
    }
    if (items > UINT64_MAX / b->itemsize || items * b->itemsize != b->nbytes ||
        b->nbytes >= (UINT64_C(1) << 62))
        return BAD(c, "a buffer whose size disagrees with its shape");
    uint64_t want = (off + head) % 16 ? head + 8 : head;
    if (b->data_off != want)
        return BAD(c, "a buffer whose data is not where its header puts it");
    if (want > head && *(const uint64_t *)(const void *)((const uint8_t *)b + head))
        return BAD(c, "padding after an object is not zero");
    if (!fits(b->nbytes, 1, want, room))
        return BAD(c, past);
    *size = want + b->nbytes;
    return FS_OK;
}

/* Pass 3 for a RECORD: cls a STR, state an object of its flavor's kind
** (FLAG: any reference), both of this image. */
static int check_record(ck_t *c, const fs_rec_t *r)
{
    static const int want[FS_REC__MAX + 1] = {
        [FS_REC_FIELDS] = FS_KIND_DICT, [FS_REC_TUPLE] = FS_KIND_TUPLE,
        [FS_REC_MEMBER] = FS_KIND_STR, [FS_REC_FLAG] = 0, [FS_REC_VALUE] = FS_KIND_TUPLE,
    };
    if (fs_ref_tag(r->cls) != FS_TAG_OBJ)
        return BAD(c, "a record whose class name is not a str of its image");
    if (!ref_ok(c, r->cls))
        return FS_ECORRUPT;
    if (fs_ref_kind(c->base, r->cls) != FS_KIND_STR)
        return BAD(c, "a record whose class name is not a str of its image");
    int k = want[r->h.aux];
    if (k != 0 && fs_ref_tag(r->state) != FS_TAG_OBJ)
        return BAD(c, "a record whose state is not of its flavor's kind");
    if (!ref_ok(c, r->state))
        return FS_ECORRUPT;
    if (k != 0 && fs_ref_kind(c->base, r->state) != k)
        return BAD(c, "a record whose state is not of its flavor's kind");
    return FS_OK;
}

/* Pass 2 for the object at off (8-aligned, < end): its size in *size. */
static int walk_object(ck_t *c, uint64_t off, uint64_t *size)
{
    uint64_t room = c->end - off, n, body;
    const fs_obj_hdr_t *h = (const fs_obj_hdr_t *)(const void *)(c->base + off);
    const char *past = "an object runs past the end of the objects";
    if (room < sizeof *h)
        return BAD(c, past);
    if (h->zero8 || (h->aux && h->kind != FS_KIND_STR && h->kind != FS_KIND_RECORD &&
                     h->kind != FS_KIND_BUFFER))
        return BAD(c, "a reserved object header field is not zero");
    unsigned flags = h->flags & ~FS_FLAG_SHARED;      /* allowed on any kind */
    switch (h->kind) {
    case FS_KIND_FLOAT:
    case FS_KIND_COMPLEX:
        *size = h->kind == FS_KIND_FLOAT ? sizeof(fs_float_t) : sizeof(fs_complex_t);
        if (flags || h->n)
            return BAD(c, "a float with flags or a length");
        if (*size > room)
            return BAD(c, past);
        return FS_OK;                  /* any value: narrow dicts box immediates */
    case FS_KIND_INT: {
        const fs_bigint_t *o = (const void *)h;
        if (flags || h->n == 0 || h->n == FS_N_LONG)
            return BAD(c, "a big int of no bytes or with flags");
        if (!fits(h->n, 1, sizeof *o, room))
            return BAD(c, past);
        *size = sizeof *o + h->n;
        return check_bigint(c, o);
    }
    case FS_KIND_STR: {
        unsigned cs = h->aux;
        if (cs != 1 && cs != 2 && cs != 4)
            return BAD(c, "a str of charsize other than 1, 2, 4");
        if (!blob_len(c, h, room, &n, &body))
            return FS_ECORRUPT;
        if (!fits(n, cs, body, room))
            return BAD(c, past);
        *size = body + n * cs;
        /* canonical: the smallest charsize for the largest code point */
        uint32_t max = fs_str_scan_class(cs, n, (const uint8_t *)h + body);
        unsigned want = max < 256 ? 1 : max < 65536 ? 2 : 4;
        if (max > 0x10ffff || cs != want)
            return BAD(c, "a str not in canonical form");
        if (flags != (max < 128 ? FS_FLAG_ASCII : 0u))
            return BAD(c, "a str whose ASCII flag is wrong");
        return FS_OK;
    }
    case FS_KIND_BYTES:
    case FS_KIND_BYTEARRAY:
        if (flags)
            return BAD(c, "bytes with flags");
        if (!blob_len(c, h, room, &n, &body))
            return FS_ECORRUPT;
        if (!fits(n, 1, body, room))
            return BAD(c, past);
        *size = body + n;
        return FS_OK;
    case FS_KIND_TUPLE:
    case FS_KIND_LIST:
        if (flags)
            return BAD(c, "a sequence with flags");
        if (!blob_len(c, h, room, &n, &body))
            return FS_ECORRUPT;
        if (!fits(n, sizeof(fs_ref_t), body, room))
            return BAD(c, past);
        *size = body + n * sizeof(fs_ref_t);
        return FS_OK;
    case FS_KIND_DICT:
    case FS_KIND_SET:
    case FS_KIND_FROZENSET: {
        const fs_map_t *m = (const void *)h;
        int dict = h->kind == FS_KIND_DICT;
        unsigned allowed = dict ? FS_FLAG_FROZENDICT | FS_FLAG_SHAPED | FS_FLAG_NARROW : 0;
        if (flags & ~allowed)
            return BAD(c, "a map with unknown flags");
        uint64_t cnt = h->n;
        if (flags & FS_FLAG_SHAPED) {
            /* The shape precedes its users (the builder makes it first), so
            ** it was walked already: its count sizes this dict. */
            fs_ref_t sh = fs_map_shape(m);
            if (sh < FS_IMAGE_HEADER_SIZE || sh >= off || !is_start(c, sh))
                return BAD(c, "a shape reference that is not an earlier object");
            const fs_map_t *ks = fs_map(c->base, sh);
            if (ks->h.kind != FS_KIND_DICT || fs_map_shaped(ks) || ks->h.n == 0)
                return BAD(c, "a shape that is not an unshaped, non-empty dict");
            cnt = ks->h.n;
            uint64_t w = flags & FS_FLAG_NARROW ? 4 : sizeof(fs_ref_t);
            if (!fits(cnt, w, sizeof(fs_shaped_t), room))
                return BAD(c, past);
            *size = sizeof(fs_shaped_t) + cnt * w;
            return FS_OK;
        }
        if (cnt > FS_MAP_MAX)
            return BAD(c, "a map beyond FS_MAP_MAX entries");
        if (room < sizeof *m)
            return BAD(c, past);
        uint64_t is = m->index_size, w = fs_index_width(cnt);
        if (m->zero32)
            return BAD(c, "a reserved map field is not zero");
        if (cnt <= FS_MAP_SCAN_MAX ? is != 0 : ((is & (is - 1)) != 0 || cnt * 3 > is * 2))
            return BAD(c, "a map index of the wrong size");
        uint64_t per = fs_keyset_entry_size(m);
        if (!fits(cnt, per, sizeof *m, room))
            return BAD(c, past);
        uint64_t head = sizeof *m + cnt * per;
        if (!fits(is, w, head, room))
            return BAD(c, past);
        *size = head + is * w;
        return FS_OK;
    }
    case FS_KIND_RECORD:
        if (flags || h->n || h->aux < 1 || h->aux > FS_REC__MAX)
            return BAD(c, "a record of unknown flavor, with flags or a length");
        if (room < sizeof(fs_rec_t))
            return BAD(c, past);
        *size = sizeof(fs_rec_t);
        return FS_OK;
    case FS_KIND_BUFFER:
        return walk_buffer(c, off, (const fs_buf_t *)(const void *)h, room, size);
    default:
        return BAD(c, "an object of unknown kind");
    }
}

/* Pass 3 for one object: its references and, for maps, the index. *seen is
** a scratch bitmap of *seen_cap bytes, grown here to one bit per entry. */
static int check_refs(ck_t *c, uint64_t off, uint8_t **seen, uint64_t *seen_cap)
{
    const fs_obj_hdr_t *h = (const fs_obj_hdr_t *)(const void *)(c->base + off);
    if (h->kind == FS_KIND_TUPLE || h->kind == FS_KIND_LIST) {
        const fs_seq_t *s = (const void *)h;
        const fs_ref_t *items = fs_seq_items(s);
        for (uint64_t i = 0, n = fs_seq_count(s); i < n; i++)
            if (!ref_ok(c, items[i]))
                return FS_ECORRUPT;
        return FS_OK;
    }
    if (h->kind == FS_KIND_RECORD)
        return check_record(c, (const fs_rec_t *)(const void *)h);
    if (h->kind != FS_KIND_DICT && h->kind != FS_KIND_SET && h->kind != FS_KIND_FROZENSET)
        return FS_OK;
    const fs_map_t *m = (const void *)h;
    uint64_t n = h->n;
    if (fs_map_shaped(m)) {
        fs_ref_t sh = fs_map_shape(m);
        const fs_map_t *ks = fs_map(c->base, sh);                /* proven in pass 2 */
        n = ks->h.n;
        /* The keys count once per shaped dict, but a third count of an
        ** object proves nothing a second did not (FS_FLAG_SHARED): only the
        ** first dict of each shape counts them. */
        if (!(BM_BYTE(c, BM_COUNTED, sh) & BM_BIT(sh))) {
            BM_BYTE(c, BM_COUNTED, sh) |= BM_BIT(sh);
            for (uint64_t i = 0; i < n; i++)
                if (!ref_ok(c, fs_keyset_key(ks, i)))
                    return FS_ECORRUPT;
        }
        if (h->flags & FS_FLAG_NARROW) {
            const uint32_t *nv = (const uint32_t *)(const void *)((const fs_shaped_t *)(const void *)m)->values;
            for (uint64_t i = 0; i < n; i++) {
                if (nv[i] & FS_TAG_FLOAT)
                    return BAD(c, "a narrow reference with a float tag");
                if (!ref_ok(c, fs_ref_widen(nv[i])))
                    return FS_ECORRUPT;
            }
            return FS_OK;
        }
        const fs_ref_t *v = ((const fs_shaped_t *)(const void *)m)->values;
        for (uint64_t i = 0; i < n; i++)
            if (!ref_ok(c, v[i]))
                return FS_ECORRUPT;
        return FS_OK;
    }
    int dict = h->kind == FS_KIND_DICT, narrow = fs_keyset_narrow(m);
    for (uint64_t i = 0; i < n; i++) {
        const uint64_t *en = fs_keyset_entry(m, i);
        if (narrow && ((en[1] & FS_TAG_FLOAT) || ((en[1] >> 32) & FS_TAG_FLOAT)))
            return BAD(c, "a narrow reference with a float tag");
        if (!ref_ok(c, fs_keyset_key(m, i)) || (dict && !ref_ok(c, fs_map_value(m, i))))
            return FS_ECORRUPT;
    }
    if (m->index_size == 0)
        return FS_OK;
    uint64_t need = n / 8 + 1;
    if (need > *seen_cap) {
        uint8_t *p = fs__realloc(*seen, need);
        if (p == NULL)
            return FS_ENOMEM;
        *seen = p;
        *seen_cap = need;
    }
    memset(*seen, 0, need);
    const void *index = fs_keyset_index(m);
    unsigned w = fs_index_width(n);
    uint64_t used = 0;
    for (uint64_t i = 0; i < m->index_size; i++) {
        int64_t e = fs_index_slot(index, w, i);
        if (e == -1)
            continue;
        if (e < 0 || (uint64_t)e >= n || ((*seen)[e / 8] >> (e % 8)) & 1)
            return BAD(c, "a map index slot out of range or repeated");
        (*seen)[e / 8] |= (uint8_t)(1u << (e % 8));
        used++;
    }
    return used == n ? FS_OK : BAD(c, "a map entry missing from its index");
}

/* Pass 1. FS_OK, FS_EVERSION or FS_ECORRUPT with *why. */
static int check_header(const fs_image_header_t *h, size_t size, int checksum, const char **why)
{
    if (memcmp(h->magic, FS_IMAGE_MAGIC_V1, 8) == 0) {
        *why = "format version 1 (this reader reads version 2)";
        return FS_EVERSION;
    }
    if (memcmp(h->magic, FS_IMAGE_MAGIC, 8) != 0) {
        *why = "not a frozenshare image (bad magic)";
        return FS_ECORRUPT;
    }
    if (h->byte_order != FS_BYTE_ORDER_LITTLE) {
        *why = h->byte_order == FS_BYTE_ORDER_BIG ? "a big-endian image (this reader is little-endian)"
                                                  : "an unknown byte order";
        return FS_EVERSION;
    }
    if (h->word_size != 8) {
        *why = "an image of another word size (this reader is 64-bit)";
        return FS_EVERSION;
    }
    if (h->version != FS_IMAGE_VERSION) {
        *why = "another format version (this reader reads version 2)";
        return FS_EVERSION;
    }
    if (h->hash_domain != FS_HASH_PROCESS && h->hash_domain != FS_HASH_KEYED) {
        *why = "an unknown hash domain";
        return FS_EVERSION;
    }
    static const uint8_t zero16[16];
    int keyed = h->hash_domain == FS_HASH_KEYED;
    if (h->header_size != FS_IMAGE_HEADER_SIZE || h->flags || h->zero8 || h->zero64[0] ||
        h->zero64[1] || memcmp(h->hash_key + (keyed ? 8 : 0), zero16, keyed ? 8 : 16) ||
        (keyed && h->hash_check != -1) || (h->checksum_kind == 0 && h->checksum)) {
        *why = "reserved header fields are not zero";
        return FS_ECORRUPT;
    }
    if (h->checksum_kind > FS_CHECKSUM_XXH3) {
        *why = "an unknown checksum kind";
        return FS_EVERSION;
    }
    uint64_t n = h->image_size;
    if (n > size) {
        *why = "truncated: the header's image_size exceeds the buffer";
        return FS_ECORRUPT;
    }
    uint64_t end = h->objects_end;
    if (n < FS_IMAGE_HEADER_SIZE || n % 8 || end < FS_IMAGE_HEADER_SIZE || end > n ||
        end % 8 || h->import_off != end ||
        !fits(h->nimports, sizeof(uint64_t), end, n) ||
        h->xref_off != end + (uint64_t)h->nimports * sizeof(uint64_t) ||
        !fits(h->nxrefs, sizeof(fs_xref_t), h->xref_off, n) ||
        h->xref_off + (uint64_t)h->nxrefs * sizeof(fs_xref_t) != n) {
        *why = "the header's layout fields disagree";
        return FS_ECORRUPT;
    }
    /* every object is at least 8 bytes */
    if (h->object_count > (end - FS_IMAGE_HEADER_SIZE) / 8) {
        *why = "object_count is larger than the objects could hold";
        return FS_ECORRUPT;
    }
    if (checksum && h->checksum_kind == FS_CHECKSUM_XXH3 &&
        fs_image_checksum(h, (size_t)n) != h->checksum) {
        *why = "the checksum does not match the image (damaged or changed)";
        return FS_ECORRUPT;
    }
    return FS_OK;
}

/* The bitmaps, zeroed: size/16 bytes for an image of size bytes. From the
** C library below SCRATCH_MMAP, else mapped and unmapped here: a heap
** whose mmap threshold has risen (glibc raises it after freeing a mapped
** block) would keep that memory as the process's own after every check --
** ~5% of each image a process loads (seen in Ray workers). */
#define SCRATCH_MMAP (64u * 1024)
static uint8_t *scratch_alloc(size_t n)
{
    if (n < SCRATCH_MMAP)
        return fs__calloc(n, 1);
    if (fs__alloc_should_fail())
        return NULL;
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void scratch_free(uint8_t *p, size_t n)
{
    if (n < SCRATCH_MMAP)
        fs__free(p);
    else
        munmap(p, n);
}

/* The checks both entry points start with. */
static int check_start(const void *image, size_t size, int checksum, const char **why)
{
    *why = NULL;
    if (image == NULL || size < FS_IMAGE_HEADER_SIZE || (uintptr_t)image % 8) {
        *why = image == NULL || (uintptr_t)image % 8 ? "not an 8-byte aligned buffer"
                                                     : "truncated: shorter than a header";
        return FS_ECORRUPT;
    }
    return check_header(image, size, checksum, why);
}

int fs_image_check_header(const void *image, size_t size, const char **why)
{
    const char *dummy;
    return check_start(image, size, 0, why != NULL ? why : &dummy);
}

int fs_image_check_why(const void *image, size_t size, const char **why)
{
    const char *dummy;
    if (why == NULL)
        why = &dummy;
    const fs_image_header_t *h = image;
    int err = check_start(image, size, 1, why);
    if (err)
        return err;
    uint64_t end = h->objects_end;

    /* Pass 2: walk the objects, mark their starts. */
    size_t bits = (size_t)(end / 64 + 1);
    uint8_t *scratch = scratch_alloc(BM_N * bits);
    if (scratch == NULL)
        return FS_ENOMEM;
    ck_t c = { .base = image, .end = end, .nxrefs = h->nxrefs, .bm = scratch, .why = NULL };
    err = FS_ECORRUPT;
    uint8_t *seen = NULL;
    uint64_t seen_cap = 0, count = 0, off = FS_IMAGE_HEADER_SIZE, osize;
    while (off < end) {
        if (walk_object(&c, off, &osize) != FS_OK)
            goto done;
        BM_BYTE(&c, BM_START, off) |= BM_BIT(off);
        if (c.base[off + 1] & FS_FLAG_SHARED)            /* the object's flags */
            BM_BYTE(&c, BM_SHARED, off) |= BM_BIT(off);
        count++;
        uint64_t next = off + ((osize + 7) & ~(uint64_t)7);   /* osize <= end - off */
        if (next > end) {
            c.why = "an object runs past the end of the objects";
            goto done;
        }
        unsigned pad = (unsigned)(next - off - osize);   /* 0..7, in the last word */
        if (pad) {
            uint64_t last;                    /* little-endian: padding is its top bytes */
            memcpy(&last, c.base + next - 8, 8);
            if (last >> (64 - 8 * pad)) {
                c.why = "padding after an object is not zero";
                goto done;
            }
        }
        off = next;
    }
    if (count != h->object_count) {
        c.why = "object_count disagrees with the objects";
        goto done;
    }
    if (!ref_ok(&c, h->root))
        goto done;

    /* Pass 3: xref entries, then the refs inside every container. */
    const fs_xref_t *x = (const fs_xref_t *)(const void *)((const uint8_t *)image + h->xref_off);
    for (uint32_t i = 0; i < h->nxrefs; i++) {
        fs_ref_t t = x[i].target;
        if (x[i].import_slot >= h->nimports || x[i].zero ||
            fs_ref_tag(t) == FS_TAG_XREF ||
            (fs_ref_tag(t) == FS_TAG_CONST && (t >> 3) > 2)) {
            c.why = "a malformed xref entry";
            goto done;
        }
    }
    for (uint64_t w = 0; w <= end / 64; w++) {
        for (unsigned bits = c.bm[w * BM_N + BM_START]; bits; bits &= bits - 1) {
            off = w * 64 + (uint64_t)__builtin_ctz(bits) * 8;
            if ((err = check_refs(&c, off, &seen, &seen_cap)) != FS_OK)
                goto done;
        }
    }
    err = FS_OK;
done:
    if (err == FS_ECORRUPT)
        *why = c.why ? c.why : "corrupt";
    fs__free(seen);
    scratch_free(scratch, BM_N * bits);
    return err;
}

int fs_image_check(const void *image, size_t size)
{
    return fs_image_check_why(image, size, NULL);
}
