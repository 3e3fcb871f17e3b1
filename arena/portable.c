/*
** portable.c -- images that leave the process: the keyed hash domain, the
** image checksum, and rekeying a copy of an image into the keyed domain.
**
**   process image (FS_HASH_PROCESS)          portable copy (FS_HASH_KEYED)
**   +--------+----------------------+        +--------+----------------------+
**   | header | maps: hash(key) of   |  copy, | header | maps: K(key) under   |
**   |        | this process's secret| -----> | seed   | the header's seed,   |
**   +--------+----------------------+ rekey  +--------+ indexes rebuilt      |
**                                                     +----------------------+
**
** The keyed domain K (fs_image.h, "Hash domains") is defined so that any
** process computes it from a key's value alone:
**   str      XXH3-64 of the canonical PEP 393 bytes (length * charsize),
**            seeded with the header's seed
**   bytes    XXH3-64 of the bytes, seeded with seed ^ FS_KEYED_BYTES_SALT
**   int, float, complex, bool, None
**            CPython's hash() (the same in every process on every 64-bit
**            build: no secret goes into it)
**   tuple    fs_keyed_tuple_* over the items' K (order matters)
**   frozenset, frozendict
**            fs_keyed_set_* over the members' K (order does not)
** -1 is never a K (it becomes -2, as in CPython). XXH3 comes from Debian's
** libxxhash-dev, inlined (XXH_INLINE_ALL): no library to link or ship.
**
** fs_image_rekey rewrites, in a writable copy of a trusted image, the hash of
** every entry of every unshaped map (shapes included; shaped dicts store no
** hashes) and rebuilds each index; the objects themselves do not move, so
** every reference stays valid. str and bytes keys are hashed here from the
** image; numeric keys keep their stored hash (already their K); tuple,
** frozenset and frozendict keys go to the caller's callback, which hashes
** them from their value exactly as a reader hashes a probe (the bindings
** use one function for both, so the two cannot disagree).
*/
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "fs_image.h"

static int64_t not_minus_one(uint64_t h)
{
    return (int64_t)h == -1 ? -2 : (int64_t)h;
}

int64_t fs_keyed_str_hash(uint64_t seed, unsigned charsize, uint64_t length, const void *data)
{
    return not_minus_one(XXH3_64bits_withSeed(data, (size_t)(length * charsize), seed));
}

int64_t fs_keyed_bytes_hash(uint64_t seed, uint64_t length, const void *data)
{
    return not_minus_one(XXH3_64bits_withSeed(data, (size_t)length, seed ^ FS_KEYED_BYTES_SALT));
}

uint64_t fs_image_checksum(const void *image, size_t size)
{
    const uint8_t *p = image;
    size_t at = offsetof(fs_image_header_t, checksum);
    static const uint8_t zero8[8];
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, p, at);
    XXH3_64bits_update(&st, zero8, 8);
    XXH3_64bits_update(&st, p + at + 8, size - at - 8);
    return XXH3_64bits_digest(&st);
}

uint64_t fs_obj_size(const void *base, uint64_t off)
{
    const fs_obj_hdr_t *h = fs_obj(base, off);
    uint64_t size;
    switch (h->kind) {
    case FS_KIND_FLOAT:   size = sizeof(fs_float_t); break;
    case FS_KIND_COMPLEX: size = sizeof(fs_complex_t); break;
    case FS_KIND_INT:     size = sizeof *h + h->n; break;
    case FS_KIND_STR:
        size = (uint64_t)(fs_obj_body(h) - (const uint8_t *)h) + fs_obj_len(h) * h->aux;
        break;
    case FS_KIND_TUPLE:
    case FS_KIND_LIST:
        size = (uint64_t)(fs_obj_body(h) - (const uint8_t *)h) + fs_obj_len(h) * 8;
        break;
    case FS_KIND_DICT:
        if (h->flags & FS_FLAG_SHAPED) {      /* n is the shape, not a length */
            uint64_t count = fs_map_count(base, (const fs_map_t *)(const void *)h);
            size = sizeof *h + count * ((h->flags & FS_FLAG_NARROW) ? 4u : 8u);
            break;
        }
        __attribute__((fallthrough));        /* unshaped: laid out as a set is */
    case FS_KIND_SET:
    case FS_KIND_FROZENSET: {
        const fs_map_t *m = (const fs_map_t *)(const void *)h;
        size = sizeof *m + h->n * (uint64_t)fs_keyset_entry_size(m) +
               (uint64_t)m->index_size * fs_index_width(h->n);
        break;
    }
    case FS_KIND_RECORD:  size = sizeof(fs_rec_t); break;
    case FS_KIND_BUFFER: {
        const fs_buf_t *bf = (const fs_buf_t *)(const void *)h;
        size = bf->data_off + bf->nbytes;
        break;
    }
    default:                                  /* BYTES, BYTEARRAY */
        size = (uint64_t)(fs_obj_body(h) - (const uint8_t *)h) + fs_obj_len(h);
        break;
    }
    return (size + 7) & ~(uint64_t)7;
}

void fs_map_reindex(fs_map_t *m)
{
    if (m->index_size == 0)
        return;
    void *index = (void *)(uintptr_t)fs_keyset_index(m);
    unsigned width = fs_index_width(m->h.n);
    uint64_t mask = (uint64_t)m->index_size - 1;
    memset(index, 0xff, (size_t)m->index_size * width);
    /* Entries go in insertion order along the probing sequence of fs_map_find
    ** (fs_image.h). The builder sized the index so that a free slot is found
    ** within index_size probes: the loop ends and every entry is found. */
    for (uint64_t e = 0; e < m->h.n; e++) {
        uint64_t perturb = (uint64_t)fs_keyset_hash(m, e);
        uint64_t i = perturb & mask;
        while (fs_index_slot(index, width, i) >= 0) {
            perturb >>= 5;
            i = (i * 5 + perturb + 1) & mask;
        }
        fs_index_put(index, width, i, (int64_t)e);
    }
}

/* K of key (a key of a map of image), in *out. */
static int key_hash(uint8_t *image, uint64_t seed, fs_ref_t key, int64_t stored,
                    fs_rekey_fn composite, void *ctx, int64_t *out)
{
    switch (fs_ref_kind(image, key)) {
    case FS_KIND_STR: {
        const fs_str_t *s = fs_str(image, key);
        *out = fs_keyed_str_hash(seed, fs_str_charsize(s), fs_str_len(s), fs_str_data(s));
        return FS_OK;
    }
    case FS_KIND_BYTES: {
        const fs_bytes_t *b = fs_bytes(image, key);
        *out = fs_keyed_bytes_hash(seed, fs_bytes_len(b), fs_bytes_data(b));
        return FS_OK;
    }
    case FS_KIND_NONE: case FS_KIND_BOOL: case FS_KIND_INT:
    case FS_KIND_FLOAT: case FS_KIND_COMPLEX:
        *out = stored;                 /* CPython's numeric hash: K already */
        return FS_OK;
    case FS_KIND_XREF:
        return FS_EINVAL;              /* a portable image imports nothing */
    default:
        return composite(ctx, image, key, out);
    }
}

int fs_image_rekey(void *image, uint64_t seed, fs_rekey_fn composite, void *ctx)
{
    uint8_t *base = image;
    fs_image_header_t *h = image;
    if (h->nimports != 0 || h->nxrefs != 0)
        return FS_EINVAL;
    for (uint64_t off = FS_IMAGE_HEADER_SIZE; off < h->objects_end; off += fs_obj_size(base, off)) {
        fs_map_t *m = (fs_map_t *)(void *)(base + off);
        int k = m->h.kind;
        if ((k != FS_KIND_DICT && k != FS_KIND_SET && k != FS_KIND_FROZENSET) || fs_map_shaped(m))
            continue;
        for (uint64_t e = 0; e < m->h.n; e++) {
            uint64_t *en = (uint64_t *)(uintptr_t)fs_keyset_entry(m, e);
            int64_t kh;
            int err = key_hash(base, seed, fs_keyset_key(m, e), (int64_t)en[0], composite, ctx, &kh);
            if (err != FS_OK)
                return err;
            en[0] = (uint64_t)kh;
        }
        fs_map_reindex(m);
    }
    h->hash_domain = FS_HASH_KEYED;
    h->hash_check = -1;
    memset(h->hash_key, 0, sizeof h->hash_key);
    for (unsigned i = 0; i < 8; i++)
        h->hash_key[i] = (uint8_t)(seed >> (8 * i));
    h->checksum_kind = FS_CHECKSUM_XXH3;
    h->checksum = 0;
    h->checksum = fs_image_checksum(image, (size_t)h->image_size);
    return FS_OK;
}
