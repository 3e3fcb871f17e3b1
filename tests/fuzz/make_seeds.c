/*
** make_seeds.c -- writes the fuzzer's seed corpus: small well-formed images
** of every kind (built with the real builder), one file each.
**   make_seeds <dir>
** The committed corpus in tests/fuzz/corpus/ was made with this program.
*/
#include <stdio.h>
#include <string.h>

#include "fs_image.h"

static int write_image(const char *dir, const char *name, fs_builder_t *b, fs_ref_t root,
                       uint32_t nimports)
{
    uint64_t ids[2] = { 11, 12 };
    if (fs_builder_finish(b, root, ids, nimports, 12345) != FS_OK)
        return 1;
    const fs_image_header_t *h = fs_image_header(fs_builder_base(b));
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

#define CHECK(e) do { if ((e) != FS_OK) { fprintf(stderr, "%s failed\n", #e); return 1; } } while (0)

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
    CHECK(fs_build_xref(b, 1, 64, &v));
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
    return bad;
}
