/*
** test_image.c -- the v1 image format: builder round trips of every kind,
** map indexes and lookups (fs_map_find), xrefs, header and sizing, the
** validator fs_image_check (accepts what the builder makes, rejects
** truncated and corrupted images, survives random byte flips), and
** allocation failure (every failing step is FS_ENOMEM, nothing leaks).
**
** Images handed to fs_image_check are copied into heap buffers of exactly
** their size, so running this binary under valgrind proves the validator
** never reads out of bounds. Criterion runs every test in a fresh process.
*/
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs_image.h"

#define OK(e) cr_assert_eq((e), FS_OK, "%s failed", #e)

/* ---- helpers ------------------------------------------------------------- */

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
    cr_assert_eq(fs_image_check(base, fs_image_header(base)->image_size), FS_OK);
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
    int r = fs_image_check(p, n);
    free(p);
    return r;
}

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
        gn = (size_t)o->nbytes;
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
** fs_image_check accepted. Returns a checksum. */
static uint64_t walk_image(const uint8_t *base, size_t size)
{
    const fs_image_header_t *h = fs_image_header(base);
    uint8_t *seen = calloc(size / 64 + 1, 1);
    fs_ref_t *stack = malloc(sizeof(fs_ref_t) * (size / 8 + 2));
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
        if (fs_ref_tag(r) != FS_TAG_OBJ) {
            sum += (uint64_t)fs_ref_kind(base, r) + r;
            continue;
        }
        if (seen[r / 64] & (1u << ((r / 8) % 8)))
            continue;
        seen[r / 64] |= (uint8_t)(1u << ((r / 8) % 8));
        switch (fs_ref_kind(base, r)) {
        case FS_KIND_FLOAT: {
            double d = ((const fs_float_t *)fs_obj(base, r))->value;
            uint64_t u;
            memcpy(&u, &d, 8);
            sum += u;
            break;
        }
        case FS_KIND_COMPLEX: {
            const fs_complex_t *c = fs_obj(base, r);
            uint64_t u;
            memcpy(&u, &c->imag, 8);
            sum += u;
            break;
        }
        case FS_KIND_INT: {
            const fs_bigint_t *o = fs_obj(base, r);
            for (uint64_t i = 0; i < o->nbytes; i++)
                sum += o->data[i];
            break;
        }
        case FS_KIND_STR: {
            const fs_str_t *s = fs_str(base, r);
            for (uint64_t i = 0; i < (s->length + 1) * s->charsize; i++)
                sum += s->data[i];
            sum += (uint64_t)fs_str_equals(s, s->charsize, s->length, s->data);
            break;
        }
        case FS_KIND_BYTES:
        case FS_KIND_BYTEARRAY: {
            const fs_bytes_t *o = fs_bytes(base, r);
            for (uint64_t i = 0; i <= o->length; i++)
                sum += o->data[i];
            break;
        }
        case FS_KIND_TUPLE:
        case FS_KIND_LIST: {
            const fs_seq_t *s = fs_seq(base, r);
            for (uint64_t i = 0; i < s->count; i++)
                stack[top++] = s->items[i];
            break;
        }
        case FS_KIND_DICT:
        case FS_KIND_SET:
        case FS_KIND_FROZENSET: {
            const fs_map_t *m = fs_map(base, r);
            for (uint64_t i = 0; i < m->count; i++) {
                const fs_map_entry_t *e = &m->entries[i];
                fs_ref_t key = e->key, none = ~(fs_ref_t)0;
                sum += (uint64_t)fs_map_find(base, m, e->hash, eq_same_ref, &key);
                sum += (uint64_t)fs_map_find(base, m, e->hash ^ 0x5bd1e995, eq_same_ref, &none);
                stack[top++] = e->key;
                stack[top++] = e->value;
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

/* A mixed image with every kind, nesting, a cycle, sharing and xrefs, big
** enough to grow the image several times. Stops at the first error (the
** builder stays in *out for fs_builder_destroy). */
#define TRY(e) do { if ((err = (e)) != FS_OK) return err; } while (0)
static int build_mixed(fs_builder_t **out)
{
    int err;
    fs_builder_t *b = NULL;
    fs_ref_t root, r, k, list, map, set, shared;
    *out = NULL;
    TRY(fs_builder_create(&b, 0));
    *out = b;
    TRY(fs_build_map(b, FS_KIND_DICT, 0, 13, &root));
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
    /* a list of 2000 items: a self reference, shared strs, xrefs, floats */
    TRY(fs_build_seq(b, FS_KIND_LIST, 2000, &list));          PUT(10, fs_ref_small_int(10), list);
    TRY(fs_build_str(b, 1, 6, 's', 55, "shared", &shared));
    for (uint64_t i = 0; i < 2000; i++) {
        switch (i % 5) {
        case 0: r = list; break;
        case 1: r = shared; break;
        case 2: TRY(fs_build_xref(b, (uint32_t)(i % 3), (i % 97) * 8 + 80, &r)); break;
        case 3: TRY(fs_build_float(b, (double)i / 7.0, &r)); break;
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
    TRY(fs_build_seq(b, FS_KIND_TUPLE, 0, &r));              PUT(13, r, shared);
    TRY(fs_build_bytes(b, FS_KIND_BYTES, NULL, 0, &r));      PUT(14, fs_ref_small_int(14), r);
#undef PUT
    cr_assert_eq(e, 13);
    fs_build_map_finish(b, root);
    uint64_t ids[3] = { 7, 8, 9 };
    TRY(fs_builder_finish(b, root, ids, 3, -1));
    return FS_OK;
}
#undef TRY

static fs_builder_t *mixed(void)
{
    fs_builder_t *b;
    OK(build_mixed(&b));
    return b;
}

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
    cr_assert_eq(s->count, 3);
    cr_assert_eq(fs_ref_kind(base, s->items[0]), FS_KIND_NONE);
    cr_assert_eq(fs_ref_kind(base, s->items[1]), FS_KIND_BOOL);
    cr_assert_eq(s->items[1], FS_REF_FALSE);
    cr_assert_eq(s->items[2], FS_REF_TRUE);
    cr_assert_eq(fs_image_header(base)->object_count, 1);
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
    const fs_seq_t *s = fs_seq(base, t);
    for (int i = 0; i < 4; i++) {
        uint8_t le[8];
        for (int j = 0; j < 8; j++)
            le[j] = (uint8_t)((uint64_t)out[i] >> (8 * j));
        cr_assert_eq(fs_ref_kind(base, s->items[6 + i]), FS_KIND_INT);
        cr_assert_eq(((const fs_bigint_t *)fs_obj(base, s->items[6 + i]))->nbytes, 8);
        assert_int_is(base, s->items[6 + i], le, 8);
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
        assert_int_is(base, fs_seq(base, t)->items[i], vals[i], lens[i]);
    cr_assert_eq(fs_ref_tag(refs[6]), FS_TAG_INT);
    cr_assert_eq(fs_ref_int_value(refs[6]), 5);
    cr_assert_eq(fs_ref_int_value(refs[7]), -1);
    cr_assert_eq(fs_ref_int_value(refs[8]), FS_SMALL_INT_MIN);
    cr_assert_eq(fs_ref_tag(refs[9]), FS_TAG_OBJ);
    cr_assert_eq(fs_ref_int_value(refs[10]), FS_SMALL_INT_MAX);
    cr_assert_eq(fs_ref_tag(refs[11]), FS_TAG_OBJ);
    cr_assert_eq(((const fs_bigint_t *)fs_obj(base, refs[1]))->nbytes, 9);   /* 2^63 */
    cr_assert_eq(((const fs_bigint_t *)fs_obj(base, refs[4]))->nbytes, 42);  /* 10^100 */
    cr_assert_eq(fs_build_bigint(b, vals[0], 0, &t), FS_EINVAL);
    fs_builder_destroy(b);
}

Test(image_build, floats_roundtrip_bit_exact)
{
    fs_builder_t *b = new_builder(0);
    double v[] = { -0.0, 0.0, NAN, INFINITY, -INFINITY, 1.5, -2.25e300, 5e-324 };
    enum { N = sizeof v / sizeof *v };
    fs_ref_t t, r;
    OK(fs_build_seq(b, FS_KIND_TUPLE, N, &t));
    for (size_t i = 0; i < N; i++) {
        OK(fs_build_float(b, v[i], &r));
        fs_build_seq_set(b, t, i, r);
    }
    const uint8_t *base = finish(b, t);
    for (size_t i = 0; i < N; i++) {
        fs_ref_t it = fs_seq(base, t)->items[i];
        cr_assert_eq(fs_ref_kind(base, it), FS_KIND_FLOAT);
        double got = ((const fs_float_t *)fs_obj(base, it))->value;
        cr_assert_eq(memcmp(&got, &v[i], sizeof got), 0, "float %zu differs", i);
    }
    double z = ((const fs_float_t *)fs_obj(base, fs_seq(base, t)->items[0]))->value;
    cr_assert(signbit(z) && z == 0.0);
    cr_assert(isnan(((const fs_float_t *)fs_obj(base, fs_seq(base, t)->items[2]))->value));
    cr_assert(isinf(((const fs_float_t *)fs_obj(base, fs_seq(base, t)->items[4]))->value));
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
    fs_ref_t t, r[5];
    OK(fs_build_seq(b, FS_KIND_TUPLE, 5, &t));
    OK(fs_build_str(b, 1, 5, 'o', -77, "hello", &r[0]));
    OK(fs_build_str(b, 1, 4, 0xe9, 12, lat, &r[1]));
    OK(fs_build_str(b, 2, 3, 0xd800, 13, u2, &r[2]));
    OK(fs_build_str(b, 4, 3, 0x10ffff, 14, u4, &r[3]));
    OK(fs_build_str(b, 1, 0, 0, 0, "", &r[4]));
    for (int i = 0; i < 5; i++)
        fs_build_seq_set(b, t, (uint64_t)i, r[i]);
    const uint8_t *base = finish(b, t);
    const fs_str_t *s = fs_str(base, r[0]);
    cr_assert_eq(fs_ref_kind(base, r[0]), FS_KIND_STR);
    cr_assert_eq(s->h.flags, FS_FLAG_ASCII);
    cr_assert_eq(s->hash, -77);
    cr_assert(fs_str_equals(s, 1, 5, "hello"));
    cr_assert_not(fs_str_equals(s, 1, 5, "hellO"));
    cr_assert_eq(s->data[5], 0);
    s = fs_str(base, r[1]);
    cr_assert_eq(s->h.flags, 0);
    cr_assert_eq(s->maxchar, 0xe9);
    cr_assert(fs_str_equals(s, 1, 4, lat));
    s = fs_str(base, r[2]);
    cr_assert_eq(s->charsize, 2);
    cr_assert_eq(s->maxchar, 0xd800);
    cr_assert(fs_str_equals(s, 2, 3, u2));
    cr_assert_eq(((const uint16_t *)(const void *)s->data)[3], 0);
    s = fs_str(base, r[3]);
    cr_assert_eq(s->charsize, 4);
    cr_assert(fs_str_equals(s, 4, 3, u4));
    cr_assert_eq(((const uint32_t *)(const void *)s->data)[3], 0);
    s = fs_str(base, r[4]);
    cr_assert_eq(s->length, 0);
    cr_assert_eq(s->data[0], 0);
    cr_assert_eq(s->h.flags, FS_FLAG_ASCII);
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
    cr_assert_eq(fs_build_str(b, 1, 2, 'c', 0, "ab", &r), FS_EINVAL);    /* wrong max   */
    cr_assert_eq(fs_build_str(b, 1, 2, 'a', 0, "ab", &r), FS_EINVAL);    /* max too low */
    cr_assert_eq(fs_build_str(b, 4, 1, 0x110000, 0, u4, &r), FS_EINVAL); /* > U+10FFFF  */
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
    fs_ref_t t, r[4];
    OK(fs_build_seq(b, FS_KIND_LIST, 4, &t));
    OK(fs_build_bytes(b, FS_KIND_BYTES, data, 300, &r[0]));
    OK(fs_build_bytes(b, FS_KIND_BYTEARRAY, data, 13, &r[1]));
    OK(fs_build_bytes(b, FS_KIND_BYTES, NULL, 0, &r[2]));
    OK(fs_build_bytes(b, FS_KIND_BYTEARRAY, "", 0, &r[3]));
    for (int i = 0; i < 4; i++)
        fs_build_seq_set(b, t, (uint64_t)i, r[i]);
    cr_assert_eq(fs_build_bytes(b, FS_KIND_STR, data, 1, &t), FS_EINVAL);
    const uint8_t *base = finish(b, t);
    int kinds[4] = { FS_KIND_BYTES, FS_KIND_BYTEARRAY, FS_KIND_BYTES, FS_KIND_BYTEARRAY };
    uint64_t lens[4] = { 300, 13, 0, 0 };
    for (int i = 0; i < 4; i++) {
        const fs_bytes_t *o = fs_bytes(base, r[i]);
        cr_assert_eq(fs_ref_kind(base, r[i]), kinds[i]);
        cr_assert_eq(o->length, lens[i]);
        cr_assert_eq(memcmp(o->data, data, (size_t)lens[i]), 0);
        cr_assert_eq(o->data[lens[i]], 0);
    }
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
    cr_assert_eq(fs_ref_kind(base, l), FS_KIND_LIST);
    cr_assert_eq(s->count, 4);
    cr_assert_eq(s->items[3], FS_REF_NONE);                 /* unset: None */
    cr_assert_eq(fs_ref_kind(base, s->items[0]), FS_KIND_TUPLE);
    cr_assert_eq(fs_seq(base, s->items[0])->items[0], fs_ref_small_int(-9));
    cr_assert_eq(fs_seq(base, s->items[0])->items[1], FS_REF_NONE);
    cr_assert_eq(fs_ref_kind(base, s->items[1]), FS_KIND_TUPLE);
    cr_assert_eq(fs_seq(base, s->items[1])->count, 0);
    cr_assert_eq(fs_ref_kind(base, s->items[2]), FS_KIND_LIST);
    cr_assert_eq(fs_seq(base, s->items[2])->count, 0);
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
    const uint8_t *base = finish(b, t);
    const fs_map_t *m = fs_map(base, d);
    cr_assert_eq(fs_ref_kind(base, d), FS_KIND_DICT);
    cr_assert_eq(m->h.flags, FS_FLAG_FROZENDICT);
    cr_assert_eq(m->count, 2);
    cr_assert_eq(m->entries[0].key, k);                      /* insertion order */
    int64_t two = 2;
    int64_t e = fs_map_find(base, m, 2, eq_small_int, &two);
    cr_assert_eq(e, 1);
    cr_assert_eq(m->entries[e].value, FS_REF_TRUE);
    e = fs_map_find(base, m, 999, eq_same_ref, &k);
    cr_assert_eq(e, 0);
    cr_assert_eq(m->entries[0].value, fs_ref_small_int(1));
    cr_assert_eq(fs_ref_kind(base, s), FS_KIND_SET);
    cr_assert_eq(fs_ref_kind(base, f), FS_KIND_FROZENSET);
    cr_assert_eq(fs_map(base, s)->entries[0].value, FS_REF_NONE);
    int64_t one = 1;
    cr_assert_eq(fs_map_find(base, fs_map(base, f), 1, eq_small_int, &one), 0);
    cr_assert_eq(fs_map(base, ed)->count, 0);
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
    const fs_seq_t *s = fs_seq(base, l);
    cr_assert_eq(s->items[0], l);
    cr_assert_eq(fs_seq(base, s->items[0])->items[0], l);
    cr_assert_eq(fs_map(base, s->items[1])->entries[0].value, l);
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
    cr_assert_eq(fs_seq(base, l)->items[0], fs_seq(base, l)->items[2]);
    cr_assert_eq(fs_image_header(base)->object_count, 2);
    cr_assert(fs_obj_shared(base, s));
    cr_assert_not(fs_obj_shared(base, l));
    cr_assert_eq(((const fs_str_t *)fs_obj(base, s))->h.flags, FS_FLAG_SHARED | FS_FLAG_ASCII);

    /* The check proves the flag: missing on a shared object is corrupt (a
    ** reader would lose the sharing, or loop on a cycle); extra is allowed. */
    size_t n = fs_image_header(base)->image_size;
    uint8_t *p = copy_exact(base, n);
    ((fs_obj_hdr_t *)(void *)(p + s))->flags &= (uint8_t)~FS_FLAG_SHARED;
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    memcpy(p, base, n);
    ((fs_obj_hdr_t *)(void *)(p + l))->flags |= FS_FLAG_SHARED;
    cr_assert_eq(fs_image_check(p, n), FS_OK);
    free(p);
    fs_builder_destroy(b);
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
    ((fs_obj_hdr_t *)(void *)(p + l))->flags = 0;
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
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
            OK(fs_build_float(b, (double)i, &r));
        else
            OK(fs_build_int64(b, (int64_t)i * 3 - N, &r));
        fs_build_seq_set(b, l, i, r);
    }
    const uint8_t *base = finish(b, l);
    const fs_seq_t *s = fs_seq(base, l);
    cr_assert_eq(s->count, N);
    for (uint64_t i = 0; i < N; i++) {
        if (i % 10 == 0)
            cr_assert_eq(((const fs_float_t *)fs_obj(base, s->items[i]))->value, (double)i);
        else
            cr_assert_eq(fs_ref_int_value(s->items[i]), (int64_t)i * 3 - N);
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
    cr_assert_eq(m->count, N);
    cr_assert_leq(m->count * 3, m->index_size * 2);
    for (int64_t i = 0; i < N; i++) {
        int64_t key = i * 7;
        int64_t e = fs_map_find(base, m, key, eq_small_int, &key);
        cr_assert_eq(e, i, "key %lld: got entry %lld", (long long)key, (long long)e);
        cr_assert_eq(m->entries[e].value, fs_ref_small_int(-i));
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
        cr_assert_leq(m->count * 3, m->index_size * 2);
        cr_assert(n == 0 ? m->index_size == 0 : (m->index_size & (m->index_size - 1)) == 0);
        for (int64_t i = 0; i < n; i++)
            cr_assert_eq(fs_map_find(base, m, hs[n][i], eq_small_int, &i), i);
    }
    fs_builder_destroy(b);
}

Test(image_build, failing_equality_callback_returns_minus_two)
{
    fs_builder_t *b = new_builder(0);
    fs_ref_t d;
    OK(fs_build_map(b, FS_KIND_DICT, 0, 1, &d));
    fs_build_map_set(b, d, 0, 77, fs_ref_small_int(1), FS_REF_NONE);
    fs_build_map_finish(b, d);
    const uint8_t *base = finish(b, d);
    cr_assert_eq(fs_map_find(base, fs_map(base, d), 77, eq_fails, NULL), -2);
    cr_assert_eq(fs_map_find(base, fs_map(base, d), 78, eq_fails, NULL), -1);
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
        OK(fs_build_xref(b, i % 4, (fs_ref_t)(80 + 8 * (i / 4)), &refs[i]));
        cr_assert_eq(fs_ref_tag(refs[i]), FS_TAG_XREF);
        cr_assert_eq(refs[i] >> 3, i, "new pairs get consecutive entries");
        fs_build_seq_set(b, l, i, refs[i]);
    }
    for (uint32_t i = 0; i < N; i++) {
        OK(fs_build_xref(b, i % 4, (fs_ref_t)(80 + 8 * (i / 4)), &again));
        cr_assert_eq(again, refs[i]);
    }
    fs_ref_t t1;
    OK(fs_build_xref(b, 0, FS_REF_TRUE, &again));        /* immediates are targets too */
    OK(fs_build_xref(b, 1, FS_REF_TRUE, &t1));
    cr_assert_neq(again, t1);
    cr_assert_eq(fs_build_xref(b, 0, refs[0], &again), FS_EINVAL);   /* xref to xref */
    cr_assert_eq(fs_build_xref(b, 0, (3u << 3) | FS_TAG_CONST, &again), FS_EINVAL);
    uint64_t ids[4] = { 100, 101, 102, 103 };
    cr_assert_eq(l, FS_IMAGE_HEADER_SIZE);               /* the first object */
    cr_assert_eq(fs_builder_finish(b, l, ids, 3, 1), FS_EINVAL);     /* slot 3 unnamed */
    OK(fs_builder_finish(b, l, ids, 4, 1));
    const uint8_t *base = fs_builder_base(b);
    const fs_image_header_t *h = fs_image_header(base);
    cr_assert_eq(h->nxrefs, N + 2);
    cr_assert_eq(h->nimports, 4);
    cr_assert_eq(check_copy(base, h->image_size), FS_OK);
    for (uint32_t i = 0; i < N; i++) {
        fs_ref_t r = fs_seq(base, l)->items[i];
        cr_assert_eq(fs_ref_kind(base, r), FS_KIND_XREF);
        const fs_xref_t *x = fs_xref(base, r);
        cr_assert_eq(x->import_slot, i % 4);
        cr_assert_eq(x->target, 80 + 8 * (i / 4));
        cr_assert_eq(fs_image_imports(base)[x->import_slot], 100 + i % 4);
    }
    fs_builder_destroy(b);
}

Test(image_build, header_fields_and_detach)
{
    fs_builder_t *b;
    OK(build_mixed(&b));
    const uint8_t *base = fs_builder_base(b);
    const fs_image_header_t *h = fs_image_header(base);
    cr_assert_eq(memcmp(h->magic, FS_IMAGE_MAGIC, 8), 0);
    cr_assert_eq(h->version, FS_IMAGE_VERSION);
    cr_assert_eq(h->flags, 0);
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
    /* object count: root dict, 8 scalars (the key strs included), the list,
    ** the shared str, 400 floats, the set, the empty frozendict, tuple, bytes */
    cr_assert_eq(h->object_count, 1 + 8 + 1 + 1 + 400 + 1 + 1 + 1 + 1);
    cr_assert_eq(check_copy(base, h->image_size), FS_OK);
    cr_assert_neq(walk_image(base, h->image_size), 0);
    size_t image_size = h->image_size, page = fs_arena_page_size();
    /* appends after finish are refused */
    fs_ref_t r;
    cr_assert_eq(fs_build_float(b, 1.0, &r), FS_EINVAL);
    cr_assert_eq(fs_build_xref(b, 0, 80, &r), FS_EINVAL);
    cr_assert_eq(fs_builder_finish(b, 80, NULL, 0, 0), FS_EINVAL);
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
    cr_assert_eq(fs_image_check(img, image_size), FS_OK);
    OK(fs_arena_seal(img, alloc, 1));
    cr_assert_eq(fs_image_check(img, image_size), FS_OK);    /* reads only */
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
        OK(fs_build_float(b, i + 0.5, &r));
        cr_assert_eq(r % 8, 0);
        fs_build_seq_set(b, l, (uint64_t)i, r);
    }
    long allocs = fs_alloc_count();
    cr_assert_leq(allocs, 40, "%ld allocations for %d appends: not geometric", allocs, N);
    cr_assert_geq(fs_builder_size(b), (size_t)N * 16);
    const uint8_t *base = finish(b, l);
    for (int i = 0; i < N; i++)
        cr_assert_eq(((const fs_float_t *)fs_obj(base, fs_seq(base, l)->items[i]))->value, i + 0.5);
    fs_builder_destroy(b);
}

Test(image_build, oversized_requests_are_etoobig_and_leave_the_builder_usable)
{
    fs_builder_t *b = new_builder(0);
    fs_ref_t r, l;
    size_t before = fs_builder_size(b);
    cr_assert_eq(fs_build_map(b, FS_KIND_DICT, 0, (uint64_t)INT32_MAX + 1, &r), FS_ETOOBIG);
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
    cr_assert(fs_str_equals(fs_str(base, fs_seq(base, l)->items[0]), 1, 2, "ok"));
    fs_builder_destroy(b);
}

/* ---- image_check ----------------------------------------------------------- */

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

static fs_image_header_t *hdr(uint8_t *img) { return (fs_image_header_t *)(void *)img; }

/* Offsets of the root dict's entry values (the mixed image's objects). */
static fs_map_entry_t *root_entry(uint8_t *img, int i)
{
    fs_map_t *m = (fs_map_t *)(void *)(img + hdr(img)->root);
    return &m->entries[i];
}

Test(image_check, accepts_every_built_image)
{
    size_t n;
    uint8_t *img = mixed_copy(&n);
    cr_assert_eq(fs_image_check(img, n), FS_OK);
    cr_assert_eq(fs_image_check(img, n + 0), FS_OK);
    free(img);
    /* a minimal image: header, one float */
    fs_builder_t *b = new_builder(0);
    fs_ref_t r;
    OK(fs_build_float(b, 2.0, &r));
    OK(fs_builder_finish(b, r, NULL, 0, 0));
    cr_assert_eq(check_copy(fs_builder_base(b), fs_builder_size(b)), FS_OK);
    fs_builder_destroy(b);
    /* an image whose root is an immediate and that has no objects */
    b = new_builder(0);
    OK(fs_builder_finish(b, FS_REF_NONE, NULL, 0, 0));
    cr_assert_eq(check_copy(fs_builder_base(b), fs_builder_size(b)), FS_OK);
    fs_builder_destroy(b);
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

Test(image_check, bad_header_fields_are_rejected)
{
    size_t n;
    uint8_t *img = mixed_copy(&n);
    uint8_t *p = malloc(n + 8);
    struct { size_t field; uint64_t value; int width; } cases[] = {
        { 0, 'X', 1 },                                               /* magic    */
        { offsetof(fs_image_header_t, version), 2, 4 },
        { offsetof(fs_image_header_t, flags), 1, 4 },
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
        { offsetof(fs_image_header_t, objects_end), UINT64_MAX - 7, 8 },
        { offsetof(fs_image_header_t, root), 0, 8 },                 /* the header */
        { offsetof(fs_image_header_t, root), 88, 8 },                /* mid-object */
        { offsetof(fs_image_header_t, root), 1u << 20, 8 },          /* beyond     */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        memcpy(p, img, n);
        uint64_t v = cases[i].value;
        memcpy(p + cases[i].field, &v, (size_t)cases[i].width);
        cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT, "case %zu accepted", i);
    }
    /* object_count off by one either way */
    for (int d = -1; d <= 1; d += 2) {
        memcpy(p, img, n);
        hdr(p)->object_count += (uint64_t)(int64_t)d;
        cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    }
    /* a misaligned image */
    memcpy(p + 4, img, n);
    cr_assert_eq(fs_image_check(p + 4, n), FS_ECORRUPT);
    cr_assert_eq(fs_image_check(NULL, n), FS_ECORRUPT);
    free(p);
    free(img);
}

Test(image_check, out_of_range_offsets_and_bad_tags_are_rejected)
{
    size_t n;
    uint8_t *img = mixed_copy(&n);
    uint64_t end = hdr(img)->objects_end;
    fs_ref_t list = root_entry(img, 8)->value;          /* the 2000-item list */
    fs_ref_t bad[] = {
        end,                       /* the import table                  */
        n,                         /* past the image                    */
        n + 800,
        UINT64_MAX & ~(uint64_t)7,
        list + 8,                  /* inside an object                  */
        8,                         /* inside the header                 */
        0,
        (3u << 3) | FS_TAG_CONST,  /* constant 3                        */
        ((uint64_t)1 << 40) | FS_TAG_CONST,
        4, 5, 6, 7, 0x80 | 5,      /* tags 4..7                         */
    };
    uint8_t *p = malloc(n);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        /* as a list item */
        memcpy(p, img, n);
        ((fs_seq_t *)(void *)(p + list))->items[1999] = bad[i];
        cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT, "item %#llx accepted",
                     (unsigned long long)bad[i]);
        /* as a dict key, a dict value, and the root */
        memcpy(p, img, n);
        root_entry(p, 3)->key = bad[i];
        cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
        memcpy(p, img, n);
        root_entry(p, 3)->value = bad[i];
        cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
        memcpy(p, img, n);
        hdr(p)->root = bad[i];
        cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    }
    /* a set's value must be None */
    memcpy(p, img, n);
    fs_map_t *set = (fs_map_t *)(void *)(p + root_entry(p, 9)->value);
    cr_assert_eq(set->h.kind, FS_KIND_FROZENSET);
    set->entries[0].value = FS_REF_TRUE;
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
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
        for (int e = 0; e < 13; e++) {
            fs_ref_t v = root_entry(img, e)->value;
            if (fs_ref_tag(v) != FS_TAG_OBJ)
                continue;
            memcpy(p, img, n);
            ((fs_obj_hdr_t *)(void *)(p + v))->kind = kinds[i];
            cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT, "kind %u at entry %d", kinds[i], e);
        }
    }
    /* nonzero padding fields and unknown flags */
    memcpy(p, img, n);
    ((fs_obj_hdr_t *)(void *)(p + root))->zero16 = 1;
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    memcpy(p, img, n);
    ((fs_obj_hdr_t *)(void *)(p + root))->zero32 = 1;
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    memcpy(p, img, n);
    ((fs_obj_hdr_t *)(void *)(p + root))->flags = 0x40;
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    memcpy(p, img, n);
    ((fs_obj_hdr_t *)(void *)(p + root_entry(img, 1)->value))->flags = 1;   /* float */
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    memcpy(p, img, n);
    ((fs_obj_hdr_t *)(void *)(p + root_entry(img, 9)->value))->flags = FS_FLAG_FROZENDICT;
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);   /* frozendict flag on a frozenset */
    memcpy(p, img, n);
    ((fs_obj_hdr_t *)(void *)(p + root))->flags = FS_FLAG_FROZENDICT;
    cr_assert_eq(fs_image_check(p, n), FS_OK);         /* allowed on a dict */
    free(p);
    free(img);
}

Test(image_check, bad_xrefs_are_rejected)
{
    size_t n;
    uint8_t *img = mixed_copy(&n);
    uint8_t *p = malloc(n);
    fs_ref_t list = root_entry(img, 8)->value;
    uint32_t nx = hdr(img)->nxrefs;
    fs_ref_t xr[] = { ((fs_ref_t)nx << 3) | FS_TAG_XREF, ((fs_ref_t)1 << 40) | FS_TAG_XREF };
    for (int i = 0; i < 2; i++) {
        memcpy(p, img, n);
        ((fs_seq_t *)(void *)(p + list))->items[2] = xr[i];       /* index >= nxrefs */
        cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    }
    fs_xref_t *x;
    memcpy(p, img, n);
    x = (fs_xref_t *)(void *)(p + hdr(p)->xref_off);
    x[nx - 1].import_slot = hdr(p)->nimports;                   /* slot >= nimports */
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    memcpy(p, img, n);
    x = (fs_xref_t *)(void *)(p + hdr(p)->xref_off);
    x[0].zero = 1;
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    memcpy(p, img, n);
    x = (fs_xref_t *)(void *)(p + hdr(p)->xref_off);
    x[0].target = FS_TAG_XREF;                                 /* xref to an xref */
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    memcpy(p, img, n);
    x = (fs_xref_t *)(void *)(p + hdr(p)->xref_off);
    x[0].target = 6;                                           /* tag 6 */
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    memcpy(p, img, n);
    x = (fs_xref_t *)(void *)(p + hdr(p)->xref_off);
    x[0].target = (7u << 3) | FS_TAG_CONST;
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    memcpy(p, img, n);
    x = (fs_xref_t *)(void *)(p + hdr(p)->xref_off);
    x[0].target = fs_ref_small_int(-5);                        /* immediates are fine */
    cr_assert_eq(fs_image_check(p, n), FS_OK);
    free(p);
    free(img);
}

/* Build a one-str image; returns a malloc'd copy and the str's offset. */
static uint8_t *str_image(unsigned cs, const void *data, uint64_t len, uint32_t max,
                          size_t *n, fs_ref_t *r)
{
    fs_builder_t *b = new_builder(0);
    OK(fs_build_str(b, cs, len, max, 1, data, r));
    OK(fs_builder_finish(b, *r, NULL, 0, 0));
    *n = fs_builder_size(b);
    uint8_t *p = copy_exact(fs_builder_base(b), *n);
    fs_builder_destroy(b);
    cr_assert_eq(fs_image_check(p, *n), FS_OK);
    return p;
}

Test(image_check, noncanonical_strings_are_rejected)
{
    size_t n;
    fs_ref_t r;
    fs_str_t *s;
    uint16_t u2[4] = { 'a', 0xd800, 'b', 'c' };
    uint32_t u4[2] = { 'a', 0x10ffff };
    uint8_t *p;

    p = str_image(1, "abcd", 4, 'd', &n, &r);
    s = (fs_str_t *)(void *)(p + r);
    s->maxchar = 'e';                                  /* not the true max */
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    s->maxchar = 'c';                                  /* below a char     */
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    s->maxchar = 'd';
    s->data[4] = 'x';                                  /* no NUL           */
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    s->data[4] = 0;
    s->h.flags = 0;                                    /* ASCII flag lost  */
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    s->h.flags = FS_FLAG_ASCII;
    s->data[1] = 0xe9;
    s->maxchar = 0xe9;                                 /* flag says ASCII  */
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    s->h.flags = 0;
    cr_assert_eq(fs_image_check(p, n), FS_OK);         /* now consistent   */
    s->charsize = 3;
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    s->charsize = 0;
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    s->charsize = 1;
    s->length = 1000;                                  /* past the end     */
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    s->length = UINT64_MAX;
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    s->length = UINT64_MAX / 4;
    s->charsize = 4;
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    free(p);

    p = str_image(2, u2, 4, 0xd800, &n, &r);
    s = (fs_str_t *)(void *)(p + r);
    uint16_t *d2 = (uint16_t *)(void *)s->data;
    d2[1] = 0xff;
    s->maxchar = 0xff;                                 /* fits 1 byte: not minimal */
    s->h.flags = 0;
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    d2[1] = 0xd800;
    s->maxchar = 0xd800;
    d2[4] = 1;                                         /* no NUL           */
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    d2[4] = 0;
    cr_assert_eq(fs_image_check(p, n), FS_OK);
    free(p);

    p = str_image(4, u4, 2, 0x10ffff, &n, &r);
    s = (fs_str_t *)(void *)(p + r);
    uint32_t *d4 = (uint32_t *)(void *)s->data;
    d4[1] = 0x110000;
    s->maxchar = 0x110000;                             /* beyond Unicode   */
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    d4[1] = 0xffff;
    s->maxchar = 0xffff;                               /* fits 2 bytes     */
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    d4[1] = 0x10ffff;
    s->maxchar = 0x10ffff;
    s->zero[1] = 1;
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
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
    OK(fs_builder_finish(b, t, NULL, 0, 0));
    size_t n = fs_builder_size(b);
    uint8_t *img = copy_exact(fs_builder_base(b), n), *p = malloc(n);
    fs_builder_destroy(b);
    cr_assert_eq(fs_image_check(img, n), FS_OK);

    fs_bigint_t *o;
    memcpy(p, img, n);
    o = (fs_bigint_t *)(void *)(p + i1);
    o->data[8] = 0;                        /* top byte only repeats the sign */
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    memcpy(p, img, n);
    o = (fs_bigint_t *)(void *)(p + i1);
    o->data[8] = 0xff;
    o->data[7] = 0x80;                     /* ff 80 .. : ff is redundant */
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    memcpy(p, img, n);
    o = (fs_bigint_t *)(void *)(p + i1);
    o->nbytes = 0;
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    memcpy(p, img, n);
    o = (fs_bigint_t *)(void *)(p + i1);
    o->nbytes = UINT64_MAX;
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    memcpy(p, img, n);
    o = (fs_bigint_t *)(void *)(p + i2);   /* 2^60 -> 2^60 - 2^56: an immediate */
    o->data[7] = 0x0f;
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    memcpy(p, img, n);
    o = (fs_bigint_t *)(void *)(p + i2);
    o->data[7] = 0xef;                     /* -2^60 - ...: still outside: fine */
    cr_assert_eq(fs_image_check(p, n), FS_OK);

    fs_bytes_t *y;
    memcpy(p, img, n);
    y = (fs_bytes_t *)(void *)(p + by);
    y->data[3] = 'd';                      /* no NUL */
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    memcpy(p, img, n);
    y = (fs_bytes_t *)(void *)(p + by);
    y->length = UINT64_MAX;
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    memcpy(p, img, n);
    y = (fs_bytes_t *)(void *)(p + by);
    y->length = 8;                         /* runs past the end of the area */
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    free(p);
    free(img);
}

Test(image_check, corrupted_map_index_is_rejected)
{
    size_t n;
    uint8_t *img = mixed_copy(&n);
    uint8_t *p = malloc(n);
    fs_ref_t set = root_entry(img, 9)->value;              /* 40 entries */
    const fs_map_t *m0 = (const fs_map_t *)(const void *)(img + set);
    uint64_t is = m0->index_size;
    cr_assert_eq(m0->count, 40);
    int64_t first = -1, second = -1, empty = -1;
    for (uint64_t i = 0; i < is; i++) {
        int32_t e = fs_map_index(m0)[i];
        if (e >= 0 && first < 0) first = (int64_t)i;
        else if (e >= 0 && second < 0) second = (int64_t)i;
        else if (e < 0 && empty < 0) empty = (int64_t)i;
    }
    cr_assert(first >= 0 && second >= 0 && empty >= 0);
#define INDEX(p) ((int32_t *)(void *)(((fs_map_t *)(void *)((p) + set))->entries + 40))
    int32_t vals[] = { 40, INT32_MAX, -2, INT32_MIN };
    for (size_t v = 0; v < sizeof vals / sizeof *vals; v++) {
        memcpy(p, img, n);
        INDEX(p)[first] = vals[v];                         /* out of range */
        cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT, "index value %d", vals[v]);
    }
    memcpy(p, img, n);
    INDEX(p)[second] = INDEX(p)[first];                    /* twice, one lost */
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    memcpy(p, img, n);
    INDEX(p)[first] = -1;                                  /* an entry lost */
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    memcpy(p, img, n);
    INDEX(p)[empty] = INDEX(p)[first];                     /* an entry twice */
    cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT);
    memcpy(p, img, n);
    int32_t tmp = INDEX(p)[first];                         /* swapped: still each */
    INDEX(p)[first] = INDEX(p)[second];                    /* exactly once: OK   */
    INDEX(p)[second] = tmp;
    cr_assert_eq(fs_image_check(p, n), FS_OK);
#undef INDEX
    fs_map_t *m;
    uint64_t sizes[] = { 0, 3, is / 2, is + 1, is * 2, (uint64_t)1 << 63, UINT64_MAX };
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        memcpy(p, img, n);
        m = (fs_map_t *)(void *)(p + set);
        m->index_size = sizes[i];
        cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT, "index_size %llu",
                     (unsigned long long)sizes[i]);
    }
    uint64_t counts[] = { 0, 41, (uint64_t)INT32_MAX + 1, UINT64_MAX / 24 + 1, UINT64_MAX };
    for (size_t i = 0; i < sizeof counts / sizeof *counts; i++) {
        memcpy(p, img, n);
        m = (fs_map_t *)(void *)(p + set);
        m->count = counts[i];
        cr_assert_eq(fs_image_check(p, n), FS_ECORRUPT, "count %llu",
                     (unsigned long long)counts[i]);
    }
    /* an empty map with an index, a load above 2/3 */
    fs_builder_t *b = new_builder(0);
    fs_ref_t e, f;
    OK(fs_build_seq(b, FS_KIND_TUPLE, 2, &f));
    OK(fs_build_map(b, FS_KIND_DICT, 0, 0, &e));
    fs_build_map_finish(b, e);
    fs_build_seq_set(b, f, 0, e);
    OK(fs_build_seq(b, FS_KIND_TUPLE, 2, &e));             /* 16 + 16 bytes */
    fs_build_seq_set(b, f, 1, e);
    OK(fs_builder_finish(b, f, NULL, 0, 0));
    size_t n2 = fs_builder_size(b);
    uint8_t *q = copy_exact(fs_builder_base(b), n2);
    fs_builder_destroy(b);
    cr_assert_eq(fs_image_check(q, n2), FS_OK);
    m = (fs_map_t *)(void *)(q + fs_seq(q, f)->items[0]);
    m->index_size = 2;              /* swallows part of the next tuple: */
    hdr(q)->object_count--;         /* sizes line up, but count 0 needs 0 */
    cr_assert_eq(fs_image_check(q, n2), FS_ECORRUPT);
    free(q);
    free(p);
    free(img);
}

Test(image_check, random_byte_flips_never_crash)
{
    size_t n;
    uint8_t *img = mixed_copy(&n);
    uint8_t *p = malloc(n);
    rng_state = 20240601;
    long accepted = 0, rejected = 0;
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
        int rc = fs_image_check(p, n);
        cr_assert(rc == FS_OK || rc == FS_ECORRUPT, "rc %d", rc);
        if (rc == FS_OK) {
            accepted++;
            walk_image(p, n);
        }
        else
            rejected++;
    }
    cr_assert_gt(rejected, 10000, "only %ld of 20000 mutations rejected", rejected);
    cr_log_info("random flips: %ld accepted, %ld rejected", accepted, rejected);
    free(p);
    free(img);
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

Test(image_alloc, finish_enomem_then_retry_succeeds)
{
    fs_builder_t *b = new_builder(4096);
    fs_ref_t r, x;
    static char fill[8192];
    /* fill the first allocation exactly, so the tables need a new one */
    size_t room = 4096 - fs_builder_size(b);
    OK(fs_build_bytes(b, FS_KIND_BYTES, fill, room - 24, &r));   /* 16 + len + 1 -> room */
    cr_assert_eq(fs_builder_size(b), 4096);
    OK(fs_build_xref(b, 0, 80, &x));
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
    fs_alloc_fail_after(0);                 /* the start bitmap */
    cr_assert_eq(fs_image_check(img, n), FS_ENOMEM);
    fs_alloc_fail_after(1);                 /* the scratch bitmap for map indexes */
    cr_assert_eq(fs_image_check(img, n), FS_ENOMEM);
    fs_alloc_fail_after(-1);
    cr_assert_eq(fs_image_check(img, n), FS_OK);
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
** non-page multiple and the seal was FS_EINVAL (Python: ValueError). */
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
            OK(fs_build_bytes(b, FS_KIND_BYTES, fill, room - 24, &head));
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
            cr_assert_eq(fs_image_check(img, image_size), FS_OK);
            OK(fs_arena_unseal(img, alloc));
            fs_arena_free(img);
            cr_assert_eq(arena_allocated(), start, "tail %zu, n %ld: leak", tails[t], n);
        }
    }
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
    cr_assert_eq(fs_map(base, d)->entries[0].key, k);
    walk_image(base, fs_image_header(base)->image_size);     /* terminates */
    fs_builder_destroy(b);
}
