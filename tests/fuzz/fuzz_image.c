/*
** fuzz_image.c -- libFuzzer target: fs_image_check and the readers.
**
** Any byte string is offered to fs_image_check(); when it is accepted, every
** object reachable from the root is read with the inline readers of
** fs_image.h (scalars summed, sequences walked, every map entry looked up by
** its own hash and a miss probed), so a validator gap that would let a
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

static void walk(const uint8_t *base, size_t size)
{
    const fs_image_header_t *h = fs_image_header(base);
    size_t nbits = size / 8 + 1;
    uint8_t *seen = calloc(nbits / 8 + 1, 1);
    fs_ref_t *stack = malloc(sizeof(fs_ref_t) * (size / 8 + 2));
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
            for (uint64_t i = 0; i < b->nbytes; i++) sink += b->data[i];
            break;
        }
        case FS_KIND_STR: {
            const fs_str_t *s = fs_str(base, r);
            for (uint64_t i = 0; i < (s->length + 1) * s->charsize; i++) sink += s->data[i];
            sink += fs_str_equals(s, s->charsize, s->length, s->data);
            break;
        }
        case FS_KIND_BYTES:
        case FS_KIND_BYTEARRAY: {
            const fs_bytes_t *b = fs_bytes(base, r);
            for (uint64_t i = 0; i <= b->length; i++) sink += b->data[i];
            break;
        }
        case FS_KIND_TUPLE:
        case FS_KIND_LIST: {
            const fs_seq_t *s = fs_seq(base, r);
            for (uint64_t i = 0; i < s->count; i++) stack[top++] = s->items[i];
            break;
        }
        case FS_KIND_DICT:
        case FS_KIND_SET:
        case FS_KIND_FROZENSET: {
            const fs_map_t *m = fs_map(base, r);
            for (uint64_t i = 0; i < m->count; i++) {
                const fs_map_entry_t *e = &m->entries[i];
                fs_ref_t key = e->key;
                sink += (uint64_t)fs_map_find(base, m, e->hash, same_ref, &key);
                fs_ref_t none = ~(fs_ref_t)0;
                sink += (uint64_t)fs_map_find(base, m, e->hash ^ 0x5bd1e995, same_ref, &none);
                stack[top++] = e->key;
                stack[top++] = e->value;
            }
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
    if (fs_image_check(buf, size) == FS_OK)
        walk((const uint8_t *)buf, size);
    free(buf);
    return 0;
}
