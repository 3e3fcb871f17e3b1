/*
** json.c -- JSON text -> image (fs_json.h has the semantics).
**
**   yyjson document (values in document order: a container's children follow
**   it; unsafe_yyjson_get_next skips a whole subtree)
**       |
**   walk: an explicit stack of frames, one per array or object being filled
**       array  -> fs_build_seq, then its items in order
**       object -> its keys first (str: canonical form + the caller's hash),
**                 repeated keys merged (the last value wins at the first
**                 position), then fs_build_record (all values scalars: built
**                 complete, narrow where they fit) or fs_build_dict + a frame
**                 for its values; an object with the very keys of the last
**                 one (records) reuses its shape without hashing a key
**   a container is allocated before its children are converted, its ref set
**   in its parent at once: a frame yields to a child container's frame.
**
** Invariant: the builder's image is consistent after every step (every ref
** set points at an allocated object), so any failure just destroys it.
*/
#include <math.h>
#include <string.h>

#include "fs_json.h"
#include "yyjson.h"

#define LAST_KEYS 32             /* keys of the last object remembered       */
#define DEDUP_KEYS_MAX 64        /* keys of bigger objects skip value dedup  */

static void *yy_malloc(void *ctx, size_t n) { (void)ctx; return fs__malloc(n); }
static void *yy_realloc(void *ctx, void *p, size_t old, size_t n)
{ (void)ctx; (void)old; return fs__realloc(p, n); }
static void yy_free(void *ctx, void *p) { (void)ctx; fs__free(p); }
static const yyjson_alc yy_alc = { yy_malloc, yy_realloc, yy_free, NULL };

typedef struct jframe_s {
    yyjson_val  *next;       /* object: the next key; array: the next item */
    yyjson_val **vals;       /* object with repeated keys: entry i's value  */
    fs_ref_t     ref;
    uint64_t     i, n;       /* next entry or item; their count             */
    int          obj;
} jframe;

typedef struct jctx_s {
    fs_builder_t       *b;
    const fs_json_opts *o;
    fs_json_err        *err;
    jframe   *stack;
    size_t    depth, cap;
    int64_t  *hash;          /* an object's keys: hashes, refs, values ... */
    fs_ref_t *kref, *vref;
    yyjson_val **knode;      /* ... and their nodes                        */
    yyjson_val **vnode;      /* a complete object's value nodes ...        */
    int64_t  *vhash;         /* ... and their ASCII str values' hashes (or -1) */
    size_t    kcap;
    int32_t  *slots;         /* repeated-key detection: open addressing    */
    size_t    scap;
    uint32_t *ucs;           /* a non-ASCII str's code points ...          */
    uint8_t  *canon;         /* ... and canonical bytes                    */
    size_t    ucap;
    yyjson_val *lk[LAST_KEYS];   /* the last object's key nodes, in order  */
    size_t    lk_n;
    fs_ref_t  lk_dict;
    const char *pool;        /* the document's copy of the text (raw values
                                point into it: their offset is their position) */
} jctx;

static int bad(jctx *c, const char *msg, size_t pos)
{
    c->err->msg = msg;
    c->err->pos = pos;
    return FS_EINVAL;
}

/* Grow *p (elements of size elem) to hold n. FS_OK or FS_ENOMEM. */
static int reserve(void **p, size_t *cap, size_t n, size_t elem)
{
    if (n <= *cap)
        return FS_OK;
    size_t want = *cap * 2 > n ? *cap * 2 : n;
    void *q = fs__realloc(*p, want * elem);
    if (q == NULL)
        return FS_ENOMEM;
    *p = q;
    *cap = want;
    return FS_OK;
}

/* ---- scalars ------------------------------------------------------------ */

/* Decode n bytes of UTF-8 (encoded surrogates allowed: WTF-8) into cps:
** *len code points, *max the largest. FS_OK, or FS_EINVAL when malformed. */
static int decode_utf8(const uint8_t *p, size_t n, uint32_t *cps, size_t *len, uint32_t *max)
{
    size_t i = 0, k = 0;
    uint32_t m = 0;
    while (i < n) {
        uint32_t b0 = p[i], cp;
        size_t need;
        if (b0 < 0x80) { cps[k++] = b0; m = b0 > m ? b0 : m; i++; continue; }
        if ((b0 & 0xE0) == 0xC0)      { need = 2; cp = b0 & 0x1F; }
        else if ((b0 & 0xF0) == 0xE0) { need = 3; cp = b0 & 0x0F; }
        else if ((b0 & 0xF8) == 0xF0) { need = 4; cp = b0 & 0x07; }
        else return FS_EINVAL;
        if (n - i < need)
            return FS_EINVAL;
        for (size_t j = 1; j < need; j++) {
            if ((p[i + j] & 0xC0) != 0x80)
                return FS_EINVAL;
            cp = (cp << 6) | (p[i + j] & 0x3F);
        }
        static const uint32_t least[5] = { 0, 0, 0x80, 0x800, 0x10000 };
        if (cp < least[need] || cp > 0x10FFFF)
            return FS_EINVAL;                        /* overlong or too large */
        cps[k++] = cp;
        m = cp > m ? cp : m;
        i += need;
    }
    *len = k;
    *max = m;
    return FS_OK;
}

/* The str of n UTF-8 bytes at s, canonical, hashed by the caller's hash. */
static int build_str(jctx *c, const char *s, size_t n, fs_ref_t *out, int64_t *hash)
{
    if (fs_str_scan_class(1, n, s) < 128) {              /* ASCII: as it is */
        *hash = c->o->str_hash(s, n);
        return fs_build_str(c->b, 1, n, FS_MAXCHAR_SCAN, *hash, s, out);
    }
    int err = reserve((void **)&c->ucs, &c->ucap, n, sizeof *c->ucs);
    if (err == FS_OK) {
        void *q = fs__realloc(c->canon, c->ucap * 4);    /* canon: ucap * 4 bytes */
        if (q == NULL)
            err = FS_ENOMEM;
        else
            c->canon = q;
    }
    if (err != FS_OK)
        return err;
    size_t len;
    uint32_t max;
    if (decode_utf8((const uint8_t *)s, n, c->ucs, &len, &max) != FS_OK) {
        c->err->utf8 = 1;                  /* the caller decides, as for yyjson's */
        return bad(c, "invalid UTF-8 in a string", 0);
    }
    unsigned cs = max < 256 ? 1 : max < 65536 ? 2 : 4;
    for (size_t i = 0; i < len; i++) {
        if (cs == 1)
            c->canon[i] = (uint8_t)c->ucs[i];
        else if (cs == 2)
            ((uint16_t *)(void *)c->canon)[i] = (uint16_t)c->ucs[i];
        else
            ((uint32_t *)(void *)c->canon)[i] = c->ucs[i];
    }
    *hash = c->o->str_hash(c->canon, len * cs);
    return fs_build_str(c->b, cs, len, max, *hash, c->canon, out);
}

/* An int beyond 64 bits from its decimal text (s, n: optional '-', digits). */
static int build_bigint_text(jctx *c, const char *s, size_t n, fs_ref_t *out)
{
    int neg = n > 0 && s[0] == '-';
    const char *d = s + neg;
    size_t nd = n - (size_t)neg;
    if (c->o->int_max_digits && nd > c->o->int_max_digits)
        return bad(c, "an int of more digits than sys.get_int_max_str_digits() allows", 0);
    /* magnitude in base 2^32 limbs, little-endian: limbs = limbs * 10^9 + chunk */
    size_t cap = nd / 9 + 2, used = 1;
    uint32_t *limb = fs__calloc(cap, sizeof *limb);
    uint8_t *bytes = limb != NULL ? fs__malloc(cap * 4 + 1) : NULL;
    if (bytes == NULL) {
        fs__free(limb);
        return FS_ENOMEM;
    }
    for (size_t i = 0; i < nd;) {
        uint32_t chunk = 0, mul = 1;
        for (size_t j = 0; j < 9 && i < nd; j++, i++) {
            chunk = chunk * 10 + (uint32_t)(d[i] - '0');
            mul *= 10;
        }
        uint64_t carry = chunk;
        for (size_t k = 0; k < used; k++) {
            uint64_t v = (uint64_t)limb[k] * mul + carry;
            limb[k] = (uint32_t)v;
            carry = v >> 32;
        }
        if (carry)
            limb[used++] = (uint32_t)carry;
    }
    size_t nb = used * 4 + 1;                            /* + a sign byte */
    for (size_t k = 0; k < used; k++)
        for (int j = 0; j < 4; j++)
            bytes[k * 4 + (size_t)j] = (uint8_t)(limb[k] >> (8 * j));
    bytes[nb - 1] = 0;
    if (neg) {                                           /* two's complement */
        unsigned carry = 1;
        for (size_t k = 0; k < nb; k++) {
            unsigned v = (uint8_t)~bytes[k] + carry;
            bytes[k] = (uint8_t)v;
            carry = v >> 8;
        }
    }
    int err = fs_build_bigint(c->b, bytes, nb, out);
    fs__free(bytes);
    fs__free(limb);
    return err;
}

/* The ref of scalar v (not an array or object). */
static int build_scalar(jctx *c, yyjson_val *v, fs_ref_t *out)
{
    switch (unsafe_yyjson_get_type(v)) {
    case YYJSON_TYPE_NULL:
        *out = FS_REF_NONE;
        return FS_OK;
    case YYJSON_TYPE_BOOL:
        *out = fs_ref_bool(unsafe_yyjson_get_bool(v));
        return FS_OK;
    case YYJSON_TYPE_STR: {
        int64_t h;
        return build_str(c, unsafe_yyjson_get_str(v), unsafe_yyjson_get_len(v), out, &h);
    }
    case YYJSON_TYPE_NUM:
        switch (unsafe_yyjson_get_subtype(v)) {
        case YYJSON_SUBTYPE_UINT: {
            uint64_t u = unsafe_yyjson_get_uint(v);
            if (u <= (uint64_t)INT64_MAX)
                return fs_build_int64(c->b, (int64_t)u, out);
            uint8_t le[9];
            for (int j = 0; j < 8; j++)
                le[j] = (uint8_t)(u >> (8 * j));
            le[8] = 0;
            return fs_build_bigint(c->b, le, 9, out);
        }
        case YYJSON_SUBTYPE_SINT:
            return fs_build_int64(c->b, unsafe_yyjson_get_sint(v), out);
        default: {
            /* finite: with BIGNUM_AS_RAW yyjson gives NaN/Infinity literals and
            ** overflowing numbers as raw text (below), never as a real */
            double d = unsafe_yyjson_get_real(v);
            if (!isfinite(d))
                return bad(c, "Expecting value", 0);
            return fs_build_float(c->b, d, out);
        }
        }
    case YYJSON_TYPE_RAW: {         /* beyond 64 bits or double, or a literal */
        const char *s = unsafe_yyjson_get_raw(v);
        size_t n = unsafe_yyjson_get_len(v);
        int neg = n > 0 && s[0] == '-';
        if (n > (size_t)neg && !(s[neg] >= '0' && s[neg] <= '9')) {
            /* NaN, Infinity, -Infinity exactly: yyjson also takes nan, inf, -NaN, any case */
            size_t pos = c->pool != NULL && s >= c->pool ? (size_t)(s - c->pool) : 0;
            if (n == 3 && memcmp(s, "NaN", 3) == 0)
                return fs_build_float(c->b, NAN, out);
            if (n - (size_t)neg == 8 && memcmp(s + neg, "Infinity", 8) == 0)
                return fs_build_float(c->b, neg ? -INFINITY : INFINITY, out);
            return bad(c, "Expecting value", pos);
        }
        if (memchr(s, '.', n) || memchr(s, 'e', n) || memchr(s, 'E', n))
            return fs_build_float(c->b, s[0] == '-' ? -INFINITY : INFINITY, out);  /* overflow */
        return build_bigint_text(c, s, n, out);
    }
    default:
        return bad(c, "an unexpected JSON value", 0);
    }
}

static int is_container(yyjson_val *v)
{
    yyjson_type t = unsafe_yyjson_get_type(v);
    return t == YYJSON_TYPE_ARR || t == YYJSON_TYPE_OBJ;
}

/* ---- containers --------------------------------------------------------- */

static int push(jctx *c, jframe f)
{
    int err = reserve((void **)&c->stack, &c->cap, c->depth + 1, sizeof *c->stack);
    if (err == FS_OK)
        c->stack[c->depth++] = f;
    return err;
}

static int same_key(yyjson_val *a, yyjson_val *b)
{
    size_t n = unsafe_yyjson_get_len(a);
    return n == unsafe_yyjson_get_len(b) &&
           memcmp(unsafe_yyjson_get_str(a), unsafe_yyjson_get_str(b), n) == 0;
}

/* Merge repeated keys of the n keys in c->hash/kref/knode: *m unique ones,
** in first-occurrence order, and vals[e] the value node of entry e's last
** occurrence (vals: NULL when no key repeats, else fs__malloc'd). */
static int merge_keys(jctx *c, yyjson_val *obj, size_t n, size_t *m, yyjson_val ***vals)
{
    *m = n;
    *vals = NULL;
    size_t size = 16;
    while (size < n * 2)
        size *= 2;
    int err = reserve((void **)&c->slots, &c->scap, size, sizeof *c->slots);
    if (err != FS_OK)
        return err;
    memset(c->slots, 0xff, size * sizeof *c->slots);
    size_t mask = size - 1, u = 0;
    yyjson_val **vs = NULL;
    yyjson_val *key = unsafe_yyjson_get_first(obj);
    for (size_t i = 0; i < n; i++, key = unsafe_yyjson_get_next(key + 1)) {
        size_t s = (size_t)c->hash[i] & mask;
        int32_t e;
        while ((e = c->slots[s]) >= 0 && !(c->hash[e] == c->hash[i] && same_key(c->knode[e], c->knode[i])))
            s = (s + 1) & mask;
        if (e < 0) {                 /* a new key: entry u (u == i until a repeat) */
            c->slots[s] = (int32_t)u;
            c->hash[u] = c->hash[i];
            c->kref[u] = c->kref[i];
            c->knode[u] = c->knode[i];
            if (vs != NULL)
                vs[u] = key + 1;
            u++;
            continue;
        }
        if (vs == NULL) {                           /* the first repeat */
            vs = fs__malloc(n * sizeof *vs);
            if (vs == NULL)
                return FS_ENOMEM;
            yyjson_val *k2 = unsafe_yyjson_get_first(obj);
            for (size_t j = 0; j < u; j++, k2 = unsafe_yyjson_get_next(k2 + 1))
                vs[j] = k2 + 1;
        }
        vs[e] = key + 1;                            /* the last value wins */
    }
    *m = u;
    *vals = vs;
    return FS_OK;
}

/* The per-object scratch arrays (8 bytes an element each) for n entries:
** grown only when n exceeds them (a failure leaves them valid, kcap as it was). */
static int scratch(jctx *c, size_t n)
{
    if (n <= c->kcap)
        return FS_OK;
    size_t cap = n > c->kcap * 2 ? n : c->kcap * 2;
    void **arrays[] = { (void **)&c->hash, (void **)&c->kref, (void **)&c->vref,
                        (void **)&c->knode, (void **)&c->vnode, (void **)&c->vhash };
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) {
        void *q = fs__realloc(*arrays[i], cap * 8);
        if (q == NULL)
            return FS_ENOMEM;
        *arrays[i] = q;
    }
    c->kcap = cap;
    return FS_OK;
}

/* The m scalar values c->vnode[0..m) into c->vref: the ASCII str values are
** hashed and their dedup slots prefetched first (each is a likely cache miss
** in a big image; hinted together, the misses overlap), then built. */
static int build_values(jctx *c, size_t m)
{
    for (size_t i = 0; i < m; i++) {
        yyjson_val *v = c->vnode[i];
        c->vhash[i] = -1;
        if (unsafe_yyjson_get_type(v) == YYJSON_TYPE_STR) {
            const char *s = unsafe_yyjson_get_str(v);
            size_t n = unsafe_yyjson_get_len(v);
            if (fs_str_scan_class(1, n, s) < 128) {
                c->vhash[i] = c->o->str_hash(s, n);
                fs_builder_prefetch_str(c->b, 1, c->vhash[i]);
            }
        }
    }
    for (size_t i = 0; i < m; i++) {
        yyjson_val *v = c->vnode[i];
        int err = c->vhash[i] != -1
            ? fs_build_str(c->b, 1, unsafe_yyjson_get_len(v), FS_MAXCHAR_SCAN, c->vhash[i],
                           unsafe_yyjson_get_str(v), &c->vref[i])
            : build_scalar(c, v, &c->vref[i]);
        if (err != FS_OK)
            return err;
    }
    return FS_OK;
}

/* Allocate the container v (array or object): *ref, and a frame pushed to
** fill it unless it came out complete. */
static int start_container(jctx *c, yyjson_val *v, fs_ref_t *ref)
{
    size_t n = unsafe_yyjson_get_len(v);
    int err;
    if (unsafe_yyjson_get_type(v) == YYJSON_TYPE_ARR) {
        if ((err = fs_build_seq(c->b, FS_KIND_LIST, n, ref)) != FS_OK || n == 0)
            return err;
        return push(c, (jframe){.next = unsafe_yyjson_get_first(v), .ref = *ref, .n = n});
    }
    if (n == 0) {
        if ((err = fs_build_map(c->b, FS_KIND_DICT, 0, 0, ref)) == FS_OK)
            fs_build_map_finish(c->b, *ref);
        return err;
    }
    if (n > FS_MAP_MAX)
        return FS_ETOOBIG;
    if ((err = scratch(c, n)) != FS_OK)
        return err;

    int complete = 1, same = n == c->lk_n;
    yyjson_val *key = unsafe_yyjson_get_first(v);
    for (size_t i = 0; i < n; i++, key = unsafe_yyjson_get_next(key + 1)) {
        c->knode[i] = key;
        complete &= !is_container(key + 1);
        same = same && same_key(key, c->lk[i]);
    }
    if (same) {                                     /* records: the last shape */
        if (!complete) {
            if ((err = fs_build_dict_shape(c->b, 0, c->lk_dict, ref)) != FS_OK)
                return err;
            return push(c, (jframe){.next = unsafe_yyjson_get_first(v), .ref = *ref, .n = n,
                                    .obj = 1});
        }
        for (size_t i = 0; i < n; i++)
            c->vnode[i] = c->knode[i] + 1;
        if ((err = build_values(c, n)) != FS_OK)
            return err;
        return fs_build_record_like(c->b, 0, c->lk_dict, c->vref, ref);
    }
    fs_builder_dedup(c->b, n <= DEDUP_KEYS_MAX);    /* a big object's keys are distinct */
    for (size_t i = 0; i < n; i++) {
        yyjson_val *k = c->knode[i];
        if ((err = build_str(c, unsafe_yyjson_get_str(k), unsafe_yyjson_get_len(k), &c->kref[i],
                             &c->hash[i])) != FS_OK) {
            fs_builder_dedup(c->b, 1);
            return err;
        }
    }
    fs_builder_dedup(c->b, 1);
    size_t m;
    yyjson_val **vals;
    if ((err = merge_keys(c, v, n, &m, &vals)) != FS_OK)
        return err;
    if (complete) {
        for (size_t i = 0; i < m; i++)
            c->vnode[i] = vals != NULL ? vals[i] : c->knode[i] + 1;
        err = build_values(c, m);
        if (err == FS_OK)
            err = fs_build_record(c->b, 0, m, c->hash, c->kref, c->vref, ref);
        fs__free(vals);
    }
    else {
        err = fs_build_dict(c->b, 0, m, c->hash, c->kref, ref);
        if (err == FS_OK)
            err = push(c, (jframe){.next = unsafe_yyjson_get_first(v), .vals = vals, .ref = *ref,
                                   .n = m, .obj = 1});
        if (err != FS_OK)
            fs__free(vals);
    }
    if (err == FS_OK && vals == NULL && n <= LAST_KEYS) {   /* remember the keys */
        memcpy(c->lk, c->knode, n * sizeof *c->lk);
        c->lk_n = n;
        c->lk_dict = *ref;
    }
    return err;
}

/* The ref of any value v: scalars built, containers allocated (and a frame
** pushed when they need filling). */
static int convert(jctx *c, yyjson_val *v, fs_ref_t *out)
{
    return is_container(v) ? start_container(c, v, out) : build_scalar(c, v, out);
}

/* Advance the top frame until a child pushed its own frame or it is done. */
static int step(jctx *c)
{
    size_t fi = c->depth - 1;
    while (c->stack[fi].i < c->stack[fi].n) {
        jframe *f = &c->stack[fi];
        yyjson_val *v;
        if (f->obj) {
            v = f->vals != NULL ? f->vals[f->i] : f->next + 1;
            f->next = unsafe_yyjson_get_next(f->next + 1);
        }
        else {
            v = f->next;
            f->next = unsafe_yyjson_get_next(v);
        }
        size_t depth = c->depth;
        fs_ref_t ref;
        int err = convert(c, v, &ref);
        if (err != FS_OK)
            return err;
        f = &c->stack[fi];                          /* the stack may have moved */
        if (f->obj)
            fs_build_dict_value(c->b, f->ref, f->i, ref);
        else
            fs_build_seq_set(c->b, f->ref, f->i, ref);
        f->i++;
        if (c->depth != depth)
            return FS_OK;                           /* the child runs first */
    }
    fs__free(c->stack[fi].vals);
    c->depth--;
    return FS_OK;
}

/* ---- what json.loads accepts beyond yyjson ------------------------------ */

static int hex4(const char *s, unsigned *u)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char ch = s[i];
        v <<= 4;
        if (ch >= '0' && ch <= '9') v |= (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f') v |= (unsigned)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F') v |= (unsigned)(ch - 'A' + 10);
        else return 0;
    }
    *u = v;
    return 1;
}

/* A copy of text with each \u escape of an unpaired surrogate written as its
** 3 WTF-8 bytes (json.loads keeps lone surrogates; yyjson refuses them).
** NULL on allocation failure. */
static char *rewrite_surrogates(const char *t, size_t n, size_t *out_n)
{
    char *o = fs__malloc(n + 1);
    if (o == NULL)
        return NULL;
    size_t i = 0, j = 0;
    while (i < n) {
        unsigned u, lo;
        if (t[i] != '\\' || i + 1 >= n) {
            o[j++] = t[i++];
            continue;
        }
        if (t[i + 1] == 'u' && n - i >= 6 && hex4(t + i + 2, &u) && (u & 0xF800) == 0xD800) {
            if (u < 0xDC00 && n - i >= 12 && t[i + 6] == '\\' && t[i + 7] == 'u' &&
                hex4(t + i + 8, &lo) && (lo & 0xFC00) == 0xDC00) {
                memcpy(o + j, t + i, 12);           /* a proper pair: yyjson's */
                i += 12;
                j += 12;
                continue;
            }
            o[j++] = (char)(0xE0 | (u >> 12));
            o[j++] = (char)(0x80 | ((u >> 6) & 0x3F));
            o[j++] = (char)(0x80 | (u & 0x3F));
            i += 6;
            continue;
        }
        o[j++] = t[i++];                            /* any other escape: both chars */
        o[j++] = t[i++];
    }
    *out_n = j;
    return o;
}

/* ---- the entry point ----------------------------------------------------- */

static yyjson_doc *read_doc(const char *text, size_t len, int invalid_ok, yyjson_read_err *e)
{
    yyjson_read_flag flg = YYJSON_READ_BIGNUM_AS_RAW | YYJSON_READ_ALLOW_INF_AND_NAN |
                           (invalid_ok ? YYJSON_READ_ALLOW_INVALID_UNICODE : 0);
    return yyjson_read_opts((char *)(uintptr_t)text, len, flg, &yy_alc, e);
}

int fs_json_build(fs_builder_t *b, const char *text, size_t len, const fs_json_opts *opts,
                  fs_ref_t *root, fs_json_err *err)
{
    jctx c;
    memset(&c, 0, sizeof c);
    memset(err, 0, sizeof *err);
    c.b = b;
    c.o = opts;
    c.err = err;
    yyjson_read_err e;
    char *copy = NULL;
    size_t copy_n = 0;
    yyjson_doc *doc = read_doc(text, len, opts->allow_surrogates, &e);
    if (doc == NULL && e.code != YYJSON_READ_ERROR_MEMORY_ALLOCATION && e.msg != NULL &&
        strstr(e.msg, "surrogate") != NULL) {
        if ((copy = rewrite_surrogates(text, len, &copy_n)) == NULL)
            return FS_ENOMEM;
        doc = read_doc(copy, copy_n, 1, &e);
    }
    int rc = FS_OK;
    if (doc == NULL) {
        if (e.code == YYJSON_READ_ERROR_MEMORY_ALLOCATION)
            rc = FS_ENOMEM;
        else {
            rc = bad(&c, e.msg != NULL ? e.msg : "invalid JSON", e.pos);
            err->utf8 = e.msg != NULL && strstr(e.msg, "UTF-8") != NULL;
        }
        fs__free(copy);
        return rc;
    }
    c.pool = doc->str_pool;
    rc = convert(&c, yyjson_doc_get_root(doc), root);
    while (rc == FS_OK && c.depth > 0)
        rc = step(&c);
    while (c.depth > 0)
        fs__free(c.stack[--c.depth].vals);
    yyjson_doc_free(doc);
    fs__free(copy);
    fs__free(c.stack);
    fs__free(c.hash);
    fs__free(c.kref);
    fs__free(c.vref);
    fs__free(c.knode);
    fs__free(c.vnode);
    fs__free(c.vhash);
    fs__free(c.slots);
    fs__free(c.ucs);
    fs__free(c.canon);
    return rc;
}
