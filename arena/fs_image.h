/*
** fs_image.h -- the v1 image format: layout, builder, readers, validator.
**
** An image is one region's bytes. It holds offsets only, never absolute
** pointers (I3), and no PyObject (I4). All fields are little-endian host
** order, every object starts at a multiple of 8 bytes.
**
**   offset 0                                                   image_size
**   +--------+-----------------------------+--------------+--------------+
**   | header | objects ...                 | import table | xref table   |
**   | 80 B   | (appended in build order)   | u64 ids      | 16 B each    |
**   +--------+-----------------------------+--------------+--------------+
**            ^FS_IMAGE_HEADER_SIZE         ^objects_end   ^xref_off
**
** Header (fs_image_header_t):
**   magic "FRZSHRV1" | version u32 | flags u32 | image_size u64 | root ref |
**   import_off u64 | nimports u32 | nxrefs u32 | xref_off u64 |
**   object_count u64 | hash_check i64 | objects_end u64
**
** References (fs_ref_t, 64 bits) carry a tag in their low 3 bits:
**
**   ...offset (multiple of 8)...........000   object in this image
**   ...signed 61-bit integer............001   small int immediate
**   ...0 None | 1 False | 2 True........010   constant
**   ...index into the xref table........011   object in an imported region
**
** An xref entry is { u32 import_slot; u32 zero; fs_ref_t target }: the
** target is a reference inside the image of import table entry import_slot
** (a region id; the region layer keeps the matching control blocks).
**
** Objects open with an 8-byte header { u8 kind; u8 flags; u16 0; u32 0 }:
**
**   FLOAT      hdr | f64 value
**   COMPLEX    hdr | f64 real | f64 imag
**   INT        hdr | u64 nbytes | nbytes of two's complement, little-endian,
**                    minimal length (for ints outside the 61-bit immediates)
**   STR        hdr | u64 length | i64 hash | u32 maxchar | u8 charsize |
**              u8[3] 0 | (length + 1) * charsize bytes, NUL-terminated, in
**              CPython's canonical form (charsize is the smallest of 1/2/4
**              that holds maxchar; maxchar is the true maximum).
**              flags FS_FLAG_ASCII when maxchar < 128.
**   BYTES,     hdr | u64 length | length + 1 bytes (NUL-terminated)
**   BYTEARRAY
**   TUPLE,     hdr | u64 count | fs_ref_t items[count]
**   LIST
**   DICT, SET, hdr | u64 count | u64 index_size |
**   FROZENSET      fs_map_entry_t entries[count] (insertion order) |
**                  i32 index[index_size] (entry number or -1), padded to 8
**              index_size is 0 for an empty map, else a power of two with
**              count <= index_size * 2 / 3. Sets leave value = None.
**              DICT flags FS_FLAG_FROZENDICT: the source was a frozendict.
**
** Any object: flags FS_FLAG_SHARED when more than one reference of this
** image points at it (the header's root counts as one). The builder sets it
** (image.c) and fs_image_check proves it, so a reader that memoizes objects to
** keep sharing and cycles (thaw) needs to memoize only those: every object of
** a cycle is referenced twice (a cycle through the root too, the root's own
** reference being counted).
**
** Cycles through keys: a dict key or set member that reaches back to an
** object enclosing it (X = (D,), D = {K: None}, K = (X,)) is well formed
** and fs_image_check accepts it -- Python cannot build such a graph, but the
** format does not forbid it. Readers that build hashable objects (thaw)
** refuse, with an error, any object still incomplete when it is met in a key
** context (a key, a member, or anything below one), so nothing half-built is
** ever hashed.
**
** Hashes are those of the building process (CPython's hash(), whose secret
** all interpreters of a process share); header.hash_check is the builder's
** hash of the ASCII string "frozenshare", or -1: a reader whose own value
** differs must not trust stored hashes.
**
** Dict and set index: open addressing over index[], probing the sequence
**   i = hash & mask; perturb = (uint64)hash;
**   repeat: perturb >>= 5; i = (i * 5 + perturb + 1) & mask
** Lookups stop at an empty slot or after index_size probes, so a corrupt
** index cannot loop forever. The first probes may revisit a slot (while
** perturb is nonzero); once perturb is 0 (after at most 12 shifts) the
** sequence i -> 5i+1 has full period. Hence the builder sizes an index of
** count >= 2 entries at >= count + 12 slots (as well as the 2/3 load bound),
** so every entry lies within the lookup's probe budget (image.c).
**
** Readers below are inline and trust the image: use them on images built in
** this process or accepted by fs_image_check().
*/
#ifndef FS_IMAGE_H
#define FS_IMAGE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fs_arena.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef uint64_t fs_ref_t;

#define FS_IMAGE_MAGIC        "FRZSHRV1"
#define FS_IMAGE_VERSION      1u
#define FS_IMAGE_HEADER_SIZE  80u

#define FS_TAG_MASK   UINT64_C(7)
#define FS_TAG_OBJ    0u
#define FS_TAG_INT    1u
#define FS_TAG_CONST  2u
#define FS_TAG_XREF   3u

#define FS_REF_NONE   ((fs_ref_t)((0u << 3) | FS_TAG_CONST))
#define FS_REF_FALSE  ((fs_ref_t)((1u << 3) | FS_TAG_CONST))
#define FS_REF_TRUE   ((fs_ref_t)((2u << 3) | FS_TAG_CONST))

#define FS_SMALL_INT_MAX  ((int64_t)((UINT64_C(1) << 60) - 1))
#define FS_SMALL_INT_MIN  (-FS_SMALL_INT_MAX - 1)

/* Kinds: object kinds are stored in object headers; NONE/BOOL and the
** immediate INT and XREF are reported by fs_ref_kind() for tagged refs. */
enum {
    FS_KIND_INVALID = 0,
    FS_KIND_NONE = 1,
    FS_KIND_BOOL = 2,
    FS_KIND_INT = 3,
    FS_KIND_FLOAT = 4,
    FS_KIND_COMPLEX = 5,
    FS_KIND_STR = 6,
    FS_KIND_BYTES = 7,
    FS_KIND_BYTEARRAY = 8,
    FS_KIND_TUPLE = 9,
    FS_KIND_LIST = 10,
    FS_KIND_DICT = 11,
    FS_KIND_SET = 12,
    FS_KIND_FROZENSET = 13,
    FS_KIND_XREF = 14,       /* reported for tag 3 refs only */
    FS_KIND__COUNT
};

#define FS_FLAG_ASCII       0x01u   /* STR: maxchar < 128                */
#define FS_FLAG_FROZENDICT  0x02u   /* DICT: the source was a frozendict */
#define FS_FLAG_SHARED      0x80u   /* any kind: referenced more than once */

typedef struct fs_image_header_s {
    char     magic[8];       /* FS_IMAGE_MAGIC, not NUL-terminated        */
    uint32_t version;        /* FS_IMAGE_VERSION                          */
    uint32_t flags;          /* 0 in v1                                   */
    uint64_t image_size;     /* bytes in use, header included             */
    fs_ref_t root;           /* the frozen object                         */
    uint64_t import_off;     /* u64 region ids [nimports]                 */
    uint32_t nimports;       /* entries in the import table               */
    uint32_t nxrefs;         /* entries in the xref table                 */
    uint64_t xref_off;       /* fs_xref_t [nxrefs]                        */
    uint64_t object_count;   /* objects between header and objects_end    */
    int64_t  hash_check;     /* builder's hash("frozenshare") or -1       */
    uint64_t objects_end;    /* end of the object area                    */
} fs_image_header_t;

typedef struct fs_obj_hdr_s {
    uint8_t  kind;           /* FS_KIND_*                                 */
    uint8_t  flags;          /* FS_FLAG_*                                 */
    uint16_t zero16;
    uint32_t zero32;
} fs_obj_hdr_t;

typedef struct fs_float_s   { fs_obj_hdr_t h; double value; } fs_float_t;
typedef struct fs_complex_s { fs_obj_hdr_t h; double real, imag; } fs_complex_t;
typedef struct fs_bigint_s  { fs_obj_hdr_t h; uint64_t nbytes; uint8_t data[]; } fs_bigint_t;
typedef struct fs_str_s {
    fs_obj_hdr_t h;
    uint64_t length;         /* code points                               */
    int64_t  hash;           /* CPython hash in the building process      */
    uint32_t maxchar;        /* largest code point                        */
    uint8_t  charsize;       /* 1, 2 or 4                                 */
    uint8_t  zero[3];
    uint8_t  data[];         /* (length + 1) * charsize                   */
} fs_str_t;
typedef struct fs_bytes_s   { fs_obj_hdr_t h; uint64_t length; uint8_t data[]; } fs_bytes_t;
typedef struct fs_seq_s     { fs_obj_hdr_t h; uint64_t count; fs_ref_t items[]; } fs_seq_t;
typedef struct fs_map_entry_s { int64_t hash; fs_ref_t key; fs_ref_t value; } fs_map_entry_t;
typedef struct fs_map_s {
    fs_obj_hdr_t h;
    uint64_t count;          /* entries                                   */
    uint64_t index_size;     /* 0 or a power of two                       */
    fs_map_entry_t entries[];/* then int32_t index[index_size]            */
} fs_map_t;
typedef struct fs_xref_s    { uint32_t import_slot; uint32_t zero; fs_ref_t target; } fs_xref_t;

/* ---- inline readers (trust the image) ----------------------------------- */

static inline const fs_image_header_t *fs_image_header(const void *base)
{ return (const fs_image_header_t *)base; }

static inline unsigned fs_ref_tag(fs_ref_t r) { return (unsigned)(r & FS_TAG_MASK); }

static inline fs_ref_t fs_ref_small_int(int64_t v)
{ return ((uint64_t)v << 3) | FS_TAG_INT; }
static inline int64_t fs_ref_int_value(fs_ref_t r)
{ return (int64_t)r >> 3; }   /* arithmetic shift: gcc/clang guarantee it */
static inline fs_ref_t fs_ref_bool(int v) { return v ? FS_REF_TRUE : FS_REF_FALSE; }

static inline const void *fs_obj(const void *base, fs_ref_t r)
{ return (const uint8_t *)base + r; }

/* Kind of the value a reference denotes (FS_KIND_XREF for tag 3). */
static inline int fs_ref_kind(const void *base, fs_ref_t r)
{
    switch (fs_ref_tag(r)) {
    case FS_TAG_OBJ:   return ((const fs_obj_hdr_t *)fs_obj(base, r))->kind;
    case FS_TAG_INT:   return FS_KIND_INT;
    case FS_TAG_CONST: return r == FS_REF_NONE ? FS_KIND_NONE : FS_KIND_BOOL;
    case FS_TAG_XREF:  return FS_KIND_XREF;
    default:           return FS_KIND_INVALID;
    }
}

/* 1 if the object at r (tag FS_TAG_OBJ) is referenced more than once. */
static inline int fs_obj_shared(const void *base, fs_ref_t r)
{ return (((const fs_obj_hdr_t *)fs_obj(base, r))->flags & FS_FLAG_SHARED) != 0; }

static inline const fs_xref_t *fs_xref(const void *base, fs_ref_t r)
{
    const fs_image_header_t *h = fs_image_header(base);
    return (const fs_xref_t *)((const uint8_t *)base + h->xref_off) + (r >> 3);
}
static inline const uint64_t *fs_image_imports(const void *base)
{ return (const uint64_t *)((const uint8_t *)base + fs_image_header(base)->import_off); }

static inline const fs_str_t *fs_str(const void *base, fs_ref_t r)
{ return (const fs_str_t *)fs_obj(base, r); }
static inline const fs_bytes_t *fs_bytes(const void *base, fs_ref_t r)
{ return (const fs_bytes_t *)fs_obj(base, r); }
static inline const fs_seq_t *fs_seq(const void *base, fs_ref_t r)
{ return (const fs_seq_t *)fs_obj(base, r); }
static inline const fs_map_t *fs_map(const void *base, fs_ref_t r)
{ return (const fs_map_t *)fs_obj(base, r); }
static inline const int32_t *fs_map_index(const fs_map_t *m)
{ return (const int32_t *)(const void *)(m->entries + m->count); }

/* Equality callback for lookups: 1 equal, 0 not equal, -1 error. */
typedef int (*fs_eq_fn)(void *ctx, const void *base, fs_ref_t stored_key);

/* Find the entry whose key equals the probe (same hash, then eq()).
** Returns the entry number (>= 0), -1 when absent, -2 when eq() failed. */
static inline int64_t fs_map_find(const void *base, const fs_map_t *m,
                                  int64_t hash, fs_eq_fn eq, void *ctx)
{
    if (m->index_size == 0)
        return -1;
    const int32_t *index = fs_map_index(m);
    uint64_t mask = m->index_size - 1, perturb = (uint64_t)hash;
    uint64_t i = (uint64_t)hash & mask;
    for (uint64_t probes = 0; probes < m->index_size; probes++) {
        int32_t e = index[i];
        if (e < 0)
            return -1;
        const fs_map_entry_t *ent = &m->entries[e];
        if (ent->hash == hash) {
            int r = eq(ctx, base, ent->key);
            if (r != 0)
                return r > 0 ? (int64_t)e : -2;
        }
        perturb >>= 5;
        i = (i * 5 + perturb + 1) & mask;
    }
    return -1;
}

/* 1 if the stored str equals the canonical string (charsize, length, data). */
static inline int fs_str_equals(const fs_str_t *s, unsigned charsize,
                                uint64_t length, const void *data)
{
    return s->charsize == charsize && s->length == length &&
           memcmp(s->data, data, (size_t)length * charsize) == 0;
}

/* ---- builder ------------------------------------------------------------ */
/* A builder owns one growing, unsealed image in the arena. Offsets stay
** valid as it grows; pointers do not (it may move, I3). Single-threaded. */
typedef struct fs_builder_s fs_builder_t;

int  fs_builder_create(fs_builder_t **out, size_t size_hint);
void fs_builder_destroy(fs_builder_t *b);           /* NULL-safe; frees the image */
size_t fs_builder_size(const fs_builder_t *b);      /* bytes used so far */
uint8_t *fs_builder_base(fs_builder_t *b);          /* valid until the next fs_build_* */

int fs_build_float(fs_builder_t *b, double v, fs_ref_t *out);
int fs_build_complex(fs_builder_t *b, double real, double imag, fs_ref_t *out);
/* Immediate when it fits 61 bits, else an INT object. */
int fs_build_int64(fs_builder_t *b, int64_t v, fs_ref_t *out);
/* Two's complement little-endian bytes of any length (>= 1); stored
** minimal, as an immediate when it fits. */
int fs_build_bigint(fs_builder_t *b, const uint8_t *le, size_t nbytes, fs_ref_t *out);
/* The largest code point of length characters of charsize (1/2/4) bytes:
** the maxchar fs_build_str expects. */
uint32_t fs_str_maxchar(unsigned charsize, uint64_t length, const void *data);
/* Canonical str: charsize 1/2/4 must be the smallest that holds maxchar,
** and maxchar the true maximum of the data (checked: FS_EINVAL). Pass
** FS_MAXCHAR_SCAN to have it computed instead (one scan of the data, not two). */
#define FS_MAXCHAR_SCAN UINT32_MAX
int fs_build_str(fs_builder_t *b, unsigned charsize, uint64_t length,
                 uint32_t maxchar, int64_t hash, const void *data, fs_ref_t *out);
int fs_build_bytes(fs_builder_t *b, int kind /* BYTES|BYTEARRAY */,
                   const void *data, uint64_t length, fs_ref_t *out);
/* Tuple or list of count items, all None until set. */
int  fs_build_seq(fs_builder_t *b, int kind, uint64_t count, fs_ref_t *out);
void fs_build_seq_set(fs_builder_t *b, fs_ref_t seq, uint64_t i, fs_ref_t item);
/* Dict, set or frozenset of exactly count entries: set each entry once with
** fs_build_map_set (in insertion order), then fs_build_map_finish builds the
** index. flags: FS_FLAG_FROZENDICT for dicts. */
int  fs_build_map(fs_builder_t *b, int kind, unsigned flags, uint64_t count, fs_ref_t *out);
void fs_build_map_set(fs_builder_t *b, fs_ref_t map, uint64_t i, int64_t hash,
                      fs_ref_t key, fs_ref_t value);
void fs_build_map_finish(fs_builder_t *b, fs_ref_t map);
/* A reference to `target` inside the image of import slot `slot` (slots are
** numbered by the caller, 0..nimports-1, and named at fs_builder_finish).
** Repeated (slot, target) pairs share one xref entry. */
int fs_build_xref(fs_builder_t *b, uint32_t slot, fs_ref_t target, fs_ref_t *out);

/* Write the import and xref tables and the header, and shrink the image to
** fit. Afterwards only fs_builder_detach / fs_builder_destroy are allowed. */
int fs_builder_finish(fs_builder_t *b, fs_ref_t root, const uint64_t *import_ids,
                      uint32_t nimports, int64_t hash_check);
/* Take the finished image out of the builder (which is then empty):
** *base and *alloc_size (whole pages, what fs_arena_seal wants). */
void fs_builder_detach(fs_builder_t *b, void **base, size_t *alloc_size);

/* ---- validator ---------------------------------------------------------- */
/* Prove that an untrusted image is well formed: header fields, every object
** in bounds and of a known kind, every reference pointing at an object start,
** an immediate, a constant or an existing xref; xref slots < nimports;
** strings canonical; map entries and index consistent; object_count right.
** Never reads outside [image, image + size). Iterative (no recursion).
** Returns FS_OK, FS_ECORRUPT, or FS_ENOMEM (it needs size/64 bytes). */
int fs_image_check(const void *image, size_t size);

#ifdef __cplusplus
}
#endif
#endif /* FS_IMAGE_H */
