/*
** fuzz_image.c -- libFuzzer target: fs_image_check and the readers.
**
** Any byte string is offered to fs_image_check_why(); when it is accepted,
** every object reachable from the root is read with the inline readers of
** fs_image.h (scalars summed, float immediates decoded, sequences walked,
** every map entry -- shaped dicts through their shape -- looked up by its
** own hash and a miss probed), so a validator gap that would let a
** reader go out of bounds shows up as an AddressSanitizer report. The walk is
** iterative with a visited bitmap, like the validator, so deep or cyclic
** images cost no stack.
**
** Build: cmake -DFS_FUZZ=ON with CC=clang (see docs/reliability.md).
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fs_image.h"

static int same_ref(void *ctx, const void *base, fs_ref_t stored)
{
    (void)base;
    return *(const fs_ref_t *)ctx == stored;
}

static volatile uint64_t sink;

/* Everything reachable from the root, read as a consumer would. The stack
** holds at most two refs per 8 bytes of image (a shaped dict pushes a key
** and a value per 8-byte value slot), so size / 4 + 2 entries suffice. */
static void walk(const uint8_t *base, size_t size)
{
    const fs_image_header_t *h = fs_image_header(base);
    size_t nbits = size / 8 + 1;
    uint8_t *seen = calloc(nbits / 8 + 1, 1);
    fs_ref_t *stack = malloc(sizeof(fs_ref_t) * (size / 4 + 2));
    if (seen == NULL || stack == NULL)
        goto done;
    size_t top = 0;
    stack[top++] = h->root;
    while (top) {
        fs_ref_t r = stack[--top];
        if (fs_ref_tag(r) == FS_TAG_XREF) {
            const fs_xref_t *x = fs_xref(base, r);
            sink += x->import_slot + x->target + fs_image_imports(base)[x->import_slot];
            continue;
        }
        if (fs_ref_tag(r) == FS_TAG_FLOAT) {
            double d = fs_ref_float(r);
            uint64_t bits;
            memcpy(&bits, &d, sizeof bits);
            sink += bits;
            continue;
        }
        if (fs_ref_tag(r) != FS_TAG_OBJ) {
            sink += (uint64_t)fs_ref_kind(base, r);
            continue;
        }
        if (seen[(r / 8) / 8] & (1u << ((r / 8) % 8)))
            continue;
        seen[(r / 8) / 8] |= (uint8_t)(1u << ((r / 8) % 8));
        switch (fs_ref_kind(base, r)) {
        case FS_KIND_FLOAT:
        case FS_KIND_COMPLEX: {
            const fs_complex_t *c = fs_obj(base, r);   /* float: real only */
            uint64_t bits;
            memcpy(&bits, &c->real, sizeof bits);
            sink += bits;
            if (c->h.kind == FS_KIND_COMPLEX) {
                memcpy(&bits, &c->imag, sizeof bits);
                sink += bits;
            }
            break;
        }
        case FS_KIND_INT: {
            const fs_bigint_t *b = fs_obj(base, r);
            for (uint64_t i = 0; i < fs_bigint_nbytes(b); i++) sink += b->data[i];
            break;
        }
        case FS_KIND_STR: {
            const fs_str_t *s = fs_str(base, r);
            const uint8_t *d = fs_str_data(s);
            unsigned cs = fs_str_charsize(s);
            for (uint64_t i = 0; i < fs_str_len(s) * cs; i++) sink += d[i];
            sink += fs_str_equals(s, cs, fs_str_len(s), d) + fs_str_maxchar_class(s);
            break;
        }
        case FS_KIND_BYTES:
        case FS_KIND_BYTEARRAY: {
            const fs_bytes_t *b = fs_bytes(base, r);
            const uint8_t *d = fs_bytes_data(b);
            for (uint64_t i = 0; i < fs_bytes_len(b); i++) sink += d[i];
            break;
        }
        case FS_KIND_TUPLE:
        case FS_KIND_LIST: {
            const fs_seq_t *s = fs_seq(base, r);
            const fs_ref_t *items = fs_seq_items(s);
            for (uint64_t i = 0; i < fs_seq_count(s); i++) stack[top++] = items[i];
            break;
        }
        case FS_KIND_DICT:
        case FS_KIND_SET:
        case FS_KIND_FROZENSET: {
            /* a shaped dict reads count, hashes, keys and index in its shape */
            const fs_map_t *m = fs_map(base, r);
            uint64_t n = fs_map_count(base, m);
            int dict = m->h.kind == FS_KIND_DICT;
            for (uint64_t i = 0; i < n; i++) {
                fs_ref_t key = fs_map_key(base, m, i);
                int64_t hash = fs_map_hash(base, m, i);
                sink += (uint64_t)fs_map_find(base, m, hash, same_ref, &key);
                fs_ref_t none = ~(fs_ref_t)0;
                sink += (uint64_t)fs_map_find(base, m, hash ^ 0x5bd1e995, same_ref, &none);
                stack[top++] = key;
                if (dict)
                    stack[top++] = fs_map_value(m, i);
            }
            break;
        }
        case FS_KIND_RECORD: {
            const fs_rec_t *rc = fs_rec(base, r);
            sink += rc->h.aux + fs_ref_kind(base, rc->cls) + fs_ref_kind(base, rc->state);
            stack[top++] = rc->cls;
            stack[top++] = rc->state;
            break;
        }
        case FS_KIND_BUFFER: {
            const fs_buf_t *bf = fs_buf(base, r);
            const uint8_t *d = fs_buf_data(bf);
            for (uint64_t i = 0; i < bf->nbytes; i++) sink += d[i];
            for (uint64_t i = 0; i < bf->h.n; i++) sink += bf->shape[i];
            sink += fs_buf_format_size(bf->format);
            break;
        }
        default:
            break;
        }
    }
done:
    free(seen);
    free(stack);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Images are 8-byte aligned: give the validator an aligned copy. */
    uint64_t *buf = malloc(size / 8 * 8 + 8);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    const char *why = NULL;
    int rc = fs_image_check_why(buf, size, &why);
    if (rc == FS_OK)
        walk((const uint8_t *)buf, size);
    else if ((rc == FS_ECORRUPT || rc == FS_EVERSION) && why == NULL)
        abort();                                /* a refusal always names its defect */
    free(buf);
    return 0;
}
