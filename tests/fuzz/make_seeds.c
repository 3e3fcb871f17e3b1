/*
** make_seeds.c -- writes the fuzzer's seed corpus: small well-formed images
** (format v2) of every kind and structure, built with the real builder, one
** file each: scalars, nested containers, imports, empty containers, a cycle
** through a key, float immediates and objects, values stored once, dict
** shapes, map indexes of 1- and 2-byte slots (3- and 4-byte slots need
** 32768 and 2^23 entries, beyond the fuzzer's 64 KiB inputs), a
** vocabulary's narrow entries, and that vocabulary in the portable form
** (keyed hashes and a checksum: the fuzzer mostly meets the checksum there,
** the other seeds carry none, so their mutations reach every check).
**   make_seeds <dir>
** The committed corpus in tests/fuzz/corpus/ was made with this program.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fs_image.h"

/* fs_rekey_fn for seeds whose composite keys need a value (none do). */
static int no_composites(void *ctx, const void *image, fs_ref_t key, int64_t *out)
{
    (void)ctx; (void)image; (void)key; (void)out;
    return FS_EINVAL;
}

/* keyed: the portable form dumps writes (FS_HASH_KEYED, a checksum). */
static int write_image_as(const char *dir, const char *name, fs_builder_t *b, fs_ref_t root,
                          uint32_t nimports, int keyed)
{
    uint64_t ids[2] = { 11, 12 };
    if (fs_builder_finish(b, root, ids, nimports, 12345) != FS_OK)
        return 1;
    fs_image_header_t *h = (fs_image_header_t *)(void *)fs_builder_base(b);
    if (keyed && fs_image_rekey(h, UINT64_C(0x5eed5eed5eed5eed), no_composites, NULL) != FS_OK)
        return 1;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return 1;
    size_t n = fwrite(h, 1, h->image_size, f);
    fclose(f);
    fs_builder_destroy(b);
    return n != h->image_size;
}

static int write_image(const char *dir, const char *name, fs_builder_t *b, fs_ref_t root,
                       uint32_t nimports)
{
    return write_image_as(dir, name, b, root, nimports, 0);
}

#define CHECK(e) do { if ((e) != FS_OK) { fprintf(stderr, "%s failed\n", #e); return 1; } } while (0)

static int64_t str_hash(const char *s)     /* any hash equal strs share */
{
    uint64_t h = 1469598103934665603u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211u;
    return (int64_t)h;
}

static int ascii(fs_builder_t *b, const char *s, fs_ref_t *out)
{
    return fs_build_str(b, 1, strlen(s), FS_MAXCHAR_SCAN, str_hash(s), s, out);
}

/* A dict of n str keys via fs_build_dict (shaped when an earlier one had
** the same keys), values small ints base + i. */
static int keyed_dict(fs_builder_t *b, unsigned flags, int n, const char *const *names,
                      int64_t base, fs_ref_t *out)
{
    fs_ref_t keys[16] = {0};
    int64_t hashes[16] = {0};
    for (int i = 0; i < n; i++) {
        hashes[i] = str_hash(names[i]);
        if (ascii(b, names[i], &keys[i]) != FS_OK)
            return 1;
    }
    if (fs_build_dict(b, flags, (uint64_t)n, hashes, keys, out) != FS_OK)
        return 1;
    for (int i = 0; i < n; i++)
        fs_build_dict_value(b, *out, (uint64_t)i, fs_ref_small_int(base + i));
    return FS_OK;
}

/* A vocabulary: 40 str -> int entries built complete. */
static int vocabulary(fs_builder_t *b, fs_ref_t *out)
{
    fs_ref_t keys[40], vals[40];
    int64_t hashes[40];
    char w[8];
    for (int i = 0; i < 40; i++) {
        snprintf(w, sizeof w, "w%02d", i);
        hashes[i] = (int64_t)(i * 2654435761u);
        int err = fs_build_str(b, 1, strlen(w), FS_MAXCHAR_SCAN, hashes[i], w, &keys[i]);
        if (err != FS_OK)
            return err;
        vals[i] = fs_ref_small_int(i - 20);
    }
    return fs_build_record(b, 0, 40, hashes, keys, vals, out);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds <dir>\n");
        return 2;
    }
    const char *dir = argv[1];
    fs_builder_t *b;
    fs_ref_t r, k, v, l, d, s;
    int bad = 0;

    /* scalars in a tuple */
    CHECK(fs_builder_create(&b, 0));
    CHECK(fs_build_seq(b, FS_KIND_TUPLE, 9, &l));
    fs_build_seq_set(b, l, 0, FS_REF_NONE);
    fs_build_seq_set(b, l, 1, FS_REF_TRUE);
    fs_build_seq_set(b, l, 2, fs_ref_small_int(-42));
    CHECK(fs_build_int64(b, INT64_MIN, &r)); fs_build_seq_set(b, l, 3, r);
    CHECK(fs_build_float(b, -0.0, &r)); fs_build_seq_set(b, l, 4, r);
    CHECK(fs_build_complex(b, 1.5, -2.5, &r)); fs_build_seq_set(b, l, 5, r);
    CHECK(fs_build_str(b, 1, 5, 'o', 99, "hello", &r)); fs_build_seq_set(b, l, 6, r);
    uint16_t u2[3] = { 0x00e9, 0xd800, 0x4e2d };
    CHECK(fs_build_str(b, 2, 3, 0xd800, 7, u2, &r)); fs_build_seq_set(b, l, 7, r);
    uint32_t u4[2] = { 0x1f600, 'a' };
    CHECK(fs_build_str(b, 4, 2, 0x1f600, 8, u4, &r)); fs_build_seq_set(b, l, 8, r);
    bad |= write_image(dir, "scalars.img", b, l, 0);

    /* a dict with a list value that contains itself, bytes and a set */
    CHECK(fs_builder_create(&b, 0));
    CHECK(fs_build_map(b, FS_KIND_DICT, 0, 3, &d));
    CHECK(fs_build_seq(b, FS_KIND_LIST, 2, &l));
    fs_build_seq_set(b, l, 0, l);
    CHECK(fs_build_bytes(b, FS_KIND_BYTEARRAY, "\x00\x01\x02", 3, &v));
    fs_build_seq_set(b, l, 1, v);
    CHECK(fs_build_str(b, 1, 1, 'a', 1001, "a", &k));
    fs_build_map_set(b, d, 0, 1001, k, l);
    CHECK(fs_build_bytes(b, FS_KIND_BYTES, "blob", 4, &v));
    fs_build_map_set(b, d, 1, 5, fs_ref_small_int(5), v);
    CHECK(fs_build_map(b, FS_KIND_FROZENSET, 0, 2, &s));
    fs_build_map_set(b, s, 0, 1, fs_ref_small_int(1), FS_REF_NONE);
    fs_build_map_set(b, s, 1, 1, FS_REF_TRUE, FS_REF_NONE);   /* colliding hashes */
    fs_build_map_finish(b, s);
    fs_build_map_set(b, d, 2, 77, s, FS_REF_FALSE);
    fs_build_map_finish(b, d);
    bad |= write_image(dir, "nested.img", b, d, 0);

    /* a set of big ints and an xref into an import */
    CHECK(fs_builder_create(&b, 0));
    CHECK(fs_build_map(b, FS_KIND_SET, 0, 2, &s));
    uint8_t big[17];
    memset(big, 0xff, sizeof big); big[16] = 0x7f;
    CHECK(fs_build_bigint(b, big, sizeof big, &k));
    fs_build_map_set(b, s, 0, 3, k, FS_REF_NONE);
    CHECK(fs_build_xref(b, 1, FS_IMAGE_HEADER_SIZE, &v));
    fs_build_map_set(b, s, 1, 4, v, FS_REF_NONE);
    fs_build_map_finish(b, s);
    bad |= write_image(dir, "imports.img", b, s, 2);

    /* empty containers */
    CHECK(fs_builder_create(&b, 0));
    CHECK(fs_build_seq(b, FS_KIND_LIST, 3, &l));
    CHECK(fs_build_map(b, FS_KIND_DICT, 0, 0, &d)); fs_build_map_finish(b, d);
    fs_build_seq_set(b, l, 0, d);
    CHECK(fs_build_seq(b, FS_KIND_TUPLE, 0, &r)); fs_build_seq_set(b, l, 1, r);
    CHECK(fs_build_str(b, 1, 0, 0, 0, "", &r)); fs_build_seq_set(b, l, 2, r);
    bad |= write_image(dir, "empty.img", b, l, 0);

    /* a cycle through a dict key (issue 10 D7): X = (D,), D = {K: None}, K = (X,) */
    CHECK(fs_builder_create(&b, 0));
    CHECK(fs_build_seq(b, FS_KIND_TUPLE, 1, &l));
    CHECK(fs_build_map(b, FS_KIND_DICT, 0, 1, &d));
    CHECK(fs_build_seq(b, FS_KIND_TUPLE, 1, &k));
    fs_build_seq_set(b, l, 0, d);
    fs_build_seq_set(b, k, 0, l);
    fs_build_map_set(b, d, 0, 12345, k, FS_REF_NONE);
    fs_build_map_finish(b, d);
    bad |= write_image(dir, "key_cycle.img", b, l, 0);

    /* float immediates of all four tags, and FLOAT objects (one stored once) */
    CHECK(fs_builder_create(&b, 0));
    double fv[] = { 1.0, -2.5, 4.0, -1e100, 1e300, 0.0, -0.0, INFINITY, NAN, 5e-324, 1e300 };
    CHECK(fs_build_seq(b, FS_KIND_TUPLE, sizeof fv / sizeof *fv, &l));
    for (size_t i = 0; i < sizeof fv / sizeof *fv; i++) {
        CHECK(fs_build_float(b, fv[i], &r));
        fs_build_seq_set(b, l, i, r);
    }
    bad |= write_image(dir, "floats.img", b, l, 0);

    /* equal str and bytes stored once (SHARED), bytearrays never */
    CHECK(fs_builder_create(&b, 0));
    CHECK(fs_build_seq(b, FS_KIND_LIST, 8, &l));
    for (int i = 0; i < 3; i++) {
        CHECK(ascii(b, "token", &r)); fs_build_seq_set(b, l, (uint64_t)i, r);
    }
    for (int i = 3; i < 5; i++) {
        CHECK(fs_build_bytes(b, FS_KIND_BYTES, "raw", 3, &r)); fs_build_seq_set(b, l, (uint64_t)i, r);
    }
    for (int i = 5; i < 7; i++) {
        CHECK(fs_build_bytes(b, FS_KIND_BYTEARRAY, "raw", 3, &r)); fs_build_seq_set(b, l, (uint64_t)i, r);
    }
    uint16_t w2[2] = { 0x4e2d, 0x6587 };
    CHECK(fs_build_str(b, 2, 2, FS_MAXCHAR_SCAN, 4, w2, &r)); fs_build_seq_set(b, l, 7, r);
    bad |= write_image(dir, "dedup.img", b, l, 0);

    /* records: one shape, shaped dicts (one a frozendict, one by
    ** fs_build_dict_shape), a 12-key shape with an index, another order */
    static const char *const rec[] = { "id", "name", "score" }, *const rev[] = { "score", "name", "id" };
    static const char *const wide[] = { "k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8",
                                        "k9", "k10", "k11" };
    CHECK(fs_builder_create(&b, 0));
    CHECK(fs_build_seq(b, FS_KIND_LIST, 8, &l));
    for (int i = 0; i < 3; i++) {
        CHECK(keyed_dict(b, i == 2 ? FS_FLAG_FROZENDICT : 0, 3, rec, i * 10, &d));
        fs_build_seq_set(b, l, (uint64_t)i, d);
    }
    CHECK(fs_build_dict_shape(b, 0, d, &d));
    fs_build_seq_set(b, l, 3, d);
    CHECK(keyed_dict(b, 0, 3, rev, 0, &d)); fs_build_seq_set(b, l, 4, d);
    CHECK(keyed_dict(b, 0, 12, wide, 0, &d)); fs_build_seq_set(b, l, 5, d);
    CHECK(keyed_dict(b, 0, 12, wide, 100, &d)); fs_build_seq_set(b, l, 6, d);
    CHECK(keyed_dict(b, 0, 0, NULL, 0, &d)); fs_build_seq_set(b, l, 7, d);
    bad |= write_image(dir, "shapes.img", b, l, 0);

    /* narrow records: 5 leaf values (one float, boxed), then a wide one */
    CHECK(fs_builder_create(&b, 0));
    CHECK(fs_build_seq(b, FS_KIND_LIST, 3, &l));
    {
        static const char *const nk[] = { "a", "b", "c", "d", "e" };
        fs_ref_t keys[5], vals[5], f;
        int64_t hashes[5];
        for (int i = 0; i < 5; i++) {
            hashes[i] = str_hash(nk[i]);
            CHECK(ascii(b, nk[i], &keys[i]));
        }
        CHECK(fs_build_float(b, 0.75, &f));
        for (int i = 0; i < 3; i++) {
            vals[0] = fs_ref_small_int(i);
            vals[1] = keys[i];
            vals[2] = FS_REF_TRUE;
            vals[3] = i == 2 ? fs_ref_small_int((int64_t)1 << 40) : fs_ref_small_int(-i);
            vals[4] = f;
            if (i == 0)
                CHECK(fs_build_record(b, 0, 5, hashes, keys, vals, &d));
            else
                CHECK(fs_build_record_like(b, 0, d, vals, &r));
            fs_build_seq_set(b, l, (uint64_t)i, i == 0 ? d : r);
        }
    }
    bad |= write_image(dir, "narrow.img", b, l, 0);

    /* map indexes: 8 entries (none), 9 and 127 (1-byte slots), 128 (2-byte) */
    CHECK(fs_builder_create(&b, 0));
    uint64_t counts[] = { 8, 9, 127, 128 };
    CHECK(fs_build_seq(b, FS_KIND_TUPLE, 4, &l));
    for (int c = 0; c < 4; c++) {
        CHECK(fs_build_map(b, c % 2 ? FS_KIND_DICT : FS_KIND_FROZENSET, 0, counts[c], &s));
        for (uint64_t i = 0; i < counts[c]; i++)
            fs_build_map_set(b, s, i, (int64_t)(i * 7 % 13), fs_ref_small_int((int64_t)i),
                             fs_ref_small_int(-(int64_t)i));
        fs_build_map_finish(b, s);
        fs_build_seq_set(b, l, (uint64_t)c, s);
    }
    bad |= write_image(dir, "index.img", b, l, 0);

    /* a vocabulary: 40 str -> int entries built complete (narrow entries,
    ** a 1-byte index) */
    CHECK(fs_builder_create(&b, 0));
    CHECK(vocabulary(b, &d));
    bad |= write_image(dir, "vocab.img", b, d, 0);

    /* records (every flavor, a field dict shaped by the second) and typed
    ** buffers (1-d doubles, a 2x3 int32, a 0-d bool) */
    CHECK(fs_builder_create(&b, 0));
    CHECK(fs_build_seq(b, FS_KIND_LIST, 8, &l));
    {
        static const char *const fk[] = { "x", "y" };
        fs_ref_t cls, name, rr;
        CHECK(ascii(b, "mod:Point", &cls));
        for (int i = 0; i < 2; i++) {
            CHECK(fs_build_rec(b, FS_REC_FIELDS, &rr));
            CHECK(keyed_dict(b, 0, 2, fk, i, &d));
            fs_build_rec_set(b, rr, cls, d);
            fs_build_seq_set(b, l, (uint64_t)i, rr);
        }
        CHECK(fs_build_rec(b, FS_REC_TUPLE, &rr));
        CHECK(fs_build_seq(b, FS_KIND_TUPLE, 2, &r));
        fs_build_seq_set(b, r, 0, fs_ref_small_int(1));
        fs_build_seq_set(b, r, 1, l);                  /* a cycle through the list */
        CHECK(ascii(b, "mod:NT", &name));
        fs_build_rec_set(b, rr, name, r);
        fs_build_seq_set(b, l, 2, rr);
        CHECK(fs_build_rec(b, FS_REC_MEMBER, &rr));
        CHECK(ascii(b, "mod:Color", &name));
        CHECK(ascii(b, "RED", &r));
        fs_build_rec_set(b, rr, name, r);
        fs_build_seq_set(b, l, 3, rr);
        CHECK(fs_build_rec(b, FS_REC_FLAG, &rr));
        fs_build_rec_set(b, rr, name, fs_ref_small_int(6));
        fs_build_seq_set(b, l, 4, rr);
        double dv[3] = { 1.5, -2, 1e300 };
        uint64_t sh1[1] = { 3 }, sh2[2] = { 2, 3 };
        int32_t iv[6] = { 1, 2, 3, -4, 5, 6 };
        CHECK(fs_build_buffer(b, FS_BUF_ARRAY, "d", 8, 1, sh1, dv, sizeof dv, &r));
        fs_build_seq_set(b, l, 5, r);
        CHECK(fs_build_buffer(b, FS_BUF_NDARRAY, "<i", 4, 2, sh2, iv, sizeof iv, &r));
        fs_build_seq_set(b, l, 6, r);
        CHECK(fs_build_buffer(b, FS_BUF_MEMORYVIEW, "?", 1, 0, NULL, "\1", 1, &r));
        fs_build_seq_set(b, l, 7, r);
    }
    bad |= write_image(dir, "records.img", b, l, 0);

    /* the same vocabulary as dumps writes it: keyed hashes, a checksum */
    CHECK(fs_builder_create(&b, 0));
    CHECK(vocabulary(b, &d));
    bad |= write_image_as(dir, "keyed.img", b, d, 0, 1);
    return bad;
}
