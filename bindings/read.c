/*
** read.c -- reading an image from Python: the one place every proxy, thaw
** and the XID path use to turn image contents into Python objects.
**
** LAYER (the picture in fs_py.h): above state.c (handles, errors), below
** freeze.c/thaw.c, the proxies and module.c. Nothing here calls up: making a
** proxy while reading uses the type table of the module state (st->types),
** filled in by module.c at exec.
**
**   fs__read(h, ref) --- XREF? --> fs__resolve: the imported region's handle
**        |
**        +-- container --> fs__proxy_new (st->types[code])
**        +-- scalar -----> fs__scalar: str in one allocation + memcpy, ...
**                          (a str of h's region: st->strcache first, GIL builds)
**
** Lookups follow dict semantics: equal hashes first, then equality. An exact
** str probe is compared with a stored str canonically, without allocating;
** an exact tuple probe item by item without C recursion; any other probe
** with the materialized stored key through PyObject_RichCompareBool (so
** 1 == 1.0 == True, NaN only by identity, and exceptions from __eq__
** propagate). Probes are hashed in the image's domain: CPython's hash()
** when the image holds this process's hashes (handle->trust_hash), K under
** the image's seed when it is portable (handle->keyed, fs__keyed_hash);
** only an image of another process's secret (never written by dumps) is
** scanned.
**
** Everything here reads sealed images (I1) through offsets (I3) and writes
** nothing into them; no PyObject is stored in an image (I4).
*/
#include "fs_py.h"

int64_t fs__process_hash_check = -1;

/* ---- kinds and proxy types ---------------------------------------------- */

static int tc_for_kind(int kind)
{
    switch (kind) {
    case FS_KIND_DICT:      return FS_PT_MAP;
    case FS_KIND_LIST:      return FS_PT_LIST;
    case FS_KIND_TUPLE:     return FS_PT_TUPLE;
    case FS_KIND_SET:
    case FS_KIND_FROZENSET: return FS_PT_SET;
    case FS_KIND_BYTES:
    case FS_KIND_BYTEARRAY: return FS_PT_BYTES;
    case FS_KIND_BUFFER:    return FS_PT_ARRAY;
    default:                return FS_PT_VALUE;
    }
}

/* The Python type a reader sees for a value of this kind (for messages). */
const char *fs__kind_type_name(int kind)
{
    static const char *const names[FS_KIND__COUNT] = {
        [FS_KIND_NONE] = "NoneType", [FS_KIND_BOOL] = "bool", [FS_KIND_INT] = "int",
        [FS_KIND_FLOAT] = "float", [FS_KIND_COMPLEX] = "complex", [FS_KIND_STR] = "str",
        [FS_KIND_BYTES] = "bytes", [FS_KIND_BYTEARRAY] = "bytes",
        [FS_KIND_TUPLE] = "frozenshare.FrozenTuple", [FS_KIND_LIST] = "frozenshare.FrozenList",
        [FS_KIND_DICT] = "frozenshare.FrozenMap", [FS_KIND_SET] = "frozenshare.FrozenSet",
        [FS_KIND_FROZENSET] = "frozenshare.FrozenSet", [FS_KIND_RECORD] = "record",
        [FS_KIND_BUFFER] = "frozenshare.FrozenArray",
    };
    return kind > 0 && kind < FS_KIND__COUNT && names[kind] != NULL ? names[kind] : "?";
}

int fs__root_type_code(const uint8_t *base, fs_ref_t ref)
{
    return tc_for_kind(fs_ref_kind(base, ref));
}

/* ---- materializing and wrapping ----------------------------------------- */

/* New reference; h borrowed (the proxy takes its own). See fs_py.h. */
PyObject *fs__proxy_new(fs_handle *h, int tc, fs_ref_t ref)
{
    PyTypeObject *tp = h->st->types[tc];
    if (tp == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "frozenshare: module is being finalized");
        return NULL;
    }
    fs_proxy *p;
#ifndef Py_GIL_DISABLED
    fs_state *st = h->st;
    if ((p = st->proxy_free) != NULL) {    /* every proxy type has this size */
        st->proxy_free = (fs_proxy *)p->h;
        st->nproxy_free--;
        PyObject_Init((PyObject *)p, tp);  /* takes a reference to tp */
    }
    else
#endif
    if ((p = PyObject_New(fs_proxy, tp)) == NULL) {
        return NULL;
    }
    p->h = (fs_handle *)Py_NewRef(h);
    p->ref = ref;
    p->hash = -1;
    return (PyObject *)p;
}

/* New reference. */
static PyObject *bigint_from_le(const uint8_t *data, uint64_t nbytes)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyLong_FromNativeBytes(data, (size_t)nbytes, Py_ASNATIVEBYTES_LITTLE_ENDIAN);
#else
    return _PyLong_FromByteArray(data, (size_t)nbytes, 1 /* little */, 1 /* signed */);
#endif
}

/* New reference. See fs_py.h. */
PyObject *fs__scalar(const uint8_t *base, fs_ref_t ref, int kind, int as_thaw)
{
    switch (fs_ref_tag(ref)) {
    case FS_TAG_INT:
        return PyLong_FromLongLong(fs_ref_int_value(ref));
    case FS_TAG_CONST:
        if (ref == FS_REF_NONE)
            Py_RETURN_NONE;
        return PyBool_FromLong(ref == FS_REF_TRUE);
    case FS_TAG_FLOAT:
        return PyFloat_FromDouble(fs_ref_float(ref));
    case FS_TAG_OBJ:
        break;
    default:
        PyErr_SetString(PyExc_SystemError, "frozenshare: unresolved reference");
        return NULL;
    }
    const void *o = fs_obj(base, ref);
    switch (kind) {
    case FS_KIND_FLOAT:
        return PyFloat_FromDouble(((const fs_float_t *)o)->value);
    case FS_KIND_COMPLEX: {
        const fs_complex_t *c = o;
        return PyComplex_FromDoubles(c->real, c->imag);
    }
    case FS_KIND_INT: {
        const fs_bigint_t *bi = o;
        return bigint_from_le(bi->data, fs_bigint_nbytes(bi));
    }
    case FS_KIND_STR: {
        /* Canonical form: PyUnicode_New picks the same kind from the
        ** charsize class, so one allocation and one copy. */
        const fs_str_t *s = o;
        Py_ssize_t n = (Py_ssize_t)fs_str_len(s);
        PyObject *u = PyUnicode_New(n, (Py_UCS4)fs_str_maxchar_class(s));
        if (u == NULL)
            return NULL;
        if (n != 0)
            memcpy(PyUnicode_DATA(u), fs_str_data(s), (size_t)n * fs_str_charsize(s));
        return u;
    }
    case FS_KIND_BYTES:
    case FS_KIND_BYTEARRAY: {
        const fs_bytes_t *b = o;
        const char *d = (const char *)fs_bytes_data(b);
        Py_ssize_t n = (Py_ssize_t)fs_bytes_len(b);
        if (kind == FS_KIND_BYTEARRAY && as_thaw)
            return PyByteArray_FromStringAndSize(d, n);
        return PyBytes_FromStringAndSize(d, n);
    }
    default:
        PyErr_Format(PyExc_SystemError, "frozenshare: kind %d is not a scalar", kind);
        return NULL;
    }
}

#ifndef Py_GIL_DISABLED
/* st->strcache's slot for ref of h's region (fs_py.h). */
static inline fs_strslot *str_slot(const fs_state *st, const fs_handle *h, fs_ref_t ref)
{
    uint64_t k = ((uint64_t)(uintptr_t)h >> 4) ^ ref;
    return &st->strcache[(k * UINT64_C(0x9E3779B97F4A7C15)) >> (64 - FS_STRCACHE_BITS)];
}

/* New reference: str ref of h's own region, missed in st->strcache. A short
** one becomes its slot's candidate, or, if it was the candidate, takes the
** slot (the str there is let go of). */
static PyObject *str_missed(fs_handle *h, fs_ref_t ref)
{
    fs_state *st = h->st;
    PyObject *s = fs__scalar(h->base, ref, FS_KIND_STR, 0);
    if (s == NULL || PyUnicode_GET_LENGTH(s) > FS_STRCACHE_MAXLEN)
        return s;
    if (st->strcache == NULL) {          /* made at the FS_STRCACHE_AFTER'th */
        if (++st->strcache_reads < FS_STRCACHE_AFTER ||
            (st->strcache = PyMem_Calloc(FS_STRCACHE_SLOTS, sizeof *st->strcache)) == NULL)
            return s;                    /* no cache: still the right str */
    }
    fs_strslot *e = str_slot(st, h, ref);
    if (e->ch != h || e->cref != ref) {
        e->ch = h;
        e->cref = ref;
        return s;
    }
    PyObject *old = e->s;
    if (old != NULL)
        ((fs_handle *)e->h)->nstrcache--;
    else
        st->strcache_entries++;
    e->h = h;
    e->ref = ref;
    e->s = Py_NewRef(s);
    h->nstrcache++;
    Py_XDECREF(old);                     /* a str: freeing it runs no code */
    return s;
}
#endif

/* New reference; h borrowed. See fs_py.h. */
PyObject *fs__read(fs_handle *h, fs_ref_t ref)
{
    fs_region_t *reg = h->region;
    const uint8_t *base = h->base;
    fs__resolve(&reg, &base, &ref);
#ifndef Py_GIL_DISABLED
    /* Before the image is touched: a hit spares the read of a cold str.
    ** Immediates (ints, floats, constants) are never there. */
    fs_state *st = h->st;
    if (st->strcache != NULL && reg == h->region && fs_ref_tag(ref) == FS_TAG_OBJ) {
        const fs_strslot *e = str_slot(st, h, ref);
        if (e->h == h && e->ref == ref) {
            st->strcache_hits++;
            return Py_NewRef(e->s);
        }
    }
#endif
    int kind = fs_ref_kind(base, ref);
    switch (kind) {
    case FS_KIND_DICT:
    case FS_KIND_LIST:
    case FS_KIND_TUPLE:
    case FS_KIND_SET:
    case FS_KIND_FROZENSET:
    case FS_KIND_BUFFER:
    case FS_KIND_RECORD: {
        if (reg == h->region)
            return kind == FS_KIND_RECORD ? fs__record_read(h, ref)
                                          : fs__proxy_new(h, tc_for_kind(kind), ref);
        fs_handle *h2 = fs__handle_borrowed(h->st, reg);
        if (h2 == NULL)
            return NULL;
        PyObject *res = kind == FS_KIND_RECORD ? fs__record_read(h2, ref)
                                               : fs__proxy_new(h2, tc_for_kind(kind), ref);
        Py_DECREF(h2);
        return res;
    }
#ifndef Py_GIL_DISABLED
    case FS_KIND_STR:
        if (reg == h->region)
            return str_missed(h, ref);
        return fs__scalar(base, ref, kind, 0);
#endif
    default:
        return fs__scalar(base, ref, kind, 0);
    }
}

/* New reference. See fs_py.h. */
PyObject *fs__root_proxy_owned(fs_state *st, fs_region_t *r, fs_ref_t ref)
{
    fs_handle *h = fs__handle_owned(st, r);      /* takes the caller's count */
    if (h == NULL)
        return NULL;
    PyObject *res = fs__proxy_new(h, fs__root_type_code(h->base, ref), ref);
    Py_DECREF(h);
    return res;
}

/* New reference. See fs_py.h: the dict of n keys and values (borrowed). From 3.13 on,
** CPython's own constructor for a dict display (exported, declared in an
** internal header only): sized for n at once, with a str-keys table when
** every key is an exact str. _PyDict_NewPresized always makes a general
** table (24-byte entries, not 16): thawed records were 30% bigger and 60%
** slower to free than pickle's. */
#if PY_VERSION_HEX >= 0x030D0000
PyAPI_FUNC(PyObject *) _PyDict_FromItems(PyObject *const *keys, Py_ssize_t keys_offset,
                                         PyObject *const *values, Py_ssize_t values_offset,
                                         Py_ssize_t length);
#endif
PyObject *fs__dict_from_items(PyObject *const *keys, PyObject *const *values, Py_ssize_t n)
{
#if PY_VERSION_HEX >= 0x030D0000
    return _PyDict_FromItems(keys, 1, values, 1, n);
#else
    PyObject *d = PyDict_New();
    for (Py_ssize_t i = 0; d != NULL && i < n; i++) {
        if (PyDict_SetItem(d, keys[i], values[i]) < 0)
            Py_CLEAR(d);
    }
    return d;
#endif
}

/* New reference: the shape of typed buffer b as a tuple of ints. See fs_py.h. */
PyObject *fs__buf_shape(const fs_buf_t *b)
{
    PyObject *shape = PyTuple_New((Py_ssize_t)b->h.n);
    for (uint64_t d = 0; shape != NULL && d < b->h.n; d++) {
        PyObject *n = PyLong_FromUnsignedLongLong(b->shape[d]);
        if (n == NULL)
            Py_CLEAR(shape);
        else
            PyTuple_SET_ITEM(shape, (Py_ssize_t)d, n);
    }
    return shape;
}

/* ---- lookups ------------------------------------------------------------ */

typedef struct eq_ctx_s {
    fs_handle  *h;           /* whose image holds the map                 */
    PyObject   *key;         /* the probe (borrowed)                      */
    int         str_fast;    /* probe is an exact str                     */
    unsigned    charsize;    /* its canonical form ...                    */
    Py_ssize_t  length;
    const void *data;
} eq_ctx;

/* The stored value at ref (in h's image) == probe, as
** PyObject_RichCompareBool(stored, probe, Py_EQ) answers it: 1, 0 or -1.
** probe borrowed. */
static int eq_one(fs_handle *h, fs_ref_t ref, PyObject *probe)
{
    if (PyUnicode_CheckExact(probe) && fs_ref_tag(ref) != FS_TAG_XREF) {
        /* An exact str equals only a str (stored keys are exact builtins). */
        if (fs_ref_tag(ref) != FS_TAG_OBJ || fs_ref_kind(h->base, ref) != FS_KIND_STR)
            return 0;
        return fs_str_equals(fs_str(h->base, ref), (unsigned)PyUnicode_KIND(probe),
                             (uint64_t)PyUnicode_GET_LENGTH(probe), PyUnicode_DATA(probe));
    }
    PyObject *k = fs__read(h, ref);
    if (k == NULL)
        return -1;
    int r = PyObject_RichCompareBool(k, probe, Py_EQ);
    Py_DECREF(k);
    return r;
}

typedef struct cmp_item_s {
    fs_ref_t  ref;           /* stored, in h's image                      */
    PyObject *probe;         /* borrowed (held by the probe's tuples); NULL:
                                a length mismatch, unequal once reached   */
} cmp_item;

/* A stored key == an exact-tuple probe, without C recursion: a stored tuple
** of this image and a probe tuple are compared item by item in the order
** tuple == tuple uses (first items first, depth first; lengths after the
** common items), every other pair by eq_one. A tuple key nested 10^5 deep
** thus needs no RecursionError, where the proxies' == would recurse.
** 1, 0 or -1; probe borrowed. */
static int eq_tuple_deep(fs_handle *h, fs_ref_t stored, PyObject *probe)
{
    cmp_item local[64], *stack = local;
    size_t depth = 0, cap = sizeof local / sizeof local[0];
    int r = 1;
    stack[depth++] = (cmp_item){stored, probe};
    while (r == 1 && depth > 0) {
        cmp_item it = stack[--depth];
        if (it.probe == NULL) {
            r = 0;
            break;
        }
        if (!PyTuple_CheckExact(it.probe) || fs_ref_tag(it.ref) != FS_TAG_OBJ ||
            fs_ref_kind(h->base, it.ref) != FS_KIND_TUPLE) {
            r = eq_one(h, it.ref, it.probe);
            continue;
        }
        const fs_seq_t *sq = fs_seq(h->base, it.ref);
        const fs_ref_t *items = fs_seq_items(sq);
        uint64_t count = fs_seq_count(sq);
        size_t n = (size_t)PyTuple_GET_SIZE(it.probe), common = n;
        if (count < common)
            common = (size_t)count;
        size_t need = depth + common + 1;
        if (need > cap) {
            size_t ncap = cap * 2 > need ? cap * 2 : need;
            cmp_item *ns = fs__malloc(ncap * sizeof *ns);
            if (ns == NULL) {
                fs__raise(FS_ENOMEM, NULL);
                r = -1;
                break;
            }
            memcpy(ns, stack, depth * sizeof *ns);
            if (stack != local)
                fs__free(stack);
            stack = ns;
            cap = ncap;
        }
        if (count != n)                          /* checked after the items */
            stack[depth++] = (cmp_item){0, NULL};
        for (size_t i = common; i-- > 0;)
            stack[depth++] = (cmp_item){items[i], PyTuple_GET_ITEM(it.probe, i)};
    }
    if (stack != local)
        fs__free(stack);
    return r;
}

static int eq_stored(void *vctx, const void *base, fs_ref_t stored)
{
    eq_ctx *c = vctx;
    (void)base;                                  /* == c->h->base */
    if (c->str_fast && fs_ref_tag(stored) != FS_TAG_XREF) {
        /* An exact str equals only a str (stored keys are exact builtins). */
        if (fs_ref_tag(stored) != FS_TAG_OBJ || fs_ref_kind(base, stored) != FS_KIND_STR)
            return 0;
        return fs_str_equals(fs_str(base, stored), c->charsize, (uint64_t)c->length, c->data);
    }
    if (PyTuple_CheckExact(c->key))
        return eq_tuple_deep(c->h, stored, c->key);
    return eq_one(c->h, stored, c->key);
}

/* Entry of key in the map or set p: 1 found (*entry), 0 absent, -1 error.
** p, key borrowed. */
/* The equality of fs_map_find for an exact str probe, inlined: a stored
** str of the same canonical form; anything else (another kind, an xref)
** goes to eq_stored. */
static inline int eq_str_probe(void *vctx, const void *base, fs_ref_t stored)
{
    eq_ctx *c = vctx;
    if (fs_ref_tag(stored) == FS_TAG_OBJ) {
        const fs_str_t *s = fs_str(base, stored);
        if (s->h.kind != FS_KIND_STR)
            return 0;
        return fs_str_equals(s, c->charsize, (uint64_t)c->length, c->data);
    }
    return eq_stored(vctx, base, stored);
}

/* K of a str or bytes probe (fs_image.h): the canonical bytes CPython
** already holds are the image's canonical form. */
static int64_t keyed_blob(PyObject *o, uint64_t seed)
{
    if (PyUnicode_Check(o))
        return fs_keyed_str_hash(seed, (unsigned)PyUnicode_KIND(o),
                                 (uint64_t)PyUnicode_GET_LENGTH(o), PyUnicode_DATA(o));
    return fs_keyed_bytes_hash(seed, (uint64_t)PyBytes_GET_SIZE(o), PyBytes_AS_STRING(o));
}

/* Members of a frozenset or (key, value) pairs of a frozendict, combined
** in any order (fs_keyed_set_*). 1, 0 (a member of no key kind), -1. */
static int keyed_members(PyObject *o, uint64_t seed, int pairs, int64_t *out)
{
    PyObject *it = PyObject_GetIter(o), *k;
    if (it == NULL)
        return -1;
    uint64_t sum = 0, n = 0;
    int ok = 1;
    while (ok > 0 && (k = PyIter_Next(it)) != NULL) {
        int64_t kh, vh = 0;
        ok = fs__keyed_hash(k, seed, &kh);
        if (ok > 0 && pairs) {
            PyObject *v = PyObject_GetItem(o, k);
            ok = v == NULL ? -1 : fs__keyed_hash(v, seed, &vh);
            Py_XDECREF(v);
            if (ok > 0)
                kh = fs_keyed_tuple_end(fs_keyed_tuple_add(fs_keyed_tuple_add(
                         fs_keyed_tuple_begin(seed), kh), vh), 2);
        }
        Py_DECREF(k);
        sum += fs_keyed_set_member(kh);
        n++;
    }
    Py_DECREF(it);
    if (ok > 0 && PyErr_Occurred())
        ok = -1;
    if (ok > 0)
        *out = fs_keyed_set_end(seed, sum, n);
    return ok;
}

/* See fs_py.h. The same function hashes probes here and composite keys when
** portable.c rekeys an image, so the two always agree. Numbers, bool and
** None keep CPython's hash (no secret in it); str and bytes subclasses that
** keep their base's hash are hashed as their base. */
int fs__keyed_hash(PyObject *o, uint64_t seed, int64_t *out)
{
    PyTypeObject *tp = Py_TYPE(o);
    if (tp->tp_hash == PyUnicode_Type.tp_hash || tp->tp_hash == PyBytes_Type.tp_hash) {
        if (!PyUnicode_Check(o) && !PyBytes_Check(o))
            return 0;
        *out = keyed_blob(o, seed);
        return 1;
    }
    if (PyLong_Check(o) || PyFloat_Check(o) || PyComplex_Check(o) || o == Py_None) {
        if (tp->tp_hash != PyLong_Type.tp_hash && tp->tp_hash != PyFloat_Type.tp_hash &&
            tp->tp_hash != PyComplex_Type.tp_hash && tp->tp_hash != PyBool_Type.tp_hash &&
            o != Py_None)
            return 0;
        Py_hash_t h = PyObject_Hash(o);
        if (h == -1)
            return -1;
        *out = (int64_t)h;
        return 1;
    }
    if (PyTuple_Check(o) && tp->tp_hash == PyTuple_Type.tp_hash) {
        if (Py_EnterRecursiveCall(" while hashing a key"))
            return -1;
        uint64_t acc = fs_keyed_tuple_begin(seed);
        Py_ssize_t n = PyTuple_GET_SIZE(o);
        int ok = 1;
        for (Py_ssize_t i = 0; ok > 0 && i < n; i++) {
            int64_t ih;
            if ((ok = fs__keyed_hash(PyTuple_GET_ITEM(o, i), seed, &ih)) > 0)
                acc = fs_keyed_tuple_add(acc, ih);
        }
        Py_LeaveRecursiveCall();
        if (ok > 0)
            *out = fs_keyed_tuple_end(acc, (uint64_t)n);
        return ok;
    }
    int pairs = 0;
    if ((PyFrozenSet_Check(o) && tp->tp_hash == PyFrozenSet_Type.tp_hash)
#ifdef PyFrozenDict_Check
        || (pairs = PyFrozenDict_Check(o) && tp->tp_hash == PyFrozenDict_Type.tp_hash)
#endif
    ) {
        if (Py_EnterRecursiveCall(" while hashing a key"))
            return -1;
        int ok = keyed_members(o, seed, pairs, out);
        Py_LeaveRecursiveCall();
        return ok;
    }
    return 0;
}

/* fs__map_find for an exact str probe whose hash in the image's domain is
** known: the equality inlined in the probe. */
static inline int find_str(fs_proxy *p, PyObject *key, int64_t hash, int64_t *entry)
{
    eq_ctx c = {.h = p->h, .key = key, .str_fast = 1,
                .charsize = (unsigned)PyUnicode_KIND(key),
                .length = PyUnicode_GET_LENGTH(key), .data = PyUnicode_DATA(key)};
    int64_t e = fs_map_find(P_BASE(p), P_MAP(p), hash, eq_str_probe, &c);
    if (e == -2)
        return -1;
    if (e < 0)
        return 0;
    *entry = e;
    return 1;
}

int fs__map_find(fs_proxy *p, PyObject *key, int64_t *entry)
{
    /* The hot case: an exact str with its hash cached, in an image of this
    ** process -- no call for the hash, the equality inlined in the probe. */
    if (PyUnicode_CheckExact(key)) {
        if (((PyASCIIObject *)key)->hash != -1 && p->h->trust_hash)
            return find_str(p, key, (int64_t)((PyASCIIObject *)key)->hash, entry);
        if (p->h->keyed)       /* a portable image: one XXH3 of the probe's canonical bytes */
            return find_str(p, key, fs_keyed_str_hash(p->h->seed, (unsigned)PyUnicode_KIND(key),
                                                      (uint64_t)PyUnicode_GET_LENGTH(key),
                                                      PyUnicode_DATA(key)), entry);
    }
    /* Every other probe must be hashable in CPython's sense first, as a dict
    ** demands, even where the image's domain is keyed. */
    Py_hash_t hash = PyObject_Hash(key);
    if (hash == -1)
        return -1;
    const fs_map_t *m = P_MAP(p);
    eq_ctx c = {.h = p->h, .key = key, .str_fast = PyUnicode_CheckExact(key)};
    if (c.str_fast) {
        c.charsize = (unsigned)PyUnicode_KIND(key);
        c.length = PyUnicode_GET_LENGTH(key);
        c.data = PyUnicode_DATA(key);
    }
    int64_t probe = (int64_t)hash;
    int known = p->h->trust_hash;
    if (p->h->keyed && (known = fs__keyed_hash(key, p->h->seed, &probe)) < 0)
        return -1;
    if (known) {
        int64_t e = fs_map_find(P_BASE(p), m, probe, c.str_fast ? eq_str_probe : eq_stored, &c);
        if (e == -2)
            return -1;
        if (e < 0)
            return 0;
        *entry = e;
        return 1;
    }
    /* Hashes this process cannot compute for this probe (an image of another
    ** process's secret, or a keyed image probed by a kind no key has): scan. */
    fs__count(&p->h->st->lookups_scanned, 1);
    for (uint64_t i = 0, n = fs_map_count(P_BASE(p), m); i < n; i++) {
        int r = eq_stored(&c, P_BASE(p), fs_map_key(P_BASE(p), m, i));
        if (r < 0)
            return -1;
        if (r > 0) {
            *entry = (int64_t)i;
            return 1;
        }
    }
    return 0;
}

/* As map_find, but a set probe is looked up as a frozenset (set semantics).
** p, key borrowed. */
int fs__set_find(fs_proxy *p, PyObject *key, int64_t *entry)
{
    int r = fs__map_find(p, key, entry);
    if (r < 0 && PySet_Check(key) && PyErr_ExceptionMatches(PyExc_TypeError)) {
        PyErr_Clear();
        PyObject *fz = PyFrozenSet_New(key);
        if (fz == NULL)
            return -1;
        r = fs__map_find(p, fz, entry);
        Py_DECREF(fz);
    }
    return r;
}

/* ---- sequences ---------------------------------------------------------- */

/* New reference: a plain tuple or list of the items, read (shallow). */
PyObject *fs__seq_materialize(fs_proxy *p, int as_list)
{
    Py_ssize_t n = (Py_ssize_t)fs_seq_count(P_SEQ(p));
    PyObject *out = as_list ? PyList_New(n) : PyTuple_New(n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = fs__read(p->h, fs_seq_items(P_SEQ(p))[i]);
        if (v == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        if (as_list)
            PyList_SET_ITEM(out, i, v);
        else
            PyTuple_SET_ITEM(out, i, v);
    }
    return out;
}

/* ---- the key cache (fs_py.h) --------------------------------------------- */

/* Borrowed. See fs_py.h. Only shaped dicts fill the cache (their shape is
** shared); an unshaped dict finds its keys there when it is a shape. */
PyObject *fs__shape_keys(fs_proxy *p)
{
    return fs__keys_of(p->h, p->ref);
}

PyObject *fs__keys_of(fs_handle *h, fs_ref_t ref)
{
    const fs_map_t *m = fs_map(h->base, ref);
    if (!fs_map_shaped(m) && m->h.n > FS_KEYCACHE_KEYS)
        return NULL;                             /* never cached: no lookup per key */
    fs_ref_t shape = fs_map_shaped(m) ? fs_map_shape(m) : ref;
    /* An entry's value: its tuple | 1 (0 is "absent"), or 1: not cacheable. */
    uint64_t v = fs__tab_get_shared(&h->keycache, (uintptr_t)shape, 0);
    if (v != 0)
        return (PyObject *)(uintptr_t)(v & ~UINT64_C(1));
    if (!fs_map_shaped(m) || __atomic_load_n(&h->keycache.used, __ATOMIC_RELAXED) >= FS_KEYCACHE_SHAPES)
        return NULL;
    const fs_map_t *ks = fs_map(h->base, shape);
    uint64_t n = fs_map_count(h->base, ks);
    PyObject *t = NULL;
    int ok = n <= FS_KEYCACHE_KEYS;
    for (uint64_t i = 0; ok && i < n; i++) {
        int kind = fs_ref_kind(h->base, fs_keyset_key(ks, i));   /* scalars only: no proxy */
        ok = kind != FS_KIND_XREF && kind < FS_KIND_TUPLE;
    }
    if (ok && (t = PyTuple_New((Py_ssize_t)n)) != NULL) {
        for (uint64_t i = 0; i < n; i++) {
            fs_ref_t key = fs_keyset_key(ks, i);
            PyObject *k = fs__scalar(h->base, key, fs_ref_kind(h->base, key), 0);
            if (k == NULL) {
                Py_CLEAR(t);
                break;
            }
            fs__key_hash(k, h->base, fs_keyset_hash(ks, i));
            PyTuple_SET_ITEM(t, (Py_ssize_t)i, k);
        }
    }
    PyErr_Clear();                    /* a cache: a failure only means no entry */
    /* Made without the lock (it allocates); another thread may have cached
    ** the same shape meanwhile: the first entry stays, this tuple goes. */
    FS_LOCK(&h->mu);
    PyObject *won = t;
    v = fs__tab_get_shared(&h->keycache, (uintptr_t)shape, 0);
    if (v != 0)
        won = (PyObject *)(uintptr_t)(v & ~UINT64_C(1));
    else if (fs__tab_put_shared(&h->keycache, (uintptr_t)shape, 0,
                                (uint64_t)(uintptr_t)t | 1) != FS_OK)
        won = NULL;
    else if (t != NULL) {
        __atomic_fetch_add(&h->st->keycache_shapes, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&h->st->keycache_keys, n, __ATOMIC_RELAXED);
    }
    FS_UNLOCK(&h->mu);
    if (won != t)
        Py_XDECREF(t);
    return won;
}
