/*
** test_image.c -- the image format (version 2): builder round trips of every
** kind, float immediates, stored-once values (str, bytes, floats), dict
** shapes, map indexes of every slot width and lookups (fs_map_find), xrefs,
** header and sizing, the validator fs_image_check_why (accepts what the
** builder makes; rejects other versions and platforms as FS_EVERSION and
** truncated, corrupted or non-canonical images as FS_ECORRUPT, always naming
** the defect; survives random byte flips), and allocation failure (every
** failing step is FS_ENOMEM, nothing leaks).
**
** Images handed to the validator are copied into heap buffers of exactly
** their size, so running this binary under valgrind or ASan proves the
** validator never reads out of bounds. Every validation goes through check(),
** which also holds fs_image_check_why to its contract: a reason exactly when
** the image is refused. Criterion runs every test in a fresh process.
*/
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs_image.h"

#define OK(e) cr_assert_eq((e), FS_OK, "%s failed", #e)

/* ---- helpers ------------------------------------------------------------- */

/* fs_image_check_why, held to its contract: FS_OK with no reason, a refusal
** with one (non-NULL, non-empty), and the same answer as fs_image_check. */
static int check_why(const void *img, size_t n, const char **why)
{
    const char *w = "unset";
    int rc = fs_image_check_why(img, n, &w);
    if (rc == FS_OK)
        cr_assert_null(w, "accepted with a reason: %s", w);
    else if (rc == FS_ECORRUPT || rc == FS_EVERSION)
        cr_assert(w != NULL && w[0] != '\0', "refused (%d) without a reason", rc);
    cr_assert_eq(fs_image_check(img, n), rc, "fs_image_check disagrees");
    if (why)
        *why = w;
    return rc;
}

static int check(const void *img, size_t n) { return check_why(img, n, NULL); }

static int names(const char *why, const char *reason)
{
    return reason == NULL || strstr(why, reason) != NULL;
}

/* Refused with rc, for a reason that contains `reason` (NULL: any). */
#define REFUSED(img, n, rc, reason) do {                                           \
        const char *why_;                                                          \
        int rc_ = check_why((img), (n), &why_);                                    \
        cr_assert_eq(rc_, (rc), "%s:%d: rc %d (%s), want %d", __FILE__, __LINE__,  \
                     rc_, rc_ ? why_ : "accepted", (rc));                         \
        cr_assert(names(why_, (reason)), "%s:%d: why \"%s\", want \"%s\"",          \
                  __FILE__, __LINE__, why_, (const char *)(reason));              \
    } while (0)
#define CORRUPT(img, n, reason) REFUSED(img, n, FS_ECORRUPT, reason)

static fs_builder_t *new_builder(size_t hint)
{
    fs_builder_t *b = NULL;
    OK(fs_builder_create(&b, hint));
    cr_assert_not_null(b);
    return b;
}

/* Finish with no imports and check the result; returns the image base. */
static const uint8_t *finish(fs_builder_t *b, fs_ref_t root)
{
    OK(fs_builder_finish(b, root, NULL, 0, 4242));
    const uint8_t *base = fs_builder_base(b);
    cr_assert_eq(check(base, fs_image_header(base)->image_size), FS_OK);
    return base;
}

/* A heap copy of exactly n bytes (8-aligned by malloc), for valgrind. */
static uint8_t *copy_exact(const void *src, size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    cr_assert_not_null(p);
    memcpy(p, src, n);
    return p;
}

static int check_copy(const void *img, size_t n)
{
    uint8_t *p = copy_exact(img, n);
    int r = check(p, n);
    free(p);
    return r;
}

/* Finish with no imports, destroy the builder, return an exact copy. */
static uint8_t *finish_copy(fs_builder_t *b, fs_ref_t root, size_t *n)
{
    OK(fs_builder_finish(b, root, NULL, 0, 0));
    *n = fs_builder_size(b);
    uint8_t *p = copy_exact(fs_builder_base(b), *n);
    fs_builder_destroy(b);
    cr_assert_eq(check(p, *n), FS_OK);
    return p;
}

static fs_image_header_t *hdr(uint8_t *img) { return (fs_image_header_t *)(void *)img; }
static fs_obj_hdr_t *ohdr(uint8_t *img, fs_ref_t r) { return (fs_obj_hdr_t *)(void *)(img + r); }

/* Writable views of what the const accessors find (tests corrupt images). */
static fs_ref_t *w_items(uint8_t *img, fs_ref_t r)
{ return (fs_ref_t *)fs_seq_items(fs_seq(img, r)); }
/* Key or value slot i of a wide (not narrow) map or dict. */
static fs_ref_t *w_key(uint8_t *img, fs_ref_t r, uint64_t i)
{
    fs_map_t *m = (fs_map_t *)(void *)fs_map_keyset(img, fs_map(img, r));
    cr_assert_not(m->h.flags & FS_FLAG_NARROW);
    return (fs_ref_t *)(uintptr_t)fs_keyset_entry(m, i) + 1;
}
static fs_ref_t *w_value(uint8_t *img, fs_ref_t r, uint64_t i)
{
    fs_map_t *m = (fs_map_t *)(void *)(img + r);
    cr_assert_not(m->h.flags & FS_FLAG_NARROW);
    if (fs_map_shaped(m))
        return ((fs_shaped_t *)(void *)m)->values + i;
    return (fs_ref_t *)(uintptr_t)fs_keyset_entry(m, i) + 2;
}
static fs_map_t *w_map(uint8_t *img, fs_ref_t r) { return (fs_map_t *)(void *)(img + r); }
static uint8_t *w_data(uint8_t *img, fs_ref_t r) { return (uint8_t *)fs_obj_body(ohdr(img, r)); }


static int eq_small_int(void *ctx, const void *base, fs_ref_t stored)
{
    (void)base;
    return fs_ref_tag(stored) == FS_TAG_INT && fs_ref_int_value(stored) == *(const int64_t *)ctx;
}

static int eq_same_ref(void *ctx, const void *base, fs_ref_t stored)
{
    (void)base;
    return *(const fs_ref_t *)ctx == stored;
}

static int eq_fails(void *ctx, const void *base, fs_ref_t stored)
{
    (void)ctx; (void)base; (void)stored;
    return -1;
}

/* A str equal to the ASCII C string s (the eq callback of str keys). */
static int eq_cstr(void *ctx, const void *base, fs_ref_t stored)
{
    const char *s = ctx;
    return fs_ref_tag(stored) == FS_TAG_OBJ && fs_ref_kind(base, stored) == FS_KIND_STR &&
           fs_str_equals(fs_str(base, stored), 1, strlen(s), s);
}

/* A stand-in for CPython's str hash (FNV-1a): equal strs, equal hashes. */
static int64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211u;
    return (int64_t)h;
}

/* An ASCII str, built (and so deduplicated) by value. */
static fs_ref_t ascii(fs_builder_t *b, const char *s)
{
    fs_ref_t r;
    OK(fs_build_str(b, 1, strlen(s), FS_MAXCHAR_SCAN, str_hash(s), s, &r));
    return r;
}

static uint64_t bits_of(double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    return u;
}

static double from_bits(uint64_t u)
{
    double d;
    memcpy(&d, &u, 8);
    return d;
}

/* The double a float reference denotes (immediate or FLOAT object). */
static double float_of(const uint8_t *base, fs_ref_t r)
{
    if (fs_ref_tag(r) == FS_TAG_FLOAT)
        return fs_ref_float(r);
    cr_assert_eq(fs_ref_tag(r), FS_TAG_OBJ);
    cr_assert_eq(fs_ref_kind(base, r), FS_KIND_FLOAT);
    return ((const fs_float_t *)fs_obj(base, r))->value;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static uint64_t rnd(void)          /* xorshift64*, seeded: reproducible */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * UINT64_C(2685821657736338717);
}

/* Minimal two's complement length of le[0..n). */
static size_t minimal_len(const uint8_t *le, size_t n)
{
    int neg = (le[n - 1] & 0x80) != 0;
    while (n > 1 && le[n - 1] == (neg ? 0xff : 0) && ((le[n - 2] & 0x80) != 0) == neg)
        n--;
    return n;
}

/* Byte i of the sign-extended value le[0..n). */
static uint8_t byte_at(const uint8_t *le, size_t n, size_t i)
{
    return i < n ? le[i] : (le[n - 1] & 0x80) ? 0xff : 0;
}

/* The int denoted by ref equals the two's complement le[0..n). */
static void assert_int_is(const uint8_t *base, fs_ref_t r, const uint8_t *le, size_t n)
{
    uint8_t imm[8];
    const uint8_t *got;
    size_t gn;
    if (fs_ref_tag(r) == FS_TAG_INT) {
        uint64_t v = (uint64_t)fs_ref_int_value(r);
        for (int i = 0; i < 8; i++)
            imm[i] = (uint8_t)(v >> (8 * i));
        got = imm;
        gn = 8;
        cr_assert_leq(minimal_len(le, n), 8);
    }
    else {
        cr_assert_eq(fs_ref_tag(r), FS_TAG_OBJ);
        cr_assert_eq(fs_ref_kind(base, r), FS_KIND_INT);
        const fs_bigint_t *o = fs_obj(base, r);
        got = o->data;
        gn = (size_t)fs_bigint_nbytes(o);
        cr_assert_eq(gn, minimal_len(le, n), "stored %zu bytes, minimal is %zu", gn,
                     minimal_len(le, n));
    }
    size_t len = (gn > n ? gn : n) + 1;
    for (size_t i = 0; i < len; i++)
        cr_assert_eq(byte_at(got, gn, i), byte_at(le, n, i), "byte %zu differs", i);
}

static void negate(uint8_t *le, size_t n)
{
    unsigned carry = 1;
    for (size_t i = 0; i < n; i++) {
        unsigned v = (uint8_t)~le[i] + carry;
        le[i] = (uint8_t)v;
        carry = v >> 8;
    }
}

/* Walk everything reachable from the root with the inline readers, as a
** consumer would (iteratively, visited bitmap): must not crash on any image
** fs_image_check accepted. Every map key is looked up by its own hash and
** a miss probed; shaped dicts read keys through their shape. Returns a
** checksum. */
static uint64_t walk_image(const uint8_t *base, size_t size)
{
    const fs_image_header_t *h = fs_image_header(base);
    uint8_t *seen = calloc(size / 64 + 1, 1);
    fs_ref_t *stack = malloc(sizeof(fs_ref_t) * (size / 4 + 2));
    cr_assert(seen && stack);
    uint64_t sum = 0;
    size_t top = 0;
    stack[top++] = h->root;
    while (top) {
        fs_ref_t r = stack[--top];
        if (fs_ref_tag(r) == FS_TAG_XREF) {
            const fs_xref_t *x = fs_xref(base, r);
            sum += x->target + fs_image_imports(base)[x->import_slot];
            continue;
        }
        if (fs_ref_tag(r) == FS_TAG_FLOAT) {
            sum += bits_of(fs_ref_float(r));
            continue;
        }
        if (fs_ref_tag(r) != FS_TAG_OBJ) {
            sum += (uint64_t)fs_ref_kind(base, r) + r;
            continue;
        }
        if (seen[r / 64] & (1u << ((r / 8) % 8)))
            continue;
        seen[r / 64] |= (uint8_t)(1u << ((r / 8) % 8));
        switch (fs_ref_kind(base, r)) {
        case FS_KIND_FLOAT:
            sum += bits_of(((const fs_float_t *)fs_obj(base, r))->value);
            break;
        case FS_KIND_COMPLEX: {
            const fs_complex_t *c = fs_obj(base, r);
            sum += bits_of(c->real) + bits_of(c->imag);
            break;
        }
        case FS_KIND_INT: {
            const fs_bigint_t *o = fs_obj(base, r);
            for (uint64_t i = 0; i < fs_bigint_nbytes(o); i++)
                sum += o->data[i];
            break;
        }
        case FS_KIND_STR: {
            const fs_str_t *s = fs_str(base, r);
            const uint8_t *d = fs_str_data(s);
            for (uint64_t i = 0; i < fs_str_len(s) * fs_str_charsize(s); i++)
                sum += d[i];
            sum += (uint64_t)fs_str_equals(s, fs_str_charsize(s), fs_str_len(s), d);
            sum += fs_str_maxchar_class(s);
            break;
        }
        case FS_KIND_BYTES:
        case FS_KIND_BYTEARRAY: {
            const fs_bytes_t *o = fs_bytes(base, r);
            const uint8_t *d = fs_bytes_data(o);
            for (uint64_t i = 0; i < fs_bytes_len(o); i++)
                sum += d[i];
            break;
        }
        case FS_KIND_TUPLE:
        case FS_KIND_LIST: {
            const fs_seq_t *s = fs_seq(base, r);
            const fs_ref_t *items = fs_seq_items(s);
            for (uint64_t i = 0; i < fs_seq_count(s); i++)
                stack[top++] = items[i];
            break;
        }
        case FS_KIND_DICT:
        case FS_KIND_SET:
        case FS_KIND_FROZENSET: {
            const fs_map_t *m = fs_map(base, r);
            uint64_t n = fs_map_count(base, m);
            int dict = m->h.kind == FS_KIND_DICT;
            for (uint64_t i = 0; i < n; i++) {
                fs_ref_t key = fs_map_key(base, m, i), none = ~(fs_ref_t)0;
                int64_t hash = fs_map_hash(base, m, i);
                sum += (uint64_t)fs_map_find(base, m, hash, eq_same_ref, &key);
                sum += (uint64_t)fs_map_find(base, m, hash ^ 0x5bd1e995, eq_same_ref, &none);
                stack[top++] = key;
                if (dict)
                    stack[top++] = fs_map_value(m, i);
            }
            break;
        }
        default:
            cr_assert_fail("accepted image has an object of kind %d", fs_ref_kind(base, r));
        }
    }
    free(seen);
    free(stack);
    return sum;
}

/* A mixed image with every kind, nesting, a cycle, sharing, stored-once
** values, shaped records, maps with and without an index, and xrefs, big
** enough to grow the image several times. Stops at the first error (the
** builder stays in *out for fs_builder_destroy).
**
** The root is a dict of MIXED_N entries (an index of 1-byte slots); its
** value i is what the comments below say. */
enum {
    MX_NONE_KEY = 0, MX_NEGZERO = 1, MX_COMPLEX = 2, MX_I64MIN = 3, MX_BIG40 = 4,
    MX_U2 = 5, MX_U4_KEY = 6, MX_BYTEARRAY = 7, MX_LIST = 8, MX_FROZENSET = 9,
    MX_FROZENDICT = 10, MX_TUPLE_KEY = 11, MX_BYTES = 12, MX_RECORDS = 13,
    MX_SMALL = 14, MX_BIGFLOAT = 15, MIXED_N = 16
};
#define MIXED_RECORDS 6
#define TRY(e) do { if ((err = (e)) != FS_OK) return err; } while (0)
static int build_mixed(fs_builder_t **out)
{
    int err;
    fs_builder_t *b = NULL;
    fs_ref_t root, r, k, list, map, set;
    *out = NULL;
    TRY(fs_builder_create(&b, 0));
    *out = b;
    TRY(fs_build_map(b, FS_KIND_DICT, 0, MIXED_N, &root));
    uint64_t e = 0;
#define PUT(h, key, val) fs_build_map_set(b, root, e++, (h), (key), (val))
    TRY(fs_build_str(b, 1, 4, 'o', 101, "none", &k));        PUT(101, k, FS_REF_NONE);
    TRY(fs_build_float(b, -0.0, &r));                        PUT(3, fs_ref_small_int(3), r);
    TRY(fs_build_complex(b, 1.0, -2.0, &r));                 PUT(4, fs_ref_small_int(4), r);
    TRY(fs_build_int64(b, INT64_MIN, &r));                   PUT(5, fs_ref_small_int(5), r);
    uint8_t big[40];
    memset(big, 0xa5, sizeof big);
    big[39] = 0x3c;
    TRY(fs_build_bigint(b, big, sizeof big, &r));            PUT(6, fs_ref_small_int(6), r);
    uint16_t u2[3] = { 0x00e9, 0xd800, 0x4e2d };
    TRY(fs_build_str(b, 2, 3, 0xd800, 7, u2, &r));           PUT(7, fs_ref_small_int(7), r);
    uint32_t u4[3] = { 'a', 0x1f600, 0x10ffff };
    TRY(fs_build_str(b, 4, 3, 0x10ffff, 8, u4, &k));         PUT(8, k, FS_REF_TRUE);
    TRY(fs_build_bytes(b, FS_KIND_BYTEARRAY, "\0\1\2", 3, &r)); PUT(9, fs_ref_small_int(9), r);
    /* a list of 2000 items: a self reference, a str built 400 times (stored
    ** once), xrefs, float immediates and 8 distinct float objects */
    TRY(fs_build_seq(b, FS_KIND_LIST, 2000, &list));          PUT(10, fs_ref_small_int(10), list);
    for (uint64_t i = 0; i < 2000; i++) {
        switch (i % 5) {
        case 0: r = list; break;
        case 1: TRY(fs_build_str(b, 1, 6, 's', 55, "shared", &r)); break;
        case 2: TRY(fs_build_xref(b, (uint32_t)(i % 3), (i % 97) * 8 + 128, &r)); break;
        case 3:
            if ((i / 5) % 2)
                TRY(fs_build_float(b, (double)i / 7.0, &r));            /* immediate */
            else
                TRY(fs_build_float(b, 1e300 * (double)(i % 16), &r));   /* 8 values */
            break;
        default: r = fs_ref_small_int(-(int64_t)i); break;
        }
        fs_build_seq_set(b, list, i, r);
    }
    TRY(fs_build_map(b, FS_KIND_FROZENSET, 0, 40, &set));    PUT(11, fs_ref_small_int(11), set);
    for (uint64_t i = 0; i < 40; i++)
        fs_build_map_set(b, set, i, (int64_t)(i % 4), fs_ref_small_int((int64_t)i), FS_REF_NONE);
    fs_build_map_finish(b, set);
    TRY(fs_build_map(b, FS_KIND_DICT, FS_FLAG_FROZENDICT, 0, &map));
    fs_build_map_finish(b, map);                             PUT(12, fs_ref_small_int(12), map);
    TRY(fs_build_str(b, 1, 6, 's', 55, "shared", &k));
    TRY(fs_build_seq(b, FS_KIND_TUPLE, 0, &r));              PUT(13, r, k);
    TRY(fs_build_bytes(b, FS_KIND_BYTES, NULL, 0, &r));      PUT(14, fs_ref_small_int(14), r);
    /* records {"id": i, "name": "ann"/"bob", "score": NaN or an immediate}:
    ** the first is the shape of the others, one of which is a frozendict */
    fs_ref_t recs;
    TRY(fs_build_seq(b, FS_KIND_LIST, MIXED_RECORDS, &recs)); PUT(15, fs_ref_small_int(15), recs);
    for (int i = 0; i < MIXED_RECORDS; i++) {
        static const char *names[3] = { "id", "name", "score" };
        fs_ref_t keys[3], d, v;
        int64_t hashes[3];
        for (int j = 0; j < 3; j++) {
            hashes[j] = str_hash(names[j]);
            TRY(fs_build_str(b, 1, strlen(names[j]), FS_MAXCHAR_SCAN, hashes[j], names[j], &keys[j]));
        }
        TRY(fs_build_dict(b, i == 3 ? FS_FLAG_FROZENDICT : 0, 3, hashes, keys, &d));
        fs_build_dict_value(b, d, 0, fs_ref_small_int(i));
        const char *nm = i % 2 ? "bob" : "ann";
        TRY(fs_build_str(b, 1, 3, FS_MAXCHAR_SCAN, str_hash(nm), nm, &v));
        fs_build_dict_value(b, d, 1, v);
        TRY(fs_build_float(b, i < 2 ? NAN : i * 0.5 + 1, &v));    /* NaN: two objects */
        fs_build_dict_value(b, d, 2, v);
        fs_build_seq_set(b, recs, (uint64_t)i, d);
    }
    /* a dict of 5 str keys (no index) whose values are one bytes, built 5 times */
    TRY(fs_build_map(b, FS_KIND_DICT, 0, 5, &map));          PUT(16, fs_ref_small_int(16), map);
    for (int i = 0; i < 5; i++) {
        char key[2] = { (char)('a' + i), 0 };
        TRY(fs_build_str(b, 1, 1, FS_MAXCHAR_SCAN, str_hash(key), key, &k));
        TRY(fs_build_bytes(b, FS_KIND_BYTES, "blob", 4, &r));
        fs_build_map_set(b, map, (uint64_t)i, str_hash(key), k, r);
    }
    fs_build_map_finish(b, map);
    TRY(fs_build_float(b, 1e300, &r));                       PUT(17, fs_ref_small_int(17), r);
#undef PUT
    cr_assert_eq(e, MIXED_N);
    fs_build_map_finish(b, root);
    uint64_t ids[3] = { 7, 8, 9 };
    TRY(fs_builder_finish(b, root, ids, 3, -1));
    return FS_OK;
}
#undef TRY
/* Objects of the mixed image: the root dict; the "none" key, -0.0, the
** complex, 2 big ints, 2 strs (u2, u4); the bytearray; the list, the
** "shared" str, 8 float objects (1e300 * odd 1..15, 1e300 among them); the
** frozenset, frozendict, empty tuple, empty bytes; records: the list, 3 key
** strs, 6 dicts, "ann" and "bob", 2 NaNs; the small dict, its 5 keys and
** "blob". */
#define MIXED_OBJECTS (1 + 5 + 2 + 1 + 1 + 1 + 8 + 4 + (1 + 3 + MIXED_RECORDS + 2 + 2) + (1 + 5 + 1))

static fs_builder_t *mixed(void)
{
    fs_builder_t *b;
    OK(build_mixed(&b));
    return b;
}

/* The finished mixed image as a malloc'd copy of exactly its size. */
static uint8_t *mixed_copy(size_t *size)
{
    fs_builder_t *b = mixed();
    const uint8_t *base = fs_builder_base(b);
    *size = fs_image_header(base)->image_size;
    uint8_t *p = copy_exact(base, *size);
    fs_builder_destroy(b);
    return p;
}

/* The mixed image's root dict entries (keys and values, writable). */
static fs_ref_t *root_key(uint8_t *img, uint64_t i) { return w_key(img, hdr(img)->root, i); }
static fs_ref_t *root_val(uint8_t *img, uint64_t i) { return w_value(img, hdr(img)->root, i); }

/* ---- image_build: round trips --------------------------------------------- */

Test(image_build, constants_roundtrip_as_immediates)
{
    fs_builder_t *b = new_builder(0);
    fs_ref_t t;
    OK(fs_build_seq(b, FS_KIND_TUPLE, 3, &t));
    fs_build_seq_set(b, t, 0, FS_REF_NONE);
    fs_build_seq_set(b, t, 1, fs_ref_bool(0));
    fs_build_seq_set(b, t, 2, fs_ref_bool(1));
    const uint8_t *base = finish(b, t);
    const fs_seq_t *s = fs_seq(base, t);
    const fs_ref_t *items = fs_seq_items(s);
    cr_assert_eq(fs_seq_count(s), 3);
    cr_assert_eq(fs_ref_kind(base, items[0]), FS_KIND_NONE);
    cr_assert_eq(fs_ref_kind(base, items[1]), FS_KIND_BOOL);
    cr_assert_eq(items[1], FS_REF_FALSE);
    cr_assert_eq(items[2], FS_REF_TRUE);
    cr_assert_eq(fs_image_header(base)->object_count, 1);
    /* a tuple of 3 is its 8-byte header and 3 refs: nothing else */
    cr_assert_eq(fs_image_header(base)->objects_end, FS_IMAGE_HEADER_SIZE + 8 + 3 * 8);
    fs_builder_destroy(b);
}

Test(image_build, small_int_limits_are_immediates_and_just_outside_are_objects)
{
    fs_builder_t *b = new_builder(0);
    int64_t in[] = { 0, 1, -1, FS_SMALL_INT_MAX, FS_SMALL_INT_MIN, 123456789 };
    int64_t out[] = { FS_SMALL_INT_MAX + 1, FS_SMALL_INT_MIN - 1, INT64_MAX, INT64_MIN };
    fs_ref_t t, r;
    OK(fs_build_seq(b, FS_KIND_TUPLE, 10, &t));
    for (int i = 0; i < 6; i++) {
        OK(fs_build_int64(b, in[i], &r));
        cr_assert_eq(fs_ref_tag(r), FS_TAG_INT, "%lld should be immediate", (long long)in[i]);
        cr_assert_eq(fs_ref_int_value(r), in[i]);
        fs_build_seq_set(b, t, (uint64_t)i, r);
    }
    for (int i = 0; i < 4; i++) {
        OK(fs_build_int64(b, out[i], &r));
        cr_assert_eq(fs_ref_tag(r), FS_TAG_OBJ, "%lld should be an object", (long long)out[i]);
        fs_build_seq_set(b, t, (uint64_t)(6 + i), r);
    }
    const uint8_t *base = finish(b, t);
    const fs_ref_t *items = fs_seq_items(fs_seq(base, t));
    for (int i = 0; i < 4; i++) {
        uint8_t le[8];
        for (int j = 0; j < 8; j++)
            le[j] = (uint8_t)((uint64_t)out[i] >> (8 * j));
        cr_assert_eq(fs_ref_kind(base, items[6 + i]), FS_KIND_INT);
        cr_assert_eq(fs_bigint_nbytes(fs_obj(base, items[6 + i])), 8);
        assert_int_is(base, items[6 + i], le, 8);
    }
    fs_builder_destroy(b);
}

Test(image_build, bigints_of_many_sizes_roundtrip_minimal)
{
    fs_builder_t *b = new_builder(0);
    enum { N = 300 };
    static uint8_t vals[N][72];
    size_t lens[N];
    fs_ref_t refs[N];
    size_t n = 0;
    /* -2^63 */
    memset(vals[n], 0, 8); vals[n][7] = 0x80; lens[n++] = 8;
    /* 2^63 (needs 9 bytes) and 2^64, with non-minimal zero padding */
    memset(vals[n], 0, 12); vals[n][7] = 0x80; lens[n++] = 12;
    memset(vals[n], 0, 9); vals[n][8] = 0x01; lens[n++] = 9;
    /* -(2^64) */
    memset(vals[n], 0, 9); vals[n][8] = 0x01; negate(vals[n], 9); lens[n++] = 9;
    /* 10^100 and -10^100 */
    memset(vals[n], 0, 48); vals[n][0] = 1;
    for (int d = 0; d < 100; d++) {
        unsigned carry = 0;
        for (int i = 0; i < 48; i++) {
            unsigned v = vals[n][i] * 10u + carry;
            vals[n][i] = (uint8_t)v;
            carry = v >> 8;
        }
    }
    lens[n++] = 48;
    memcpy(vals[n], vals[n - 1], 48); negate(vals[n], 48); lens[n++] = 48;
    /* small values padded with sign bytes: must come back as immediates */
    memset(vals[n], 0, 20); vals[n][0] = 5; lens[n++] = 20;
    memset(vals[n], 0xff, 20); lens[n++] = 20;                  /* -1 */
    memset(vals[n], 0, 8); vals[n][7] = 0xf0; lens[n++] = 8;    /* -2^60 = MIN */
    memset(vals[n], 0xff, 8); vals[n][7] = 0xef; lens[n++] = 8; /* MIN - 1 */
    memset(vals[n], 0xff, 8); vals[n][7] = 0x0f; lens[n++] = 8; /* MAX */
    memset(vals[n], 0, 8); vals[n][7] = 0x10; lens[n++] = 8;    /* MAX + 1 */
    /* random values, 1..72 bytes, positive and negative, with random padding */
    while (n < N) {
        size_t len = 1 + rnd() % 72;
        for (size_t i = 0; i < len; i++)
            vals[n][i] = (uint8_t)rnd();
        if (rnd() % 3 == 0) {
            size_t pad = rnd() % (72 - len + 1);
            memset(vals[n] + len, (vals[n][len - 1] & 0x80) ? 0xff : 0, pad);
            len += pad;
        }
        lens[n++] = len;
    }
    fs_ref_t t;
    OK(fs_build_seq(b, FS_KIND_LIST, N, &t));
    for (size_t i = 0; i < N; i++) {
        OK(fs_build_bigint(b, vals[i], lens[i], &refs[i]));
        fs_build_seq_set(b, t, i, refs[i]);
    }
    const uint8_t *base = finish(b, t);
    for (size_t i = 0; i < N; i++)
        assert_int_is(base, fs_seq_items(fs_seq(base, t))[i], vals[i], lens[i]);
    cr_assert_eq(fs_ref_tag(refs[6]), FS_TAG_INT);
    cr_assert_eq(fs_ref_int_value(refs[6]), 5);
    cr_assert_eq(fs_ref_int_value(refs[7]), -1);
    cr_assert_eq(fs_ref_int_value(refs[8]), FS_SMALL_INT_MIN);
    cr_assert_eq(fs_ref_tag(refs[9]), FS_TAG_OBJ);
    cr_assert_eq(fs_ref_int_value(refs[10]), FS_SMALL_INT_MAX);
    cr_assert_eq(fs_ref_tag(refs[11]), FS_TAG_OBJ);
    cr_assert_eq(fs_bigint_nbytes(fs_obj(base, refs[1])), 9);    /* 2^63 */
    cr_assert_eq(fs_bigint_nbytes(fs_obj(base, refs[4])), 42);   /* 10^100 */
    cr_assert_eq(fs_build_bigint(b, vals[0], 0, &t), FS_EINVAL);
    fs_builder_destroy(b);
}

Test(image_build, complex_roundtrips_both_parts)
{
    fs_builder_t *b = new_builder(0);
    fs_ref_t r;
    OK(fs_build_complex(b, -0.0, NAN, &r));
    const uint8_t *base = finish(b, r);
    const fs_complex_t *c = fs_obj(base, r);
    cr_assert_eq(fs_ref_kind(base, r), FS_KIND_COMPLEX);
    cr_assert(signbit(c->real) && c->real == 0.0);
    cr_assert(isnan(c->imag));
    fs_builder_destroy(b);
}

Test(image_build, str_of_each_charsize_roundtrips_canonical)
{
    fs_builder_t *b = new_builder(0);
    uint16_t u2[3] = { 'x', 0xd800, 0x00e9 };         /* lone surrogate */
    uint32_t u4[3] = { 0x10ffff, 'a', 0x1f600 };
    const char *lat = "caf\xe9";
    fs_ref_t t, r[6];
    OK(fs_build_seq(b, FS_KIND_TUPLE, 6, &t));
    OK(fs_build_str(b, 1, 5, 'o', -77, "hello", &r[0]));
    OK(fs_build_str(b, 1, 4, 0xe9, 12, lat, &r[1]));
    OK(fs_build_str(b, 2, 3, 0xd800, 13, u2, &r[2]));
    OK(fs_build_str(b, 4, 3, 0x10ffff, 14, u4, &r[3]));
    OK(fs_build_str(b, 1, 0, 0, 0, "", &r[4]));
    OK(fs_build_str(b, 1, 8, FS_MAXCHAR_SCAN, 15, "abcdefgh", &r[5]));
    for (int i = 0; i < 6; i++)
        fs_build_seq_set(b, t, (uint64_t)i, r[i]);
    const uint8_t *base = finish(b, t);
    const fs_str_t *s = fs_str(base, r[0]);
    cr_assert_eq(fs_ref_kind(base, r[0]), FS_KIND_STR);
    cr_assert_eq(s->h.flags, FS_FLAG_ASCII);
    cr_assert_eq(fs_str_charsize(s), 1);
    cr_assert_eq(s->h.aux, 1);
    cr_assert_eq(fs_str_len(s), 5);
    cr_assert(fs_str_ascii(s));
    cr_assert_eq(fs_str_maxchar_class(s), 127);
    cr_assert(fs_str_equals(s, 1, 5, "hello"));
    cr_assert_not(fs_str_equals(s, 1, 5, "hellO"));
    cr_assert_not(fs_str_equals(s, 1, 4, "hell"));
    cr_assert_eq(memcmp(fs_str_data(s), "hello", 5), 0);
    cr_assert_eq(r[1] - r[0], 16, "an 8-byte header and 5 chars, padded: no hash, no NUL");
    s = fs_str(base, r[1]);
    cr_assert_eq(s->h.flags, 0);
    cr_assert_eq(fs_str_maxchar_class(s), 255);
    cr_assert(fs_str_equals(s, 1, 4, lat));
    s = fs_str(base, r[2]);
    cr_assert_eq(fs_str_charsize(s), 2);
    cr_assert_eq(fs_str_maxchar_class(s), 65535);
    cr_assert(fs_str_equals(s, 2, 3, u2));
    cr_assert_not(fs_str_equals(s, 1, 3, u2));
    s = fs_str(base, r[3]);
    cr_assert_eq(fs_str_charsize(s), 4);
    cr_assert_eq(fs_str_maxchar_class(s), 0x10ffff);
    cr_assert(fs_str_equals(s, 4, 3, u4));
    s = fs_str(base, r[4]);
    cr_assert_eq(fs_str_len(s), 0);
    cr_assert_eq(s->h.flags, FS_FLAG_ASCII);
    cr_assert_eq(r[5] - r[4], 8, "the empty str is its header alone");
    s = fs_str(base, r[5]);
    cr_assert_eq(fs_str_len(s), 8);
    cr_assert_eq(fs_image_header(base)->objects_end - r[5], 16, "8 chars: exactly 16 bytes");
    fs_builder_destroy(b);
}

Test(image_build, noncanonical_str_is_einval)
{
    fs_builder_t *b = new_builder(0);
    fs_ref_t r;
    uint16_t u2[2] = { 'a', 'b' };
    uint32_t u4[1] = { 0x110000 };
    size_t before = fs_builder_size(b);
    cr_assert_eq(fs_build_str(b, 2, 2, 'b', 0, u2, &r), FS_EINVAL);      /* fits 1 byte */
    cr_assert_eq(fs_build_str(b, 2, 2, FS_MAXCHAR_SCAN, 0, u2, &r), FS_EINVAL);
    cr_assert_eq(fs_build_str(b, 1, 2, 'c', 0, "ab", &r), FS_EINVAL);    /* wrong max   */
    cr_assert_eq(fs_build_str(b, 1, 2, 'a', 0, "ab", &r), FS_EINVAL);    /* max too low */
    cr_assert_eq(fs_build_str(b, 4, 1, 0x110000, 0, u4, &r), FS_EINVAL); /* > U+10FFFF  */
    cr_assert_eq(fs_build_str(b, 4, 1, FS_MAXCHAR_SCAN, 0, u4, &r), FS_EINVAL);
    cr_assert_eq(fs_build_str(b, 3, 1, 0x10000, 0, u4, &r), FS_EINVAL);
    cr_assert_eq(fs_builder_size(b), before);
    fs_builder_destroy(b);
}

Test(image_build, bytes_and_bytearray_keep_kind_and_data)
{
    fs_builder_t *b = new_builder(0);
    uint8_t data[300];
    for (int i = 0; i < 300; i++)
        data[i] = (uint8_t)(i * 7);
    fs_ref_t t, r[5];
    OK(fs_build_seq(b, FS_KIND_LIST, 5, &t));
    OK(fs_build_bytes(b, FS_KIND_BYTES, data, 300, &r[0]));
    OK(fs_build_bytes(b, FS_KIND_BYTEARRAY, data, 13, &r[1]));
    OK(fs_build_bytes(b, FS_KIND_BYTES, NULL, 0, &r[2]));
    OK(fs_build_bytes(b, FS_KIND_BYTEARRAY, "", 0, &r[3]));
    OK(fs_build_bytes(b, FS_KIND_BYTES, data, 16, &r[4]));
    for (int i = 0; i < 5; i++)
        fs_build_seq_set(b, t, (uint64_t)i, r[i]);
    cr_assert_eq(fs_build_bytes(b, FS_KIND_STR, data, 1, &t), FS_EINVAL);
    cr_assert_eq(fs_build_bytes(b, FS_KIND_BYTES, NULL, 1, &t), FS_EINVAL);
    const uint8_t *base = finish(b, t);
    int kinds[5] = { FS_KIND_BYTES, FS_KIND_BYTEARRAY, FS_KIND_BYTES, FS_KIND_BYTEARRAY, FS_KIND_BYTES };
    uint64_t lens[5] = { 300, 13, 0, 0, 16 };
    for (int i = 0; i < 5; i++) {
        const fs_bytes_t *o = fs_bytes(base, r[i]);
        cr_assert_eq(fs_ref_kind(base, r[i]), kinds[i]);
        cr_assert_eq(fs_bytes_len(o), lens[i]);
        cr_assert_eq(memcmp(fs_bytes_data(o), data, (size_t)lens[i]), 0);
    }
    cr_assert_eq(fs_image_header(base)->objects_end - r[4], 8 + 16, "no NUL after bytes");
    fs_builder_destroy(b);
}

Test(image_build, tuple_and_list_including_empty_roundtrip)
{
    fs_builder_t *b = new_builder(0);
    fs_ref_t l, t, e1, e2;
    OK(fs_build_seq(b, FS_KIND_LIST, 4, &l));
    OK(fs_build_seq(b, FS_KIND_TUPLE, 2, &t));
    OK(fs_build_seq(b, FS_KIND_TUPLE, 0, &e1));
    OK(fs_build_seq(b, FS_KIND_LIST, 0, &e2));
    fs_build_seq_set(b, t, 0, fs_ref_small_int(-9));
    fs_build_seq_set(b, l, 0, t);
    fs_build_seq_set(b, l, 1, e1);
    fs_build_seq_set(b, l, 2, e2);
    cr_assert_eq(fs_build_seq(b, FS_KIND_DICT, 1, &t), FS_EINVAL);
    const uint8_t *base = finish(b, l);
    const fs_seq_t *s = fs_seq(base, l);
    const fs_ref_t *it = fs_seq_items(s);
    cr_assert_eq(fs_ref_kind(base, l), FS_KIND_LIST);
    cr_assert_eq(fs_seq_count(s), 4);
    cr_assert_eq(it[3], FS_REF_NONE);                       /* unset: None */
    cr_assert_eq(fs_ref_kind(base, it[0]), FS_KIND_TUPLE);
    cr_assert_eq(fs_seq_items(fs_seq(base, it[0]))[0], fs_ref_small_int(-9));
    cr_assert_eq(fs_seq_items(fs_seq(base, it[0]))[1], FS_REF_NONE);
    cr_assert_eq(fs_ref_kind(base, it[1]), FS_KIND_TUPLE);
    cr_assert_eq(fs_seq_count(fs_seq(base, it[1])), 0);
    cr_assert_eq(fs_ref_kind(base, it[2]), FS_KIND_LIST);
    cr_assert_eq(fs_seq_count(fs_seq(base, it[2])), 0);
    fs_builder_destroy(b);
}

Test(image_build, dict_set_frozenset_including_empty_roundtrip)
{
    fs_builder_t *b = new_builder(0);
    fs_ref_t t, d, s, f, ed, es, k;
    OK(fs_build_seq(b, FS_KIND_TUPLE, 5, &t));
    OK(fs_build_map(b, FS_KIND_DICT, FS_FLAG_FROZENDICT, 2, &d));
    OK(fs_build_str(b, 1, 1, 'k', 999, "k", &k));
    fs_build_map_set(b, d, 0, 999, k, fs_ref_small_int(1));
    fs_build_map_set(b, d, 1, 2, fs_ref_small_int(2), FS_REF_TRUE);
    fs_build_map_finish(b, d);
    OK(fs_build_map(b, FS_KIND_SET, 0, 1, &s));
    fs_build_map_set(b, s, 0, 1, fs_ref_small_int(1), FS_REF_NONE);
    fs_build_map_finish(b, s);
    OK(fs_build_map(b, FS_KIND_FROZENSET, 0, 1, &f));
    fs_build_map_set(b, f, 0, 1, fs_ref_small_int(1), FS_REF_NONE);
    fs_build_map_finish(b, f);
    OK(fs_build_map(b, FS_KIND_DICT, 0, 0, &ed));
    fs_build_map_finish(b, ed);
    OK(fs_build_map(b, FS_KIND_SET, 0, 0, &es));
    fs_build_map_finish(b, es);
    fs_ref_t parts[5] = { d, s, f, ed, es };
    for (int i = 0; i < 5; i++)
        fs_build_seq_set(b, t, (uint64_t)i, parts[i]);
    cr_assert_eq(fs_build_map(b, FS_KIND_LIST, 0, 1, &k), FS_EINVAL);
    cr_assert_eq(fs_build_map(b, FS_KIND_SET, FS_FLAG_FROZENDICT, 1, &k), FS_EINVAL);
    cr_assert_eq(fs_build_map(b, FS_KIND_DICT, FS_FLAG_SHAPED, 1, &k), FS_EINVAL);
    const uint8_t *base = finish(b, t);
    const fs_map_t *m = fs_map(base, d);
    cr_assert_eq(fs_ref_kind(base, d), FS_KIND_DICT);
    cr_assert_eq(m->h.flags, FS_FLAG_FROZENDICT);
    cr_assert_eq(fs_map_count(base, m), 2);
    cr_assert_eq(m->index_size, 0, "2 entries: scanned, no index");
    cr_assert_eq(fs_map_key(base, m, 0), k);                /* insertion order */
    cr_assert_eq(fs_map_hash(base, m, 0), 999);
    int64_t two = 2;
    int64_t e = fs_map_find(base, m, 2, eq_small_int, &two);
    cr_assert_eq(e, 1);
    cr_assert_eq(fs_map_value(m, e), FS_REF_TRUE);
    e = fs_map_find(base, m, 999, eq_same_ref, &k);
    cr_assert_eq(e, 0);
    cr_assert_eq(fs_map_value(m, 0), fs_ref_small_int(1));
    cr_assert_eq(fs_map_find(base, m, 998, eq_same_ref, &k), -1);
    cr_assert_eq(fs_ref_kind(base, s), FS_KIND_SET);
    cr_assert_eq(fs_ref_kind(base, f), FS_KIND_FROZENSET);
    /* a set is hashes and keys: no values */
    cr_assert_eq(f - s, sizeof(fs_map_t) + 8 + 8);
    int64_t one = 1;
    cr_assert_eq(fs_map_find(base, fs_map(base, f), 1, eq_small_int, &one), 0);
    cr_assert_eq(fs_map_count(base, fs_map(base, ed)), 0);
    cr_assert_eq(fs_map(base, ed)->index_size, 0);
    cr_assert_eq(fs_map_find(base, fs_map(base, ed), 1, eq_small_int, &one), -1);
    cr_assert_eq(fs_ref_kind(base, es), FS_KIND_SET);
    cr_assert_eq(fs_map_find(base, fs_map(base, es), 1, eq_small_int, &one), -1);
    fs_builder_destroy(b);
}

Test(image_build, self_referencing_list_keeps_the_cycle)
{
    fs_builder_t *b = new_builder(0);
    fs_ref_t l, d;
    OK(fs_build_seq(b, FS_KIND_LIST, 2, &l));         /* reserve, then set */
    OK(fs_build_map(b, FS_KIND_DICT, 0, 1, &d));
    fs_build_seq_set(b, l, 0, l);
    fs_build_seq_set(b, l, 1, d);
    fs_build_map_set(b, d, 0, 5, fs_ref_small_int(5), l); /* d[5] = l */
    fs_build_map_finish(b, d);
    const uint8_t *base = finish(b, l);
    const fs_ref_t *it = fs_seq_items(fs_seq(base, l));
    cr_assert_eq(it[0], l);
    cr_assert_eq(fs_seq_items(fs_seq(base, it[0]))[0], l);
    cr_assert_eq(fs_map_value(fs_map(base, it[1]), 0), l);
    cr_assert(fs_obj_shared(base, l), "the root, referenced again, is shared");
    cr_assert_not(fs_obj_shared(base, d), "referenced once");
    walk_image(base, fs_image_header(base)->image_size);     /* terminates */
    fs_builder_destroy(b);
}

Test(image_build, shared_reference_is_one_object)
{
    fs_builder_t *b = new_builder(0);
    fs_ref_t l, s;
    OK(fs_build_seq(b, FS_KIND_LIST, 3, &l));
    OK(fs_build_str(b, 1, 3, 'x', 1, "abx", &s));
    fs_build_seq_set(b, l, 0, s);
    fs_build_seq_set(b, l, 2, s);
    const uint8_t *base = finish(b, l);
    cr_assert_eq(fs_seq_items(fs_seq(base, l))[0], fs_seq_items(fs_seq(base, l))[2]);
    cr_assert_eq(fs_image_header(base)->object_count, 2);
    cr_assert(fs_obj_shared(base, s));
    cr_assert_not(fs_obj_shared(base, l));
    cr_assert_eq(((const fs_str_t *)fs_obj(base, s))->h.flags, FS_FLAG_SHARED | FS_FLAG_ASCII);

    /* The check proves the flag: missing on a shared object is corrupt (a
    ** reader would lose the sharing, or loop on a cycle); extra is allowed. */
    size_t n = fs_image_header(base)->image_size;
    uint8_t *p = copy_exact(base, n);
    ohdr(p, s)->flags &= (uint8_t)~FS_FLAG_SHARED;
    CORRUPT(p, n, "FS_FLAG_SHARED");
    memcpy(p, base, n);
    ohdr(p, l)->flags |= FS_FLAG_SHARED;
    cr_assert_eq(check(p, n), FS_OK);
    free(p);
    fs_builder_destroy(b);
}

Test(image_build, million_item_list_roundtrips)
{
    enum { N = 1000000 };
    fs_builder_t *b = new_builder(0);
    fs_ref_t l, r;
    OK(fs_build_seq(b, FS_KIND_LIST, N, &l));
    for (uint64_t i = 0; i < N; i++) {
        if (i % 10 == 0)
            OK(fs_build_float(b, (double)i * 1e200, &r));      /* FLOAT objects */
        else if (i % 10 == 5)
            OK(fs_build_float(b, (double)i, &r));              /* immediates */
        else
            OK(fs_build_int64(b, (int64_t)i * 3 - N, &r));
        fs_build_seq_set(b, l, i, r);
    }
    const uint8_t *base = finish(b, l);
    const fs_seq_t *s = fs_seq(base, l);
    const fs_ref_t *it = fs_seq_items(s);
    cr_assert_eq(fs_seq_count(s), N);
    for (uint64_t i = 0; i < N; i++) {
        if (i % 10 == 0) {
            cr_assert_eq(fs_ref_tag(it[i]), FS_TAG_OBJ);
            cr_assert_eq(((const fs_float_t *)fs_obj(base, it[i]))->value, (double)i * 1e200);
        }
        else if (i % 10 == 5) {
            cr_assert_eq(fs_ref_tag(it[i]), FS_TAG_FLOAT);
            cr_assert_eq(fs_ref_float(it[i]), (double)i);
        }
        else
            cr_assert_eq(fs_ref_int_value(it[i]), (int64_t)i * 3 - N);
    }
    cr_assert_eq(fs_image_header(base)->object_count, 1 + N / 10);
    fs_builder_destroy(b);
}

Test(image_build, million_entry_dict_finds_every_key_and_misses_others)
{
    enum { N = 1000000 };
    fs_builder_t *b = new_builder(0);
    fs_ref_t d;
    OK(fs_build_map(b, FS_KIND_DICT, 0, N, &d));
    for (int64_t i = 0; i < N; i++)   /* CPython: hash(int) == int for these */
        fs_build_map_set(b, d, (uint64_t)i, i * 7, fs_ref_small_int(i * 7), fs_ref_small_int(-i));
    fs_build_map_finish(b, d);
    const uint8_t *base = finish(b, d);
    const fs_map_t *m = fs_map(base, d);
    cr_assert_eq(fs_map_count(base, m), N);
    cr_assert_leq((uint64_t)N * 3, (uint64_t)m->index_size * 2);
    for (int64_t i = 0; i < N; i++) {
        int64_t key = i * 7;
        int64_t e = fs_map_find(base, m, key, eq_small_int, &key);
        cr_assert_eq(e, i, "key %lld: got entry %lld", (long long)key, (long long)e);
        cr_assert_eq(fs_map_value(m, e), fs_ref_small_int(-i));
    }
    for (int64_t i = 0; i < 1000; i++) {
        int64_t key = i * 7 + 3;           /* absent, and absent with a hit hash */
        cr_assert_eq(fs_map_find(base, m, key, eq_small_int, &key), -1);
        key = i * 7;
        int64_t other = -key - 1;
        cr_assert_eq(fs_map_find(base, m, key, eq_small_int, &other), -1);
    }
    fs_builder_destroy(b);
}

Test(image_build, colliding_hashes_are_all_found)
{
    /* Many keys with one hash, in maps of every small size and a big one;
    ** -2 is CPython's hash of both -1 and -2 and, like -32, keeps its first
    ** probes on a single slot of a small index. */
    int64_t hashes[] = { 0, 1, -2, -32, 12345, INT64_MIN, INT64_MAX, -1 };
    fs_builder_t *b = new_builder(0);
    enum { MAXN = 70, NH = sizeof hashes / sizeof *hashes };
    fs_ref_t maps[NH][MAXN + 1], big, l;
    OK(fs_build_seq(b, FS_KIND_LIST, NH * (MAXN + 1) + 1, &l));
    for (size_t h = 0; h < NH; h++) {
        for (int n = 0; n <= MAXN; n++) {
            OK(fs_build_map(b, FS_KIND_SET, 0, (uint64_t)n, &maps[h][n]));
            for (int i = 0; i < n; i++)
                fs_build_map_set(b, maps[h][n], (uint64_t)i, hashes[h], fs_ref_small_int(i),
                                 FS_REF_NONE);
            fs_build_map_finish(b, maps[h][n]);
            fs_build_seq_set(b, l, h * (MAXN + 1) + (uint64_t)n, maps[h][n]);
        }
    }
    enum { NB = 3000 };
    OK(fs_build_map(b, FS_KIND_DICT, 0, NB, &big));
    for (int i = 0; i < NB; i++)          /* one hash per 100 keys */
        fs_build_map_set(b, big, (uint64_t)i, (i / 100) * 1000003, fs_ref_small_int(i),
                         fs_ref_small_int(i + 1));
    fs_build_map_finish(b, big);
    fs_build_seq_set(b, l, NH * (MAXN + 1), big);
    const uint8_t *base = finish(b, l);
    for (size_t h = 0; h < NH; h++) {
        for (int n = 0; n <= MAXN; n++) {
            const fs_map_t *m = fs_map(base, maps[h][n]);
            for (int64_t i = 0; i < n; i++)
                cr_assert_eq(fs_map_find(base, m, hashes[h], eq_small_int, &i), i,
                             "hash %lld, %d keys: key %lld lost", (long long)hashes[h], n,
                             (long long)i);
            int64_t absent = n;
            cr_assert_eq(fs_map_find(base, m, hashes[h], eq_small_int, &absent), -1);
        }
    }
    const fs_map_t *m = fs_map(base, big);
    for (int64_t i = 0; i < NB; i++)
        cr_assert_eq(fs_map_find(base, m, (i / 100) * 1000003, eq_small_int, &i), i);
    fs_builder_destroy(b);
}

Test(image_build, random_hashes_in_maps_of_every_size_are_found)
{
    fs_builder_t *b = new_builder(0);
    enum { MAXN = 200 };
    static int64_t hs[MAXN + 1][MAXN];
    fs_ref_t maps[MAXN + 1], l;
    OK(fs_build_seq(b, FS_KIND_TUPLE, MAXN + 1, &l));
    for (int n = 0; n <= MAXN; n++) {
        OK(fs_build_map(b, FS_KIND_DICT, 0, (uint64_t)n, &maps[n]));
        for (int i = 0; i < n; i++) {
            hs[n][i] = (int64_t)rnd();
            fs_build_map_set(b, maps[n], (uint64_t)i, hs[n][i], fs_ref_small_int(i), FS_REF_NONE);
        }
        fs_build_map_finish(b, maps[n]);
        fs_build_seq_set(b, l, (uint64_t)n, maps[n]);
    }
    const uint8_t *base = finish(b, l);
    for (int n = 0; n <= MAXN; n++) {
        const fs_map_t *m = fs_map(base, maps[n]);
        uint64_t is = m->index_size;
        if (n <= (int)FS_MAP_SCAN_MAX)
            cr_assert_eq(is, 0, "%d entries: no index", n);
        else {
            cr_assert_eq(is & (is - 1), 0);
            cr_assert_leq((uint64_t)n * 3, is * 2);
            cr_assert_geq(is, (uint64_t)n + 12, "every entry within the probe budget");
        }
        for (int64_t i = 0; i < n; i++)
            cr_assert_eq(fs_map_find(base, m, hs[n][i], eq_small_int, &i), i);
    }
    fs_builder_destroy(b);
}

Test(image_build, failing_equality_callback_returns_minus_two)
{
    fs_builder_t *b = new_builder(0);
    fs_ref_t d, big;
    OK(fs_build_seq(b, FS_KIND_TUPLE, 2, &big));
    OK(fs_build_map(b, FS_KIND_DICT, 0, 1, &d));             /* scanned */
    fs_build_map_set(b, d, 0, 77, fs_ref_small_int(1), FS_REF_NONE);
    fs_build_map_finish(b, d);
    fs_build_seq_set(b, big, 0, d);
    OK(fs_build_map(b, FS_KIND_DICT, 0, 20, &d));            /* indexed */
    for (int i = 0; i < 20; i++)
        fs_build_map_set(b, d, (uint64_t)i, 77 + i, fs_ref_small_int(i), FS_REF_NONE);
    fs_build_map_finish(b, d);
    fs_build_seq_set(b, big, 1, d);
    const uint8_t *base = finish(b, big);
    for (int i = 0; i < 2; i++) {
        const fs_map_t *m = fs_map(base, fs_seq_items(fs_seq(base, big))[i]);
        cr_assert_eq(fs_map_find(base, m, 77, eq_fails, NULL), -2);
        cr_assert_eq(fs_map_find(base, m, 7, eq_fails, NULL), -1);
    }
    fs_builder_destroy(b);
}

Test(image_build, xrefs_are_deduplicated_and_resolve)
{
    fs_builder_t *b = new_builder(0);
    enum { N = 5000 };
    static fs_ref_t refs[N];
    fs_ref_t l, again;
    OK(fs_build_seq(b, FS_KIND_LIST, N, &l));
    for (uint32_t i = 0; i < N; i++) {                  /* grows the dedupe table */
        OK(fs_build_xref(b, i % 4, (fs_ref_t)(128 + 8 * (i / 4)), &refs[i]));
        cr_assert_eq(fs_ref_tag(refs[i]), FS_TAG_XREF);
        cr_assert_eq(refs[i] >> 3, i, "new pairs get consecutive entries");
        fs_build_seq_set(b, l, i, refs[i]);
    }
    for (uint32_t i = 0; i < N; i++) {
        OK(fs_build_xref(b, i % 4, (fs_ref_t)(128 + 8 * (i / 4)), &again));
        cr_assert_eq(again, refs[i]);
    }
    fs_ref_t t1, fimm;
    OK(fs_build_xref(b, 0, FS_REF_TRUE, &again));        /* immediates are targets too */
    OK(fs_build_xref(b, 1, FS_REF_TRUE, &t1));
    cr_assert_neq(again, t1);
    cr_assert(fs_ref_float_imm(2.5, &fimm));
    OK(fs_build_xref(b, 2, fimm, &again));               /* float immediates as well */
    cr_assert_eq(fs_build_xref(b, 0, refs[0], &again), FS_EINVAL);   /* xref to xref */
    cr_assert_eq(fs_build_xref(b, 0, (3u << 3) | FS_TAG_CONST, &again), FS_EINVAL);
    uint64_t ids[4] = { 100, 101, 102, 103 };
    cr_assert_eq(l, FS_IMAGE_HEADER_SIZE);               /* the first object */
    cr_assert_eq(fs_builder_finish(b, l, ids, 3, 1), FS_EINVAL);     /* slot 3 unnamed */
    OK(fs_builder_finish(b, l, ids, 4, 1));
    const uint8_t *base = fs_builder_base(b);
    const fs_image_header_t *h = fs_image_header(base);
    cr_assert_eq(h->nxrefs, N + 3);
    cr_assert_eq(h->nimports, 4);
    cr_assert_eq(check_copy(base, h->image_size), FS_OK);
    for (uint32_t i = 0; i < N; i++) {
        fs_ref_t r = fs_seq_items(fs_seq(base, l))[i];
        cr_assert_eq(fs_ref_kind(base, r), FS_KIND_XREF);
        const fs_xref_t *x = fs_xref(base, r);
        cr_assert_eq(x->import_slot, i % 4);
        cr_assert_eq(x->target, 128 + 8 * (i / 4));
        cr_assert_eq(fs_image_imports(base)[x->import_slot], 100 + i % 4);
    }
    cr_assert_eq(fs_xref(base, again)->target, fimm);
    fs_builder_destroy(b);
}

Test(image_build, header_fields_and_detach)
{
    fs_builder_t *b;
    OK(build_mixed(&b));
    const uint8_t *base = fs_builder_base(b);
    const fs_image_header_t *h = fs_image_header(base);
    static const uint8_t zero16[16];
    cr_assert_eq(sizeof *h, 128);
    cr_assert_eq(memcmp(h->magic, FS_IMAGE_MAGIC, 8), 0);
    cr_assert_eq(h->version, FS_IMAGE_VERSION);
    cr_assert_eq(h->version, 2);
    cr_assert_eq(h->byte_order, FS_BYTE_ORDER_LITTLE);
    cr_assert_eq(h->word_size, 8);
    cr_assert_eq(h->hash_domain, FS_HASH_PROCESS);
    cr_assert_eq(h->header_size, FS_IMAGE_HEADER_SIZE);
    cr_assert_eq(h->zero8, 0);
    cr_assert_eq(h->flags, 0);
    cr_assert_eq(h->checksum_kind, 0);
    cr_assert_eq(h->checksum, 0);
    cr_assert_eq(memcmp(h->hash_key, zero16, 16), 0);
    cr_assert(h->zero64[0] == 0 && h->zero64[1] == 0);
    cr_assert_eq(h->image_size, fs_builder_size(b));
    cr_assert_eq(h->root, FS_IMAGE_HEADER_SIZE);
    cr_assert_eq(h->hash_check, -1);
    cr_assert_eq(h->nimports, 3);
    cr_assert_eq(h->import_off, h->objects_end);
    cr_assert_eq(h->xref_off, h->objects_end + 3 * 8);
    cr_assert_eq(h->image_size, h->xref_off + (uint64_t)h->nxrefs * sizeof(fs_xref_t));
    cr_assert_eq(fs_image_imports(base)[2], 9);
    /* 400 xrefs (i = 2 mod 5) as (i%3, i%97) pairs: i mod 291 takes 291 values */
    cr_assert_eq(h->nxrefs, 291);
    cr_assert_eq(h->object_count, MIXED_OBJECTS);
    fs_build_stats_t st;
    fs_builder_stats(b, &st);
    cr_assert_eq(st.shapes, 1);
    cr_assert_eq(st.shaped, MIXED_RECORDS - 1);
    /* stored again: "shared" 400 times, floats 200 - 8 + 1, record keys
    ** 3 * 5 and names 4, "blob" 4 */
    cr_assert_eq(st.dedup_hits, 400 + (200 - 8 + 1) + 3 * (MIXED_RECORDS - 1) + (MIXED_RECORDS - 2) + 4);
    cr_assert_eq(check_copy(base, h->image_size), FS_OK);
    cr_assert_neq(walk_image(base, h->image_size), 0);
    size_t image_size = h->image_size, page = fs_arena_page_size();
    /* appends after finish are refused */
    fs_ref_t r;
    cr_assert_eq(fs_build_float(b, 1e300, &r), FS_EINVAL);
    cr_assert_eq(fs_build_xref(b, 0, 128, &r), FS_EINVAL);
    cr_assert_eq(fs_build_dict(b, 0, 0, NULL, NULL, &r), FS_EINVAL);
    cr_assert_eq(fs_builder_finish(b, 128, NULL, 0, 0), FS_EINVAL);
    void *img;
    size_t alloc;
    fs_builder_detach(b, &img, &alloc);
    cr_assert_eq(img, base);
    cr_assert_eq(alloc % page, 0);
    cr_assert_geq(alloc, image_size);
    cr_assert_lt(alloc, image_size + image_size / 4 + page, "shrunk to fit");
    cr_assert_null(fs_builder_base(b));
    cr_assert_eq(fs_builder_size(b), 0);
    fs_builder_destroy(b);                        /* the image is ours now */
    cr_assert_eq(check(img, image_size), FS_OK);
    OK(fs_arena_seal(img, alloc, 1));
    cr_assert_eq(check(img, image_size), FS_OK);    /* reads only */
    OK(fs_arena_unseal(img, alloc));
    fs_arena_free(img);
}

Test(image_build, growth_is_geometric_and_offsets_survive_moves)
{
    fs_builder_t *b = new_builder(0);
    enum { N = 200000 };
    fs_ref_t l, r;
    OK(fs_build_seq(b, FS_KIND_LIST, N, &l));
    fs_alloc_fail_after(-1);                       /* resets the counter */
    for (int i = 0; i < N; i++) {
        OK(fs_build_float(b, (i + 0.5) * 1e300, &r));   /* objects, all distinct */
        cr_assert_eq(r % 8, 0);
        fs_build_seq_set(b, l, (uint64_t)i, r);
    }
    long allocs = fs_alloc_count();
    cr_assert_leq(allocs, 60, "%ld allocations for %d appends: not geometric", allocs, N);
    cr_assert_geq(fs_builder_size(b), (size_t)N * 16);
    const uint8_t *base = finish(b, l);
    for (int i = 0; i < N; i++)
        cr_assert_eq(((const fs_float_t *)fs_obj(base, fs_seq_items(fs_seq(base, l))[i]))->value,
                     (i + 0.5) * 1e300);
    fs_builder_destroy(b);
}

Test(image_build, oversized_requests_are_etoobig_and_leave_the_builder_usable)
{
    fs_builder_t *b = new_builder(0);
    fs_ref_t r, l;
    size_t before = fs_builder_size(b);
    cr_assert_eq(fs_build_map(b, FS_KIND_DICT, 0, (uint64_t)FS_MAP_MAX + 1, &r), FS_ETOOBIG);
    cr_assert_eq(fs_build_map(b, FS_KIND_SET, 0, UINT64_MAX, &r), FS_ETOOBIG);
    int64_t h = 0;
    fs_ref_t k = FS_REF_NONE;
    cr_assert_eq(fs_build_dict(b, 0, (uint64_t)FS_MAP_MAX + 1, &h, &k, &r), FS_ETOOBIG);
    cr_assert_eq(fs_build_seq(b, FS_KIND_LIST, UINT64_MAX / 4, &r), FS_ETOOBIG);
    cr_assert_eq(fs_build_seq(b, FS_KIND_LIST, UINT64_MAX, &r), FS_ETOOBIG);
    cr_assert_eq(fs_build_seq(b, FS_KIND_TUPLE, (uint64_t)1 << 44, &r), FS_ETOOBIG); /* 128 TiB */
    cr_assert_eq(fs_build_bytes(b, FS_KIND_BYTES, "x", UINT64_MAX, &r), FS_ETOOBIG);
    cr_assert_eq(fs_build_bytes(b, FS_KIND_BYTES, "x", UINT64_MAX - 20, &r), FS_ETOOBIG);
    cr_assert_eq(fs_build_str(b, 4, UINT64_MAX / 2, 0x10000, 0, "x", &r), FS_ETOOBIG);
    cr_assert_eq(fs_build_str(b, 1, UINT64_MAX, 'x', 0, "x", &r), FS_ETOOBIG);
    cr_assert_eq(fs_builder_size(b), before);
    OK(fs_build_seq(b, FS_KIND_LIST, 1, &l));
    OK(fs_build_str(b, 1, 2, 'o', 3, "ok", &r));
    fs_build_seq_set(b, l, 0, r);
    const uint8_t *base = finish(b, l);
    cr_assert(fs_str_equals(fs_str(base, fs_seq_items(fs_seq(base, l))[0]), 1, 2, "ok"));
    fs_builder_destroy(b);
}

/* ---- image_float: float immediates and FLOAT objects ------------------------ */

/* The format's rule: an immediate exactly when the top two bits of the
** exponent differ (fs_image.h). */
static int imm_by_rule(double v)
{
    uint64_t u = bits_of(v);
    return ((u >> 62) & 1) != ((u >> 61) & 1);
}

Test(image_float, immediate_encoding_roundtrips_every_bit_pattern_it_accepts)
{
    rng_state = 77;
    for (long i = 0; i < 2000000; i++) {
        uint64_t u = rnd();
        if (i % 4 == 0)                     /* exponents near the edges too */
            u = (u & ~(UINT64_C(0x7ff) << 52)) | ((uint64_t)(510 + rnd() % 4 + (rnd() % 2) * 1024) << 52);
        double v = from_bits(u);
        fs_ref_t r = 0;
        int imm = fs_ref_float_imm(v, &r);
        cr_assert_eq(imm, imm_by_rule(v), "bits %#llx", (unsigned long long)u);
        if (!imm)
            continue;
        cr_assert_eq(fs_ref_tag(r), FS_TAG_FLOAT);
        cr_assert_geq(r & FS_TAG_MASK, 4);
        cr_assert_eq(fs_ref_kind(NULL, r), FS_KIND_FLOAT);
        cr_assert_eq(bits_of(fs_ref_float(r)), u, "bits %#llx do not come back",
                     (unsigned long long)u);
    }
}

Test(image_float, values_across_the_range_roundtrip_bit_exact)
{
    double v[] = {
        1.0, -2.5, 0.5, 3.141592653589793, -1e-100, 1e100, 123456789.125,
        ldexp(1, -511), -ldexp(1, -511),                 /* smallest immediates */
        nextafter(ldexp(1, -511), 0),                    /* just below: object  */
        ldexp(1, 512), nextafter(ldexp(1, 513), 0),      /* immediates          */
        ldexp(1, 513), -ldexp(1, 513),                   /* objects from here   */
        1e300, -1e300, DBL_MAX, -DBL_MAX, 1e-300, DBL_MIN,
        0.0, -0.0, INFINITY, -INFINITY, NAN, -NAN,
        5e-324, -5e-324, 2.2250738585072009e-308,        /* denormals           */
        from_bits(UINT64_C(0x7ff0000000000001)),         /* a signalling NaN    */
        from_bits(UINT64_C(0x7ff8deadbeef0001)),         /* a NaN payload       */
    };
    enum { N = sizeof v / sizeof *v };
    int want_imm[N];
    for (size_t i = 0; i < N; i++)
        want_imm[i] = imm_by_rule(v[i]);
    cr_assert(want_imm[0] && want_imm[1] && want_imm[7] && want_imm[10] && want_imm[11]);
    cr_assert(!want_imm[9] && !want_imm[12] && !want_imm[14] && !want_imm[20] && !want_imm[21]);
    cr_assert(!want_imm[22] && !want_imm[24] && !want_imm[26]);
    fs_builder_t *b = new_builder(0);
    fs_ref_t t, r;
    OK(fs_build_seq(b, FS_KIND_TUPLE, N, &t));
    long objects = 0;
    for (size_t i = 0; i < N; i++) {
        OK(fs_build_float(b, v[i], &r));
        cr_assert_eq(fs_ref_tag(r), want_imm[i] ? FS_TAG_FLOAT : FS_TAG_OBJ,
                     "value %zu (%g) stored as tag %u", i, v[i], fs_ref_tag(r));
        objects += !want_imm[i];
        fs_build_seq_set(b, t, i, r);
    }
    const uint8_t *base = finish(b, t);
    cr_assert_eq(fs_image_header(base)->object_count, (uint64_t)(1 + objects));
    const fs_ref_t *it = fs_seq_items(fs_seq(base, t));
    for (size_t i = 0; i < N; i++) {
        cr_assert_eq(fs_ref_kind(base, it[i]), FS_KIND_FLOAT);
        double got = float_of(base, it[i]);
        cr_assert_eq(bits_of(got), bits_of(v[i]), "float %zu differs", i);
    }
    cr_assert(signbit(float_of(base, it[21])) && float_of(base, it[21]) == 0.0);
    cr_assert(isnan(float_of(base, it[24])));
    cr_assert(isinf(float_of(base, it[23])) && float_of(base, it[23]) < 0);
    fs_builder_destroy(b);
}

Test(image_float, float_object_holding_an_encodable_value_is_rejected)
{
    fs_builder_t *b = new_builder(0);
    fs_ref_t t, f, g;
    OK(fs_build_seq(b, FS_KIND_TUPLE, 2, &t));
    OK(fs_build_float(b, 1e300, &f));
    OK(fs_build_float(b, 0.0, &g));
    fs_build_seq_set(b, t, 0, f);
    fs_build_seq_set(b, t, 1, g);
    size_t n;
    uint8_t *p = finish_copy(b, t, &n);
    double enc[] = { 1.0, -2.5, ldexp(1, -511), nextafter(ldexp(1, 513), 0), 1e100 };
    double fine[] = { 0.0, -0.0, INFINITY, NAN, 5e-324, -1e300, ldexp(1, 513) };
    fs_float_t *o = (fs_float_t *)(void *)(p + f);
    for (size_t i = 0; i < sizeof enc / sizeof *enc; i++) {   /* boxed: narrow dicts */
        o->value = enc[i];
        cr_assert_eq(check(p, n), FS_OK, "boxed value %zu", i);
    }
    for (size_t i = 0; i < sizeof fine / sizeof *fine; i++) {
        o->value = fine[i];
        cr_assert_eq(check(p, n), FS_OK, "value %zu", i);
    }
    o->h.n = 1;
    CORRUPT(p, n, "a float with flags or a length");
    o->h.n = 0;
    o->h.flags = FS_FLAG_ASCII;
    CORRUPT(p, n, "a float with flags or a length");
    o->h.flags = 0;
    o->h.aux = 1;
    CORRUPT(p, n, "reserved object header");
    free(p);
}

Test(image_float, float_immediates_are_valid_refs_everywhere)
{
    size_t n;
    uint8_t *img = mixed_copy(&n);
    uint8_t *p = malloc(n);
    fs_ref_t list = *root_val(img, MX_LIST), imm[4];
    double v[4] = { 1.0, -1.0, 4.0, -ldexp(1, 300) };   /* (s, e10) = 00 10 01 11 */
    for (int i = 0; i < 4; i++) {                    /* all four tags 4..7 */
        cr_assert(fs_ref_float_imm(v[i], &imm[i]));
        for (int j = 0; j < i; j++)
            cr_assert_neq(imm[i] & 7, imm[j] & 7);
    }
    for (int i = 0; i < 4; i++) {
        memcpy(p, img, n);
        w_items(p, list)[4] = imm[i];                 /* was a small int */
        *root_val(p, MX_BIG40) = imm[i];              /* drops a big int's only ref */
        cr_assert_eq(check(p, n), FS_OK);
        memcpy(p, img, n);
        hdr(p)->root = imm[i];                        /* the root dict unreferenced */
        cr_assert_eq(check(p, n), FS_OK);
        memcpy(p, img, n);
        ((fs_xref_t *)(void *)(p + hdr(p)->xref_off))[0].target = imm[i];
        cr_assert_eq(check(p, n), FS_OK);
    }
    free(p);
    free(img);
}

/* ---- image_dedup: equal values stored once ---------------------------------- */

Test(image_dedup, equal_str_is_stored_once_and_shared)
{
    fs_builder_t *b = new_builder(0);
    fs_ref_t l, s1, s2, s3, s4, other, wide1, wide2, once1, once2;
    uint16_t w[2] = { 0x4e2d, 'x' };
    OK(fs_build_seq(b, FS_KIND_LIST, 6, &l));
    OK(fs_build_str(b, 1, 5, FS_MAXCHAR_SCAN, 42, "hello", &s1));
    OK(fs_build_str(b, 1, 5, 'o', 42, "hello", &s2));
    char buf[6] = "hello";                           /* equal by value, not pointer */
    OK(fs_build_str(b, 1, 5, FS_MAXCHAR_SCAN, 42, buf, &s3));
    OK(fs_build_str(b, 1, 5, FS_MAXCHAR_SCAN, 42, "hellO", &other));   /* same hash */
    OK(fs_build_str(b, 1, 4, FS_MAXCHAR_SCAN, 42, "hell", &s4));       /* prefix */
    OK(fs_build_str(b, 2, 2, FS_MAXCHAR_SCAN, 9, w, &wide1));
    OK(fs_build_str(b, 2, 2, FS_MAXCHAR_SCAN, 9, w, &wide2));
    OK(fs_build_str(b, 1, 4, FS_MAXCHAR_SCAN, 5, "once", &once1));
    OK(fs_build_str(b, 1, 4, FS_MAXCHAR_SCAN, 5, "once", &once2));
    cr_assert(s1 == s2 && s2 == s3, "equal strs are one object");
    cr_assert_neq(other, s1);
    cr_assert_neq(s4, s1);
    cr_assert_eq(wide1, wide2);
    cr_assert_eq(once1, once2);
    fs_build_stats_t st;
    fs_builder_stats(b, &st);
    cr_assert_eq(st.dedup_hits, 4);
    fs_build_seq_set(b, l, 0, s1);
    fs_build_seq_set(b, l, 1, s3);
    fs_build_seq_set(b, l, 2, other);
    fs_build_seq_set(b, l, 3, s4);
    fs_build_seq_set(b, l, 4, wide1);
    fs_build_seq_set(b, l, 5, once2);                /* built twice, stored once */
    size_t n;
    uint8_t *p = finish_copy(b, l, &n);
    cr_assert_eq(hdr(p)->object_count, 1 + 5);
    cr_assert(fs_obj_shared(p, s1), "two references");
    cr_assert_not(fs_obj_shared(p, wide1));
    cr_assert_not(fs_obj_shared(p, once1), "one reference, though built twice");
    cr_assert_not(fs_obj_shared(p, other));
    cr_assert(fs_str_equals(fs_str(p, s1), 1, 5, "hello"));
    /* the validator proves the flag a deduplicated str needs */
    ohdr(p, s1)->flags &= (uint8_t)~FS_FLAG_SHARED;
    CORRUPT(p, n, "lacks FS_FLAG_SHARED");
    free(p);
}

Test(image_dedup, dedup_survives_image_growth)
{
    fs_builder_t *b = new_builder(0);
    enum { N = 20000, DISTINCT = 1000 };
    fs_ref_t l, first[DISTINCT], r;
    OK(fs_build_seq(b, FS_KIND_LIST, N, &l));
    for (int i = 0; i < N; i++) {
        char s[32];
        int len = snprintf(s, sizeof s, "token-%d", i % DISTINCT);
        OK(fs_build_str(b, 1, (uint64_t)len, FS_MAXCHAR_SCAN, str_hash(s), s, &r));
        if (i < DISTINCT)
            first[i] = r;
        else
            cr_assert_eq(r, first[i % DISTINCT], "token %d stored again", i % DISTINCT);
        fs_build_seq_set(b, l, (uint64_t)i, r);
    }
    fs_build_stats_t st;
    fs_builder_stats(b, &st);
    cr_assert_eq(st.dedup_hits, N - DISTINCT);
    const uint8_t *base = finish(b, l);
    cr_assert_eq(fs_image_header(base)->object_count, 1 + DISTINCT);
    for (int i = 0; i < DISTINCT; i++)
        cr_assert(fs_obj_shared(base, first[i]));
    fs_builder_destroy(b);
}

Test(image_dedup, equal_bytes_stored_once_bytearray_never)
{
    fs_builder_t *b = new_builder(0);
    static uint8_t big[FS_DEDUP_BYTES_MAX + 1];
    memset(big, 'z', sizeof big);
    fs_ref_t l, b1, b2, e1, e2, a1, a2, s1, m1, m2, x1, x2, o1;
    OK(fs_build_seq(b, FS_KIND_LIST, 12, &l));
    OK(fs_build_bytes(b, FS_KIND_BYTES, "blob", 4, &b1));
    OK(fs_build_bytes(b, FS_KIND_BYTES, "blob", 4, &b2));
    OK(fs_build_bytes(b, FS_KIND_BYTES, "blo", 3, &o1));
    OK(fs_build_bytes(b, FS_KIND_BYTES, NULL, 0, &e1));
    OK(fs_build_bytes(b, FS_KIND_BYTES, "", 0, &e2));
    OK(fs_build_bytes(b, FS_KIND_BYTEARRAY, "blob", 4, &a1));
    OK(fs_build_bytes(b, FS_KIND_BYTEARRAY, "blob", 4, &a2));
    OK(fs_build_str(b, 1, 4, FS_MAXCHAR_SCAN, 1, "blob", &s1));
    OK(fs_build_bytes(b, FS_KIND_BYTES, big, FS_DEDUP_BYTES_MAX, &m1));      /* at the limit */
    OK(fs_build_bytes(b, FS_KIND_BYTES, big, FS_DEDUP_BYTES_MAX, &m2));
    OK(fs_build_bytes(b, FS_KIND_BYTES, big, FS_DEDUP_BYTES_MAX + 1, &x1));  /* beyond */
    OK(fs_build_bytes(b, FS_KIND_BYTES, big, FS_DEDUP_BYTES_MAX + 1, &x2));
    cr_assert_eq(b1, b2);
    cr_assert_neq(o1, b1);
    cr_assert_eq(e1, e2);
    cr_assert_neq(a1, a2, "bytearray thaws mutable: never shared by value");
    cr_assert_neq(a1, b1);
    cr_assert_neq(s1, b1, "a str is not a bytes");
    cr_assert_eq(m1, m2);
    cr_assert_neq(x1, x2, "longer blobs are not hashed for dedup");
    fs_ref_t all[12] = { b1, b2, o1, e1, e2, a1, a2, s1, m1, m2, x1, x2 };
    for (int i = 0; i < 12; i++)
        fs_build_seq_set(b, l, (uint64_t)i, all[i]);
    size_t n;
    uint8_t *p = finish_copy(b, l, &n);
    cr_assert_eq(hdr(p)->object_count, 1 + 9);
    cr_assert(fs_obj_shared(p, b1) && fs_obj_shared(p, e1) && fs_obj_shared(p, m1));
    cr_assert(!fs_obj_shared(p, a1) && !fs_obj_shared(p, a2) && !fs_obj_shared(p, x1));
    cr_assert_eq(fs_ref_kind(p, a1), FS_KIND_BYTEARRAY);
    ohdr(p, b1)->flags = 0;
    CORRUPT(p, n, "lacks FS_FLAG_SHARED");
    free(p);
}

Test(image_dedup, equal_float_objects_stored_once_nan_never)
{
    fs_builder_t *b = new_builder(0);
    double v[] = { 1e300, 1e300, 0.0, 0.0, -0.0, -0.0, INFINITY, INFINITY, NAN, NAN, 5e-324, 5e-324 };
    enum { N = sizeof v / sizeof *v };
    fs_ref_t l, r[N];
    OK(fs_build_seq(b, FS_KIND_LIST, N, &l));
    for (int i = 0; i < N; i++) {
        OK(fs_build_float(b, v[i], &r[i]));
        fs_build_seq_set(b, l, (uint64_t)i, r[i]);
    }
    for (int i = 0; i < N; i += 2) {
        if (isnan(v[i]))
            cr_assert_neq(r[i], r[i + 1], "two NaNs stay two (keys of one dict)");
        else
            cr_assert_eq(r[i], r[i + 1], "value %g stored twice", v[i]);
    }
    cr_assert_neq(r[2], r[4], "0.0 and -0.0 are different bits");
    fs_build_stats_t st;
    fs_builder_stats(b, &st);
    cr_assert_eq(st.dedup_hits, 5);
    const uint8_t *base = finish(b, l);
    cr_assert_eq(fs_image_header(base)->object_count, 1 + 7);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(bits_of(float_of(base, r[i])), bits_of(v[i]));
        cr_assert_eq(fs_obj_shared(base, r[i]), !isnan(v[i]));
    }
    fs_builder_destroy(b);
}

/* ---- image_shape: dicts sharing one key set --------------------------------- */

/* A dict of the given str keys via fs_build_dict (keys built, so stored
** once), values small ints base + i. */
static fs_ref_t keyed_dict(fs_builder_t *b, unsigned flags, int n, const char *const *names, int64_t base)
{
    fs_ref_t keys[64], d;
    int64_t hashes[64];
    cr_assert_leq(n, 64);
    for (int i = 0; i < n; i++) {
        keys[i] = ascii(b, names[i]);
        hashes[i] = str_hash(names[i]);
    }
    OK(fs_build_dict(b, flags, (uint64_t)n, hashes, keys, &d));
    for (int i = 0; i < n; i++)
        fs_build_dict_value(b, d, (uint64_t)i, fs_ref_small_int(base + i));
    return d;
}

static const char *const KEYS7[] = { "id", "name", "email", "age", "city", "score", "active" };

/* Every key of the dict at d (count n, names) is found with value base + i. */
static void assert_lookups(const uint8_t *img, fs_ref_t d, int n, const char *const *names, int64_t base)
{
    const fs_map_t *m = fs_map(img, d);
    cr_assert_eq(fs_map_count(img, m), (uint64_t)n);
    for (int i = 0; i < n; i++) {
        int64_t e = fs_map_find(img, m, str_hash(names[i]), eq_cstr, (void *)names[i]);
        cr_assert_eq(e, i, "key %s: entry %lld", names[i], (long long)e);
        cr_assert_eq(fs_map_value(m, e), fs_ref_small_int(base + i));
        cr_assert(fs_str_equals(fs_str(img, fs_map_key(img, m, i)), 1, strlen(names[i]), names[i]));
        cr_assert_eq(fs_map_hash(img, m, i), str_hash(names[i]));
    }
    cr_assert_eq(fs_map_find(img, m, str_hash("nope"), eq_cstr, (void *)"nope"), -1);
    cr_assert_eq(fs_map_find(img, m, str_hash(names[0]), eq_cstr, (void *)"nope"), -1);
}

Test(image_shape, same_keys_second_dict_is_shaped)
{
    fs_builder_t *b = new_builder(0);
    fs_ref_t l, d[3];
    OK(fs_build_seq(b, FS_KIND_LIST, 3, &l));
    d[0] = keyed_dict(b, 0, 7, KEYS7, 0);
    d[1] = keyed_dict(b, 0, 7, KEYS7, 100);
    d[2] = keyed_dict(b, FS_FLAG_FROZENDICT, 7, KEYS7, 200);
    fs_build_stats_t st;
    fs_builder_stats(b, &st);
    cr_assert_eq(st.shapes, 1);
    cr_assert_eq(st.shaped, 2);
    cr_assert_eq(st.dedup_hits, 14, "the keys were built again, stored once");
    for (int i = 0; i < 3; i++)
        fs_build_seq_set(b, l, (uint64_t)i, d[i]);
    const uint8_t *base = finish(b, l);
    const fs_map_t *m0 = fs_map(base, d[0]), *m1 = fs_map(base, d[1]), *m2 = fs_map(base, d[2]);
    cr_assert_eq(m0->h.flags & ~FS_FLAG_SHARED, 0, "the first is the shape");
    cr_assert_eq(m1->h.flags, FS_FLAG_SHAPED);
    cr_assert_eq(m2->h.flags, FS_FLAG_SHAPED | FS_FLAG_FROZENDICT);
    cr_assert_eq(fs_map_shape(m1), d[0]);
    cr_assert_eq(fs_map_shape(m2), d[0]);
    cr_assert_eq(m1->h.n, d[0] / 8);
    cr_assert_eq(fs_map_keyset(base, m1), m0);
    cr_assert_eq(fs_map_keyset(base, m2), m0);
    for (uint64_t i = 0; i < fs_map_count(base, m0); i++) {
        cr_assert_eq(fs_map_key(base, m1, i), fs_map_key(base, m0, i));
        cr_assert_eq(fs_map_hash(base, m2, i), fs_map_hash(base, m0, i));
    }
    cr_assert_eq(d[2] - d[1], sizeof(fs_shaped_t) + 7 * 8, "a shaped dict is its values");
    cr_assert_eq(fs_image_header(base)->objects_end - d[2], sizeof(fs_shaped_t) + 7 * 8);
    assert_lookups(base, d[0], 7, KEYS7, 0);
    assert_lookups(base, d[1], 7, KEYS7, 100);
    assert_lookups(base, d[2], 7, KEYS7, 200);
    /* a shaped dict counts one reference to each key of its shape */
    for (int i = 0; i < 7; i++)
        cr_assert(fs_obj_shared(base, fs_map_key(base, m0, i)));
    cr_assert_eq(fs_image_header(base)->object_count, 1 + 7 + 3);
    walk_image(base, fs_image_header(base)->image_size);
    fs_builder_destroy(b);
}

Test(image_shape, indexed_shape_serves_many_records)
{
    enum { NK = 40, NR = 500 };
    static char names[NK][16];
    const char *np[NK];
    for (int i = 0; i < NK; i++) {
        snprintf(names[i], sizeof names[i], "field_%d", i);
        np[i] = names[i];
    }
    fs_builder_t *b = new_builder(0);
    fs_ref_t l, d[NR];
    OK(fs_build_seq(b, FS_KIND_LIST, NR, &l));
    for (int r = 0; r < NR; r++) {
        d[r] = keyed_dict(b, 0, NK, np, r * 1000);
        fs_build_seq_set(b, l, (uint64_t)r, d[r]);
    }
    fs_build_stats_t st;
    fs_builder_stats(b, &st);
    cr_assert_eq(st.shapes, 1);
    cr_assert_eq(st.shaped, NR - 1);
    const uint8_t *base = finish(b, l);
    cr_assert_neq(fs_map(base, d[0])->index_size, 0, "40 keys: an index");
    for (int r = 0; r < NR; r++)
        assert_lookups(base, d[r], NK, np, r * 1000);
    fs_builder_destroy(b);
}

Test(image_shape, other_orders_and_key_sets_are_not_shaped)
{
    static const char *const ab[] = { "a", "b" }, *const ba[] = { "b", "a" }, *const abc[] = { "a", "b", "c" };
    static const char *const a[] = { "a" };
    fs_builder_t *b = new_builder(0);
    fs_ref_t l, d[7];
    OK(fs_build_seq(b, FS_KIND_LIST, 7, &l));
    d[0] = keyed_dict(b, 0, 2, ab, 0);
    d[1] = keyed_dict(b, 0, 2, ba, 0);          /* other order  */
    d[2] = keyed_dict(b, 0, 3, abc, 0);         /* a superset   */
    d[3] = keyed_dict(b, 0, 1, a, 0);           /* a prefix     */
    d[4] = keyed_dict(b, 0, 2, ba, 10);         /* shaped over d[1] */
    d[5] = keyed_dict(b, 0, 0, NULL, 0);        /* empty: never shaped */
    d[6] = keyed_dict(b, 0, 0, NULL, 0);
    fs_build_stats_t st;
    fs_builder_stats(b, &st);
    cr_assert_eq(st.shapes, 4);
    cr_assert_eq(st.shaped, 1);
    for (int i = 0; i < 7; i++)
        fs_build_seq_set(b, l, (uint64_t)i, d[i]);
    const uint8_t *base = finish(b, l);
    for (int i = 0; i < 7; i++)
        cr_assert_eq(fs_map_shaped(fs_map(base, d[i])), i == 4, "dict %d", i);
    cr_assert_eq(fs_map_shape(fs_map(base, d[4])), d[1]);
    assert_lookups(base, d[1], 2, ba, 0);
    assert_lookups(base, d[4], 2, ba, 10);
    assert_lookups(base, d[2], 3, abc, 0);
    cr_assert_eq(fs_map_count(base, fs_map(base, d[5])), 0);
    fs_builder_destroy(b);
}

Test(image_shape, build_dict_shape_reuses_the_keys)
{
    fs_builder_t *b = new_builder(0);
    fs_ref_t l, d0, d1, d2, e, t, bad;
    OK(fs_build_seq(b, FS_KIND_LIST, 3, &l));
    d0 = keyed_dict(b, 0, 7, KEYS7, 0);
    OK(fs_build_dict_shape(b, 0, d0, &d1));
    OK(fs_build_dict_shape(b, FS_FLAG_FROZENDICT, d1, &d2));     /* of a shaped one: same shape */
    for (int i = 0; i < 7; i++) {
        fs_build_dict_value(b, d1, (uint64_t)i, fs_ref_small_int(100 + i));
        fs_build_dict_value(b, d2, (uint64_t)i, fs_ref_small_int(200 + i));
    }
    e = keyed_dict(b, 0, 0, NULL, 0);
    OK(fs_build_seq(b, FS_KIND_TUPLE, 0, &t));
    size_t before = fs_builder_size(b);
    cr_assert_eq(fs_build_dict_shape(b, 0, e, &bad), FS_EINVAL, "an empty dict has no keys");
    cr_assert_eq(fs_build_dict_shape(b, 0, t, &bad), FS_EINVAL, "not a dict");
    cr_assert_eq(fs_build_dict_shape(b, FS_FLAG_SHAPED, d0, &bad), FS_EINVAL);
    cr_assert_eq(fs_build_dict_shape(b, 0, FS_REF_NONE, &bad), FS_EINVAL);
    cr_assert_eq(fs_build_dict_shape(b, 0, (fs_ref_t)1 << 40, &bad), FS_EINVAL);
    cr_assert_eq(fs_build_dict(b, FS_FLAG_SHAPED, 0, NULL, NULL, &bad), FS_EINVAL);
    cr_assert_eq(fs_build_dict(b, 0, 1, NULL, NULL, &bad), FS_EINVAL);
    cr_assert_eq(fs_builder_size(b), before);
    fs_build_seq_set(b, l, 0, d0);
    fs_build_seq_set(b, l, 1, d1);
    fs_build_seq_set(b, l, 2, d2);
    const uint8_t *base = finish(b, l);
    cr_assert_eq(fs_map_shape(fs_map(base, d1)), d0);
    cr_assert_eq(fs_map_shape(fs_map(base, d2)), d0);
    cr_assert_eq(fs_map(base, d2)->h.flags, FS_FLAG_SHAPED | FS_FLAG_FROZENDICT);
    assert_lookups(base, d1, 7, KEYS7, 100);
    assert_lookups(base, d2, 7, KEYS7, 200);
    fs_builder_destroy(b);
}

/* An image for the shape checks:
**   root = (A, B, D4, E, S1, S2, C, T)
**   A  {a, b, c} (the shape)     B  {a, b}      D4 {a, b, c, d}
**   E  {}                        S1, S2 shaped over A (values small ints)
**   C  {c, a}, after S1 and S2   T  (), last
** Keys a..d are strs, each referenced by more than one dict. */
typedef struct shapes_s { fs_ref_t root, A, B, D4, E, S1, S2, C, T, A2; } shapes_t;
static uint8_t *shapes_image(shapes_t *s, size_t *n)
{
    static const char *const abc[] = { "a", "b", "c" }, *const cba[] = { "c", "b", "a" };
    static const char *const abcd[] = { "a", "b", "c", "d" }, *const ca[] = { "c", "a" };
    fs_builder_t *b = new_builder(0);
    OK(fs_build_seq(b, FS_KIND_TUPLE, 9, &s->root));
    s->A = keyed_dict(b, 0, 3, abc, 0);
    s->B = keyed_dict(b, 0, 2, abc, 0);
    s->D4 = keyed_dict(b, 0, 4, abcd, 0);
    s->A2 = keyed_dict(b, 0, 3, cba, 0);     /* the same count, other keys */
    s->E = keyed_dict(b, 0, 0, NULL, 0);
    s->S1 = keyed_dict(b, 0, 3, abc, 10);
    s->S2 = keyed_dict(b, 0, 3, abc, 20);
    s->C = keyed_dict(b, 0, 2, ca, 0);
    OK(fs_build_seq(b, FS_KIND_TUPLE, 0, &s->T));
    fs_ref_t all[9] = { s->A, s->B, s->D4, s->A2, s->E, s->S1, s->S2, s->C, s->T };
    for (int i = 0; i < 9; i++)
        fs_build_seq_set(b, s->root, (uint64_t)i, all[i]);
    uint8_t *p = finish_copy(b, s->root, n);
    cr_assert(fs_map_shaped(fs_map(p, s->S1)) && fs_map_shaped(fs_map(p, s->S2)));
    cr_assert_eq(fs_map_shape(fs_map(p, s->S1)), s->A);
    cr_assert_not(fs_map_shaped(fs_map(p, s->C)));
    return p;
}

Test(image_shape, bad_shape_references_are_rejected)
{
    shapes_t s;
    size_t n;
    uint8_t *img = shapes_image(&s, &n), *p = malloc(n);
    uint64_t end = hdr(img)->objects_end;
    struct { uint64_t shape; const char *why; } cases[] = {
        { 0, "not an earlier object" },                     /* the header        */
        { 64, "not an earlier object" },
        { end, "not an earlier object" },                   /* past the objects  */
        { n + 4096, "not an earlier object" },
        { (uint64_t)UINT32_MAX * 8, "not an earlier object" },
        { s.A + 8, "not an earlier object" },               /* between objects   */
        { s.A + 16, "not an earlier object" },
        { s.C, "not an earlier object" },                   /* a later object    */
        { s.S2, "not an earlier object" },
        { s.S1, "not an earlier object" },                  /* itself            */
        { s.root, "not an unshaped, non-empty dict" },      /* a tuple           */
        { fs_map_key(img, fs_map(img, s.A), 0), "not an unshaped, non-empty dict" },   /* a str */
        { s.E, "not an unshaped, non-empty dict" },         /* an empty dict     */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        memcpy(p, img, n);
        ohdr(p, s.S1)->n = (uint32_t)(cases[i].shape / 8);
        CORRUPT(p, n, cases[i].why);
    }
    /* at a shaped dict: S2 over S1 */
    memcpy(p, img, n);
    ohdr(p, s.S2)->n = (uint32_t)(s.S1 / 8);
    CORRUPT(p, n, "not an unshaped, non-empty dict");
    /* at a set: a shaped dict's shape is a DICT */
    memcpy(p, img, n);
    ohdr(p, s.A)->kind = FS_KIND_SET;        /* A's size changes too: one of the two */
    CORRUPT(p, n, NULL);
    /* a dict whose value count disagrees with its shape: over B (2 keys) or
    ** D4 (4 keys), S1's recorded size no longer matches its 3 values and the
    ** object walk falls out of step */
    memcpy(p, img, n);
    ohdr(p, s.S1)->n = (uint32_t)(s.B / 8);
    CORRUPT(p, n, NULL);
    memcpy(p, img, n);
    ohdr(p, s.S1)->n = (uint32_t)(s.D4 / 8);
    CORRUPT(p, n, NULL);
    memcpy(p, img, n);
    ohdr(p, s.S2)->n = (uint32_t)(s.D4 / 8);  /* swallows C's header */
    CORRUPT(p, n, NULL);
    /* another shape of the same count is well formed (other keys, same size) */
    memcpy(p, img, n);
    ohdr(p, s.S1)->n = (uint32_t)(s.A2 / 8);
    cr_assert_eq(check(p, n), FS_OK);
    walk_image(p, n);
    /* SHAPED where it is not allowed, or on the shape itself */
    memcpy(p, img, n);
    ohdr(p, s.C)->flags |= FS_FLAG_SHAPED;   /* n = 2: offset 16, in the header */
    CORRUPT(p, n, "not an earlier object");
    memcpy(p, img, n);
    ohdr(p, s.E)->kind = FS_KIND_FROZENSET;
    ohdr(p, s.E)->flags |= FS_FLAG_SHAPED;
    CORRUPT(p, n, "unknown flags");
    free(p);
    free(img);
}

Test(image_shape, shape_keys_need_the_shared_flag)
{
    shapes_t s;
    size_t n;
    uint8_t *img = shapes_image(&s, &n), *p = malloc(n);
    fs_ref_t keys[3];
    for (int i = 0; i < 3; i++)
        keys[i] = fs_map_key(img, fs_map(img, s.A), (uint64_t)i);
    for (int i = 0; i < 3; i++) {
        cr_assert(fs_obj_shared(img, keys[i]));
        memcpy(p, img, n);
        ohdr(p, keys[i])->flags &= (uint8_t)~FS_FLAG_SHARED;
        CORRUPT(p, n, "lacks FS_FLAG_SHARED");
    }
    free(p);
    free(img);

    /* a key of one unshaped dict is referenced once; one shaped dict over it
    ** is its second reference, though the shaped dict stores no key */
    static const char *const xy[] = { "x", "y" };
    fs_builder_t *b = new_builder(0);
    fs_ref_t l, d0, d1;
    OK(fs_build_seq(b, FS_KIND_LIST, 1, &l));
    d0 = keyed_dict(b, 0, 2, xy, 0);
    fs_build_seq_set(b, l, 0, d0);
    OK(fs_builder_finish(b, l, NULL, 0, 0));
    cr_assert_not(fs_obj_shared(fs_builder_base(b), fs_map_key(fs_builder_base(b), fs_map(fs_builder_base(b), d0), 0)));
    fs_builder_destroy(b);

    b = new_builder(0);
    OK(fs_build_seq(b, FS_KIND_LIST, 2, &l));
    d0 = keyed_dict(b, 0, 2, xy, 0);
    d1 = keyed_dict(b, 0, 2, xy, 5);
    fs_build_seq_set(b, l, 0, d0);
    fs_build_seq_set(b, l, 1, d1);
    img = finish_copy(b, l, &n);
    cr_assert(fs_map_shaped(fs_map(img, d1)));
    fs_ref_t x = fs_map_key(img, fs_map(img, d0), 0);
    cr_assert(fs_obj_shared(img, x));
    ohdr(img, x)->flags &= (uint8_t)~FS_FLAG_SHARED;
    CORRUPT(img, n, "lacks FS_FLAG_SHARED");
    free(img);
}

/* ---- image_index: map indexes of 1-, 2- and 4-byte slots -------------------- */

/* A set (or dict) of n small-int keys i * 3 (hash i * 3) as the only object
** besides nothing: the root. */
static uint8_t *int_map_image(int kind, uint64_t n, size_t *size, fs_ref_t *m)
{
    fs_builder_t *b = new_builder(0);
    OK(fs_build_map(b, kind, 0, n, m));
    for (uint64_t i = 0; i < n; i++)
        fs_build_map_set(b, *m, i, (int64_t)i * 3, fs_ref_small_int((int64_t)i * 3),
                         fs_ref_small_int(-(int64_t)i));
    fs_build_map_finish(b, *m);
    return finish_copy(b, *m, size);
}

Test(image_index, maps_of_every_slot_width_find_all_keys)
{
    uint64_t counts[] = { 9, 127, 128, 32767, 32768, 100000, FS_INDEX3_MAX, FS_INDEX3_MAX + 1 };
    unsigned widths[] = { 1, 1, 2, 2, 3, 3, 3, 4 };
    for (size_t c = 0; c < sizeof counts / sizeof *counts; c++) {
        for (int kind = FS_KIND_DICT; kind <= FS_KIND_SET; kind++) {
            uint64_t n = counts[c];
            size_t size;
            fs_ref_t r;
            uint8_t *p = int_map_image(kind, n, &size, &r);
            const fs_map_t *m = fs_map(p, r);
            uint64_t is = m->index_size;
            cr_assert_eq(fs_index_width(n), widths[c], "%llu entries", (unsigned long long)n);
            cr_assert_eq(is & (is - 1), 0);
            cr_assert(n * 3 <= is * 2 && is >= n + 12);
            /* the map is exactly its header, entries and index, padded */
            uint64_t per = kind == FS_KIND_DICT ? 24 : 16;
            uint64_t want = sizeof(fs_map_t) + n * per + is * widths[c];
            cr_assert_eq(hdr(p)->objects_end - r, (want + 7) & ~(uint64_t)7);
            cr_assert_eq((size_t)((const uint8_t *)fs_keyset_index(m) - (const uint8_t *)m),
                         sizeof(fs_map_t) + n * per);
            uint64_t used = 0;
            for (uint64_t i = 0; i < is; i++) {
                int64_t e = fs_index_slot(fs_keyset_index(m), widths[c], i);
                cr_assert(e == -1 || (e >= 0 && (uint64_t)e < n));
                used += e >= 0;
            }
            cr_assert_eq(used, n);
            for (int64_t i = 0; i < (int64_t)n; i++) {
                int64_t key = i * 3;
                cr_assert_eq(fs_map_find(p, m, key, eq_small_int, &key), i);
                if (kind == FS_KIND_DICT)
                    cr_assert_eq(fs_map_value(m, i), fs_ref_small_int(-i));
                key = i * 3 + 1;
                cr_assert_eq(fs_map_find(p, m, key, eq_small_int, &key), -1);
            }
            free(p);
        }
    }
}

Test(image_index, corrupt_slots_of_every_width_are_rejected)
{
    uint64_t counts[] = { 9, 127, 128, 32767, 32768, 100000 };
    for (size_t c = 0; c < sizeof counts / sizeof *counts; c++) {
        uint64_t n = counts[c];
        unsigned w = fs_index_width(n);
        size_t size;
        fs_ref_t r;
        uint8_t *img = int_map_image(FS_KIND_FROZENSET, n, &size, &r);
        uint8_t *p = malloc(size);
        const fs_map_t *m0 = fs_map(img, r);
        uint64_t is = m0->index_size;
        int64_t first = -1, second = -1, empty = -1;
        for (uint64_t i = 0; i < is; i++) {
            int64_t e = fs_index_slot(fs_keyset_index(m0), w, i);
            if (e >= 0 && first < 0) first = (int64_t)i;
            else if (e >= 0 && second < 0) second = (int64_t)i;
            else if (e < 0 && empty < 0) empty = (int64_t)i;
        }
        cr_assert(first >= 0 && second >= 0 && empty >= 0);
#define INDEX(p) ((void *)fs_keyset_index(fs_map((p), r)))
        /* out of range: the count itself, the width's extremes, -2 */
        int64_t maxw = w == 1 ? INT8_MAX : w == 2 ? INT16_MAX : w == 3 ? (INT64_C(1) << 23) - 1 : INT32_MAX;
        int64_t minw = w == 1 ? INT8_MIN : w == 2 ? INT16_MIN : w == 3 ? -(INT64_C(1) << 23) : INT32_MIN;
        int64_t bad[] = { (int64_t)n, maxw, -2, minw };
        for (size_t v = 0; v < sizeof bad / sizeof *bad; v++) {
            if (bad[v] > maxw)
                continue;
            memcpy(p, img, size);
            fs_index_put(INDEX(p), w, (uint64_t)first, bad[v]);
            CORRUPT(p, size, "a map index slot out of range or repeated");
        }
        memcpy(p, img, size);
        fs_index_put(INDEX(p), w, (uint64_t)second, fs_index_slot(INDEX(p), w, (uint64_t)first));
        CORRUPT(p, size, "a map index slot out of range or repeated");   /* twice, one lost */
        memcpy(p, img, size);
        fs_index_put(INDEX(p), w, (uint64_t)first, -1);
        CORRUPT(p, size, "missing from its index");                      /* an entry lost */
        memcpy(p, img, size);
        fs_index_put(INDEX(p), w, (uint64_t)empty, fs_index_slot(INDEX(p), w, (uint64_t)first));
        CORRUPT(p, size, "a map index slot out of range or repeated");   /* an entry twice */
        memcpy(p, img, size);
        int64_t tmp = fs_index_slot(INDEX(p), w, (uint64_t)first);   /* swapped: still each */
        fs_index_put(INDEX(p), w, (uint64_t)first, fs_index_slot(INDEX(p), w, (uint64_t)second));
        fs_index_put(INDEX(p), w, (uint64_t)second, tmp);               /* exactly once: OK    */
        cr_assert_eq(check(p, size), FS_OK);
        walk_image(p, size);                                         /* misses, no crash */
#undef INDEX
        /* index sizes: not a power of two, too small for the load, 0, too big */
        uint64_t sizes[] = { 0, 3, is / 2, is + 1, is * 2, (uint64_t)UINT32_MAX, (uint64_t)1 << 31 };
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            memcpy(p, img, size);
            w_map(p, r)->index_size = (uint32_t)sizes[i];
            CORRUPT(p, size, NULL);
        }
        memcpy(p, img, size);
        w_map(p, r)->zero32 = 1;
        CORRUPT(p, size, "a reserved map field is not zero");
        free(p);
        free(img);
    }
}

Test(image_index, small_maps_have_no_index_and_may_not_have_one)
{
    for (uint64_t n = 0; n <= FS_MAP_SCAN_MAX; n++) {
        size_t size;
        fs_ref_t r;
        uint8_t *p = int_map_image(FS_KIND_SET, n, &size, &r);
        cr_assert_eq(fs_map(p, r)->index_size, 0);
        cr_assert_eq(hdr(p)->objects_end - r, sizeof(fs_map_t) + n * 16, "no index bytes");
        for (int64_t i = 0; i < (int64_t)n; i++) {
            int64_t key = i * 3;
            cr_assert_eq(fs_map_find(p, fs_map(p, r), key, eq_small_int, &key), i);
        }
        uint32_t sizes[] = { 1, 2, 16, 32 };
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            w_map(p, r)->index_size = sizes[i];
            CORRUPT(p, size, "a map index of the wrong size");
        }
        free(p);
    }
    /* the 9-entry map must have one */
    size_t size;
    fs_ref_t r;
    uint8_t *p = int_map_image(FS_KIND_SET, FS_MAP_SCAN_MAX + 1, &size, &r);
    cr_assert_neq(fs_map(p, r)->index_size, 0);
    w_map(p, r)->index_size = 0;
    CORRUPT(p, size, "a map index of the wrong size");
    free(p);
}

/* ---- image_long: the long-length form --------------------------------------- */

Test(image_long, accessors_read_the_u64_length)
{
    uint64_t buf[4] = { 0 };
    fs_obj_hdr_t *h = (fs_obj_hdr_t *)(void *)buf;
    h->kind = FS_KIND_BYTES;
    h->n = FS_N_LONG;
    buf[1] = UINT64_C(5000000000);
    cr_assert_eq(fs_obj_len(h), UINT64_C(5000000000));
    cr_assert_eq(fs_obj_body(h), (const uint8_t *)&buf[2]);
    cr_assert_eq(fs_bytes_len((const fs_bytes_t *)(const void *)h), UINT64_C(5000000000));
    cr_assert_eq(fs_bytes_data((const fs_bytes_t *)(const void *)h), (const uint8_t *)&buf[2]);
    h->kind = FS_KIND_TUPLE;
    cr_assert_eq(fs_seq_items((const fs_seq_t *)(const void *)h), (const fs_ref_t *)&buf[2]);
    h->n = FS_N_LONG - 1;
    cr_assert_eq(fs_obj_len(h), FS_N_LONG - 1);
    cr_assert_eq(fs_obj_body(h), (const uint8_t *)&buf[1]);
}

Test(image_long, non_canonical_long_lengths_are_rejected)
{
    /* Objects of 16 bytes (header + 8 payload bytes) become, in place,
    ** header n = FS_N_LONG + a u64: the same size, so the length form is
    ** the only defect. */
    fs_builder_t *b = new_builder(0);
    fs_ref_t t, tup, by, st;
    OK(fs_build_seq(b, FS_KIND_TUPLE, 3, &t));
    OK(fs_build_seq(b, FS_KIND_TUPLE, 1, &tup));
    fs_build_seq_set(b, tup, 0, fs_ref_small_int(1));
    OK(fs_build_bytes(b, FS_KIND_BYTES, "12345678", 8, &by));
    st = ascii(b, "abcdefgh");
    fs_build_seq_set(b, t, 0, tup);
    fs_build_seq_set(b, t, 1, by);
    fs_build_seq_set(b, t, 2, st);
    size_t n;
    uint8_t *img = finish_copy(b, t, &n), *p = malloc(n);
    fs_ref_t objs[3] = { tup, by, st };
    uint64_t lens[] = { 0, 1, FS_N_LONG - 1 };
    for (int o = 0; o < 3; o++) {
        for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
            memcpy(p, img, n);
            ohdr(p, objs[o])->n = FS_N_LONG;
            memcpy(p + objs[o] + 8, &lens[i], 8);
            CORRUPT(p, n, "a long length that fits the header");
        }
        /* the canonical value, 2^32 - 1 and more: runs past the objects */
        uint64_t longs[] = { FS_N_LONG, (uint64_t)1 << 40, UINT64_MAX, UINT64_MAX / 4 + 1 };
        for (size_t i = 0; i < sizeof longs / sizeof *longs; i++) {
            memcpy(p, img, n);
            ohdr(p, objs[o])->n = FS_N_LONG;
            memcpy(p + objs[o] + 8, &longs[i], 8);
            CORRUPT(p, n, "runs past the end");
        }
    }
    free(p);
    free(img);

    /* the long form is for lengths only: not for big ints or map counts */

    b = new_builder(0);
    fs_ref_t big, set;
    uint8_t le[9] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };
    OK(fs_build_seq(b, FS_KIND_TUPLE, 2, &t));
    OK(fs_build_bigint(b, le, 9, &big));
    OK(fs_build_map(b, FS_KIND_SET, 0, 0, &set));
    fs_build_seq_set(b, t, 0, big);
    fs_build_seq_set(b, t, 1, set);
    img = finish_copy(b, t, &n);
    p = malloc(n);
    memcpy(p, img, n);
    ohdr(p, big)->n = FS_N_LONG;
    CORRUPT(p, n, "a big int of no bytes");
    memcpy(p, img, n);
    ohdr(p, set)->n = FS_N_LONG;
    CORRUPT(p, n, "beyond FS_MAP_MAX");
    memcpy(p, img, n);
    ohdr(p, set)->n = FS_MAP_MAX + 1;
    CORRUPT(p, n, "beyond FS_MAP_MAX");
    free(p);
    free(img);
}

Test(image_long, long_flag_without_room_for_the_u64_is_rejected)
{
    /* an empty tuple as the last object: 8 bytes, nothing after it */
    fs_builder_t *b = new_builder(0);
    fs_ref_t t, e;
    OK(fs_build_seq(b, FS_KIND_TUPLE, 1, &t));
    OK(fs_build_seq(b, FS_KIND_TUPLE, 0, &e));
    fs_build_seq_set(b, t, 0, e);
    size_t n;
    uint8_t *p = finish_copy(b, t, &n);
    cr_assert_eq(hdr(p)->objects_end - e, 8);
    ohdr(p, e)->n = FS_N_LONG;
    CORRUPT(p, n, "runs past the end");
    ohdr(p, e)->kind = FS_KIND_BYTES;
    CORRUPT(p, n, "runs past the end");
    ohdr(p, e)->kind = FS_KIND_STR;
    ohdr(p, e)->aux = 1;
    ohdr(p, e)->flags = FS_FLAG_ASCII;
    CORRUPT(p, n, "runs past the end");
    free(p);
}

/* ---- image_header: versions, platforms and reserved fields ------------------ */

Test(image_header, other_versions_and_platforms_are_eversion)
{
    size_t n;
    uint8_t *img = mixed_copy(&n);
    uint8_t *p = malloc(n);
    memcpy(p, img, n);
    memcpy(p, FS_IMAGE_MAGIC_V1, 8);
    REFUSED(p, n, FS_EVERSION, "version 1");
    struct { size_t field; uint64_t value; int width; const char *why; } cases[] = {
        { offsetof(fs_image_header_t, version), 1, 2, "another format version" },
        { offsetof(fs_image_header_t, version), 3, 2, "another format version" },
        { offsetof(fs_image_header_t, version), 0xffff, 2, "another format version" },
        { offsetof(fs_image_header_t, byte_order), FS_BYTE_ORDER_BIG, 1, "big-endian" },
        { offsetof(fs_image_header_t, byte_order), 0, 1, "byte order" },
        { offsetof(fs_image_header_t, byte_order), 3, 1, "byte order" },
        { offsetof(fs_image_header_t, word_size), 4, 1, "word size" },
        { offsetof(fs_image_header_t, word_size), 0, 1, "word size" },
        { offsetof(fs_image_header_t, word_size), 16, 1, "word size" },
        { offsetof(fs_image_header_t, hash_domain), 0, 1, "hash domain" },
        { offsetof(fs_image_header_t, hash_domain), 3, 1, "hash domain" },
        { offsetof(fs_image_header_t, hash_domain), 255, 1, "hash domain" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        memcpy(p, img, n);
        memcpy(p + cases[i].field, &cases[i].value, (size_t)cases[i].width);
        REFUSED(p, n, FS_EVERSION, cases[i].why);
    }
    /* a big-endian image names its byte order before anything else it may
    ** have in another layout */
    memcpy(p, img, n);
    hdr(p)->byte_order = FS_BYTE_ORDER_BIG;
    hdr(p)->version = 0x0200;                    /* 2, byte-swapped */
    hdr(p)->image_size = UINT64_MAX;
    REFUSED(p, n, FS_EVERSION, "big-endian");
    cr_assert_str_neq(fs_strerror(FS_EVERSION), fs_strerror(-12345));
    free(p);
    free(img);
}

Test(image_header, nonzero_reserved_fields_are_corrupt)
{
    size_t n;
    uint8_t *img = mixed_copy(&n);
    uint8_t *p = malloc(n);
    struct { size_t field; uint64_t value; int width; } cases[] = {
        { offsetof(fs_image_header_t, zero8), 1, 1 },
        { offsetof(fs_image_header_t, header_size), 80, 2 },
        { offsetof(fs_image_header_t, header_size), 0, 2 },
        { offsetof(fs_image_header_t, header_size), 256, 2 },
        { offsetof(fs_image_header_t, flags), 1, 4 },
        { offsetof(fs_image_header_t, flags), 0x80000000u, 4 },
        { offsetof(fs_image_header_t, checksum), 0xdeadbeef, 8 },   /* kind 0: no checksum */
        { offsetof(fs_image_header_t, hash_key), 1, 1 },
        { offsetof(fs_image_header_t, hash_key) + 15, 0x80, 1 },
        { offsetof(fs_image_header_t, zero64), 1, 8 },
        { offsetof(fs_image_header_t, zero64) + 8, (uint64_t)1 << 63, 8 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        memcpy(p, img, n);
        memcpy(p + cases[i].field, &cases[i].value, (size_t)cases[i].width);
        CORRUPT(p, n, "reserved header fields");
    }
    /* a checksum kind claimed but not matching; an unknown kind */
    memcpy(p, img, n);
    hdr(p)->checksum_kind = FS_CHECKSUM_XXH3;
    CORRUPT(p, n, "checksum");
    hdr(p)->checksum = fs_image_checksum(p, n);
    cr_assert_eq(check(p, n), FS_OK);
    hdr(p)->checksum_kind = 2;
    REFUSED(p, n, FS_EVERSION, "checksum kind");
    /* hash_check is the reader's business (any value, -1 included) */
    int64_t hc[] = { 0, -1, 12345, INT64_MIN };
    for (size_t i = 0; i < sizeof hc / sizeof *hc; i++) {
        memcpy(p, img, n);
        hdr(p)->hash_check = hc[i];
        cr_assert_eq(check(p, n), FS_OK);
    }
    free(p);
    free(img);
}

Test(image_header, bad_layout_fields_are_rejected)
{
    size_t n;
    uint8_t *img = mixed_copy(&n);
    uint8_t *p = malloc(n + 8);
    struct { size_t field; uint64_t value; int width; } cases[] = {
        { 0, 'X', 1 },                                               /* magic    */
        { 7, 'X', 1 },
        { offsetof(fs_image_header_t, image_size), 0, 8 },
        { offsetof(fs_image_header_t, image_size), n + 8, 8 },
        { offsetof(fs_image_header_t, image_size), n - 4, 8 },
        { offsetof(fs_image_header_t, import_off), 0, 8 },
        { offsetof(fs_image_header_t, nimports), 4, 4 },
        { offsetof(fs_image_header_t, nimports), UINT32_MAX, 4 },
        { offsetof(fs_image_header_t, nxrefs), 0, 4 },
        { offsetof(fs_image_header_t, nxrefs), UINT32_MAX, 4 },
        { offsetof(fs_image_header_t, xref_off), UINT64_MAX - 7, 8 },
        { offsetof(fs_image_header_t, object_count), 0, 8 },
        { offsetof(fs_image_header_t, object_count), UINT64_MAX, 8 },
        { offsetof(fs_image_header_t, objects_end), 80, 8 },
        { offsetof(fs_image_header_t, objects_end), 120, 8 },
        { offsetof(fs_image_header_t, objects_end), UINT64_MAX - 7, 8 },
        { offsetof(fs_image_header_t, root), 0, 8 },                 /* the header */
        { offsetof(fs_image_header_t, root), 88, 8 },
        { offsetof(fs_image_header_t, root), 136, 8 },               /* mid-object */
        { offsetof(fs_image_header_t, root), 1u << 20, 8 },          /* beyond     */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        memcpy(p, img, n);
        uint64_t v = cases[i].value;
        memcpy(p + cases[i].field, &v, (size_t)cases[i].width);
        cr_assert_eq(check(p, n), FS_ECORRUPT, "case %zu accepted", i);
    }
    memcpy(p, img, n);
    p[3] = 'x';
    CORRUPT(p, n, "bad magic");
    /* object_count off by one either way */
    for (int d = -1; d <= 1; d += 2) {
        memcpy(p, img, n);
        hdr(p)->object_count += (uint64_t)(int64_t)d;
        CORRUPT(p, n, "object_count");
    }
    /* short, misaligned and missing buffers */
    CORRUPT(img, FS_IMAGE_HEADER_SIZE - 1, "shorter than a header");
    CORRUPT(img, 0, "shorter than a header");
    memcpy(p + 4, img, n);
    CORRUPT(p + 4, n, "aligned");
    CORRUPT(NULL, n, "aligned");
    cr_assert_eq(fs_image_check_why(img, n, NULL), FS_OK);         /* why may be NULL */
    free(p);
    free(img);
}

/* ---- image_check ----------------------------------------------------------- */

Test(image_check, accepts_every_built_image)
{
    size_t n;
    uint8_t *img = mixed_copy(&n);
    cr_assert_eq(check(img, n), FS_OK);
    cr_assert_eq(check_copy(img, n), FS_OK);
    walk_image(img, n);
    free(img);
    /* a minimal image: header, one float */
    fs_builder_t *b = new_builder(0);
    fs_ref_t r;
    OK(fs_build_float(b, 0.0, &r));
    OK(fs_builder_finish(b, r, NULL, 0, 0));
    cr_assert_eq(check_copy(fs_builder_base(b), fs_builder_size(b)), FS_OK);
    cr_assert_eq(fs_builder_size(b), FS_IMAGE_HEADER_SIZE + 16);
    fs_builder_destroy(b);
    /* images whose root is an immediate and that have no objects */
    fs_ref_t imm;
    cr_assert(fs_ref_float_imm(2.0, &imm));
    fs_ref_t roots[] = { FS_REF_NONE, FS_REF_TRUE, fs_ref_small_int(-7), imm };
    for (size_t i = 0; i < sizeof roots / sizeof *roots; i++) {
        b = new_builder(0);
        OK(fs_builder_finish(b, roots[i], NULL, 0, 0));
        cr_assert_eq(fs_builder_size(b), FS_IMAGE_HEADER_SIZE);
        cr_assert_eq(check_copy(fs_builder_base(b), fs_builder_size(b)), FS_OK);
        fs_builder_destroy(b);
    }
}

Test(image_check, truncated_at_every_length_is_rejected)
{
    size_t n;
    uint8_t *img = mixed_copy(&n);
    for (size_t len = 0; len < n; len++)
        cr_assert_eq(check_copy(img, len), FS_ECORRUPT, "accepted %zu of %zu bytes", len, n);
    /* also with the header claiming the shorter size (tables moved along): the
    ** cut falls inside the object area and the walk must notice */
    uint64_t end = hdr(img)->objects_end;
    uint8_t *cut = malloc(n);
    for (uint64_t len = FS_IMAGE_HEADER_SIZE; len < end; len += 8) {
        memcpy(cut, img, (size_t)len);
        fs_image_header_t *h = hdr(cut);
        h->objects_end = h->import_off = h->xref_off = h->image_size = len;
        h->nimports = h->nxrefs = 0;
        cr_assert_eq(check_copy(cut, (size_t)len), FS_ECORRUPT, "objects cut at %llu accepted",
                     (unsigned long long)len);
    }
    free(cut);
    free(img);
}

Test(image_check, out_of_range_offsets_and_bad_tags_are_rejected)
{
    size_t n;
    uint8_t *img = mixed_copy(&n);
    uint64_t end = hdr(img)->objects_end;
    fs_ref_t list = *root_val(img, MX_LIST);               /* the 2000-item list */
    fs_ref_t rec = fs_seq_items(fs_seq(img, *root_val(img, MX_RECORDS)))[1];   /* shaped */
    fs_ref_t shape = fs_seq_items(fs_seq(img, *root_val(img, MX_RECORDS)))[0];
    cr_assert(fs_map_shaped(fs_map(img, rec)));
    fs_ref_t bad[] = {
        end,                       /* the import table                  */
        n,                         /* past the image                    */
        n + 800,
        UINT64_MAX & ~(uint64_t)7,
        list + 8,                  /* inside an object                  */
        8,                         /* inside the header                 */
        FS_IMAGE_HEADER_SIZE - 8,
        0,
        (3u << 3) | FS_TAG_CONST,  /* constant 3                        */
        ((uint64_t)1 << 40) | FS_TAG_CONST,
    };
    uint8_t *p = malloc(n);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *why = fs_ref_tag(bad[i]) == FS_TAG_CONST ? "unknown constant"
                                                             : "outside the objects or between";
        /* as a list item */
        memcpy(p, img, n);
        w_items(p, list)[1999] = bad[i];
        CORRUPT(p, n, why);
        /* as a dict key, a dict value, and the root */
        memcpy(p, img, n);
        *root_key(p, MX_I64MIN) = bad[i];
        CORRUPT(p, n, why);
        memcpy(p, img, n);
        *root_val(p, MX_I64MIN) = bad[i];
        CORRUPT(p, n, why);
        memcpy(p, img, n);
        hdr(p)->root = bad[i];
        CORRUPT(p, n, why);
        /* as a shaped dict's value and a shape's key */
        memcpy(p, img, n);
        *w_value(p, rec, 2) = bad[i];
        CORRUPT(p, n, why);
        memcpy(p, img, n);
        *w_key(p, shape, 1) = bad[i];
        CORRUPT(p, n, why);
        /* as a set member */
        memcpy(p, img, n);
        *w_key(p, *root_val(p, MX_FROZENSET), 39) = bad[i];
        CORRUPT(p, n, why);
    }
    free(p);
    free(img);
}

Test(image_check, bad_kinds_and_flags_are_rejected)
{
    size_t n;
    uint8_t *img = mixed_copy(&n);
    uint8_t *p = malloc(n);
    uint64_t root = hdr(img)->root;
    uint8_t kinds[] = { FS_KIND_INVALID, FS_KIND_NONE, FS_KIND_BOOL, FS_KIND_XREF,
                        FS_KIND__COUNT, 200, 255 };
    for (size_t i = 0; i < sizeof kinds; i++) {
        for (int e = 0; e < MIXED_N; e++) {
            fs_ref_t v = *root_val(img, e);
            if (fs_ref_tag(v) != FS_TAG_OBJ)
                continue;
            memcpy(p, img, n);
            ohdr(p, v)->kind = kinds[i];
            cr_assert_eq(check(p, n), FS_ECORRUPT, "kind %u at entry %d", kinds[i], e);
        }
    }
    /* nonzero reserved header bytes and unknown flags */
    memcpy(p, img, n);
    ohdr(p, root)->zero8 = 1;
    CORRUPT(p, n, "reserved object header field");
    memcpy(p, img, n);
    ohdr(p, root)->aux = 1;                                   /* aux: STR only */
    CORRUPT(p, n, "reserved object header field");
    memcpy(p, img, n);
    ohdr(p, *root_val(img, MX_BYTES))->aux = 1;
    CORRUPT(p, n, "reserved object header field");
    memcpy(p, img, n);
    ohdr(p, root)->flags = 0x40;
    CORRUPT(p, n, "unknown flags");
    memcpy(p, img, n);
    ohdr(p, root)->flags = FS_FLAG_ASCII;
    CORRUPT(p, n, "unknown flags");
    memcpy(p, img, n);
    ohdr(p, *root_val(img, MX_NEGZERO))->flags = 1;           /* float */
    CORRUPT(p, n, "a float with flags");
    memcpy(p, img, n);
    ohdr(p, *root_val(img, MX_COMPLEX))->flags = FS_FLAG_FROZENDICT;
    CORRUPT(p, n, "a float with flags");
    memcpy(p, img, n);
    ohdr(p, *root_val(img, MX_BIG40))->flags = FS_FLAG_ASCII;
    CORRUPT(p, n, "big int");
    memcpy(p, img, n);
    ohdr(p, *root_val(img, MX_BYTEARRAY))->flags = FS_FLAG_ASCII;
    CORRUPT(p, n, "bytes with flags");
    memcpy(p, img, n);
    ohdr(p, *root_val(img, MX_LIST))->flags |= FS_FLAG_FROZENDICT;
    CORRUPT(p, n, "a sequence with flags");
    memcpy(p, img, n);
    ohdr(p, *root_val(img, MX_FROZENSET))->flags = FS_FLAG_FROZENDICT;
    CORRUPT(p, n, "unknown flags");                           /* on a frozenset */
    memcpy(p, img, n);
    ohdr(p, root)->flags = FS_FLAG_FROZENDICT;
    cr_assert_eq(check(p, n), FS_OK);                         /* allowed on a dict */
    free(p);
    free(img);
}

Test(image_check, bad_xrefs_are_rejected)
{
    size_t n;
    uint8_t *img = mixed_copy(&n);
    uint8_t *p = malloc(n);
    fs_ref_t list = *root_val(img, MX_LIST);
    uint32_t nx = hdr(img)->nxrefs;
    fs_ref_t xr[] = { ((fs_ref_t)nx << 3) | FS_TAG_XREF, ((fs_ref_t)1 << 40) | FS_TAG_XREF };
    for (int i = 0; i < 2; i++) {
        memcpy(p, img, n);
        w_items(p, list)[2] = xr[i];                               /* index >= nxrefs */
        CORRUPT(p, n, "beyond the xref table");
    }
    fs_xref_t *x;
    memcpy(p, img, n);
    x = (fs_xref_t *)(void *)(p + hdr(p)->xref_off);
    x[nx - 1].import_slot = hdr(p)->nimports;                   /* slot >= nimports */
    CORRUPT(p, n, "a malformed xref entry");
    memcpy(p, img, n);
    x = (fs_xref_t *)(void *)(p + hdr(p)->xref_off);
    x[0].zero = 1;
    CORRUPT(p, n, "a malformed xref entry");
    memcpy(p, img, n);
    x = (fs_xref_t *)(void *)(p + hdr(p)->xref_off);
    x[0].target = FS_TAG_XREF;                                 /* xref to an xref */
    CORRUPT(p, n, "a malformed xref entry");
    memcpy(p, img, n);
    x = (fs_xref_t *)(void *)(p + hdr(p)->xref_off);
    x[0].target = (7u << 3) | FS_TAG_CONST;
    CORRUPT(p, n, "a malformed xref entry");
    fs_ref_t fine[] = { fs_ref_small_int(-5), 6, FS_REF_NONE, 1u << 20 };  /* an immediate, a
                                                    float immediate, objects of the import */
    for (size_t i = 0; i < sizeof fine / sizeof *fine; i++) {
        memcpy(p, img, n);
        x = (fs_xref_t *)(void *)(p + hdr(p)->xref_off);
        x[0].target = fine[i];
        cr_assert_eq(check(p, n), FS_OK);
    }
    free(p);
    free(img);
}

/* Build a one-str image; returns a malloc'd copy and the str's offset. */
static uint8_t *str_image(unsigned cs, const void *data, uint64_t len, size_t *n, fs_ref_t *r)
{
    fs_builder_t *b = new_builder(0);
    OK(fs_build_str(b, cs, len, FS_MAXCHAR_SCAN, 1, data, r));
    return finish_copy(b, *r, n);
}

Test(image_check, noncanonical_strings_are_rejected)
{
    size_t n;
    fs_ref_t r;
    fs_obj_hdr_t *h;
    uint16_t u2[4] = { 'a', 0xd800, 'b', 'c' };
    uint32_t u4[2] = { 'a', 0x10ffff };
    uint8_t *p, *d;

    p = str_image(1, "abcd", 4, &n, &r);
    h = ohdr(p, r);
    d = w_data(p, r);
    h->flags = 0;                                      /* ASCII flag lost  */
    CORRUPT(p, n, "ASCII flag");
    h->flags = FS_FLAG_ASCII;
    d[1] = 0xe9;                                       /* flag says ASCII  */
    CORRUPT(p, n, "ASCII flag");
    h->flags = 0;
    cr_assert_eq(check(p, n), FS_OK);                  /* now consistent   */
    h->aux = 3;
    CORRUPT(p, n, "charsize other than");
    h->aux = 0;
    CORRUPT(p, n, "charsize other than");
    h->aux = 8;
    CORRUPT(p, n, "charsize other than");
    h->aux = 1;
    h->n = 1000;                                       /* past the end     */
    CORRUPT(p, n, "runs past the end");
    h->n = FS_N_LONG - 1;
    CORRUPT(p, n, "runs past the end");
    h->n = FS_N_LONG - 1;
    h->aux = 4;
    CORRUPT(p, n, "runs past the end");
    h->n = 4;
    h->aux = 1;
    h->zero8 = 1;
    CORRUPT(p, n, "reserved object header field");
    h->zero8 = 0;
    d[4] = 'x';                                        /* padding, not a NUL */
    CORRUPT(p, n, "padding");
    d[4] = 0;
    cr_assert_eq(check(p, n), FS_OK);
    free(p);

    p = str_image(2, u2, 4, &n, &r);
    h = ohdr(p, r);
    uint16_t *d2 = (uint16_t *)(void *)w_data(p, r);
    cr_assert_eq(h->aux, 2);
    d2[1] = 0xff;                                      /* fits 1 byte: not minimal */
    CORRUPT(p, n, "not in canonical form");
    d2[1] = 0x7f;
    h->flags = FS_FLAG_ASCII;
    CORRUPT(p, n, "not in canonical form");
    d2[1] = 0xd800;
    h->flags = 0;
    cr_assert_eq(check(p, n), FS_OK);
    h->aux = 1;                                        /* 4 bytes as 4 chars: 0xd8 in one */
    CORRUPT(p, n, NULL);
    free(p);

    p = str_image(4, u4, 2, &n, &r);
    h = ohdr(p, r);
    uint32_t *d4 = (uint32_t *)(void *)w_data(p, r);
    d4[1] = 0x110000;                                  /* beyond Unicode   */
    CORRUPT(p, n, "not in canonical form");
    d4[1] = UINT32_MAX;
    CORRUPT(p, n, "not in canonical form");
    d4[1] = 0xffff;                                    /* fits 2 bytes     */
    CORRUPT(p, n, "not in canonical form");
    d4[1] = 0x10ffff;
    cr_assert_eq(check(p, n), FS_OK);
    free(p);
}

Test(image_check, noncanonical_bigints_and_bad_bytes_are_rejected)
{
    fs_builder_t *b = new_builder(0);
    fs_ref_t t, i1, i2, by;
    uint8_t two64[9] = { 0, 0, 0, 0, 0, 0, 0, 0, 1 };
    OK(fs_build_seq(b, FS_KIND_TUPLE, 3, &t));
    OK(fs_build_bigint(b, two64, 9, &i1));
    OK(fs_build_int64(b, FS_SMALL_INT_MAX + 1, &i2));
    OK(fs_build_bytes(b, FS_KIND_BYTES, "abc", 3, &by));
    fs_build_seq_set(b, t, 0, i1);
    fs_build_seq_set(b, t, 1, i2);
    fs_build_seq_set(b, t, 2, by);
    size_t n;
    uint8_t *img = finish_copy(b, t, &n), *p = malloc(n);

    fs_bigint_t *o;
    memcpy(p, img, n);
    o = (fs_bigint_t *)(void *)(p + i1);
    o->data[8] = 0;                        /* top byte only repeats the sign */
    CORRUPT(p, n, "not minimal");
    memcpy(p, img, n);
    o = (fs_bigint_t *)(void *)(p + i1);
    o->data[8] = 0xff;
    o->data[7] = 0x80;                     /* ff 80 .. : ff is redundant */
    CORRUPT(p, n, "not minimal");
    memcpy(p, img, n);
    o = (fs_bigint_t *)(void *)(p + i1);
    o->h.n = 0;
    CORRUPT(p, n, "no bytes");
    memcpy(p, img, n);
    o = (fs_bigint_t *)(void *)(p + i1);
    o->h.n = FS_N_LONG - 1;
    CORRUPT(p, n, "runs past the end");
    memcpy(p, img, n);
    o = (fs_bigint_t *)(void *)(p + i1);
    o->h.n = 10;                           /* takes a padding byte: zero, so redundant */
    CORRUPT(p, n, "not minimal");
    memcpy(p, img, n);
    o = (fs_bigint_t *)(void *)(p + i2);   /* 2^60 -> 2^60 - 2^56: an immediate */
    o->data[7] = 0x0f;
    CORRUPT(p, n, "fits an immediate");
    memcpy(p, img, n);
    o = (fs_bigint_t *)(void *)(p + i2);
    o->data[7] = 0xef;                     /* -2^60 - ...: still outside: fine */
    cr_assert_eq(check(p, n), FS_OK);

    fs_obj_hdr_t *y;
    memcpy(p, img, n);
    y = ohdr(p, by);
    y->n = 5;                              /* the padding is the data now: fine */
    cr_assert_eq(check(p, n), FS_OK);
    y->n = 9;                              /* runs past the end of the area */
    CORRUPT(p, n, "runs past the end");
    y->n = FS_N_LONG - 1;
    CORRUPT(p, n, "runs past the end");
    y->n = 3;
    y->flags = FS_FLAG_ASCII;
    CORRUPT(p, n, "bytes with flags");
    free(p);
    free(img);
}

Test(image_check, nonzero_padding_after_an_object_is_rejected)
{
    fs_builder_t *b = new_builder(0);
    fs_ref_t t, s, s2, big, by, ba, l;
    uint8_t le[9] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };
    uint16_t u2[1] = { 0x100 };
    OK(fs_build_seq(b, FS_KIND_TUPLE, 6, &t));
    s = ascii(b, "hello");                                           /* 13 of 16 */
    OK(fs_build_str(b, 2, 1, FS_MAXCHAR_SCAN, 3, u2, &s2));          /* 10 of 16 */
    OK(fs_build_bigint(b, le, 9, &big));                             /* 17 of 24 */
    OK(fs_build_bytes(b, FS_KIND_BYTES, "x", 1, &by));               /*  9 of 16 */
    OK(fs_build_bytes(b, FS_KIND_BYTEARRAY, "1234567", 7, &ba));     /* 15 of 16, last */
    fs_ref_t objs[] = { s, s2, big, by, ba };
    uint64_t used[] = { 13, 10, 17, 9, 15 }, span[] = { 16, 16, 24, 16, 16 };
    for (int i = 0; i < 5; i++)
        fs_build_seq_set(b, t, (uint64_t)i, objs[i]);
    OK(fs_build_seq(b, FS_KIND_LIST, 0, &l));
    fs_build_seq_set(b, t, 5, l);
    size_t n;
    uint8_t *img = finish_copy(b, t, &n), *p = malloc(n);
    for (int i = 0; i < 5; i++) {
        for (uint64_t at = used[i]; at < span[i]; at++) {
            memcpy(p, img, n);
            cr_assert_eq(p[objs[i] + at], 0);
            p[objs[i] + at] = 0x01;
            CORRUPT(p, n, "padding after an object is not zero");
        }
    }
    free(p);
    free(img);
}

/* Random mutations of a good image: every result is accepted or refused,
** and whatever is accepted can be read through without a fault. */
static void flip_bytes(const uint8_t *img, size_t n, uint64_t seed, long *accepted, long *rejected)
{
    uint8_t *p = malloc(n);
    rng_state = seed;
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(p, img, n);
        int flips = 1 + (int)(rnd() % 4);
        for (int f = 0; f < flips; f++) {
            uint64_t r = rnd();
            size_t at;
            /* half the flips hit the header and the first objects, where
            ** sizes and counts live; the rest anywhere */
            at = (r & 1) ? (size_t)(rnd() % (n < 512 ? n : 512)) : (size_t)(rnd() % n);
            switch ((r >> 1) % 4) {
            case 0: p[at] ^= (uint8_t)(1u << ((r >> 8) % 8)); break;
            case 1: p[at] = (uint8_t)(r >> 16); break;
            case 2: p[at] = (r >> 16) & 1 ? 0xff : 0; break;
            default: {                          /* an interesting 64-bit word */
                size_t w = at & ~(size_t)7;
                uint64_t vals[] = { 0, 1, 7, 8, UINT64_MAX, (uint64_t)INT32_MAX + 1,
                                    n, n - 8, (uint64_t)1 << 63, rnd() };
                uint64_t v = vals[(r >> 16) % 10];
                if (w + 8 <= n)
                    memcpy(p + w, &v, 8);
                break;
            }
            }
        }
        int rc = check(p, n);
        cr_assert(rc == FS_OK || rc == FS_ECORRUPT || rc == FS_EVERSION, "rc %d", rc);
        if (rc == FS_OK) {
            (*accepted)++;
            walk_image(p, n);
        }
        else
            (*rejected)++;
    }
    free(p);
}

Test(image_check, random_byte_flips_never_crash)
{
    size_t n;
    uint8_t *img = mixed_copy(&n);
    long accepted = 0, rejected = 0;
    flip_bytes(img, n, 20240601, &accepted, &rejected);
    cr_assert_gt(rejected, 10000, "only %ld of 20000 mutations rejected", rejected);
    cr_log_info("random flips (mixed): %ld accepted, %ld rejected", accepted, rejected);
    free(img);
    shapes_t s;
    img = shapes_image(&s, &n);
    accepted = rejected = 0;
    flip_bytes(img, n, 20261202, &accepted, &rejected);
    cr_assert_gt(rejected, 10000, "only %ld of 20000 mutations rejected", rejected);
    cr_log_info("random flips (shapes): %ld accepted, %ld rejected", accepted, rejected);
    free(img);
}

Test(image_check, cycle_without_shared_flag_is_rejected)
{
    fs_builder_t *b = new_builder(0);
    fs_ref_t l, m;
    OK(fs_build_seq(b, FS_KIND_LIST, 1, &l));          /* l = [m], m = [l] */
    OK(fs_build_seq(b, FS_KIND_LIST, 1, &m));
    fs_build_seq_set(b, l, 0, m);
    fs_build_seq_set(b, m, 0, l);
    const uint8_t *base = finish(b, l);
    cr_assert(fs_obj_shared(base, l));                 /* root + m's item */
    cr_assert_not(fs_obj_shared(base, m));
    size_t n = fs_image_header(base)->image_size;
    uint8_t *p = copy_exact(base, n);
    ohdr(p, l)->flags = 0;
    CORRUPT(p, n, "lacks FS_FLAG_SHARED");
    free(p);
    fs_builder_destroy(b);
}

/* Issue 10 D7: X = (D,), D = {K: None}, K = (X,) -- a cycle through a dict
** key, which Python cannot build. The validator accepts it on purpose: the
** graph is well formed and every reference in bounds; a reader that builds
** hashable objects (thaw) must refuse any object still incomplete in a key
** context instead (fs_image.h, "Cycles through keys"). */
Test(image_check, cycle_through_a_key_is_well_formed)
{
    fs_builder_t *b = new_builder(0);
    fs_ref_t x, d, k;
    OK(fs_build_seq(b, FS_KIND_TUPLE, 1, &x));
    OK(fs_build_map(b, FS_KIND_DICT, 0, 1, &d));
    OK(fs_build_seq(b, FS_KIND_TUPLE, 1, &k));
    fs_build_seq_set(b, x, 0, d);
    fs_build_seq_set(b, k, 0, x);
    fs_build_map_set(b, d, 0, 12345, k, FS_REF_NONE);
    fs_build_map_finish(b, d);
    const uint8_t *base = finish(b, x);
    cr_assert(fs_obj_shared(base, x), "X is the root and K's item: shared");
    cr_assert_not(fs_obj_shared(base, k), "K is referenced once");
    cr_assert_eq(fs_map_key(base, fs_map(base, d), 0), k);
    walk_image(base, fs_image_header(base)->image_size);     /* terminates */
    fs_builder_destroy(b);
}

/* ---- image_alloc: allocation failure -------------------------------------- */

static uint64_t arena_allocated(void)
{
    fs_arena_stats_t st;
    fs_arena_get_stats(&st);
    return st.allocated_bytes;
}

Test(image_alloc, every_failing_allocation_is_enomem_and_leaks_nothing)
{
    OK(fs_arena_init());
    uint64_t start = arena_allocated();
    long n;
    int err = FS_ENOMEM;
    for (n = 0; n < 10000; n++) {
        fs_builder_t *b = NULL;
        fs_alloc_fail_after(n);
        err = build_mixed(&b);
        fs_alloc_fail_after(-1);
        if (err == FS_OK) {
            const uint8_t *base = fs_builder_base(b);
            cr_assert_eq(check_copy(base, fs_image_header(base)->image_size), FS_OK);
            cr_assert_eq(fs_image_header(base)->object_count, MIXED_OBJECTS);
            fs_builder_destroy(b);
            break;
        }
        cr_assert_eq(err, FS_ENOMEM, "allocation %ld failed with %d", n, err);
        fs_builder_destroy(b);                      /* NULL when create failed */
        cr_assert_eq(arena_allocated(), start, "after failing allocation %ld: leak", n);
    }
    cr_assert_eq(err, FS_OK);
    cr_assert_geq(n, 8, "only %ld allocations: the image never grew?", n);
    cr_assert_eq(arena_allocated(), start);
}

/* A failed fs_build_str, fs_build_bytes, fs_build_float or fs_build_dict
** (its dedup or shape table cannot grow) leaves the builder as it was, and
** the same call then succeeds. */
Test(image_alloc, failed_dedup_and_shape_tables_leave_the_builder_as_it_was)
{
    fs_builder_t *b = new_builder(1 << 20);
    fs_ref_t l, r, k[2];
    int64_t h[2] = { 1, 2 };
    OK(fs_build_seq(b, FS_KIND_LIST, 4, &l));
    size_t before = fs_builder_size(b);
    fs_alloc_fail_after(0);
    cr_assert_eq(fs_build_str(b, 1, 2, FS_MAXCHAR_SCAN, 5, "ab", &r), FS_ENOMEM);
    cr_assert_eq(fs_build_bytes(b, FS_KIND_BYTES, "ab", 2, &r), FS_ENOMEM);
    cr_assert_eq(fs_build_float(b, 1e300, &r), FS_ENOMEM);
    k[0] = fs_ref_small_int(1);
    k[1] = fs_ref_small_int(2);
    cr_assert_eq(fs_build_dict(b, 0, 2, h, k, &r), FS_ENOMEM);
    OK(fs_build_float(b, 1.0, &r));                         /* an immediate: no allocation */
    fs_alloc_fail_after(-1);
    cr_assert_eq(fs_builder_size(b), before);
    OK(fs_build_str(b, 1, 2, FS_MAXCHAR_SCAN, 5, "ab", &r));
    fs_build_seq_set(b, l, 0, r);
    OK(fs_build_bytes(b, FS_KIND_BYTES, "ab", 2, &r));
    fs_build_seq_set(b, l, 1, r);
    OK(fs_build_dict(b, 0, 2, h, k, &r));
    fs_build_seq_set(b, l, 2, r);
    OK(fs_build_dict(b, 0, 2, h, k, &r));
    fs_build_seq_set(b, l, 3, r);
    const uint8_t *base = finish(b, l);
    cr_assert_eq(fs_image_header(base)->object_count, 5);
    cr_assert(fs_map_shaped(fs_map(base, r)));
    fs_builder_destroy(b);
}

Test(image_alloc, finish_enomem_then_retry_succeeds)
{
    fs_builder_t *b = new_builder(4096);
    fs_ref_t r, x;
    static char fill[8192];
    /* fill the first allocation exactly, so the tables need a new one */
    size_t room = 4096 - fs_builder_size(b);
    OK(fs_build_bytes(b, FS_KIND_BYTES, fill, room - 8, &r));   /* 8 + len -> room */
    cr_assert_eq(fs_builder_size(b), 4096);
    OK(fs_build_xref(b, 0, 128, &x));
    uint64_t id = 5;
    fs_alloc_fail_after(0);
    cr_assert_eq(fs_builder_finish(b, r, &id, 1, 0), FS_ENOMEM);
    fs_alloc_fail_after(-1);
    cr_assert_eq(fs_builder_size(b), 4096);
    OK(fs_builder_finish(b, r, &id, 1, 0));
    const uint8_t *base = fs_builder_base(b);
    cr_assert_eq(check_copy(base, fs_builder_size(b)), FS_OK);
    cr_assert_eq(fs_image_header(base)->nxrefs, 1);
    fs_builder_destroy(b);
}

Test(image_alloc, check_reports_enomem)
{
    size_t n;
    uint8_t *img = mixed_copy(&n);
    /* the start bitmap, the reference bitmap, then the scratch bitmap for
    ** map indexes (grown once per larger indexed map): each failure is
    ** FS_ENOMEM, until the check needs no more */
    long k;
    int rc = FS_ENOMEM;
    for (k = 0; k < 20 && rc == FS_ENOMEM; k++) {
        fs_alloc_fail_after(k);
        const char *why = "unset";
        rc = fs_image_check_why(img, n, &why);
        fs_alloc_fail_after(-1);
        cr_assert(rc == FS_ENOMEM || rc == FS_OK, "allocation %ld: %d", k, rc);
    }
    cr_assert_eq(rc, FS_OK);
    cr_assert_geq(k, 4, "starts, refd and the index scratch: %ld", k);
    cr_assert_eq(check(img, n), FS_OK);
    free(img);
}

Test(image_alloc, create_failure_is_enomem)
{
    fs_builder_t *b = NULL;
    OK(fs_arena_init());
    fs_alloc_fail_after(0);
    cr_assert_eq(fs_builder_create(&b, 0), FS_ENOMEM);
    fs_alloc_fail_after(1);
    cr_assert_eq(fs_builder_create(&b, 0), FS_ENOMEM);
    fs_alloc_fail_after(-1);
    OK(fs_builder_create(&b, 0));
    fs_builder_destroy(b);
    fs_builder_destroy(NULL);
}

/* D11: growth takes two allocations, the image's (fs_arena_realloc) and the
** reference bitmap's (fs__realloc), and finish a third (the shrink). Fail
** each of them in turn -- allocation 1 is the bitmap's: the image already
** grew -- while an append crosses the first page by a little (the old bitmap
** still covers the new object) or by a lot (jemalloc's size class gives
** more than asked). Every step must be FS_OK or FS_ENOMEM, a failed step
** leaves the builder as it was and can be retried, and the detached size is
** the block's whole-page size, which fs_arena_seal accepts. Before the fix,
** a failed bitmap left the capacity (and so the detached size) at a
** non-page multiple and the seal was FS_EINVAL (Python: ValueError). The
** head's bytes are stored before the trap is armed, so the dedup table
** exists already and the tail (never equal to the head) allocates nothing
** else. */
Test(image_alloc, failed_bitmap_growth_keeps_a_sealable_size)
{
    OK(fs_arena_init());
    size_t page = fs_arena_page_size();
    uint64_t start = arena_allocated();
    static char fill[65536];
    const size_t tails[] = { 40, 33000 };
    for (size_t t = 0; t < sizeof tails / sizeof tails[0]; t++) {
        for (long n = 0; n < 4; n++) {
            fs_builder_t *b = new_builder(page);
            fs_ref_t head, tail, l;
            /* fill the first page but for 48 bytes: the list and the tail cross it */
            size_t room = page - fs_builder_size(b) - 48;
            OK(fs_build_bytes(b, FS_KIND_BYTES, fill, room - 8, &head));
            cr_assert_eq(fs_builder_size(b), page - 48);
            OK(fs_build_seq(b, FS_KIND_LIST, 2, &l));
            fs_build_seq_set(b, l, 0, head);
            size_t before = fs_builder_size(b);

            fs_alloc_fail_after(n);
            int err = fs_build_bytes(b, FS_KIND_BYTES, fill, tails[t], &tail);
            cr_assert(err == FS_OK || err == FS_ENOMEM, "tail %zu, n %ld: append %d",
                      tails[t], n, err);
            if (err) {
                cr_assert_eq(fs_builder_size(b), before, "failed append changed the size");
                fs_alloc_fail_after(-1);
                OK(fs_build_bytes(b, FS_KIND_BYTES, fill, tails[t], &tail));
                fs_alloc_fail_after(n);
            }
            fs_build_seq_set(b, l, 1, tail);
            size_t used = fs_builder_size(b);
            err = fs_builder_finish(b, l, NULL, 0, 0);
            cr_assert(err == FS_OK || err == FS_ENOMEM, "tail %zu, n %ld: finish %d",
                      tails[t], n, err);
            fs_alloc_fail_after(-1);
            if (err) {
                cr_assert_eq(fs_builder_size(b), used);
                OK(fs_builder_finish(b, l, NULL, 0, 0));
            }
            const uint8_t *base = fs_builder_base(b);
            size_t image_size = fs_image_header(base)->image_size;
            cr_assert_eq(check_copy(base, image_size), FS_OK);
            void *img;
            size_t alloc;
            fs_builder_detach(b, &img, &alloc);
            fs_builder_destroy(b);
            cr_assert_eq(alloc % page, 0, "tail %zu, n %ld: detached %zu bytes", tails[t], n, alloc);
            cr_assert_geq(alloc, image_size);
            cr_assert_eq(fs_arena_seal(img, alloc, 1), FS_OK, "tail %zu, n %ld: seal", tails[t], n);
            cr_assert_eq(check(img, image_size), FS_OK);
            OK(fs_arena_unseal(img, alloc));
            fs_arena_free(img);
            cr_assert_eq(arena_allocated(), start, "tail %zu, n %ld: leak", tails[t], n);
        }
    }
}

/* ---- narrow records (FS_FLAG_NARROW) -------------------------------------- */

/* Two complete records of the same 5 keys (a, b, c, d, e): the first is
** the shape, the second shaped; values as given. *r0, *r1; returns the list
** [r0, r1]. */
static fs_ref_t two_records(fs_builder_t *b, const fs_ref_t v0[5], const fs_ref_t v1[5],
                            fs_ref_t *r0, fs_ref_t *r1)
{
    static const char *const names[5] = { "a", "b", "c", "d", "e" };
    fs_ref_t keys[5], l;
    int64_t hashes[5];
    for (int i = 0; i < 5; i++) {
        keys[i] = ascii(b, names[i]);
        hashes[i] = str_hash(names[i]);
    }
    OK(fs_build_record(b, 0, 5, hashes, keys, v0, r0));
    OK(fs_build_record_like(b, 0, *r0, v1, r1));
    OK(fs_build_seq(b, FS_KIND_LIST, 2, &l));
    fs_build_seq_set(b, l, 0, *r0);
    fs_build_seq_set(b, l, 1, *r1);
    return l;
}

Test(image_narrow, shaped_records_of_small_values_are_narrow_and_read_back)
{
    fs_builder_t *b = new_builder(0);
    fs_ref_t s = ascii(b, "str"), f;
    OK(fs_build_float(b, 1.5, &f));                       /* an immediate */
    cr_assert_eq(fs_ref_tag(f), FS_TAG_FLOAT);
    fs_ref_t v0[5] = { fs_ref_small_int(1), s, FS_REF_TRUE, FS_REF_NONE, f };
    fs_ref_t v1[5] = { fs_ref_small_int((1 << 28) - 1), s, FS_REF_FALSE,
                       fs_ref_small_int(-(1 << 28)), f };
    fs_ref_t r0, r1;
    fs_ref_t l = two_records(b, v0, v1, &r0, &r1);
    const uint8_t *base = finish(b, l);
    const fs_map_t *m0 = fs_map(base, r0), *m1 = fs_map(base, r1);
    cr_assert_not(fs_map_shaped(m0));
    cr_assert(m1->h.flags & FS_FLAG_NARROW);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(fs_map_value(m0, (uint64_t)i), v0[i]);
        cr_assert_eq(fs_map_value(m1, (uint64_t)i), v1[i]);
    }
    fs_ref_t boxed = fs_map_value(m1, 4);                 /* boxed: an object */
    cr_assert_eq(fs_ref_tag(boxed), FS_TAG_OBJ);
    cr_assert_eq(fs_ref_kind(base, boxed), FS_KIND_FLOAT);
    cr_assert_eq(((const fs_float_t *)fs_obj(base, boxed))->value, 1.5);
    cr_assert(fs_obj_shared(base, s));                    /* from both records */
    fs_builder_destroy(b);
}

Test(image_narrow, values_that_do_not_fit_keep_the_dict_wide)
{
    fs_ref_t f;
    fs_builder_t *b = new_builder(0);
    OK(fs_build_float(b, 2.5, &f));
    fs_ref_t base_v[5] = { fs_ref_small_int(1), FS_REF_NONE, FS_REF_NONE, FS_REF_NONE, FS_REF_NONE };
    fs_ref_t big[5] = { fs_ref_small_int(1 << 28), FS_REF_NONE, FS_REF_NONE, FS_REF_NONE, FS_REF_NONE };
    fs_ref_t r0, r1;
    fs_ref_t l = two_records(b, base_v, big, &r0, &r1);
    const uint8_t *img = finish(b, l);
    cr_assert_not(fs_map(img, r1)->h.flags & FS_FLAG_NARROW);
    cr_assert_eq(fs_map_value(fs_map(img, r1), 0), fs_ref_small_int(1 << 28));
    fs_builder_destroy(b);

    b = new_builder(0);                                   /* 2 floats in 5: boxes cost more */
    OK(fs_build_float(b, 2.5, &f));
    fs_ref_t two[5] = { f, f, FS_REF_NONE, FS_REF_NONE, FS_REF_NONE };
    l = two_records(b, base_v, two, &r0, &r1);
    img = finish(b, l);
    cr_assert_not(fs_map(img, r1)->h.flags & FS_FLAG_NARROW);
    cr_assert_eq(fs_map_value(fs_map(img, r1), 1), f);
    fs_builder_destroy(b);
}

/* A vocabulary: one dict of 1000 str -> int entries, built complete. All
** fit, so its entries are narrow (16 bytes, not 24), and every key is found
** by its hash with its value; one value that does not fit (an int of 2^28,
** a float immediate) keeps it wide, 8 bytes an entry bigger. */
static size_t vocab_image(int64_t last, int as_float, uint8_t **img, fs_ref_t *d)
{
    enum { N = 1000 };
    fs_builder_t *b = new_builder(0);
    fs_ref_t keys[N], values[N];
    int64_t hashes[N];
    char name[16];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "tok%d", i);
        keys[i] = ascii(b, name);
        hashes[i] = str_hash(name);
        values[i] = fs_ref_small_int(i % 2 ? i : -(INT64_C(1) << 28) + i);
    }
    if (as_float)
        OK(fs_build_float(b, 1.5, &values[N - 1]));
    else
        values[N - 1] = fs_ref_small_int(last);
    OK(fs_build_record(b, 0, N, hashes, keys, values, d));
    size_t n;
    *img = finish_copy(b, *d, &n);
    const fs_map_t *m = fs_map(*img, *d);
    cr_assert_not(fs_map_shaped(m));
    cr_assert_eq(fs_map_count(*img, m), N);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "tok%d", i);
        int64_t e = fs_map_find(*img, m, str_hash(name), eq_cstr, name);
        cr_assert_eq(e, i, "%s at %lld", name, (long long)e);
        cr_assert_eq(fs_map_value(m, (uint64_t)i), values[i]);
        cr_assert_eq(fs_map_key(*img, m, (uint64_t)i), keys[i]);
        cr_assert_eq(fs_map_hash(*img, m, (uint64_t)i), hashes[i]);
    }
    cr_assert_eq(fs_map_find(*img, m, str_hash("absent"), eq_cstr, "absent"), -1);
    return n;
}

Test(image_narrow, a_complete_vocabulary_has_narrow_entries)
{
    uint8_t *narrow, *wide, *wide_f;
    fs_ref_t dn, dw, df;
    size_t nn = vocab_image((INT64_C(1) << 28) - 1, 0, &narrow, &dn);
    size_t nw = vocab_image(INT64_C(1) << 28, 0, &wide, &dw);
    size_t nf = vocab_image(0, 1, &wide_f, &df);
    cr_assert(fs_map(narrow, dn)->h.flags & FS_FLAG_NARROW);
    cr_assert_not(fs_map(wide, dw)->h.flags & FS_FLAG_NARROW);
    cr_assert_not(fs_map(wide_f, df)->h.flags & FS_FLAG_NARROW);
    cr_assert_eq(nw - nn, 8 * 1000, "narrow %zu, wide %zu bytes", nn, nw);
    cr_assert_eq(nf, nw);
    free(narrow);
    free(wide);
    free(wide_f);
}

Test(image_narrow, corrupt_narrow_dicts_are_rejected)
{
    fs_builder_t *b = new_builder(0);
    fs_ref_t s = ascii(b, "shared");
    fs_ref_t v[5] = { fs_ref_small_int(7), s, FS_REF_TRUE, FS_REF_NONE, fs_ref_small_int(-3) };
    fs_ref_t r0, r1;
    fs_ref_t l = two_records(b, v, v, &r0, &r1);
    size_t n;
    uint8_t *img = finish_copy(b, l, &n);
    uint8_t *p = copy_exact(img, n);
    cr_assert_eq(check(p, n), FS_OK);
    cr_assert(w_map(p, r1)->h.flags & FS_FLAG_NARROW);
    uint32_t *nv = (uint32_t *)(void *)((fs_shaped_t *)(void *)(p + r1))->values;

    nv[0] = (uint32_t)fs_ref_small_int(7) | FS_TAG_FLOAT;      /* a float tag */
    CORRUPT(p, n, "float tag");
    memcpy(p, img, n);
    nv[1] = (uint32_t)(n + 64);                                 /* beyond the objects */
    CORRUPT(p, n, NULL);
    memcpy(p, img, n);
    nv[1] = (uint32_t)(s + 8);                                  /* inside an object */
    CORRUPT(p, n, "between");
    memcpy(p, img, n);
    nv[2] = (5u << 3) | FS_TAG_CONST;                           /* no such constant */
    CORRUPT(p, n, "constant");
    memcpy(p, img, n);
    ohdr(p, s)->flags &= (uint8_t)~FS_FLAG_SHARED;              /* 2 refs, no flag */
    CORRUPT(p, n, "SHARED");
    memcpy(p, img, n);
    /* r0, the shape, has narrow entries too: { hash, u32 key, u32 value } */
    cr_assert(w_map(p, r0)->h.flags & FS_FLAG_NARROW);
    uint32_t *e1 = (uint32_t *)(uintptr_t)fs_keyset_entry(w_map(p, r0), 1) + 2;
    e1[0] |= FS_TAG_FLOAT;                                      /* key: a float tag */
    CORRUPT(p, n, "float tag");
    memcpy(p, img, n);
    e1[1] = (uint32_t)fs_ref_small_int(7) | FS_TAG_FLOAT;       /* value: a float tag */
    CORRUPT(p, n, "float tag");
    memcpy(p, img, n);
    e1[0] = (uint32_t)(s + 8);                                  /* key inside an object */
    CORRUPT(p, n, "between");
    memcpy(p, img, n);
    w_map(p, r0)->h.flags &= (uint8_t)~FS_FLAG_NARROW;          /* size disagrees */
    CORRUPT(p, n, NULL);
    memcpy(p, img, n);
    w_map(p, r1)->h.flags &= (uint8_t)~FS_FLAG_NARROW;          /* size disagrees */
    CORRUPT(p, n, NULL);
    free(p);
    free(img);
}

/* ---- image_portable: the keyed hash domain, checksums, rekeying ---------- */

static int composite_calls;
/* fs_rekey_fn for the tests: a hash of the key's offset (any function of
** the key will do here; the bindings use the key's value). */
static int composite_hash(void *ctx, const void *image, fs_ref_t key, int64_t *out)
{
    (void)ctx;
    cr_assert(fs_ref_kind(image, key) == FS_KIND_TUPLE || fs_ref_kind(image, key) == FS_KIND_FROZENSET,
              "only composite keys reach the callback (kind %d)", fs_ref_kind(image, key));
    composite_calls++;
    *out = (int64_t)fs_keyed_mix(key) | 1;
    return FS_OK;
}

/* Every entry of every unshaped map of a keyed image is found by its K
** (str and bytes recomputed here from the key itself). */
static void assert_keyed_lookups(const uint8_t *img, uint64_t seed)
{
    const fs_image_header_t *h = fs_image_header(img);
    uint64_t objects = 0;
    for (uint64_t off = FS_IMAGE_HEADER_SIZE; off < h->objects_end; off += fs_obj_size(img, off)) {
        objects++;
        const fs_map_t *m = fs_map(img, off);
        int k = m->h.kind;
        if ((k != FS_KIND_DICT && k != FS_KIND_SET && k != FS_KIND_FROZENSET) || fs_map_shaped(m))
            continue;
        for (uint64_t e = 0; e < m->h.n; e++) {
            fs_ref_t key = fs_keyset_key(m, e);
            int64_t hash = fs_keyset_hash(m, e);
            if (fs_ref_kind(img, key) == FS_KIND_STR) {
                const fs_str_t *s = fs_str(img, key);
                cr_assert_eq(hash, fs_keyed_str_hash(seed, fs_str_charsize(s), fs_str_len(s),
                                                     fs_str_data(s)));
            }
            cr_assert_neq(hash, -1);
            fs_ref_t probe = key;
            cr_assert_eq(fs_map_find(img, m, hash, eq_same_ref, &probe), (int64_t)e,
                         "entry %lu of the map at %lu is not found by its K",
                         (unsigned long)e, (unsigned long)off);
        }
    }
    cr_assert_eq(objects, h->object_count, "fs_obj_size walks every object exactly once");
}

/* An image importing nothing with keys of every kind: a 12-entry root dict
** (an index) of str (three char sizes), bytes, int, float, tuple and
** frozenset keys, a frozenset, and 5 records sharing one shape (narrow). */
static uint8_t *portable_copy(size_t *n)
{
    fs_builder_t *b = new_builder(0);
    fs_ref_t root, r, k, t, fz, recs;
    OK(fs_build_map(b, FS_KIND_DICT, 0, 12, &root));
    uint64_t e = 0;
    OK(fs_build_str(b, 1, 5, FS_MAXCHAR_SCAN, 11, "alpha", &k));
    fs_build_map_set(b, root, e++, 11, k, fs_ref_small_int(1));
    uint16_t u2[2] = { 0x20ac, 'x' };
    OK(fs_build_str(b, 2, 2, FS_MAXCHAR_SCAN, 12, u2, &k));
    fs_build_map_set(b, root, e++, 12, k, fs_ref_small_int(2));
    uint32_t u4[2] = { 0x1f600, 'y' };
    OK(fs_build_str(b, 4, 2, FS_MAXCHAR_SCAN, 13, u4, &k));
    fs_build_map_set(b, root, e++, 13, k, fs_ref_small_int(3));
    OK(fs_build_bytes(b, FS_KIND_BYTES, "raw", 3, &k));
    fs_build_map_set(b, root, e++, 14, k, fs_ref_small_int(4));
    fs_build_map_set(b, root, e++, 5, fs_ref_small_int(5), FS_REF_NONE);
    OK(fs_build_float(b, 0.0, &k));
    fs_build_map_set(b, root, e++, 0, k, FS_REF_TRUE);
    OK(fs_build_seq(b, FS_KIND_TUPLE, 2, &t));
    fs_build_seq_set(b, t, 0, fs_ref_small_int(1));
    fs_build_seq_set(b, t, 1, ascii(b, "t"));
    fs_build_map_set(b, root, e++, 17, t, FS_REF_FALSE);
    OK(fs_build_map(b, FS_KIND_FROZENSET, 0, 2, &fz));
    fs_build_map_set(b, fz, 0, str_hash("p"), ascii(b, "p"), FS_REF_NONE);
    fs_build_map_set(b, fz, 1, 2, fs_ref_small_int(2), FS_REF_NONE);
    fs_build_map_finish(b, fz);
    fs_build_map_set(b, root, e++, 18, fz, fz);
    OK(fs_build_seq(b, FS_KIND_LIST, 5, &recs));
    int64_t hashes[2] = { str_hash("id"), str_hash("name") };
    fs_ref_t keys[2] = { ascii(b, "id"), ascii(b, "name") };
    for (uint64_t i = 0; i < 5; i++) {
        fs_ref_t vals[2] = { fs_ref_small_int((int64_t)i), ascii(b, "n") };
        OK(fs_build_record(b, 0, 2, hashes, keys, vals, &r));
        fs_build_seq_set(b, recs, i, r);
    }
    fs_build_map_set(b, root, e++, str_hash("records"), ascii(b, "records"), recs);
    while (e < 12) {
        char name[8];
        snprintf(name, sizeof name, "k%lu", (unsigned long)e);
        fs_build_map_set(b, root, e, str_hash(name), ascii(b, name), fs_ref_small_int((int64_t)e));
        e++;
    }
    fs_build_map_finish(b, root);
    return finish_copy(b, root, n);
}

Test(image_portable, rekey_moves_every_hash_into_the_keyed_domain_and_seals_a_checksum)
{
    size_t n;
    uint8_t *img = portable_copy(&n);
    uint64_t seed = UINT64_C(0x0123456789abcdef);
    composite_calls = 0;
    OK(fs_image_rekey(img, seed, composite_hash, NULL));
    cr_assert_gt(composite_calls, 0, "the tuple and frozenset keys went to the callback");
    const fs_image_header_t *h = fs_image_header(img);
    cr_assert_eq(h->hash_domain, FS_HASH_KEYED);
    cr_assert_eq(fs_image_seed(h), seed);
    cr_assert_eq(h->hash_check, -1);
    cr_assert_eq(h->checksum_kind, FS_CHECKSUM_XXH3);
    cr_assert_eq(h->checksum, fs_image_checksum(img, n));
    cr_assert_eq(check(img, n), FS_OK);
    assert_keyed_lookups(img, seed);
    /* the header's checks: a changed byte anywhere, a seed's reserved bytes,
    ** an unknown checksum kind */
    img[n / 2] ^= 0x40;
    CORRUPT(img, n, "checksum");
    img[n / 2] ^= 0x40;
    hdr(img)->hash_key[12] = 1;
    CORRUPT(img, n, "reserved");
    hdr(img)->hash_key[12] = 0;
    hdr(img)->checksum_kind = 7;
    REFUSED(img, n, FS_EVERSION, "checksum kind");
    hdr(img)->checksum_kind = FS_CHECKSUM_XXH3;
    hdr(img)->hash_domain = 9;
    REFUSED(img, n, FS_EVERSION, "hash domain");
    hdr(img)->hash_domain = FS_HASH_KEYED;
    cr_assert_eq(check(img, n), FS_OK);
    cr_assert_eq(fs_image_check_header(img, n, NULL), FS_OK);
    free(img);
}

Test(image_portable, keyed_hashes_depend_on_seed_and_value_only)
{
    uint16_t u2[2] = { 0x20ac, 'x' };
    cr_assert_eq(fs_keyed_str_hash(1, 1, 3, "abc"), fs_keyed_str_hash(1, 1, 3, "abc"));
    cr_assert_neq(fs_keyed_str_hash(1, 1, 3, "abc"), fs_keyed_str_hash(2, 1, 3, "abc"));
    cr_assert_neq(fs_keyed_str_hash(1, 1, 3, "abc"), fs_keyed_bytes_hash(1, 3, "abc"));
    cr_assert_neq(fs_keyed_str_hash(1, 2, 2, u2), fs_keyed_str_hash(1, 1, 2, "\xac\x20"));
    /* tuples are ordered, sets are not; neither is ever -1 */
    uint64_t a = fs_keyed_tuple_add(fs_keyed_tuple_add(fs_keyed_tuple_begin(5), 1), 2);
    uint64_t b = fs_keyed_tuple_add(fs_keyed_tuple_add(fs_keyed_tuple_begin(5), 2), 1);
    cr_assert_neq(fs_keyed_tuple_end(a, 2), fs_keyed_tuple_end(b, 2));
    uint64_t s1 = fs_keyed_set_member(1) + fs_keyed_set_member(2);
    uint64_t s2 = fs_keyed_set_member(2) + fs_keyed_set_member(1);
    cr_assert_eq(fs_keyed_set_end(5, s1, 2), fs_keyed_set_end(5, s2, 2));
    for (uint64_t i = 0; i < 100000; i++)
        cr_assert_neq(fs_keyed_tuple_end(fs_keyed_tuple_begin(i), i), -1);
}

Test(image_portable, rekey_refuses_an_image_that_imports)
{
    fs_builder_t *b = new_builder(0);
    fs_ref_t x;
    OK(fs_build_xref(b, 0, fs_ref_small_int(1), &x));
    uint64_t id = 77;
    OK(fs_builder_finish(b, x, &id, 1, 0));
    size_t n = fs_builder_size(b);
    uint8_t *img = copy_exact(fs_builder_base(b), n);
    fs_builder_destroy(b);
    cr_assert_eq(fs_image_rekey(img, 1, composite_hash, NULL), FS_EINVAL);
    free(img);
}

/* fs_str_scan_class answers what fs_str_maxchar does for canonical form and
** the ASCII flag: the same class, every charsize, every length and tail. */
Test(image_build, scan_class_has_the_class_of_the_maximum)
{
    static const uint32_t tops[] = { 0, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 0x10ffff };
    uint32_t buf[48];
    for (unsigned cs = 1; cs <= 4; cs *= 2)
        for (uint64_t n = 0; n <= 40; n++)
            for (size_t t = 0; t < sizeof tops / sizeof *tops; t++) {
                uint32_t top = tops[t], lim = cs == 1 ? 0xff : cs == 2 ? 0xffff : 0x10ffff;
                if (top > lim)
                    continue;
                uint8_t *p = (uint8_t *)buf;
                for (uint64_t i = 0; i < n; i++) {
                    uint32_t v = (uint32_t)(rnd() % (top + 1));
                    if (i == n / 2)
                        v = top;               /* the maximum somewhere, head or tail */
                    memcpy(p + i * cs, &v, cs);
                }
                uint32_t mx = fs_str_maxchar(cs, n, buf), sc = fs_str_scan_class(cs, n, buf);
#define CLASS(x) ((x) < 128 ? 0 : (x) < 256 ? 1 : (x) < 65536 ? 2 : (x) <= 0x10ffff ? 3 : 4)
                cr_assert_eq(CLASS(mx), CLASS(sc), "cs %u n %lu top %x: max %x, scan %x",
                             cs, (unsigned long)n, top, mx, sc);
#undef CLASS
            }
}

/* ---- records and typed buffers -------------------------------------------- */

/* A list of: a FIELDS record {"x": 1}, a MEMBER record "RED", a 3-double
** array and a 2x3 int32 buffer. Their refs in r[0..3]. */
static uint8_t *records_image(size_t *n, fs_ref_t r[4], fs_ref_t *cls)
{
    fs_builder_t *b = new_builder(0);
    fs_ref_t l, d, key = ascii(b, "x"), val = fs_ref_small_int(1);
    int64_t h = str_hash("x");
    OK(fs_build_seq(b, FS_KIND_LIST, 4, &l));
    *cls = ascii(b, "mod:Point");
    OK(fs_build_rec(b, FS_REC_FIELDS, &r[0]));
    OK(fs_build_record(b, 0, 1, &h, &key, &val, &d));
    fs_build_rec_set(b, r[0], *cls, d);
    OK(fs_build_rec(b, FS_REC_MEMBER, &r[1]));
    fs_build_rec_set(b, r[1], ascii(b, "mod:Color"), ascii(b, "RED"));
    double dv[3] = { 1.5, -2, 3 };
    int32_t iv[6] = { 1, 2, 3, 4, 5, 6 };
    uint64_t s1[1] = { 3 }, s2[2] = { 2, 3 };
    OK(fs_build_buffer(b, FS_BUF_ARRAY, "d", 8, 1, s1, dv, sizeof dv, &r[2]));
    OK(fs_build_buffer(b, FS_BUF_NDARRAY, "i", 4, 2, s2, iv, sizeof iv, &r[3]));
    for (int i = 0; i < 4; i++)
        fs_build_seq_set(b, l, (uint64_t)i, r[i]);
    return finish_copy(b, l, n);
}

Test(image_records, records_and_buffers_build_check_and_read_back)
{
    size_t n;
    fs_ref_t r[4], cls;
    uint8_t *p = records_image(&n, r, &cls);
    const fs_rec_t *rec = fs_rec(p, r[0]);
    cr_assert_eq(rec->h.kind, FS_KIND_RECORD);
    cr_assert_eq(rec->h.aux, FS_REC_FIELDS);
    cr_assert_eq(rec->cls, cls);
    cr_assert_eq(fs_ref_kind(p, rec->state), FS_KIND_DICT);
    cr_assert_eq(fs_rec(p, r[1])->h.aux, FS_REC_MEMBER);
    const fs_buf_t *b2 = fs_buf(p, r[3]);
    cr_assert_eq(b2->h.n, 2);
    cr_assert_eq(b2->shape[0], 2);
    cr_assert_eq(b2->shape[1], 3);
    cr_assert_eq(b2->nbytes, 24);
    cr_assert_str_eq(b2->format, "i");
    for (int i = 2; i < 4; i++)                   /* data 16-aligned in the image */
        cr_assert_eq((size_t)(fs_buf_data(fs_buf(p, r[i])) - p) % 16, 0);
    int32_t iv[6];
    memcpy(iv, fs_buf_data(b2), sizeof iv);
    cr_assert_eq(iv[5], 6);
    double d0;
    memcpy(&d0, fs_buf_data(fs_buf(p, r[2])), 8);
    cr_assert_eq(d0, 1.5);
    for (int i = 0; i < 4; i++)                   /* object sizes walk the image */
        cr_assert_eq(fs_obj_size(p, r[i]) % 8, 0);
    free(p);
}

Test(image_records, the_builder_refuses_bad_records_and_buffers)
{
    fs_builder_t *b = new_builder(0);
    fs_ref_t r;
    double d[2] = { 0, 0 };
    uint64_t s2[1] = { 2 }, big[FS_BUF_MAX_NDIM + 1];
    for (unsigned i = 0; i <= FS_BUF_MAX_NDIM; i++)
        big[i] = 1;
    cr_assert_eq(fs_build_rec(b, 0, &r), FS_EINVAL);
    cr_assert_eq(fs_build_rec(b, FS_REC__MAX + 1, &r), FS_EINVAL);
    cr_assert_eq(fs_build_buffer(b, FS_BUF_ARRAY, "O", 8, 1, s2, d, 16, &r), FS_EINVAL);
    cr_assert_eq(fs_build_buffer(b, FS_BUF_ARRAY, "d", 4, 1, s2, d, 16, &r), FS_EINVAL);
    cr_assert_eq(fs_build_buffer(b, FS_BUF_ARRAY, "d", 8, 1, s2, d, 8, &r), FS_EINVAL);
    cr_assert_eq(fs_build_buffer(b, 0, "d", 8, 1, s2, d, 16, &r), FS_EINVAL);
    cr_assert_eq(fs_build_buffer(b, FS_BUF_ARRAY, "d", 8, FS_BUF_MAX_NDIM + 1, big, d, 8, &r),
                 FS_EINVAL);
    cr_assert_eq(fs_build_buffer(b, FS_BUF_ARRAY, "0123456789abcdef", 8, 1, s2, d, 16, &r),
                 FS_EINVAL);
    fs_builder_destroy(b);
}

Test(image_records, format_sizes_know_numbers_and_bool_only)
{
    cr_assert_eq(fs_buf_format_size("d"), 8);
    cr_assert_eq(fs_buf_format_size("@d"), 8);
    cr_assert_eq(fs_buf_format_size("l"), sizeof(long));
    cr_assert_eq(fs_buf_format_size("<l"), 4);
    cr_assert_eq(fs_buf_format_size(">q"), 8);
    cr_assert_eq(fs_buf_format_size("?"), 1);
    cr_assert_eq(fs_buf_format_size("=e"), 2);
    cr_assert_eq(fs_buf_format_size("Zd"), 16);
    cr_assert_eq(fs_buf_format_size("<Zf"), 8);
    cr_assert_eq(fs_buf_format_size("w"), 4);
    cr_assert_eq(fs_buf_format_size("<w"), 0);
    cr_assert_eq(fs_buf_format_size("<g"), 0);
    cr_assert_eq(fs_buf_format_size("<n"), 0);
    cr_assert_eq(fs_buf_format_size("O"), 0);
    cr_assert_eq(fs_buf_format_size("Zi"), 0);
    cr_assert_eq(fs_buf_format_size("dd"), 0);
    cr_assert_eq(fs_buf_format_size("2d"), 0);
    cr_assert_eq(fs_buf_format_size(""), 0);
    cr_assert_eq(fs_buf_format_size("T{d:x:}"), 0);
    cr_assert(fs_rec_value_class("decimal:Decimal", 15));
    cr_assert(fs_rec_value_class("datetime:timezone", 17));
    cr_assert_not(fs_rec_value_class("datetime:tzinfo", 15));
    cr_assert_not(fs_rec_value_class("decimal:Decimal2", 16));
    cr_assert_not(fs_rec_value_class("os:system", 9));
}

Test(image_records, corrupt_records_and_buffers_are_rejected)
{
    size_t n;
    fs_ref_t r[4], cls;
    uint8_t *img = records_image(&n, r, &cls);
    uint8_t *p = copy_exact(img, n);
    fs_rec_t *rec = (fs_rec_t *)(void *)(p + r[0]);
    fs_buf_t *bf = (fs_buf_t *)(void *)(p + r[3]);
#define RESET() memcpy(p, img, n)
    rec->h.aux = 0;                                  CORRUPT(p, n, "flavor"); RESET();
    rec->h.aux = FS_REC__MAX + 1;                    CORRUPT(p, n, "flavor"); RESET();
    rec->h.n = 1;                                    CORRUPT(p, n, "flavor"); RESET();
    rec->cls = rec->state;                           CORRUPT(p, n, "class name"); RESET();
    rec->cls = fs_ref_small_int(5);                  CORRUPT(p, n, "class name"); RESET();
    rec->cls = cls + 8;                              CORRUPT(p, n, "between"); RESET();
    rec->h.aux = FS_REC_MEMBER;                      CORRUPT(p, n, "flavor's kind"); RESET();
    rec->state = FS_REF_NONE;                        CORRUPT(p, n, "flavor's kind"); RESET();
    rec->h.aux = FS_REC_TUPLE;                       CORRUPT(p, n, "flavor's kind"); RESET();
    rec->h.aux = FS_REC_FLAG;                        /* FLAG: any state */
    cr_assert_eq(check(p, n), FS_OK);                RESET();
    bf->format[0] = 'q';                             CORRUPT(p, n, "item size"); RESET();
    bf->format[0] = 'O';                             CORRUPT(p, n, "format"); RESET();
    bf->format[5] = 'x';                             CORRUPT(p, n, "NUL"); RESET();
    bf->nbytes -= 4;                                 CORRUPT(p, n, "disagrees"); RESET();
    bf->shape[1] = 4;                                CORRUPT(p, n, "disagrees"); RESET();
    bf->shape[0] = UINT64_C(1) << 62;                CORRUPT(p, n, "overflows"); RESET();
    bf->data_off += 8;                               CORRUPT(p, n, "where its header"); RESET();
    bf->h.aux = 0;                                   CORRUPT(p, n, "source"); RESET();
    bf->h.n = FS_BUF_MAX_NDIM + 1;                   CORRUPT(p, n, "dimensions"); RESET();
    bf->h.flags = FS_FLAG_ASCII;                     CORRUPT(p, n, "flags"); RESET();
    bf->nbytes = UINT64_C(1) << 40;                  CORRUPT(p, n, NULL); RESET();
#undef RESET
    cr_assert_eq(check(p, n), FS_OK);
    free(p);
    free(img);
}
