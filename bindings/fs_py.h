/*
** fs_py.h -- private header of the CPython bindings (frozenshare._frozenshare).
**
** This file is private to bindings/: nothing outside includes it. It is the
** only place where CPython objects meet the plain C layers (arena/, refcount/).
**
** The files of bindings/ form layers; each calls only the layers below it.
** A lower layer that needs a higher one's service gets
** it handed down at init: reading makes proxies through the type table
** st->types[] that module.c fills in.
**
**   module.c  xid.c              module functions, init, XID registration
**   map.c seq.c set.c bytes.c array.c  the proxy families (never call each other)
**   proxy.c                      shared by the proxies: common methods, repr
**                                guard, .view(), entry iterator, set-likes
**   portable.c  json.c           dumps/loads/load, pickling: images that
**                                leave or enter the process; JSON in, out
**   freeze.c  thaw.c             graph -> region, region -> plain objects
**   read.c  record.c             scalars, proxies, records, lookups in an image
**   state.c  table.c             handles, FS_E* -> exceptions, hash tables
**   ------------------------------------------------------------------------
**   refcount/  arena/            plain C (no Python.h)
**
**   interpreter A                           process-wide (atomics, one mutex)
**   +-------------------------------+
**   | module state (fs_state)       |        fs_region_t  (control block)
**   |   handles: region -> handle --+---+    +---------------------+
**   |   types[], hash_check         |   |    | refcnt (atomic)     |
**   +-------------------------------+   |    | base -> image (RO)  |
**   proxy --(strong)--> handle <--------+    +---------------------+
**   proxy --(strong)--> handle ---- owns ONE fs_region_acquire ---^
**
** Biased counting (DESIGN.md, "Refcounting"): an interpreter holds at most one
** handle per region; the handle owns exactly one count of the region (I2).
** Proxies, iterators, views and exported buffers hold ordinary Python
** references to the handle, so making and dropping them costs no atomic
** operation. A handle removes itself from its state's table when it dies.
** A handle holds a strong reference to its module, so the module state (and
** its table) outlives every handle of the interpreter.
**
** Proxies hold the handle and an fs_ref_t (offset) and read the image
** through handle->base (I3, I1). Only exported buffers (FrozenBytes, the
** owner behind .view()) hand out raw pointers into an image: a sealed image
** never moves and lives as long as the handle they hold (I1, I2).
** No PyObject is ever stored in an image (I4); between interpreters only the
** region count is shared (I5, see xid.c).
*/
#ifndef FS_PY_H
#define FS_PY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>

#include "fs_arena.h"
#include "fs_image.h"
#include "fs_region.h"

#if PY_VERSION_HEX < 0x030C0000
#  error "frozenshare needs CPython 3.12 or newer (per-interpreter GIL)"
#endif

/* Cast a METH_VARARGS|METH_KEYWORDS or METH_FASTCALL function to PyCFunction
** without -Wcast-function-type noise (the ABI is what matters). */
#define FS_METH(f) ((PyCFunction)(void (*)(void))(f))

/* ---- a small open-addressing table ------------------------------------- */
/* Keys are (k1, k2) with k1 != 0; values are 64 bits. Linear probing with
** backward-shift deletion (no tombstones). Storage through fs__calloc, so
** allocation-failure tests reach it. Used for: the per-interpreter handle
** table (region -> handle, borrowed), freeze's identity memo (object ->
** fs_ref_t) and import slots (region -> slot), thaw's memo ((region, ref) ->
** object). One thread at a time: a table belongs to one interpreter (its
** GIL), or to a lock (FS_LOCK) on free-threaded builds; the _shared pair
** below is the exception. */
typedef struct fs__slot_s {
    uintptr_t k1;            /* 0 = empty                                 */
    uint64_t  k2;
    uint64_t  v;
} fs__slot_t;

typedef struct fs__tab_s {
    fs__slot_t *slots;       /* NULL until the first put                  */
    size_t      mask;        /* capacity - 1 (capacity a power of two)    */
    size_t      used;        /* live entries                              */
    void       *retired;     /* _put_shared: grown-out arrays, kept to fini */
} fs__tab_t;

uint64_t *fs__tab_get(const fs__tab_t *t, uintptr_t k1, uint64_t k2);
int       fs__tab_put(fs__tab_t *t, uintptr_t k1, uint64_t k2, uint64_t v); /* FS_OK / FS_ENOMEM */
int       fs__tab_del(fs__tab_t *t, uintptr_t k1, uint64_t k2);            /* 1 removed, 0 absent */
void      fs__tab_fini(fs__tab_t *t);
/* A cache read by many threads at once (free-threaded builds): entries are
** only ever added (never changed or removed before fs__tab_fini), writers
** hold a lock and use _put_shared, readers take none and use _get_shared,
** which returns the value (0 when absent: no value stored is 0). Grown
** slot arrays are kept until fini, so a reader never reads freed memory.
** With a GIL these are fs__tab_get and fs__tab_put. */
uint64_t  fs__tab_get_shared(const fs__tab_t *t, uintptr_t k1, uint64_t k2);
int       fs__tab_put_shared(fs__tab_t *t, uintptr_t k1, uint64_t k2, uint64_t v);

/* ---- free-threaded builds (DESIGN.md, "Threads and builds") -------------
** On a free-threaded CPython (Py_GIL_DISABLED, 3.13t+) threads of one
** interpreter run the bindings at the same time; with a GIL they take
** turns, and everything below costs what it did before (no-ops, plain
** increments). What a free-threaded build needs, and gets:
**   st->mu      guards the handle table (state.c);
**   h->mu       guards the writers of a handle's lazy parts: the key cache,
**               the record classes, the shareable copy (readers of the two
**               caches take no lock: fs__tab_get_shared);
**   fs__publish lazily made module attributes, set once by compare-and-swap;
**   fs__counter_t  statistics bumped by many threads, sharded per thread;
**   freeze      reads a private copy of each list, dict and set of the
**               caller's and holds an export of each bytearray (freeze.c);
**   borrowed    items of caller-owned containers are taken as strong
**               references (fs__dict_get_ref, PyList_GetItemRef);
**   iterators   advance by an atomic index: each element goes to one thread;
**   repr        its cycle guard is per thread (proxy.c);
**   no proxy free list and no str cache (mimalloc's per-thread heaps make
**               them moot; a shared slot would need a lock per read).
** The region counts, the registry and the arena are process-wide and were
** thread-safe already (subinterpreters run in parallel with their own GILs). */
#ifdef Py_GIL_DISABLED
#  define FS_LOCK(m)   PyMutex_Lock(m)
#  define FS_UNLOCK(m) PyMutex_Unlock(m)
#  define FS_COUNTER_SHARDS 16
typedef struct fs__counter_s {
    struct { uint64_t n; char pad[56]; } shard[FS_COUNTER_SHARDS];  /* a line each */
} fs__counter_t;
static inline void fs__count(fs__counter_t *c, uint64_t n)
{
    uint64_t i = fs_keyed_mix((uint64_t)_Py_ThreadId()) & (FS_COUNTER_SHARDS - 1);
    __atomic_fetch_add(&c->shard[i].n, n, __ATOMIC_RELAXED);
}
static inline uint64_t fs__count_total(const fs__counter_t *c)
{
    uint64_t sum = 0;
    for (int i = 0; i < FS_COUNTER_SHARDS; i++)
        sum += __atomic_load_n(&c->shard[i].n, __ATOMIC_RELAXED);
    return sum;
}
#else
#  define FS_LOCK(m)   ((void)0)
#  define FS_UNLOCK(m) ((void)0)
typedef struct fs__counter_s { uint64_t n; } fs__counter_t;
static inline void fs__count(fs__counter_t *c, uint64_t n) { c->n += n; }
static inline uint64_t fs__count_total(const fs__counter_t *c) { return c->n; }
#endif
#ifndef Py_BEGIN_CRITICAL_SECTION            /* 3.12: no free-threaded build */
#  define Py_BEGIN_CRITICAL_SECTION(op) {
#  define Py_END_CRITICAL_SECTION() }
#endif

/* Sets *slot (a lazily made module attribute) to o (a new reference, may
** be NULL) unless another thread set it first, whose value then wins (o is
** dropped). Borrowed: the value in *slot; NULL when o was NULL and the slot
** is empty (the caller's error stands). */
static inline PyObject *fs__publish(PyObject **slot, PyObject *o)
{
    PyObject *expected = NULL;
    if (o == NULL)
        return __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (__atomic_compare_exchange_n(slot, &expected, o, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return o;
    Py_DECREF(o);
    return expected;
}
/* Borrowed: *slot as fs__publish left it, or NULL. */
static inline PyObject *fs__published(PyObject *const *slot)
{
    return __atomic_load_n(slot, __ATOMIC_ACQUIRE);
}

/* d[k] as a strong reference: 1 found (*out new), 0 absent, -1 error
** (PyDict_GetItemRef, 3.13+: safe while another thread changes d). */
static inline int fs__dict_get_ref(PyObject *d, PyObject *k, PyObject **out)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyDict_GetItemRef(d, k, out);
#else
    *out = Py_XNewRef(PyDict_GetItemWithError(d, k));
    return *out != NULL ? 1 : PyErr_Occurred() ? -1 : 0;
#endif
}

/* ---- per-interpreter module state --------------------------------------- */
enum {                       /* proxy types, also the XID type codes     */
    FS_PT_MAP = 0,           /* FrozenMap    <- dict (and frozendict)     */
    FS_PT_LIST,              /* FrozenList   <- list                      */
    FS_PT_TUPLE,             /* FrozenTuple  <- tuple                     */
    FS_PT_SET,               /* FrozenSet    <- set, frozenset            */
    FS_PT_BYTES,             /* FrozenBytes  <- root bytes, bytearray     */
    FS_PT_VALUE,             /* FrozenValue  <- any other root scalar (and
                                                record)                   */
    FS_PT_ARRAY,             /* FrozenArray  <- array.array, memoryview,
                                                numpy.ndarray             */
    FS_PT__COUNT
};

typedef struct fs_state_s {
    PyTypeObject *types[FS_PT__COUNT];   /* the proxy types (strong)      */
    PyTypeObject *handle_type;           /* frozenshare._Handle           */
    PyTypeObject *seqiter_type;          /* iterator over FrozenList/Tuple */
    PyTypeObject *mapiter_type;          /* keys/values/items/set iterator */
    PyTypeObject *keys_type;             /* FrozenMap.keys() view         */
    PyTypeObject *values_type;           /* FrozenMap.values() view       */
    PyTypeObject *items_type;            /* FrozenMap.items() view        */
    PyTypeObject *bufowner_type;         /* owner of .view() memoryviews  */
    PyObject     *module;                /* borrowed: the module owning us */
    PyObject     *mapping_abc;           /* collections.abc.Mapping, lazy */
    PyObject     *image_error;           /* frozenshare.ImageError        */
    PyObject     *enum_type;             /* enum.EnumMeta, lazy           */
    PyObject     *registry;              /* fs.register: class -> fields  */
    PyObject     *registered_names;      /* "module:qualname" -> class    */
    PyObject     *str_dict;              /* "__dict__", interned          */
    Py_hash_t     hash_check;            /* hash("frozenshare") here      */
    fs__tab_t     handles;               /* region -> the handle's self_ref */
    int           xid_registered;        /* proxy types registered for XID */
    uint64_t      keycache_shapes;       /* shapes cached, all handles    */
    uint64_t      keycache_keys;         /* keys in them (both atomic)    */
    fs__counter_t keycache_hits;         /* keys served from the cache    */
    fs__counter_t lookups_scanned;       /* lookups that could not hash   */
#ifdef Py_GIL_DISABLED
    PyMutex       mu;                    /* guards handles                */
#endif
    struct fs_proxy_s *proxy_free;       /* dead proxies kept for reuse,
                                            chained through their h      */
    int           nproxy_free;           /* <= FS_PROXY_FREE_MAX          */
#ifndef Py_GIL_DISABLED
    struct fs_strslot_s *strcache;       /* FS_STRCACHE_SLOTS, or NULL     */
    uint64_t      strcache_entries;      /* slots in use                  */
    uint64_t      strcache_hits;         /* reads served from it          */
    uint32_t      strcache_reads;        /* short strs read before it existed */
#endif
} fs_state;

/* Proxies kept per interpreter for reuse: making the proxy of a record read
** in a loop then costs no allocation (its memory is the last one's). Owned
** by the interpreter's GIL; none on free-threaded builds. */
#define FS_PROXY_FREE_MAX 64

/* Short str values read through proxies, kept per interpreter (read.c): a
** record's field or a map's value read in a loop then returns the object
** the last read made, as a dict hands out the one it holds, instead of
** allocating, copying and freeing a str each time; a hit does not touch
** the image. Direct-mapped on (handle, ref), so bounded: FS_STRCACHE_SLOTS
** strs of <= FS_STRCACHE_MAXLEN code points (<= ~75 KB of ASCII, ~190 KB of
** UCS-4) and the 40 KB table, made at the FS_STRCACHE_AFTER'th short str
** read: an interpreter that reads a few config values pays nothing (made
** at the first, the table came with a one-off 3 MB step of RSS in some
** runs of bench_memory.py). A str takes a slot on its second miss in a row
** there, so a pass over many distinct strs (a tuple's iteration) evicts
** nothing: an eviction frees a str gone cold, which cost a skewed
** 50k-token column more than its hits saved. A handle's entries go with it
** (fs__strcache_drop, state.c), before its address can name another
** region. Thaw does not use it (it makes the caller's own objects). GIL
** builds only (see "free-threaded builds"). */
#define FS_STRCACHE_BITS   10
#define FS_STRCACHE_SLOTS  (1u << FS_STRCACHE_BITS)
#define FS_STRCACHE_MAXLEN 32
#define FS_STRCACHE_AFTER  256
typedef struct fs_strslot_s {
    const struct fs_handle_s *h;   /* identity only; NULL: a free slot    */
    uint64_t   ref;                /* the str's reference in h's region   */
    PyObject  *s;                  /* strong                              */
    const struct fs_handle_s *ch;  /* the candidate: the last miss here, */
    uint64_t   cref;               /* by identity (one left by a dead
                                      handle is harmless: the str a slot
                                      takes is always the reader's own)   */
} fs_strslot;

extern PyModuleDef fs__module_def;                 /* module.c */

/* ==== state.c: handles and errors ========================================= */
typedef struct fs_handle_s {
    PyObject_HEAD
    fs_region_t   *region;   /* owns one count (I2), released in dealloc  */
    const uint8_t *base;     /* fs_region_base(region): sealed image (I1) */
    PyObject      *module;   /* strong: keeps st (and its table) alive    */
    fs_state      *st;       /* borrowed: PyModule_GetState(module)       */
    int            trust_hash; /* FS_HASH_PROCESS, hash_check == ours:
                                  a probe's own hash finds its entry       */
    int            keyed;    /* FS_HASH_KEYED: probes hashed with seed    */
    uint64_t       seed;
    fs_region_t   *shared;   /* BUFFER region: its ARENA copy, made at the
                                first hand-off out of this interpreter     */
    fs__tab_t      keycache; /* shape offset -> tuple of its keys (strong)
                                | 1, or 1: not cacheable (_shared, read.c) */
    fs__tab_t      classes;  /* record class name ref -> class (strong) |
                                FS_CLASS_DICT_OK (record.c's flag); _shared */
    PyObject      *allow;    /* foreign image: classes= of its load, a dict
                                "module:qualname" -> class; Py_True: any
                                class by name (_unpickle); or NULL        */
    PyObject      *weaklist; /* weak references to the handle            */
    PyObject      *self_ref; /* strong: a weak reference to the handle,
                                what st->handles maps the region to       */
#ifdef Py_GIL_DISABLED
    PyMutex        mu;       /* guards the writers of keycache, classes,
                                shared                                     */
#else
    uint32_t       nstrcache; /* st->strcache slots naming this handle    */
#endif
} fs_handle;

/* An h->classes entry: the class (strong) in the bits above the lowest,
** which record.c sets when such records get their instance dict at once. */
#define FS_CLASS_DICT_OK UINT64_C(1)
static inline PyObject *fs__class_of_entry(uint64_t v)
{ return (PyObject *)(uintptr_t)(v & ~FS_CLASS_DICT_OK); }

/* The region to hand out of this interpreter (XID, publish, an import of a
** freeze) for h: h's own, or, when h lends a Python buffer of this
** interpreter (FS_BACKING_BUFFER: only this interpreter may let go of it), a
** sealed copy made once (same offsets: every reference into h is valid in
** it). Borrowed (kept by h); NULL with an exception on failure. */
fs_region_t *fs__shareable(fs_handle *h);

/* The key cache: a shape's keys are materialized once per interpreter and
** region, then reused by keys(), items() and iteration of every dict of
** that shape. Bounded (FS_KEYCACHE_SHAPES per handle, shapes of at most
** FS_KEYCACHE_KEYS scalar keys), dropped with the handle (its region's last
** proxy here), counted in fs.stats(). A cached tuple holds no proxy, so no
** reference cycle through the handle. */
#define FS_KEYCACHE_SHAPES 256
#define FS_KEYCACHE_KEYS   64


/* Handle of region r in this interpreter, created if needed. New reference.
** _owned: the caller passes one count of r it owns (consumed in all cases:
** kept by a new handle, released when a handle already exists or on error).
** _borrowed: r stays the caller's; a new handle acquires its own count. */
fs_handle *fs__handle_owned(fs_state *st, fs_region_t *r);
fs_handle *fs__handle_borrowed(fs_state *st, fs_region_t *r);

#ifndef Py_GIL_DISABLED
/* Empties st->strcache's slots of h (h NULL: all of them, and frees the
** table). Called by a handle's dealloc and the module's clear. */
void fs__strcache_drop(fs_state *st, const fs_handle *h);
#endif
extern PyType_Spec fs__handle_spec;      /* frozenshare._Handle */

/* THE place mapping FS_E* codes to Python exceptions. Returns NULL.
** key (borrowed, may be NULL) becomes the KeyError's argument. */
PyObject *fs__raise(int err, PyObject *key);
/* frozenshare.ImageError for FS_ECORRUPT / FS_EVERSION (why: what is wrong,
** where: a file name or NULL); other codes as fs__raise. Returns NULL. */
PyObject *fs__raise_image(fs_state *st, int err, const char *why, PyObject *where);

/* ==== read.c: reading an image ============================================= */

typedef struct fs_proxy_s {
    PyObject_HEAD
    fs_handle *h;            /* strong                                    */
    fs_ref_t   ref;          /* tag OBJ in h's image; FrozenValue: any    */
    Py_hash_t  hash;         /* cached hash, -1 = not yet computed        */
} fs_proxy;

#define FS_PROXY(o) ((fs_proxy *)(o))

/* The position an iterator's next() takes from *i, stepping it: on a
** free-threaded build by one atomic step, so each position goes to one
** thread when threads share the iterator (*i may then run past the end;
** readers clamp). An iterator there keeps its proxy until it dies: another
** thread may still be reading through it. */
static inline Py_ssize_t fs__iter_step(Py_ssize_t *i, int reverse)
{
#ifdef Py_GIL_DISABLED
    return __atomic_fetch_add(i, reverse ? -1 : 1, __ATOMIC_RELAXED);
#else
    Py_ssize_t at = *i;
    *i += reverse ? -1 : 1;
    return at;
#endif
}
static inline Py_ssize_t fs__iter_at(const Py_ssize_t *i)
{ return __atomic_load_n(i, __ATOMIC_RELAXED); }

/* A proxy's cached hash: threads may compute it at once (the same value),
** so it is read and kept with relaxed atomics (plain moves on x86-64). */
static inline Py_hash_t fs__hash_cached(const fs_proxy *p)
{ return __atomic_load_n(&p->hash, __ATOMIC_RELAXED); }
static inline Py_hash_t fs__hash_keep(fs_proxy *p, Py_hash_t h)   /* returns h */
{ __atomic_store_n(&p->hash, h, __ATOMIC_RELAXED); return h; }

/* 1 if o is one of this state's proxy types (exact type; they are final). */
static inline int fs__is_proxy(const fs_state *st, PyObject *o)
{
    PyTypeObject *tp = Py_TYPE(o);
    for (int i = 0; i < FS_PT__COUNT; i++)
        if (tp == st->types[i])
            return 1;
    return 0;
}

/* Resolve cross-region references: follows XREF tags through the import
** tables until ref denotes an object, an immediate or a constant of *reg.
** The regions are borrowed: kept alive by the starting region (I2, I6). */
static inline void fs__resolve(fs_region_t **reg, const uint8_t **base, fs_ref_t *ref)
{
    while (fs_ref_tag(*ref) == FS_TAG_XREF) {
        const fs_xref_t *x = fs_xref(*base, *ref);
        *reg = fs_region_import(*reg, x->import_slot);
        *base = fs_region_base(*reg);
        *ref = x->target;
    }
}

/* The proxy type for a resolved reference at the root of a freeze (or an
** XID hand-off): containers by kind, bytes -> FrozenBytes, else FrozenValue. */
int fs__root_type_code(const uint8_t *base, fs_ref_t ref);

/* New reference: a proxy of type code tc over (h, ref); h is borrowed. */
PyObject *fs__proxy_new(fs_handle *h, int tc, fs_ref_t ref);
/* New reference: the proxy a freeze, lookup or load hands out for (r, ref),
** its type by fs__root_type_code, over this interpreter's handle of r. The
** caller's count of r is consumed in every case. */
PyObject *fs__root_proxy_owned(fs_state *st, fs_region_t *r, fs_ref_t ref);

/* New reference: the value at ref in h's image, as seen from Python: scalars
** materialized (bytearray as bytes), containers as proxies (of the imported
** region's handle when ref is an XREF). h is borrowed. */
PyObject *fs__read(fs_handle *h, fs_ref_t ref);

/* The process's hash("frozenshare") (the same in every interpreter: one
** hash secret per process), set at module exec; -1 until then. */
extern int64_t fs__process_hash_check;

/* K (fs_image.h, "Hash domains") of o (borrowed) under seed: 1 with *out,
** 0 when o is of no kind an image key can have (the caller scans), -1 on
** error. */
int fs__keyed_hash(PyObject *o, uint64_t seed, int64_t *out);

/* 1 if the image at base stores hashes of this process (its str hashes are
** CPython's own here). */
static inline int fs__same_hashes(const uint8_t *base)
{
    int64_t hc = fs_image_header(base)->hash_check;
    return hc == fs__process_hash_check && hc != -1;
}

/* Give a str just materialized from a key of the map at base the hash the
** map stores for it (CPython's own in this process), so a dict it goes into
** does not hash it again. o borrowed; anything but an exact str with no
** hash yet is left alone. */
static inline void fs__key_hash(PyObject *o, const uint8_t *base, int64_t hash)
{
    if (PyUnicode_CheckExact(o) && ((PyASCIIObject *)o)->hash == -1 && fs__same_hashes(base))
        ((PyASCIIObject *)o)->hash = (Py_hash_t)hash;
}

/* New reference: a scalar (kind is not a container) materialized from base.
** as_thaw: BYTEARRAY gives a bytearray (thaw) rather than bytes (reading). */
PyObject *fs__scalar(const uint8_t *base, fs_ref_t ref, int kind, int as_thaw);

/* The Python type name a reader sees for a value of this kind (messages). */
const char *fs__kind_type_name(int kind);

/* Entry of key in the map or set p: 1 found (*entry), 0 absent, -1 error.
** _set_find looks a set probe up as a frozenset. p, key borrowed. */
int fs__map_find(fs_proxy *p, PyObject *key, int64_t *entry);
int fs__set_find(fs_proxy *p, PyObject *key, int64_t *entry);

/* New reference: the shape of typed buffer b (in a sealed image) as a tuple. */
PyObject *fs__buf_shape(const fs_buf_t *b);

/* New reference: the dict of keys[i] -> values[i] (borrowed), sized for n
** at once (a str-keys table when every key is an exact str). */
PyObject *fs__dict_from_items(PyObject *const *keys, PyObject *const *values, Py_ssize_t n);

/* New reference: a plain tuple or list of the items of the sequence p
** (borrowed), read (shallow). */
PyObject *fs__seq_materialize(fs_proxy *p, int as_list);

/* Accessors of a proxy p (borrowed). */
static inline const uint8_t *P_BASE(fs_proxy *p) { return p->h->base; }
static inline fs_state *P_ST(fs_proxy *p) { return p->h->st; }
static inline const fs_seq_t *P_SEQ(fs_proxy *p) { return fs_seq(p->h->base, p->ref); }
static inline const fs_map_t *P_MAP(fs_proxy *p) { return fs_map(p->h->base, p->ref); }
static inline uint64_t P_SEQ_COUNT(fs_proxy *p) { return fs_seq_count(P_SEQ(p)); }
static inline fs_ref_t P_ITEM(fs_proxy *p, uint64_t i) { return fs_seq_items(P_SEQ(p))[i]; }
static inline uint64_t P_MAP_COUNT(fs_proxy *p) { return fs_map_count(p->h->base, P_MAP(p)); }
static inline fs_ref_t P_KEY(fs_proxy *p, uint64_t e) { return fs_map_key(p->h->base, P_MAP(p), e); }
static inline fs_ref_t P_VALUE(fs_proxy *p, uint64_t e) { return fs_map_value(P_MAP(p), e); }
/* New reference: key e of the map or set p, read, a str with its hash. */
static inline PyObject *fs__read_key(fs_proxy *p, uint64_t e);
static inline int P_KIND(fs_proxy *p) { return fs_ref_kind(p->h->base, p->ref); }

/* a, b borrowed: 1 if they denote the same object of the same region. */
static inline int same_object(fs_proxy *a, fs_proxy *b)
{
    return a->h == b->h && a->ref == b->ref;
}

/* o borrowed: 1 if o is exactly this state's proxy type tc. */
static inline int is_type(PyObject *o, fs_state *st, int tc)
{
    return Py_TYPE(o) == st->types[tc];
}

/* ==== freeze.c, thaw.c ====================================================== */
PyObject *fs__freeze(fs_state *st, PyObject *obj);              /* new reference */
/* Deep copy of the value at (h, ref) back to plain objects. New reference. */
PyObject *fs__thaw_ref(fs_handle *h, fs_ref_t ref);

/* ==== portable.c ============================================================ */
/* New reference: the portable image (FS_HASH_KEYED, checksummed, importing
** nothing) of obj (borrowed) -- a proxy's region copied and rekeyed, or obj frozen
** (flattened) first -- as bytes. */
PyObject *fs__dumps(fs_state *st, PyObject *obj);
/* As fs__dumps, but NULL with *entangled = 1 and no exception when obj has
** no image without another region (pickling then falls back to by value). */
PyObject *fs__portable(fs_state *st, PyObject *obj, int *entangled);
PyObject *fs__mod_dumps(PyObject *module, PyObject *obj);
PyObject *fs__mod_loads(PyObject *module, PyObject *args, PyObject *kwargs);
PyObject *fs__mod_load(PyObject *module, PyObject *args, PyObject *kwargs);
PyObject *fs__mod_unpickle(PyObject *module, PyObject *buffer);
extern const char fs__dumps_doc[], fs__loads_doc[], fs__load_doc[], fs__unpickle_doc[];

/* ==== json.c ================================================================ */
PyObject *fs__mod_from_json(PyObject *module, PyObject *data);   /* new references */
PyObject *fs__mod_to_json(PyObject *module, PyObject *obj);
extern const char fs__from_json_doc[], fs__to_json_doc[];

/* ==== proxy.c: what the proxy families share =============================== */
/* Each returns what the slot or method it implements returns (new
** references; self and arguments borrowed). */
void      fs__proxy_dealloc(PyObject *self);                        /* tp_dealloc */
PyObject *fs__proxy_reduce_ex(PyObject *self, PyObject *protocol); /* the image */
PyObject *fs__proxy_copy(PyObject *self, PyObject *unused);         /* self */
PyObject *fs__proxy_deepcopy(PyObject *self, PyObject *memo);       /* self */
PyObject *fs__container_view(PyObject *self, PyObject *key);        /* .view() */

/* repr cycle guard: 1 entered, 0 already being repr'd, -1 error. */
int  fs__repr_enter(fs_proxy *p);
void fs__repr_leave(fs_proxy *p);
/* New reference: ", ".join of "repr(k): repr(v)" (or repr(k) for sets). */
PyObject *fs__join_reprs(fs_proxy *p, int with_values);

/* The entry iterator of FrozenMap, its views and FrozenSet. */
enum { IT_KEYS = 0, IT_VALUES = 1, IT_ITEMS = 2 };
PyObject *fs__mapiter_new(fs_proxy *p, int mode, int reverse);      /* new reference */
/* New reference: (key, value) of entry e of map p as a plain tuple. */
PyObject *fs__map_item_tuple(fs_proxy *p, uint64_t e);
/* New reference: builtins.<name> (iter, reversed) for iterators' __reduce__. */
PyObject *fs__builtin(const char *name);

/* Set comparison by sizes and containment (elements need not be hashable),
** and isdisjoint; for FrozenSet and the keys/items views. */
PyObject *fs__setlike_compare(fs_state *st, PyObject *self, PyObject *other, int op);
PyObject *fs__isdisjoint(PyObject *self, PyObject *other);

/* o borrowed: one of this state's keys() / items() views. */
static inline int is_setview(fs_state *st, PyObject *o)
{
    return Py_TYPE(o) == st->keys_type || Py_TYPE(o) == st->items_type;
}

#define COMMON_METHODS \
    {"__reduce_ex__", fs__proxy_reduce_ex, METH_O, \
     "Pickle as the portable image: loads(image); out of band with protocol 5."}, \
    {"__copy__", fs__proxy_copy, METH_NOARGS, "Frozen objects are immutable: self."}, \
    {"__deepcopy__", fs__proxy_deepcopy, METH_O, "Frozen objects are immutable: self."}, \
    {"__class_getitem__", Py_GenericAlias, METH_O | METH_CLASS, "See PEP 585."}

#define VIEW_METHOD \
    {"view", fs__container_view, METH_O, \
     "view(key_or_index) -> zero-copy read-only memoryview of the bytes value there"}

#define PROXY_FLAGS (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | \
                     Py_TPFLAGS_DISALLOW_INSTANTIATION)

/* The type specs module.c makes its types from (one family each). */
extern PyType_Spec fs__bufowner_spec, fs__mapiter_spec;                 /* proxy.c */
extern PyType_Spec fs__map_spec, fs__keys_spec, fs__values_spec, fs__items_spec; /* map.c */
extern PyType_Spec fs__list_spec, fs__tuple_spec, fs__seqiter_spec;     /* seq.c */
extern PyType_Spec fs__set_spec;                                        /* set.c */
extern PyType_Spec fs__fbytes_spec, fs__fvalue_spec;                    /* bytes.c */
extern PyType_Spec fs__array_spec;                                      /* array.c */

/* ==== xid.c: cross-interpreter data (called by module.c) ==================== */
int  fs__xid_register(fs_state *st);     /* 0, or -1 with an exception    */
void fs__xid_unregister(fs_state *st);   /* never fails, keeps no error   */

/* Borrowed: the cached keys of p's shape (p a FrozenMap), or NULL (not
** cached, not cacheable; no exception is ever left set). read.c
** _keys_of: the same for the dict at ref of h's image. */
PyObject *fs__shape_keys(fs_proxy *p);
PyObject *fs__keys_of(fs_handle *h, fs_ref_t ref);

/* ==== record.c: records (user objects, stdlib values) ======================= */
/* What freeze knows of a class whose instances are records. */
typedef struct fs_recinfo_s {
    int       flavor;        /* FS_REC_* (MEMBER may turn FLAG per member) */
    int       registered;    /* fs.register: instance attributes checked   */
    PyObject *name;          /* strong: "module:qualname"                 */
    PyObject *fields;        /* strong: FIELDS, a tuple of interned str   */
} fs_recinfo;
/* Is tp a record class? 1 with *out filled (fs__recinfo_clear it), 0 when
** it is none (freeze refuses the object), -1 with TypeError when it looks
** like one but cannot be (a dataclass not frozen, a class not found again
** by name). */
int  fs__record_info(fs_state *st, PyTypeObject *tp, fs_recinfo *out);
void fs__recinfo_clear(fs_recinfo *ri);
/* New reference: the state to freeze for record o (borrowed) of class ri:
** a fresh dict (FIELDS), tuple (TUPLE, VALUE), str (MEMBER) or the value
** (FLAG); *flavor is what o is stored as. */
PyObject *fs__record_state(fs_state *st, PyObject *o, const fs_recinfo *ri, int *flavor);
/* Borrowed (cached in h): the class of the record at ref of h's image, as
** the trust rules allow (the top of record.c). NULL with an exception. */
PyObject *fs__record_class(fs_handle *h, fs_ref_t ref);
/* New reference: an instance of cls (borrowed) to fill: FIELDS by
** object.__setattr__ (PyObject_GenericSetAttr), TUPLE its n items set. */
PyObject *fs__record_alloc(PyObject *cls, int flavor, Py_ssize_t n);
/* New reference: the record of MEMBER, FLAG or VALUE flavor from its state. */
PyObject *fs__record_from_state(fs_state *st, PyObject *cls, int flavor, PyObject *state);
/* New reference: the record at ref of h's image, container fields as proxies. */
PyObject *fs__record_read(fs_handle *h, fs_ref_t ref);
/* classes= of loads/load: *out a new dict "module:qualname" -> class, or
** NULL for none; 0, or -1 with TypeError. */
int fs__allowlist(PyObject *classes, PyObject **out);
PyObject *fs__mod_register(PyObject *module, PyObject *args, PyObject *kwargs);
extern const char fs__register_doc[];

static inline PyObject *fs__read_key(fs_proxy *p, uint64_t e)
{
    if (P_KIND(p) == FS_KIND_DICT) {
        PyObject *keys = fs__shape_keys(p);
        if (keys != NULL) {
            fs__count(&p->h->st->keycache_hits, 1);
            return Py_NewRef(PyTuple_GET_ITEM(keys, (Py_ssize_t)e));
        }
    }
    PyObject *k = fs__read(p->h, P_KEY(p, e));
    if (k != NULL)
        fs__key_hash(k, p->h->base, fs_map_hash(p->h->base, P_MAP(p), e));
    return k;
}

#endif /* FS_PY_H */
