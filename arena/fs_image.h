/*
** fs_image.h -- the image format (version 2): layout, builder, readers,
** validator. The same bytes serve memory and disk: a file is an image.
**
** An image is one region's bytes. It holds offsets only, never absolute
** pointers (I3), and no PyObject (I4). Fields are in the byte order and word
** size the header names (readers accept only their own: little-endian,
** 64-bit); every object starts at a multiple of 8 bytes.
**
**   offset 0                                                   image_size
**   +--------+-----------------------------+--------------+--------------+
**   | header | objects ...                 | import table | xref table   |
**   | 128 B  | (appended in build order)   | u64 ids      | 16 B each    |
**   +--------+-----------------------------+--------------+--------------+
**            ^FS_IMAGE_HEADER_SIZE         ^objects_end   ^xref_off
**
** Header (fs_image_header_t, 128 bytes):
**    0 magic "FRZSHARE"        8 u16 version (2)        10 u8 byte_order (1: LE)
**   11 u8 word_size (8)       12 u8 hash_domain         13 u8 zero
**   14 u16 header_size (128)  16 u32 flags (0)          20 u32 nimports
**   24 u64 image_size         32 u64 objects_end        40 u64 object_count
**   48 ref root               56 u64 import_off         64 u64 xref_off
**   72 u32 nxrefs             76 u32 checksum_kind      80 u64 checksum
**   88 i64 hash_check         96 u8 hash_key[16]       112 u64 zero[2]
** byte_order and word_size are single bytes so that a reader of any
** platform can name what differs. checksum_kind 0 (none, checksum 0) for
** images in memory; portable images carry FS_CHECKSUM_XXH3 (below).
**
** Hash domains (DESIGN.md "Hash domains"). FS_HASH_PROCESS: stored hashes
** are CPython's hash() of the building process (a secret all interpreters
** of a process share); hash_check is that process's hash of the ASCII str
** "frozenshare", or -1, and a reader whose own value differs must not trust
** stored hashes. hash_key is zero. Images built by freeze are in this domain:
** a probe's cached hash is all a lookup needs.
** FS_HASH_KEYED: stored hashes are K, a hash any process computes from a
** key's value and the u64 seed in hash_key[0..8) (little-endian; bytes 8..16
** zero; hash_check -1): XXH3 of a str's canonical bytes or of a bytes,
** CPython's hash() of numbers, bool and None (secret-free), and
** fs_keyed_tuple_* / fs_keyed_set_* over the items of tuples, frozensets
** and frozendicts (portable.c has the definition). Images that leave the
** process (dumps, dump, pickling) are rekeyed into it (fs_image_rekey), so a
** reader anywhere looks up in O(1) by hashing its probe once.
** checksum_kind FS_CHECKSUM_XXH3: checksum is XXH3-64 of the image_size
** bytes, the checksum field read as zero; portable images carry it.
**
** References (fs_ref_t, 64 bits) carry a tag in their low 3 bits:
**
**   ...offset (multiple of 8)...........000   object in this image
**   ...signed 61-bit integer............001   small int immediate
**   ...0 None | 1 False | 2 True........010   constant
**   ...index into the xref table........011   object in an imported region
**   ...double bits 60..0............1 s e10   float immediate (tags 4..7)
**
** Float immediates hold the doubles whose exponent's top two bits differ
** (|x| in [2^-511, 2^513), where nearly all data lives): bits 63..61 of the
** double are then (s, e10, !e10), so the tag's bits 1 and 0 carry s and e10
** and bits 60..0 are shifted up by 3. Every other double (0.0, -0.0, the
** extremes, inf, nan) is a FLOAT object, and so is a float a narrow dict
** refers to (boxed: narrow references have no float tag); FLOAT objects are
** deduplicated by their bits (NaNs excepted).
**
** An xref entry is { u32 import_slot; u32 zero; fs_ref_t target }: the
** target is a reference inside the image of import table entry import_slot
** (a region id; the region layer keeps the matching control blocks).
**
** Objects open with an 8-byte header { u8 kind; u8 flags; u8 aux; u8 0;
** u32 n }. n is the object's length or count; lengths of 2^32 - 1 and more
** (str, bytes, sequences) store n = FS_N_LONG and a u64 right after the
** header ("[u64 n]" below). Padding up to the next multiple of 8 is zero.
**
**   FLOAT      hdr(n 0) | f64 value
**   COMPLEX    hdr(n 0) | f64 real | f64 imag
**   INT        hdr(n nbytes) | two's complement, little-endian, minimal
**              length (for ints outside the 61-bit immediates)
**   STR        hdr(aux charsize, n length) | [u64 n] | length * charsize
**              bytes in CPython's canonical form (charsize the smallest of
**              1/2/4 that holds every code point; no NUL). flags
**              FS_FLAG_ASCII when every code point is < 128. No hash: a key's
**              hash is in its map's entry (8 bytes saved per string; a
**              reader that materializes a key takes it from there).
**   BYTES,     hdr(n length) | [u64 n] | length bytes (no NUL)
**   BYTEARRAY
**   TUPLE,     hdr(n count) | [u64 n] | fs_ref_t items[count]
**   LIST
**   DICT, SET, hdr(n count) | u32 index_size | u32 0 | entry[count] |
**   FROZENSET      index[index_size], padded to 8
**              An entry keeps a key's hash, key and value together (a
**              lookup that reaches an entry finds all three in one cache
**              line):
**                SET, FROZENSET     { i64 hash; fs_ref_t key }              16 B
**                DICT               { i64 hash; fs_ref_t key; fs_ref_t value } 24 B
**                DICT, FS_FLAG_NARROW { i64 hash; u32 key; u32 value }     16 B
**              Narrow entries hold narrow references (below): the builder
**              uses them when it knows every key and value at once and all
**              fit (vocabularies of str -> int: 16 bytes an entry, not 24).
**              Entries are in insertion order. index_size is 0 when count
**              <= FS_MAP_SCAN_MAX (a lookup scans the entries), else a
**              power of two (see "index" below). count <= FS_MAP_MAX.
**              DICT flags FS_FLAG_FROZENDICT: the source was a frozendict.
**   RECORD     hdr(aux flavor, n 0) | fs_ref_t cls | fs_ref_t state
**              An object of a user class (or a stdlib value) rebuilt from
**              its state (DESIGN.md "Records and typed buffers"). cls: a STR
**              "module:qualname" of this image; state, by flavor (FS_REC_*):
**                FIELDS  a DICT of str field names -> values (shaped: the
**                        records of a class share their keys)
**                TUPLE   a TUPLE of the items (named tuples)
**                MEMBER  a STR, the member's name (enums)
**                FLAG    any value: cls(value) (composite enum.Flag members)
**                VALUE   a TUPLE of constructor arguments: cls(*state), for
**                        the stdlib value classes only (fs_rec_value_class)
**              cls and state are objects of this image (never xrefs).
**   BUFFER     hdr(aux source, n ndim) | u64 nbytes | u32 itemsize |
**              u32 data_off | char format[16] | u64 shape[ndim] | zero pad
**              | data[nbytes] at data_off from the object (16-aligned from
**              the image start: every item type is aligned)
**              A typed, C-contiguous buffer (array.array, memoryview, NumPy
**              array: FS_BUF_* in aux). format is a struct-style code that
**              fs_buf_format_size knows, NUL-padded; itemsize its size;
**              nbytes = itemsize * prod(shape); ndim <= FS_BUF_MAX_NDIM.
**   DICT,      hdr(n shape / 8) | fs_ref_t values[count]
**   shaped     flags FS_FLAG_SHAPED (and maybe FS_FLAG_FROZENDICT). The
**              header's n is the offset / 8 of an unshaped, non-empty DICT,
**              the shape (so shapes lie in the first 32 GiB of an image; a
**              dict that would refer further is stored unshaped), whose
**              count, hashes, keys and index this dict uses (its entries'
**              values are the shape's own, never this dict's): dicts
**              with the same keys in the same order (records) store their
**              keys once. flags FS_FLAG_NARROW: values are u32 narrow
**              references (below), values[] is count * 4 bytes. A shape
**              reference is not a value reference, but a
**              shaped dict counts as one reference to each key of its shape
**              (so the keys carry FS_FLAG_SHARED, below).
**
** Narrow references (u32, in FS_FLAG_NARROW dicts, shaped or not): the low 32 bits of a
** reference that survives the round trip -- an object or xref below 2^32, a
** constant, a small int in [-2^28, 2^28); tag 1 sign-extends, the others
** zero-extend; never a float immediate (bit 2 clear). The builder narrows a
** shaped dict when all its values fit (records of ids, counts, flags and
** strings), halving what each record stores; float immediates among them
** are boxed as FLOAT objects (16 bytes each) when fewer than a
** quarter of the values are floats, so that this still saves room.
**
** Equal str and bytes values are stored once per image (the builder
** deduplicates them by value; bytearray, which thaws mutable, never).
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
** Map index: slots of 1 byte (int8) when count <= 127, of 2 bytes (int16)
** when count <= 32767, of 3 (a little-endian int24) when count <= 2^23 - 1,
** else of 4 (int32); -1 marks an empty slot, any other value is an entry
** number. (3-byte slots: a quarter of the index of a 32k..8M-entry
** vocabulary, ~2.6 bytes an entry.) Open addressing, probing the sequence
**   i = hash & mask; perturb = (uint64)hash;
**   repeat: perturb >>= 5; i = (i * 5 + perturb + 1) & mask
** Lookups stop at an empty slot or after index_size probes, so a corrupt
** index cannot loop forever. The first probes may revisit a slot (while
** perturb is nonzero); once perturb is 0 (after at most 12 shifts) the
** sequence i -> 5i+1 has full period. Hence the builder sizes an index at
** >= count + 12 slots (as well as count <= index_size * 2/3), so every
** entry lies within the lookup's probe budget (image.c).
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

#define FS_IMAGE_MAGIC        "FRZSHARE"
#define FS_IMAGE_MAGIC_V1     "FRZSHRV1"      /* the round-1 format: refused */
#define FS_IMAGE_VERSION      2u
#define FS_IMAGE_HEADER_SIZE  128u
#define FS_BYTE_ORDER_LITTLE  1u
#define FS_BYTE_ORDER_BIG     2u
#define FS_HASH_PROCESS       1u              /* CPython hash(), this process */
#define FS_HASH_KEYED         2u              /* K under hash_key's seed      */
#define FS_CHECKSUM_XXH3      1u              /* checksum_kind                */
#define FS_KEYED_BYTES_SALT   UINT64_C(0x62797465734b6579)  /* "byteKey"     */

#define FS_TAG_MASK   UINT64_C(7)
#define FS_TAG_OBJ    0u
#define FS_TAG_INT    1u
#define FS_TAG_CONST  2u
#define FS_TAG_XREF   3u
#define FS_TAG_FLOAT  4u             /* bit 2 set: tags 4..7, a float immediate */

#define FS_REF_NONE   ((fs_ref_t)((0u << 3) | FS_TAG_CONST))
#define FS_REF_FALSE  ((fs_ref_t)((1u << 3) | FS_TAG_CONST))
#define FS_REF_TRUE   ((fs_ref_t)((2u << 3) | FS_TAG_CONST))

#define FS_SMALL_INT_MAX  ((int64_t)((UINT64_C(1) << 60) - 1))
#define FS_SMALL_INT_MIN  (-FS_SMALL_INT_MAX - 1)

#define FS_N_LONG         UINT32_MAX          /* hdr.n: a u64 length follows */
#define FS_MAP_SCAN_MAX   8u                  /* maps this small have no index */
#define FS_MAP_MAX        (UINT32_C(1) << 30) /* entries of one dict or set */

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
    FS_KIND_RECORD = 15,
    FS_KIND_BUFFER = 16,
    FS_KIND__COUNT
};

#define FS_FLAG_ASCII       0x01u   /* STR: every code point < 128       */
#define FS_FLAG_FROZENDICT  0x02u   /* DICT: the source was a frozendict */
#define FS_FLAG_SHAPED      0x04u   /* DICT: keys live in the shape      */
#define FS_FLAG_NARROW      0x08u   /* DICT: u32 narrow values (and keys) */
#define FS_FLAG_SHARED      0x80u   /* any kind: referenced more than once */

typedef struct fs_image_header_s {
    char     magic[8];       /* FS_IMAGE_MAGIC, not NUL-terminated        */
    uint16_t version;        /* FS_IMAGE_VERSION                          */
    uint8_t  byte_order;     /* FS_BYTE_ORDER_LITTLE                      */
    uint8_t  word_size;      /* 8                                         */
    uint8_t  hash_domain;    /* FS_HASH_PROCESS or FS_HASH_KEYED          */
    uint8_t  zero8;
    uint16_t header_size;    /* FS_IMAGE_HEADER_SIZE                      */
    uint32_t flags;          /* 0                                         */
    uint32_t nimports;       /* entries in the import table               */
    uint64_t image_size;     /* bytes in use, header included             */
    uint64_t objects_end;    /* end of the object area                    */
    uint64_t object_count;   /* objects between header and objects_end    */
    fs_ref_t root;           /* the frozen object                         */
    uint64_t import_off;     /* u64 region ids [nimports]                 */
    uint64_t xref_off;       /* fs_xref_t [nxrefs]                        */
    uint32_t nxrefs;         /* entries in the xref table                 */
    uint32_t checksum_kind;  /* 0: none; FS_CHECKSUM_XXH3                 */
    uint64_t checksum;       /* of the image, this field read as 0        */
    int64_t  hash_check;     /* FS_HASH_PROCESS: hash("frozenshare") or -1 */
    uint8_t  hash_key[16];   /* FS_HASH_KEYED: u64 seed, 8 zero bytes     */
    uint64_t zero64[2];
} fs_image_header_t;

typedef struct fs_obj_hdr_s {
    uint8_t  kind;           /* FS_KIND_*                                 */
    uint8_t  flags;          /* FS_FLAG_*                                 */
    uint8_t  aux;            /* STR: charsize; else 0                     */
    uint8_t  zero8;
    uint32_t n;              /* length / count, or FS_N_LONG              */
} fs_obj_hdr_t;

typedef struct fs_float_s   { fs_obj_hdr_t h; double value; } fs_float_t;
typedef struct fs_complex_s { fs_obj_hdr_t h; double real, imag; } fs_complex_t;
typedef struct fs_bigint_s  { fs_obj_hdr_t h; uint8_t data[]; } fs_bigint_t;
/* STR, BYTES, BYTEARRAY, TUPLE, LIST: read through the accessors below
** (the u64 length, when present, shifts what follows). */
typedef struct fs_str_s     { fs_obj_hdr_t h; } fs_str_t;
typedef struct fs_bytes_s   { fs_obj_hdr_t h; } fs_bytes_t;
typedef struct fs_seq_s     { fs_obj_hdr_t h; } fs_seq_t;
typedef struct fs_map_s {    /* DICT (unshaped), SET, FROZENSET          */
    fs_obj_hdr_t h;          /* n: entries                                */
    uint32_t index_size;     /* 0 or a power of two                       */
    uint32_t zero32;
    uint64_t entries[];      /* entry[n] (see the header comment), index  */
} fs_map_t;
typedef struct fs_shaped_s { /* DICT with FS_FLAG_SHAPED: h.n = shape / 8 */
    fs_obj_hdr_t h;
    fs_ref_t values[];
} fs_shaped_t;
typedef struct fs_rec_s     { fs_obj_hdr_t h; fs_ref_t cls; fs_ref_t state; } fs_rec_t;
enum {                       /* RECORD flavors (aux)                      */
    FS_REC_FIELDS = 1, FS_REC_TUPLE = 2, FS_REC_MEMBER = 3, FS_REC_FLAG = 4, FS_REC_VALUE = 5,
    FS_REC__MAX = 5
};
typedef struct fs_buf_s {    /* BUFFER                                    */
    fs_obj_hdr_t h;          /* aux: FS_BUF_*; n: ndim                    */
    uint64_t nbytes;
    uint32_t itemsize;
    uint32_t data_off;       /* from the object's start                   */
    char     format[16];     /* NUL-terminated, NUL-padded                */
    uint64_t shape[];        /* [ndim]                                    */
} fs_buf_t;
enum { FS_BUF_ARRAY = 1, FS_BUF_MEMORYVIEW = 2, FS_BUF_NDARRAY = 3, FS_BUF__MAX = 3 };
#define FS_BUF_MAX_NDIM   64u                 /* PyBUF_MAX_NDIM            */
#define FS_BUF_FORMAT_MAX 16u                 /* format bytes, NUL included */
typedef struct fs_xref_s    { uint32_t import_slot; uint32_t zero; fs_ref_t target; } fs_xref_t;

/* ---- inline readers (trust the image) ----------------------------------- */

static inline const fs_image_header_t *fs_image_header(const void *base)
{ return (const fs_image_header_t *)base; }

/* The tag; FS_TAG_FLOAT for every float immediate (tags 4..7). */
static inline unsigned fs_ref_tag(fs_ref_t r)
{ return (r & FS_TAG_FLOAT) ? FS_TAG_FLOAT : (unsigned)(r & FS_TAG_MASK); }

/* The float immediate for v: 1 and *out, or 0 when v needs an object. */
static inline int fs_ref_float_imm(double v, fs_ref_t *out)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    uint64_t e10 = (bits >> 62) & 1, e9 = (bits >> 61) & 1;
    if (e10 == e9)
        return 0;
    *out = (bits << 3) | FS_TAG_FLOAT | ((bits >> 63) << 1) | e10;
    return 1;
}
static inline double fs_ref_float(fs_ref_t r)
{
    uint64_t s = (r >> 1) & 1, e10 = r & 1;
    uint64_t bits = (r >> 3) | (s << 63) | (e10 << 62) | ((e10 ^ 1) << 61);
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

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
    default:           return FS_KIND_FLOAT;    /* FS_TAG_FLOAT */
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

/* Length (or count) of a STR, BYTES, BYTEARRAY, TUPLE or LIST, and where
** its body (after the long length) starts. */
static inline uint64_t fs_obj_len(const fs_obj_hdr_t *h)
{
    uint64_t n;
    if (h->n != FS_N_LONG)
        return h->n;
    memcpy(&n, h + 1, sizeof n);
    return n;
}
static inline const uint8_t *fs_obj_body(const fs_obj_hdr_t *h)
{ return (const uint8_t *)(h + 1) + (h->n == FS_N_LONG ? 8 : 0); }

static inline const fs_str_t *fs_str(const void *base, fs_ref_t r)
{ return (const fs_str_t *)fs_obj(base, r); }
static inline uint64_t fs_str_len(const fs_str_t *s) { return fs_obj_len(&s->h); }
static inline unsigned fs_str_charsize(const fs_str_t *s) { return s->h.aux; }
static inline int fs_str_ascii(const fs_str_t *s) { return (s->h.flags & FS_FLAG_ASCII) != 0; }
static inline const uint8_t *fs_str_data(const fs_str_t *s)
{ return fs_obj_body(&s->h); }
/* The maxchar CPython's PyUnicode_New wants for this canonical str (any
** value of its charsize's range gives the same kind and ASCII state). */
static inline uint32_t fs_str_maxchar_class(const fs_str_t *s)
{
    unsigned cs = s->h.aux;
    return cs == 1 ? (fs_str_ascii(s) ? 127u : 255u) : cs == 2 ? 65535u : 0x10ffffu;
}

static inline const fs_bytes_t *fs_bytes(const void *base, fs_ref_t r)
{ return (const fs_bytes_t *)fs_obj(base, r); }
static inline uint64_t fs_bytes_len(const fs_bytes_t *b) { return fs_obj_len(&b->h); }
static inline const uint8_t *fs_bytes_data(const fs_bytes_t *b) { return fs_obj_body(&b->h); }

static inline uint64_t fs_bigint_nbytes(const fs_bigint_t *b) { return b->h.n; }

static inline const fs_seq_t *fs_seq(const void *base, fs_ref_t r)
{ return (const fs_seq_t *)fs_obj(base, r); }
static inline uint64_t fs_seq_count(const fs_seq_t *s) { return fs_obj_len(&s->h); }
static inline const fs_ref_t *fs_seq_items(const fs_seq_t *s)
{ return (const fs_ref_t *)(const void *)fs_obj_body(&s->h); }

/* Maps: a DICT, SET or FROZENSET; a shaped DICT reads its keys through its
** shape. */
static inline const fs_map_t *fs_map(const void *base, fs_ref_t r)
{ return (const fs_map_t *)fs_obj(base, r); }
static inline int fs_map_shaped(const fs_map_t *m) { return (m->h.flags & FS_FLAG_SHAPED) != 0; }
static inline fs_ref_t fs_map_shape(const fs_map_t *m) { return (fs_ref_t)m->h.n << 3; }
/* The map holding m's keys: m itself, or its shape. */
static inline const fs_map_t *fs_map_keyset(const void *base, const fs_map_t *m)
{
    return fs_map_shaped(m) ? fs_map(base, fs_map_shape(m)) : m;
}
static inline uint64_t fs_map_count(const void *base, const fs_map_t *m)
{ return fs_map_keyset(base, m)->h.n; }
/* Narrow references (see the header comment). */
static inline int fs_ref_fits_narrow(fs_ref_t r)
{
    if (fs_ref_tag(r) == FS_TAG_INT) {
        int64_t v = fs_ref_int_value(r);
        return v >= -(INT64_C(1) << 28) && v < (INT64_C(1) << 28);
    }
    return fs_ref_tag(r) != FS_TAG_FLOAT && r <= UINT32_MAX;
}
static inline fs_ref_t fs_ref_widen(uint32_t x)
{
    return (x & FS_TAG_MASK) == FS_TAG_INT ? (fs_ref_t)(int64_t)(int32_t)x : (fs_ref_t)x;
}
/* Entries of an unshaped map (a keyset): bytes per entry, entry e. */
static inline int fs_keyset_narrow(const fs_map_t *ks) { return (ks->h.flags & FS_FLAG_NARROW) != 0; }
static inline unsigned fs_keyset_entry_size(const fs_map_t *ks)
{ return ks->h.kind == FS_KIND_DICT && !fs_keyset_narrow(ks) ? 24u : 16u; }
static inline const uint64_t *fs_keyset_entry(const fs_map_t *ks, uint64_t e)
{ return ks->entries + e * (fs_keyset_entry_size(ks) / 8); }
static inline int64_t fs_keyset_hash(const fs_map_t *ks, uint64_t e)
{ return (int64_t)fs_keyset_entry(ks, e)[0]; }
static inline fs_ref_t fs_keyset_key(const fs_map_t *ks, uint64_t e)
{
    const uint64_t *en = fs_keyset_entry(ks, e);
    return fs_keyset_narrow(ks) ? fs_ref_widen((uint32_t)en[1]) : en[1];
}
/* Key e and its hash, of a map or (through it) its shape. */
static inline fs_ref_t fs_map_key(const void *base, const fs_map_t *m, uint64_t e)
{ return fs_keyset_key(fs_map_keyset(base, m), e); }
static inline int64_t fs_map_hash(const void *base, const fs_map_t *m, uint64_t e)
{ return fs_keyset_hash(fs_map_keyset(base, m), e); }
/* DICT value i (a set has none). */
static inline fs_ref_t fs_map_value(const fs_map_t *m, uint64_t i)
{
    if (fs_map_shaped(m)) {
        const fs_shaped_t *d = (const fs_shaped_t *)(const void *)m;
        if (m->h.flags & FS_FLAG_NARROW)
            return fs_ref_widen(((const uint32_t *)(const void *)d->values)[i]);
        return d->values[i];
    }
    const uint64_t *en = fs_keyset_entry(m, i);
    return fs_keyset_narrow(m) ? fs_ref_widen((uint32_t)(en[1] >> 32)) : en[2];
}
/* Bytes of one index slot for a map of count entries. */
#define FS_INDEX3_MAX ((UINT64_C(1) << 23) - 1)
static inline unsigned fs_index_width(uint64_t count)
{ return count <= 127 ? 1u : count <= 32767 ? 2u : count <= FS_INDEX3_MAX ? 3u : 4u; }
/* The index of an unshaped map (a keyset): right after its entries. */
static inline const void *fs_keyset_index(const fs_map_t *ks)
{ return fs_keyset_entry(ks, ks->h.n); }
static inline int64_t fs_index_slot(const void *index, unsigned width, uint64_t i)
{
    if (width == 1)
        return ((const int8_t *)index)[i];
    if (width == 2)
        return ((const int16_t *)index)[i];
    if (width == 3) {                /* three loads: the last slot ends the map */
        const uint8_t *p = (const uint8_t *)index + i * 3;
        return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                         (p[2] & 0x80 ? UINT32_C(0xff000000) : 0));
    }
    return ((const int32_t *)index)[i];
}
/* Write slot i (builders, tests). */
static inline void fs_index_put(void *index, unsigned width, uint64_t i, int64_t e)
{
    if (width == 1)
        ((int8_t *)index)[i] = (int8_t)e;
    else if (width == 2)
        ((int16_t *)index)[i] = (int16_t)e;
    else if (width == 3) {
        uint8_t *p = (uint8_t *)index + i * 3;
        p[0] = (uint8_t)e;
        p[1] = (uint8_t)(e >> 8);
        p[2] = (uint8_t)(e >> 16);
    }
    else
        ((int32_t *)index)[i] = (int32_t)e;
}

/* RECORD and BUFFER readers. */
static inline const fs_rec_t *fs_rec(const void *base, fs_ref_t r)
{ return (const fs_rec_t *)fs_obj(base, r); }
static inline const fs_buf_t *fs_buf(const void *base, fs_ref_t r)
{ return (const fs_buf_t *)fs_obj(base, r); }
static inline const uint8_t *fs_buf_data(const fs_buf_t *b)
{ return (const uint8_t *)b + b->data_off; }
/* The item size of a buffer format frozenshare stores (numbers and bool,
** native '@' or none, or '<' '>' '=' '!' with standard sizes; complex as
** 'Z' + f/d/g; array's 'u' and 'w'), or 0 for any other format. */
uint32_t fs_buf_format_size(const char *format);
/* 1 if "module:qualname" (n bytes) names a class whose records are built
** as cls(*state) (FS_REC_VALUE): the stdlib's immutable values, a fixed
** list, since building one runs its constructor. */
int fs_rec_value_class(const char *name, size_t n);

/* Equality callback for lookups: 1 equal, 0 not equal, -1 error. */
typedef int (*fs_eq_fn)(void *ctx, const void *base, fs_ref_t stored_key);

/* Find the entry whose key equals the probe (same hash, then eq()).
** Returns the entry number (>= 0), -1 when absent, -2 when eq() failed. */
static inline int64_t fs_map_find(const void *base, const fs_map_t *m,
                                  int64_t hash, fs_eq_fn eq, void *ctx)
{
    const fs_map_t *ks = fs_map_keyset(base, m);
    uint64_t count = ks->h.n;
    if (ks->index_size == 0) {                   /* small: scan the hashes */
        for (uint64_t e = 0; e < count; e++) {
            if (fs_keyset_hash(ks, e) == hash) {
                int r = eq(ctx, base, fs_keyset_key(ks, e));
                if (r != 0)
                    return r > 0 ? (int64_t)e : -2;
            }
        }
        return -1;
    }
    const void *index = fs_keyset_index(ks);
    unsigned width = fs_index_width(count);
    uint64_t mask = (uint64_t)ks->index_size - 1, perturb = (uint64_t)hash;
    uint64_t i = (uint64_t)hash & mask;
    for (uint64_t probes = 0; probes < ks->index_size; probes++) {
        int64_t e = fs_index_slot(index, width, i);
        if (e < 0)
            return -1;
        if (fs_keyset_hash(ks, e) == hash) {
            int r = eq(ctx, base, fs_keyset_key(ks, e));
            if (r != 0)
                return r > 0 ? e : -2;
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
    return fs_str_charsize(s) == charsize && fs_str_len(s) == length &&
           memcmp(fs_str_data(s), data, (size_t)length * charsize) == 0;
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
/* The largest code point of length characters of charsize (1/2/4) bytes. */
uint32_t fs_str_maxchar(unsigned charsize, uint64_t length, const void *data);
/* A code point of the same class as the largest (< 128, < 256, < 65536 or
** itself): what canonical form and FS_FLAG_ASCII depend on, found faster
** (for charsizes 1 and 2 the OR of the code points, a word at a time). */
uint32_t fs_str_scan_class(unsigned charsize, uint64_t length, const void *data);
/* Canonical str: charsize 1/2/4 must be the smallest that holds maxchar,
** and maxchar the true maximum of the data (checked: FS_EINVAL). Pass
** FS_MAXCHAR_SCAN to have it computed instead (one scan of the data, not
** two). hash: any hash of the str that equal strs share (CPython's), used
** to find an equal str already in the image, which is then not stored
** again (*out is the earlier one); it is not stored. */
#define FS_MAXCHAR_SCAN UINT32_MAX
int fs_build_str(fs_builder_t *b, unsigned charsize, uint64_t length,
                 uint32_t maxchar, int64_t hash, const void *data, fs_ref_t *out);
/* Value dedup on (the default) or off: while off, str, bytes and floats
** are neither looked up nor remembered (the keys of a big dict, distinct by
** definition, would only fill the table). */
void fs_builder_dedup(fs_builder_t *b, int on);
/* A hint: a str of this charsize and hash is about to be built; start
** loading the dedup table's slot for it (a freeze of unique strings spends
** a cache miss each there; hinting a record's values first overlaps them). */
void fs_builder_prefetch_str(const fs_builder_t *b, unsigned charsize, int64_t hash);
/* BYTES are deduplicated like str (up to FS_DEDUP_BYTES_MAX bytes: longer
** blobs would pay a hash of their whole length); BYTEARRAY never is. */
#define FS_DEDUP_BYTES_MAX 4096u
int fs_build_bytes(fs_builder_t *b, int kind /* BYTES|BYTEARRAY */,
                   const void *data, uint64_t length, fs_ref_t *out);
/* Tuple or list of count items, all None until set. */
int  fs_build_seq(fs_builder_t *b, int kind, uint64_t count, fs_ref_t *out);
void fs_build_seq_set(fs_builder_t *b, fs_ref_t seq, uint64_t i, fs_ref_t item);
/* Dict, set or frozenset of exactly count entries whose keys are not known
** yet: set each entry once with fs_build_map_set (in insertion order), then
** fs_build_map_finish builds the index. flags: FS_FLAG_FROZENDICT for
** dicts. Never shaped. */
int  fs_build_map(fs_builder_t *b, int kind, unsigned flags, uint64_t count, fs_ref_t *out);
void fs_build_map_set(fs_builder_t *b, fs_ref_t map, uint64_t i, int64_t hash,
                      fs_ref_t key, fs_ref_t value);
void fs_build_map_finish(fs_builder_t *b, fs_ref_t map);
/* A dict of count entries whose hashes and keys are known now (copied; the
** index is built here): shaped when an earlier dict of this image has the
** same key references in the same order, else unshaped (and a shape for
** later ones). Its values are None until fs_build_dict_value sets each. */
int  fs_build_dict(fs_builder_t *b, unsigned flags, uint64_t count,
                   const int64_t *hashes, const fs_ref_t *keys, fs_ref_t *out);
void fs_build_dict_value(fs_builder_t *b, fs_ref_t dict, uint64_t i, fs_ref_t value);
/* A complete dict: hashes, keys and values all known (values that cannot
** refer back to it: scalars). As fs_build_dict, and the result is narrow
** (FS_FLAG_NARROW) when every value (shaped) or every key and value
** (unshaped) fits. _like: with the keys of `dict`, as fs_build_dict_shape. */
int  fs_build_record(fs_builder_t *b, unsigned flags, uint64_t count, const int64_t *hashes,
                     const fs_ref_t *keys, const fs_ref_t *values, fs_ref_t *out);
int  fs_build_record_like(fs_builder_t *b, unsigned flags, fs_ref_t dict,
                          const fs_ref_t *values, fs_ref_t *out);
/* A dict with the keys of `dict` (an earlier result of fs_build_dict, not
** empty): shaped over the same shape, values None. For a caller that knows
** the keys are the same (the same key objects as the last dict), without
** hashing them again. */
int  fs_build_dict_shape(fs_builder_t *b, unsigned flags, fs_ref_t dict, fs_ref_t *out);
/* A record of flavor FS_REC_*, cls and state None until fs_build_rec_set
** names them (once, before the image is finished): allocated first, so that
** its state may refer back to it. */
int  fs_build_rec(fs_builder_t *b, unsigned flavor, fs_ref_t *out);
void fs_build_rec_set(fs_builder_t *b, fs_ref_t rec, fs_ref_t cls, fs_ref_t state);
/* A typed buffer: format (fs_buf_format_size(format) == itemsize, else
** FS_EINVAL), ndim <= FS_BUF_MAX_NDIM dimensions of shape, nbytes of data
** copied in (nbytes = itemsize * prod(shape), else FS_EINVAL). */
int  fs_build_buffer(fs_builder_t *b, unsigned source, const char *format, uint32_t itemsize,
                     unsigned ndim, const uint64_t *shape, const void *data, uint64_t nbytes,
                     fs_ref_t *out);
/* A reference to `target` inside the image of import slot `slot` (slots are
** numbered by the caller, 0..nimports-1, and named at fs_builder_finish).
** Repeated (slot, target) pairs share one xref entry. */
int fs_build_xref(fs_builder_t *b, uint32_t slot, fs_ref_t target, fs_ref_t *out);

/* Builder statistics (for tests and fs.stats()). */
typedef struct fs_build_stats_s {
    uint64_t dedup_hits;     /* str/bytes stored once, referenced again   */
    uint64_t shapes;         /* unshaped dicts that became a shape        */
    uint64_t shaped;         /* dicts stored as values + a shape          */
} fs_build_stats_t;
void fs_builder_stats(const fs_builder_t *b, fs_build_stats_t *out);

/* Write the import and xref tables and the header, and shrink the image to
** fit. Afterwards only fs_builder_detach / fs_builder_destroy are allowed. */
int fs_builder_finish(fs_builder_t *b, fs_ref_t root, const uint64_t *import_ids,
                      uint32_t nimports, int64_t hash_check);
/* Take the finished image out of the builder (which is then empty):
** *base and *alloc_size (whole pages, what fs_arena_seal wants). */
void fs_builder_detach(fs_builder_t *b, void **base, size_t *alloc_size);

/* ---- portable images (portable.c) --------------------------------------- */
/* K of a str (canonical form: charsize 1, 2 or 4) and of a bytes; never -1. */
int64_t fs_keyed_str_hash(uint64_t seed, unsigned charsize, uint64_t length, const void *data);
int64_t fs_keyed_bytes_hash(uint64_t seed, uint64_t length, const void *data);
/* K of a tuple: acc = fs_keyed_tuple_begin(seed), acc = fs_keyed_tuple_add(acc,
** K(item)) for each item in order, fs_keyed_tuple_end(acc, count). Of a
** frozenset (members) or frozendict (fs_keyed_tuple of each (key, value)):
** sum = 0, sum += fs_keyed_set_member(K(member)) in any order,
** fs_keyed_set_end(seed, sum, count). */
/* The splitmix64 finalizer (also the bindings' hash tables' mixer). Part
** of K's definition: never change it. */
static inline uint64_t fs_keyed_mix(uint64_t x)
{
    x ^= x >> 30; x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27; x *= UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}
static inline uint64_t fs_keyed_tuple_begin(uint64_t seed)
{ return fs_keyed_mix(seed ^ UINT64_C(0x7475706c654b6579)); }
static inline uint64_t fs_keyed_tuple_add(uint64_t acc, int64_t item)
{
    acc += (uint64_t)item * UINT64_C(0xC2B2AE3D27D4EB4F);
    acc = (acc << 31) | (acc >> 33);
    return acc * UINT64_C(0x9E3779B185EBCA87);
}
static inline int64_t fs_keyed_tuple_end(uint64_t acc, uint64_t count)
{
    int64_t h = (int64_t)fs_keyed_mix(acc ^ count);
    return h == -1 ? -2 : h;
}
static inline uint64_t fs_keyed_set_member(int64_t member)
{ return fs_keyed_mix((uint64_t)member ^ UINT64_C(0x5a5a5a5a5a5a5a5a)); }
static inline int64_t fs_keyed_set_end(uint64_t seed, uint64_t sum, uint64_t count)
{
    int64_t h = (int64_t)fs_keyed_mix(sum ^ fs_keyed_mix(seed ^ count ^ UINT64_C(0x7365744b6579)));
    return h == -1 ? -2 : h;
}
/* The seed of a FS_HASH_KEYED image. */
static inline uint64_t fs_image_seed(const fs_image_header_t *h)
{
    uint64_t s = 0;
    for (unsigned i = 0; i < 8; i++)
        s |= (uint64_t)h->hash_key[i] << (8 * i);
    return s;
}
/* FS_CHECKSUM_XXH3 of the first size bytes of image (size >= the header). */
uint64_t fs_image_checksum(const void *image, size_t size);
/* Bytes from the object at off to the next object (trusted image). */
uint64_t fs_obj_size(const void *base, uint64_t off);
/* Rebuild the index of unshaped map m from its entries' hashes (builders). */
void fs_map_reindex(fs_map_t *m);
/* K of a tuple, frozenset or frozendict key of image: *out, FS_OK or an error. */
typedef int (*fs_rekey_fn)(void *ctx, const void *image, fs_ref_t key, int64_t *out);
/* Move a writable copy of a trusted image that imports nothing into
** FS_HASH_KEYED with seed: every map entry's hash becomes K of its key, every
** index is rebuilt, the header names the domain and seed and carries an
** FS_CHECKSUM_XXH3 checksum. FS_OK; FS_EINVAL for an image with imports; or
** composite's error (the copy is then half rewritten: discard it). */
int fs_image_rekey(void *image, uint64_t seed, fs_rekey_fn composite, void *ctx);

/* ---- validator ---------------------------------------------------------- */
/* Prove that an untrusted image is well formed: header fields, every object
** in bounds and of a known kind, every reference pointing at an object start,
** an immediate, a constant or an existing xref; xref slots < nimports;
** strings canonical; map entries and index consistent; shapes (an unshaped
** DICT of the same count); FS_FLAG_SHARED at least where an object has two
** or more references (a spurious flag is harmless); object_count right.
** Never reads outside [image, image + size). Iterative (no recursion), work
** linear in size. Returns FS_OK, FS_ECORRUPT (why: *why, a static string,
** when why is not NULL), FS_EVERSION (another format version or platform,
** named in *why), or FS_ENOMEM (it needs about size/16 bytes, returned to
** the system before it returns). */
int fs_image_check(const void *image, size_t size);
int fs_image_check_why(const void *image, size_t size, const char **why);
/* Pass 1 alone (header, layout; not the checksum): what a reader needs to
** trust before it uses the header of an image vouched for (verify=False). */
int fs_image_check_header(const void *image, size_t size, const char **why);

#ifdef __cplusplus
}
#endif
#endif /* FS_IMAGE_H */
