/*
** proxies.c -- the read-only Python face of frozen objects.
**
**   proxy type     image kind(s)        behaves like
**   -----------    -------------------  ---------------------------------
**   FrozenMap      DICT                 read-only dict / frozendict
**   FrozenList     LIST                 read-only list
**   FrozenTuple    TUPLE                tuple
**   FrozenSet      SET, FROZENSET       frozenset
**   FrozenBytes    BYTES, BYTEARRAY     bytes (read-only buffer), root only
**   FrozenValue    any other scalar     .value materializes it, root only
**
** plus their iterators, the keys/values/items views of FrozenMap, and the
** buffer owner behind .view() memoryviews.
**
** Every object here holds a strong reference to its interpreter's handle
** (fs_py.h) and reads the sealed image through handle->base + offset (I1,
** I3); only exported buffers point into the image, and they hold the handle. Nothing here writes the
** image or stores a PyObject in it (I4). Reads are proportional to the value
** read: a lookup probes the image's own index with the probe's hash.
**
** Lookups follow dict semantics: equal hashes first, then equality. An exact
** str probe is compared with a stored str canonically, without allocating;
** any other probe is compared with the materialized stored key through
** PyObject_RichCompareBool (so 1 == 1.0 == True, NaN only by identity, and
** exceptions from __eq__ propagate). Stored hashes are used only when the
** image's hash_check matches this process (handle->trust_hash); otherwise
** lookups scan the entries.
**
** Deep nesting: repr, ==, ordering and hash recurse through PyObject_Repr /
** PyObject_RichCompare / Py_EnterRecursiveCall, so they end in a clean
** RecursionError instead of overflowing the C stack. repr recognises cycles
** by (region, offset), since each read creates a fresh proxy.
*/
#include "fs_py.h"

/* ---- small helpers ------------------------------------------------------ */

/* Accessors of a proxy p (borrowed). */
static inline const uint8_t *P_BASE(fs_proxy *p) { return p->h->base; }   /* p borrowed */
static inline fs_state *P_ST(fs_proxy *p) { return p->h->st; }            /* p borrowed */
static inline const fs_seq_t *P_SEQ(fs_proxy *p) { return fs_seq(p->h->base, p->ref); } /* borrowed */
static inline const fs_map_t *P_MAP(fs_proxy *p) { return fs_map(p->h->base, p->ref); } /* borrowed */
static inline int P_KIND(fs_proxy *p) { return fs_ref_kind(p->h->base, p->ref); } /* borrowed */

/* a, b borrowed: 1 if they denote the same object of the same region. */
static inline int same_object(fs_proxy *a, fs_proxy *b)
{
    return a->h == b->h && a->ref == b->ref;
}

/* o borrowed. */
static inline int is_type(PyObject *o, fs_state *st, int tc)
{
    return Py_TYPE(o) == st->types[tc];
}

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
    default:                return FS_PT_VALUE;
    }
}

/* The Python type a reader sees for a value of this kind (for messages). */
static const char *kind_type_name(int kind)
{
    static const char *const names[FS_KIND__COUNT] = {
        [FS_KIND_NONE] = "NoneType", [FS_KIND_BOOL] = "bool", [FS_KIND_INT] = "int",
        [FS_KIND_FLOAT] = "float", [FS_KIND_COMPLEX] = "complex", [FS_KIND_STR] = "str",
        [FS_KIND_BYTES] = "bytes", [FS_KIND_BYTEARRAY] = "bytes",
        [FS_KIND_TUPLE] = "frozenshare.FrozenTuple", [FS_KIND_LIST] = "frozenshare.FrozenList",
        [FS_KIND_DICT] = "frozenshare.FrozenMap", [FS_KIND_SET] = "frozenshare.FrozenSet",
        [FS_KIND_FROZENSET] = "frozenshare.FrozenSet",
    };
    return kind > 0 && kind < FS_KIND__COUNT && names[kind] != NULL ? names[kind] : "?";
}

int fs__root_type_code(const uint8_t *base, fs_ref_t ref)
{
    return tc_for_kind(fs_ref_kind(base, ref));
}

/* Raise KeyError(key) the way dict does (a tuple key is not unpacked); key
** borrowed. */
static void key_error(PyObject *key)
{
    PyObject *t = PyTuple_Pack(1, key);
    if (t != NULL) {
        PyErr_SetObject(PyExc_KeyError, t);
        Py_DECREF(t);
    }
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
    fs_proxy *p = PyObject_New(fs_proxy, tp);
    if (p == NULL)
        return NULL;
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
        return bigint_from_le(bi->data, bi->nbytes);
    }
    case FS_KIND_STR: {
        /* Canonical form: PyUnicode_New picks the same kind from maxchar,
        ** so one allocation and one copy. */
        const fs_str_t *s = o;
        PyObject *u = PyUnicode_New((Py_ssize_t)s->length, (Py_UCS4)s->maxchar);
        if (u == NULL)
            return NULL;
        if (s->length != 0)
            memcpy(PyUnicode_DATA(u), s->data, (size_t)s->length * s->charsize);
        return u;
    }
    case FS_KIND_BYTES:
    case FS_KIND_BYTEARRAY: {
        const fs_bytes_t *b = o;
        if (kind == FS_KIND_BYTEARRAY && as_thaw)
            return PyByteArray_FromStringAndSize((const char *)b->data, (Py_ssize_t)b->length);
        return PyBytes_FromStringAndSize((const char *)b->data, (Py_ssize_t)b->length);
    }
    default:
        PyErr_Format(PyExc_SystemError, "frozenshare: kind %d is not a scalar", kind);
        return NULL;
    }
}

/* New reference; h borrowed. See fs_py.h. */
PyObject *fs__read(fs_handle *h, fs_ref_t ref)
{
    fs_region_t *reg = h->region;
    const uint8_t *base = h->base;
    fs__resolve(&reg, &base, &ref);
    int kind = fs_ref_kind(base, ref);
    switch (kind) {
    case FS_KIND_DICT:
    case FS_KIND_LIST:
    case FS_KIND_TUPLE:
    case FS_KIND_SET:
    case FS_KIND_FROZENSET: {
        if (reg == h->region)
            return fs__proxy_new(h, tc_for_kind(kind), ref);
        fs_handle *h2 = fs__handle_borrowed(h->st, reg);
        if (h2 == NULL)
            return NULL;
        PyObject *res = fs__proxy_new(h2, tc_for_kind(kind), ref);
        Py_DECREF(h2);
        return res;
    }
    default:
        return fs__scalar(base, ref, kind, 0);
    }
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
        size_t n = (size_t)PyTuple_GET_SIZE(it.probe), common = n;
        if (sq->count < common)
            common = (size_t)sq->count;
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
        if (sq->count != n)                      /* checked after the items */
            stack[depth++] = (cmp_item){0, NULL};
        for (size_t i = common; i-- > 0;)
            stack[depth++] = (cmp_item){sq->items[i], PyTuple_GET_ITEM(it.probe, i)};
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
static int map_find(fs_proxy *p, PyObject *key, int64_t *entry)
{
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
    if (p->h->trust_hash) {
        int64_t e = fs_map_find(P_BASE(p), m, (int64_t)hash, eq_stored, &c);
        if (e == -2)
            return -1;
        if (e < 0)
            return 0;
        *entry = e;
        return 1;
    }
    /* Foreign hashes (another process built the image): scan. */
    for (uint64_t i = 0; i < m->count; i++) {
        int r = eq_stored(&c, P_BASE(p), m->entries[i].key);
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
static int set_find(fs_proxy *p, PyObject *key, int64_t *entry)
{
    int r = map_find(p, key, entry);
    if (r < 0 && PySet_Check(key) && PyErr_ExceptionMatches(PyExc_TypeError)) {
        PyErr_Clear();
        PyObject *fz = PyFrozenSet_New(key);
        if (fz == NULL)
            return -1;
        r = map_find(p, fz, entry);
        Py_DECREF(fz);
    }
    return r;
}

/* ---- repr cycle guard --------------------------------------------------- */

/* 1 entered, 0 already being repr'd (a cycle), -1 error. p borrowed. */
static int repr_enter(fs_proxy *p)
{
    fs__tab_t *t = &P_ST(p)->repr_active;
    if (fs__tab_get(t, (uintptr_t)p->h->region, p->ref) != NULL)
        return 0;
    int err = fs__tab_put(t, (uintptr_t)p->h->region, p->ref, 1);
    if (err != FS_OK) {
        fs__raise(err, NULL);
        return -1;
    }
    return 1;
}

/* p borrowed. */
static void repr_leave(fs_proxy *p)
{
    fs__tab_del(&P_ST(p)->repr_active, (uintptr_t)p->h->region, p->ref);
}

/* ---- shared methods ----------------------------------------------------- */

/* tp_dealloc of every proxy type: consumes the last reference to self, drops
** the handle reference. */
static void proxy_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    Py_DECREF(FS_PROXY(self)->h);
    PyObject_Free(self);
    Py_DECREF(tp);
}

/* __reduce__: pickled by value, unpickled by freezing the thawed value.
** New reference (freeze, (thawed,)); self borrowed. */
static PyObject *proxy_reduce(PyObject *self, PyObject *unused)
{
    (void)unused;
    fs_proxy *p = FS_PROXY(self);
    PyObject *freeze = PyObject_GetAttrString(p->h->module, "freeze");
    if (freeze == NULL)
        return NULL;
    PyObject *value = fs__thaw_ref(p->h, p->ref);
    if (value == NULL) {
        Py_DECREF(freeze);
        return NULL;
    }
    return Py_BuildValue("(N(N))", freeze, value);
}

/* __copy__ (and copy()): new reference to self. */
static PyObject *proxy_copy(PyObject *self, PyObject *unused)
{
    (void)unused;
    return Py_NewRef(self);
}

/* __deepcopy__: new reference to self; memo borrowed, unused. */
static PyObject *proxy_deepcopy(PyObject *self, PyObject *memo)
{
    (void)memo;
    return Py_NewRef(self);
}

/* ---- buffer owner (.view() memoryviews) --------------------------------- */

typedef struct fs_bufowner_s {
    PyObject_HEAD
    fs_handle  *h;           /* strong: keeps the region alive (I2)       */
    const void *data;        /* inside h's sealed image                   */
    Py_ssize_t  len;
} fs_bufowner;

/* tp_dealloc: consumes the last reference to self, drops the handle's. */
static void bufowner_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    Py_DECREF(((fs_bufowner *)self)->h);
    PyObject_Free(self);
    Py_DECREF(tp);
}

/* bf_getbuffer: view->obj gets a new reference to self (borrowed). */
static int bufowner_getbuffer(PyObject *self, Py_buffer *view, int flags)
{
    fs_bufowner *b = (fs_bufowner *)self;
    return PyBuffer_FillInfo(view, self, (void *)b->data, b->len, 1 /* readonly: I1 */, flags);
}

static PyType_Slot bufowner_slots[] = {
    {Py_tp_dealloc, bufowner_dealloc},
    {Py_bf_getbuffer, bufowner_getbuffer},
    {Py_tp_doc, "Exports bytes inside a frozen region as a read-only buffer."},
    {0, NULL},
};

static PyType_Spec bufowner_spec = {
    .name = "frozenshare._BufferOwner",
    .basicsize = sizeof(fs_bufowner),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = bufowner_slots,
};

/* New reference: zero-copy read-only memoryview of the bytes value at ref
** (resolved through imports) in h's image; TypeError if it is not bytes. */
static PyObject *view_of(fs_handle *h, fs_ref_t ref, PyObject *where)
{
    fs_region_t *reg = h->region;
    const uint8_t *base = h->base;
    fs__resolve(&reg, &base, &ref);
    int kind = fs_ref_kind(base, ref);
    if (kind != FS_KIND_BYTES && kind != FS_KIND_BYTEARRAY) {
        /* Named from the kind: ref is now an offset in reg's image, not h's,
        ** so nothing here may read it through h. */
        PyErr_Format(PyExc_TypeError, "view(): the value at %R is '%s', not bytes",
                     where, kind_type_name(kind));
        return NULL;
    }
    fs_handle *owner_h = reg == h->region ? (fs_handle *)Py_NewRef(h)
                                          : fs__handle_borrowed(h->st, reg);
    if (owner_h == NULL)
        return NULL;
    fs_bufowner *b = PyObject_New(fs_bufowner, h->st->bufowner_type);
    if (b == NULL) {
        Py_DECREF(owner_h);
        return NULL;
    }
    const fs_bytes_t *bs = fs_bytes(base, ref);
    b->h = owner_h;
    b->data = bs->data;
    b->len = (Py_ssize_t)bs->length;
    PyObject *mv = PyMemoryView_FromObject((PyObject *)b);
    Py_DECREF(b);
    return mv;
}

/* ---- sequences: FrozenList, FrozenTuple --------------------------------- */

/* sq_length / mp_length; self borrowed. */
static Py_ssize_t seq_length(PyObject *self)
{
    return (Py_ssize_t)P_SEQ(FS_PROXY(self))->count;
}

/* sq_item: new reference; self borrowed. */
static PyObject *seq_item(PyObject *self, Py_ssize_t i)
{
    fs_proxy *p = FS_PROXY(self);
    const fs_seq_t *s = P_SEQ(p);
    if (i < 0 || (uint64_t)i >= s->count) {
        PyErr_SetString(PyExc_IndexError, Py_TYPE(self) == P_ST(p)->types[FS_PT_TUPLE]
                        ? "tuple index out of range" : "list index out of range");
        return NULL;
    }
    return fs__read(p->h, s->items[i]);
}

/* New reference: a plain tuple or list of the items, read (shallow). */
static PyObject *seq_materialize(fs_proxy *p, int as_list)
{
    const fs_seq_t *s = P_SEQ(p);
    Py_ssize_t n = (Py_ssize_t)s->count;
    PyObject *out = as_list ? PyList_New(n) : PyTuple_New(n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = fs__read(p->h, P_SEQ(p)->items[i]);
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

/* New reference: a list or tuple of len items from start by step; p borrowed. */
static PyObject *seq_slice(fs_proxy *p, Py_ssize_t start, Py_ssize_t step,
                           Py_ssize_t len, int as_list)
{
    PyObject *out = as_list ? PyList_New(len) : PyTuple_New(len);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t k = 0, i = start; k < len; k++, i += step) {
        PyObject *v = fs__read(p->h, P_SEQ(p)->items[i]);
        if (v == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        if (as_list)
            PyList_SET_ITEM(out, k, v);
        else
            PyTuple_SET_ITEM(out, k, v);
    }
    return out;
}

/* self borrowed. */
static int is_list_proxy(PyObject *self)
{
    return Py_TYPE(self) == P_ST(FS_PROXY(self))->types[FS_PT_LIST];
}

/* mp_subscript (index or slice): new reference; self, key borrowed. */
static PyObject *seq_subscript(PyObject *self, PyObject *key)
{
    fs_proxy *p = FS_PROXY(self);
    if (PyIndex_Check(key)) {
        Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred())
            return NULL;
        if (i < 0)
            i += seq_length(self);
        return seq_item(self, i);
    }
    if (PySlice_Check(key)) {
        Py_ssize_t start, stop, step;
        if (PySlice_Unpack(key, &start, &stop, &step) < 0)
            return NULL;
        Py_ssize_t len = PySlice_AdjustIndices(seq_length(self), &start, &stop, step);
        return seq_slice(p, start, step, len, is_list_proxy(self));
    }
    PyErr_Format(PyExc_TypeError, "%s indices must be integers or slices, not %.200s",
                 is_list_proxy(self) ? "list" : "tuple", Py_TYPE(key)->tp_name);
    return NULL;
}

/* sq_contains: 1, 0 or -1; self, value borrowed. */
static int seq_contains(PyObject *self, PyObject *value)
{
    fs_proxy *p = FS_PROXY(self);
    for (uint64_t i = 0; i < P_SEQ(p)->count; i++) {
        PyObject *v = fs__read(p->h, P_SEQ(p)->items[i]);
        if (v == NULL)
            return -1;
        int r = PyObject_RichCompareBool(v, value, Py_EQ);
        Py_DECREF(v);
        if (r != 0)
            return r;
    }
    return 0;
}

/* A start/stop bound of index(), clamped to Py_ssize_t as tuple.index and
** list.index clamp theirs (2**70 means "to the end"). 0, or -1 with an
** exception; o borrowed. */
static int slice_bound(PyObject *o, Py_ssize_t *out)
{
    if (!PyIndex_Check(o)) {
        PyErr_SetString(PyExc_TypeError,
                        "slice indices must be integers or have an __index__ method");
        return -1;
    }
    Py_ssize_t v = PyNumber_AsSsize_t(o, NULL);     /* NULL: clamp on overflow */
    if (v == -1 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

/* index(value[, start[, stop]]): new reference; self, args borrowed. */
static PyObject *seq_index(PyObject *self, PyObject *args)
{
    PyObject *value, *ostart = NULL, *ostop = NULL;
    Py_ssize_t start = 0, stop = PY_SSIZE_T_MAX;
    if (!PyArg_ParseTuple(args, "O|OO:index", &value, &ostart, &ostop))
        return NULL;
    if ((ostart != NULL && slice_bound(ostart, &start) < 0) ||
        (ostop != NULL && slice_bound(ostop, &stop) < 0))
        return NULL;
    fs_proxy *p = FS_PROXY(self);
    Py_ssize_t n = seq_length(self);
    if (start < 0 && (start += n) < 0)
        start = 0;
    if (stop < 0 && (stop += n) < 0)
        stop = 0;
    for (Py_ssize_t i = start; i < stop && i < n; i++) {
        PyObject *v = fs__read(p->h, P_SEQ(p)->items[i]);
        if (v == NULL)
            return NULL;
        int r = PyObject_RichCompareBool(v, value, Py_EQ);
        Py_DECREF(v);
        if (r < 0)
            return NULL;
        if (r > 0)
            return PyLong_FromSsize_t(i);
    }
    PyErr_Format(PyExc_ValueError, "%s.index(x): x not in %s",
                 is_list_proxy(self) ? "list" : "tuple",
                 is_list_proxy(self) ? "list" : "tuple");
    return NULL;
}

/* count(value): new reference; self, value borrowed. */
static PyObject *seq_count(PyObject *self, PyObject *value)
{
    fs_proxy *p = FS_PROXY(self);
    Py_ssize_t count = 0;
    for (uint64_t i = 0; i < P_SEQ(p)->count; i++) {
        PyObject *v = fs__read(p->h, P_SEQ(p)->items[i]);
        if (v == NULL)
            return NULL;
        int r = PyObject_RichCompareBool(v, value, Py_EQ);
        Py_DECREF(v);
        if (r < 0)
            return NULL;
        count += r;
    }
    return PyLong_FromSsize_t(count);
}

/* New reference to item i of a proxy sequence or a plain tuple/list; NULL
** without an exception when i is past the end (a list may shrink). */
static PyObject *any_item(PyObject *o, int is_proxy, Py_ssize_t i)
{
    if (is_proxy) {
        fs_proxy *p = FS_PROXY(o);
        if ((uint64_t)i >= P_SEQ(p)->count)
            return NULL;
        return fs__read(p->h, P_SEQ(p)->items[i]);
    }
    if (i >= PySequence_Fast_GET_SIZE(o))
        return NULL;
    return Py_NewRef(PySequence_Fast_GET_ITEM(o, i));
}

/* o borrowed (a proxy sequence, or a tuple/list when !is_proxy). */
static Py_ssize_t any_len(PyObject *o, int is_proxy)
{
    return is_proxy ? seq_length(o) : PySequence_Fast_GET_SIZE(o);
}

/* tp_richcompare, lexicographic as tuple and list do: new reference; self,
** other borrowed. */
static PyObject *seq_richcompare(PyObject *self, PyObject *other, int op)
{
    fs_proxy *a = FS_PROXY(self);
    int list = is_list_proxy(self);
    int other_proxy = Py_TYPE(other) == Py_TYPE(self);
    if (!other_proxy && !(list ? PyList_Check(other) : PyTuple_Check(other)))
        Py_RETURN_NOTIMPLEMENTED;
    if (other_proxy && same_object(a, FS_PROXY(other)))
        Py_RETURN_RICHCOMPARE(0, 0, op);
    Py_ssize_t la = seq_length(self), lb = any_len(other, other_proxy);
    if (la != lb && (op == Py_EQ || op == Py_NE))
        return Py_NewRef(op == Py_EQ ? Py_False : Py_True);
    for (Py_ssize_t i = 0;; i++) {
        PyObject *x = any_item(self, 1, i);
        if (x == NULL) {
            if (PyErr_Occurred())
                return NULL;
            break;
        }
        PyObject *y = any_item(other, other_proxy, i);
        if (y == NULL) {
            Py_DECREF(x);
            if (PyErr_Occurred())
                return NULL;
            break;
        }
        int k = PyObject_RichCompareBool(x, y, Py_EQ);
        if (k == 0) {
            PyObject *res;
            if (op == Py_EQ)
                res = Py_NewRef(Py_False);
            else if (op == Py_NE)
                res = Py_NewRef(Py_True);
            else
                res = PyObject_RichCompare(x, y, op);
            Py_DECREF(x);
            Py_DECREF(y);
            return res;
        }
        Py_DECREF(x);
        Py_DECREF(y);
        if (k < 0)
            return NULL;
    }
    la = seq_length(self);
    lb = any_len(other, other_proxy);
    Py_RETURN_RICHCOMPARE(la, lb, op);
}

/* tp_hash: that of the equal tuple, cached; self borrowed. */
static Py_hash_t tuple_hash(PyObject *self)
{
    fs_proxy *p = FS_PROXY(self);
    if (p->hash != -1)
        return p->hash;
    if (Py_EnterRecursiveCall(" while hashing a FrozenTuple"))
        return -1;
    /* Equal to hash(tuple(self)): the same algorithm over the same items. */
    PyObject *t = seq_materialize(p, 0);
    Py_hash_t h = t != NULL ? PyObject_Hash(t) : -1;
    Py_XDECREF(t);
    Py_LeaveRecursiveCall();
    p->hash = h;
    return h;
}

/* tp_repr: new reference; self borrowed. */
static PyObject *seq_repr(PyObject *self)
{
    fs_proxy *p = FS_PROXY(self);
    int list = is_list_proxy(self);
    const char *name = list ? "FrozenList" : "FrozenTuple";
    int r = repr_enter(p);
    if (r < 0)
        return NULL;
    if (r == 0)
        return PyUnicode_FromFormat(list ? "%s([...])" : "%s((...))", name);
    PyObject *res = NULL, *plain = seq_materialize(p, list);
    if (plain != NULL) {
        res = PyUnicode_FromFormat("%s(%R)", name, plain);
        Py_DECREF(plain);
    }
    repr_leave(p);
    return res;
}

/* New reference: o as a plain tuple/list for concatenation, or
** Py_NotImplemented. */
static PyObject *as_plain_seq(PyObject *o, PyTypeObject *proxy_tp, int list)
{
    if (Py_TYPE(o) == proxy_tp)
        return seq_materialize(FS_PROXY(o), list);
    if (list ? PyList_Check(o) : PyTuple_Check(o))
        return Py_NewRef(o);
    return Py_NewRef(Py_NotImplemented);
}


/* nb_add: new reference (a plain tuple/list) or NotImplemented; a, b borrowed. */
static PyObject *seq_add_impl(PyObject *a, PyObject *b, int list, binaryfunc me)
{
    PyObject *self = (Py_TYPE(a)->tp_as_number != NULL &&
                      Py_TYPE(a)->tp_as_number->nb_add == me) ? a : b;
    PyTypeObject *tp = Py_TYPE(self);
    PyObject *res = NULL, *y = NULL, *x = as_plain_seq(a, tp, list);
    if (x == NULL)
        return NULL;
    if (x == Py_NotImplemented)
        return x;
    y = as_plain_seq(b, tp, list);
    if (y == NULL || y == Py_NotImplemented) {
        Py_DECREF(x);
        return y;
    }
    res = PySequence_Concat(x, y);
    Py_DECREF(x);
    Py_DECREF(y);
    return res;
}

/* nb_multiply: new reference or NotImplemented; a, b borrowed. */
static PyObject *seq_mul_impl(PyObject *a, PyObject *b, int list, binaryfunc me)
{
    int a_is_self = Py_TYPE(a)->tp_as_number != NULL &&
                    Py_TYPE(a)->tp_as_number->nb_multiply == me;
    PyObject *self = a_is_self ? a : b, *n = a_is_self ? b : a;
    if (!PyIndex_Check(n))
        Py_RETURN_NOTIMPLEMENTED;
    Py_ssize_t count = PyNumber_AsSsize_t(n, PyExc_OverflowError);
    if (count == -1 && PyErr_Occurred())
        return NULL;
    PyObject *plain = seq_materialize(FS_PROXY(self), list);
    if (plain == NULL)
        return NULL;
    PyObject *res = PySequence_Repeat(plain, count);
    Py_DECREF(plain);
    return res;
}

/* The nb_add / nb_multiply slots: new reference; a, b borrowed. */
static PyObject *tuple_add(PyObject *a, PyObject *b);
static PyObject *tuple_add(PyObject *a, PyObject *b) { return seq_add_impl(a, b, 0, tuple_add); }
static PyObject *list_add(PyObject *a, PyObject *b);
static PyObject *list_add(PyObject *a, PyObject *b) { return seq_add_impl(a, b, 1, list_add); }
static PyObject *tuple_mul(PyObject *a, PyObject *b);
static PyObject *tuple_mul(PyObject *a, PyObject *b) { return seq_mul_impl(a, b, 0, tuple_mul); }
static PyObject *list_mul(PyObject *a, PyObject *b);
static PyObject *list_mul(PyObject *a, PyObject *b) { return seq_mul_impl(a, b, 1, list_mul); }

/* ---- sequence iterator -------------------------------------------------- */

typedef struct fs_seqiter_s {
    PyObject_HEAD
    fs_proxy  *p;            /* strong; NULL once exhausted               */
    Py_ssize_t i;            /* next index                                */
    int        reverse;      /* iterate from the end                      */
} fs_seqiter;

/* tp_dealloc: consumes the last reference to self, drops the proxy's. */
static void seqiter_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    Py_XDECREF(((fs_seqiter *)self)->p);
    PyObject_Free(self);
    Py_DECREF(tp);
}

/* tp_iternext: new reference, or NULL without an exception at the end. */
static PyObject *seqiter_next(PyObject *self)
{
    fs_seqiter *it = (fs_seqiter *)self;
    fs_proxy *p = it->p;
    if (p == NULL)
        return NULL;
    const fs_seq_t *s = P_SEQ(p);
    if (it->i >= 0 && (uint64_t)it->i < s->count) {
        fs_ref_t r = s->items[it->i];
        it->i += it->reverse ? -1 : 1;
        if (fs_ref_tag(r) == FS_TAG_INT)                /* the common leaf, inline */
            return PyLong_FromLongLong(fs_ref_int_value(r));
        return fs__read(p->h, r);
    }
    it->p = NULL;
    Py_DECREF(p);
    return NULL;
}

/* __length_hint__: new reference; self borrowed. */
static PyObject *seqiter_length_hint(PyObject *self, PyObject *unused)
{
    (void)unused;
    fs_seqiter *it = (fs_seqiter *)self;
    if (it->p == NULL)
        return PyLong_FromLong(0);
    Py_ssize_t n = (Py_ssize_t)P_SEQ(it->p)->count;
    Py_ssize_t left = it->reverse ? it->i + 1 : n - it->i;
    return PyLong_FromSsize_t(left < 0 ? 0 : left);
}

/* New reference: builtins.iter or builtins.reversed, for iterators' __reduce__. */
static PyObject *builtin_named(const char *name)
{
    PyObject *builtins = PyEval_GetBuiltins();      /* borrowed */
    PyObject *f = builtins != NULL ? PyDict_GetItemString(builtins, name) : NULL;
    if (f == NULL) {
        PyErr_Format(PyExc_RuntimeError, "frozenshare: builtins.%s not found", name);
        return NULL;
    }
    return Py_NewRef(f);
}

/* __reduce__, as list and tuple iterators do: (iter or reversed, (seq,),
** position), restored by __setstate__; an exhausted iterator reduces to
** iter(()). copy.copy and pickle both go through it. New reference. */
static PyObject *seqiter_reduce(PyObject *self, PyObject *unused)
{
    (void)unused;
    fs_seqiter *it = (fs_seqiter *)self;
    PyObject *f = builtin_named(it->reverse && it->p != NULL ? "reversed" : "iter");
    if (f == NULL)
        return NULL;
    if (it->p == NULL)
        return Py_BuildValue("N(())", f);
    return Py_BuildValue("N(O)n", f, (PyObject *)it->p, it->i);
}

/* __setstate__(position): new reference (None); self, state borrowed. */
static PyObject *seqiter_setstate(PyObject *self, PyObject *state)
{
    fs_seqiter *it = (fs_seqiter *)self;
    Py_ssize_t i = PyLong_AsSsize_t(state);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    if (it->p != NULL) {
        Py_ssize_t n = (Py_ssize_t)P_SEQ(it->p)->count;
        if (it->reverse)
            it->i = i < -1 ? -1 : i >= n ? n - 1 : i;
        else
            it->i = i < 0 ? 0 : i > n ? n : i;
    }
    Py_RETURN_NONE;
}

/* New reference: an iterator over self (borrowed). */
static PyObject *seqiter_new(PyObject *self, int reverse)
{
    fs_proxy *p = FS_PROXY(self);
    fs_seqiter *it = PyObject_New(fs_seqiter, P_ST(p)->seqiter_type);
    if (it == NULL)
        return NULL;
    it->p = (fs_proxy *)Py_NewRef(self);
    it->reverse = reverse;
    it->i = reverse ? (Py_ssize_t)P_SEQ(p)->count - 1 : 0;
    return (PyObject *)it;
}

/* tp_iter: new reference; self borrowed. */
static PyObject *seq_iter(PyObject *self) { return seqiter_new(self, 0); }

/* __reversed__: new reference; self borrowed. */
static PyObject *seq_reversed(PyObject *self, PyObject *unused)
{
    (void)unused;
    return seqiter_new(self, 1);
}

/* ---- maps and sets: iterator -------------------------------------------- */

enum { IT_KEYS = 0, IT_VALUES = 1, IT_ITEMS = 2 };

typedef struct fs_mapiter_s {
    PyObject_HEAD
    fs_proxy  *p;            /* strong (FrozenMap or FrozenSet); NULL at end */
    Py_ssize_t i;            /* next entry                                */
    int        mode;         /* IT_KEYS / IT_VALUES / IT_ITEMS            */
    int        reverse;
} fs_mapiter;

/* tp_dealloc: consumes the last reference to self, drops the proxy's. */
static void mapiter_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    Py_XDECREF(((fs_mapiter *)self)->p);
    PyObject_Free(self);
    Py_DECREF(tp);
}

/* New reference: (key, value) of entry e as a plain tuple. */
static PyObject *map_item_tuple(fs_proxy *p, uint64_t e)
{
    PyObject *k = fs__read(p->h, P_MAP(p)->entries[e].key);
    if (k == NULL)
        return NULL;
    PyObject *v = fs__read(p->h, P_MAP(p)->entries[e].value);
    if (v == NULL) {
        Py_DECREF(k);
        return NULL;
    }
    PyObject *t = PyTuple_New(2);
    if (t == NULL) {
        Py_DECREF(k);
        Py_DECREF(v);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, k);
    PyTuple_SET_ITEM(t, 1, v);
    return t;
}

/* tp_iternext: new reference, or NULL without an exception at the end. */
static PyObject *mapiter_next(PyObject *self)
{
    fs_mapiter *it = (fs_mapiter *)self;
    fs_proxy *p = it->p;
    if (p == NULL)
        return NULL;
    const fs_map_t *m = P_MAP(p);
    if (it->i >= 0 && (uint64_t)it->i < m->count) {
        uint64_t e = (uint64_t)it->i;
        it->i += it->reverse ? -1 : 1;
        switch (it->mode) {
        case IT_KEYS:   return fs__read(p->h, m->entries[e].key);
        case IT_VALUES: return fs__read(p->h, m->entries[e].value);
        default:        return map_item_tuple(p, e);
        }
    }
    it->p = NULL;
    Py_DECREF(p);
    return NULL;
}

/* __length_hint__: new reference; self borrowed. */
static PyObject *mapiter_length_hint(PyObject *self, PyObject *unused)
{
    (void)unused;
    fs_mapiter *it = (fs_mapiter *)self;
    if (it->p == NULL)
        return PyLong_FromLong(0);
    Py_ssize_t n = (Py_ssize_t)P_MAP(it->p)->count;
    Py_ssize_t left = it->reverse ? it->i + 1 : n - it->i;
    return PyLong_FromSsize_t(left < 0 ? 0 : left);
}

/* __reduce__, as dict iterators do: iter(list of what is left), read
** without advancing self. New reference; self borrowed. */
static PyObject *mapiter_reduce(PyObject *self, PyObject *unused)
{
    (void)unused;
    fs_mapiter *it = (fs_mapiter *)self;
    PyObject *f = builtin_named("iter");
    if (f == NULL)
        return NULL;
    PyObject *left = PyList_New(0);
    if (left == NULL) {
        Py_DECREF(f);
        return NULL;
    }
    fs_proxy *p = it->p;
    Py_ssize_t n = p != NULL ? (Py_ssize_t)P_MAP(p)->count : 0;
    for (Py_ssize_t i = it->i; p != NULL && i >= 0 && i < n; i += it->reverse ? -1 : 1) {
        uint64_t e = (uint64_t)i;
        PyObject *v = it->mode == IT_KEYS ? fs__read(p->h, P_MAP(p)->entries[e].key)
                    : it->mode == IT_VALUES ? fs__read(p->h, P_MAP(p)->entries[e].value)
                    : map_item_tuple(p, e);
        if (v == NULL || PyList_Append(left, v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(left);
            Py_DECREF(f);
            return NULL;
        }
        Py_DECREF(v);
    }
    return Py_BuildValue("N(N)", f, left);
}

/* New reference: an iterator over the entries of p (borrowed). */
static PyObject *mapiter_new(fs_proxy *p, int mode, int reverse)
{
    fs_mapiter *it = PyObject_New(fs_mapiter, P_ST(p)->mapiter_type);
    if (it == NULL)
        return NULL;
    it->p = (fs_proxy *)Py_NewRef(p);
    it->mode = mode;
    it->reverse = reverse;
    it->i = reverse ? (Py_ssize_t)P_MAP(p)->count - 1 : 0;
    return (PyObject *)it;
}

/* ---- FrozenMap ---------------------------------------------------------- */

/* mp_length; self borrowed. */
static Py_ssize_t map_length(PyObject *self)
{
    return (Py_ssize_t)P_MAP(FS_PROXY(self))->count;
}

/* mp_subscript: new reference, KeyError when absent; self, key borrowed. */
static PyObject *map_subscript(PyObject *self, PyObject *key)
{
    fs_proxy *p = FS_PROXY(self);
    int64_t e;
    int r = map_find(p, key, &e);
    if (r < 0)
        return NULL;
    if (r == 0) {
        key_error(key);
        return NULL;
    }
    return fs__read(p->h, P_MAP(p)->entries[e].value);
}

/* sq_contains: 1, 0 or -1; self, key borrowed. */
static int map_contains(PyObject *self, PyObject *key)
{
    int64_t e;
    return map_find(FS_PROXY(self), key, &e);
}

/* tp_iter (keys): new reference; self borrowed. */
static PyObject *map_iter(PyObject *self)
{
    return mapiter_new(FS_PROXY(self), IT_KEYS, 0);
}

/* __reversed__: new reference; self borrowed. */
static PyObject *map_reversed(PyObject *self, PyObject *unused)
{
    (void)unused;
    return mapiter_new(FS_PROXY(self), IT_KEYS, 1);
}

/* get(key, default=None): new reference; self, args borrowed. */
static PyObject *map_get(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "get expected 1 or 2 arguments, got %zd", nargs);
        return NULL;
    }
    fs_proxy *p = FS_PROXY(self);
    int64_t e;
    int r = map_find(p, args[0], &e);
    if (r < 0)
        return NULL;
    if (r == 0)
        return Py_NewRef(nargs == 2 ? args[1] : Py_None);
    return fs__read(p->h, P_MAP(p)->entries[e].value);
}

/* FrozenMap.fromkeys(iterable, value=None, /): the frozen dict.fromkeys.
** Class method: new reference; cls, args borrowed. */
static PyObject *map_fromkeys(PyObject *cls, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "fromkeys expected 1 or 2 arguments, got %zd", nargs);
        return NULL;
    }
    PyObject *module = PyType_GetModuleByDef((PyTypeObject *)cls, &fs__module_def);
    if (module == NULL)
        return NULL;
    PyObject *d = PyObject_CallMethod((PyObject *)&PyDict_Type, "fromkeys", "OO", args[0],
                                      nargs == 2 ? args[1] : Py_None);
    if (d == NULL)
        return NULL;
    PyObject *res = fs__freeze(PyModule_GetState(module), d);
    Py_DECREF(d);
    return res;
}

/* 1 if o (borrowed) is a Mapping (dict, FrozenMap, or registered with the
** ABC), 0 if not, -1 on error. */
static int is_mapping(fs_state *st, PyObject *o)
{
    if (PyDict_Check(o) || is_type(o, st, FS_PT_MAP))
        return 1;
    if (st->mapping_abc == NULL) {
        PyObject *abc = PyImport_ImportModule("collections.abc");
        if (abc == NULL)
            return -1;
        st->mapping_abc = PyObject_GetAttrString(abc, "Mapping");
        Py_DECREF(abc);
        if (st->mapping_abc == NULL)
            return -1;
    }
    return PyObject_IsInstance(o, st->mapping_abc);
}

/* tp_richcompare: == / != with any Mapping; new reference; self, other borrowed. */
static PyObject *map_richcompare(PyObject *self, PyObject *other, int op)
{
    fs_proxy *p = FS_PROXY(self);
    fs_state *st = P_ST(p);
    if (op != Py_EQ && op != Py_NE)
        Py_RETURN_NOTIMPLEMENTED;
    if (is_type(other, st, FS_PT_MAP) && same_object(p, FS_PROXY(other)))
        return Py_NewRef(op == Py_EQ ? Py_True : Py_False);
    int r = is_mapping(st, other);
    if (r < 0)
        return NULL;
    if (r == 0)
        Py_RETURN_NOTIMPLEMENTED;
    Py_ssize_t n = PyObject_Size(other);
    if (n < 0)
        return NULL;
    int equal = (uint64_t)n == P_MAP(p)->count;
    for (uint64_t e = 0; equal && e < P_MAP(p)->count; e++) {
        PyObject *k = fs__read(p->h, P_MAP(p)->entries[e].key);
        if (k == NULL)
            return NULL;
        PyObject *ov;
        if (PyDict_Check(other)) {
            /* dict's own lookup, as dict == dict does: a subclass's
            ** __missing__ or __getitem__ is never called (defaultdict
            ** would insert the key, Counter would answer 0). */
            ov = PyDict_GetItemWithError(other, k);
            Py_XINCREF(ov);
        }
        else {
            ov = PyObject_GetItem(other, k);
            if (ov == NULL && PyErr_ExceptionMatches(PyExc_KeyError))
                PyErr_Clear();
        }
        Py_DECREF(k);
        if (ov == NULL) {
            if (PyErr_Occurred())
                return NULL;
            equal = 0;
            break;
        }
        PyObject *v = fs__read(p->h, P_MAP(p)->entries[e].value);
        if (v == NULL) {
            Py_DECREF(ov);
            return NULL;
        }
        int c = PyObject_RichCompareBool(v, ov, Py_EQ);
        Py_DECREF(v);
        Py_DECREF(ov);
        if (c < 0)
            return NULL;
        equal = c;
    }
    return Py_NewRef((equal == (op == Py_EQ)) ? Py_True : Py_False);
}

static PyObject *map_or(PyObject *a, PyObject *b);

/* Update dict d (borrowed) with the pairs of o (borrowed): a FrozenMap's
** entries directly (a NaN key could not be looked up again), else as
** dict.update does. 0, or -1 with an exception. */
static int merge_into(PyObject *d, PyObject *o)
{
    if (!(Py_TYPE(o)->tp_as_number != NULL && Py_TYPE(o)->tp_as_number->nb_or == map_or))
        return PyDict_Update(d, o);
    fs_proxy *p = FS_PROXY(o);
    for (uint64_t e = 0; e < P_MAP(p)->count; e++) {
        PyObject *k = fs__read(p->h, P_MAP(p)->entries[e].key);
        if (k == NULL)
            return -1;
        PyObject *v = fs__read(p->h, P_MAP(p)->entries[e].value);
        int rc = v != NULL ? PyDict_SetItem(d, k, v) : -1;
        Py_DECREF(k);
        Py_XDECREF(v);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* FrozenMap | Mapping and Mapping | FrozenMap: a new FrozenMap of the merged
** dict (values that are proxies are shared as imports, not copied).
** nb_or: new reference; a, b borrowed. */
static PyObject *map_or(PyObject *a, PyObject *b)
{
    int a_is_self = Py_TYPE(a)->tp_as_number != NULL &&
                    Py_TYPE(a)->tp_as_number->nb_or == map_or;
    fs_state *st = P_ST(FS_PROXY(a_is_self ? a : b));
    int r = is_mapping(st, a_is_self ? b : a);
    if (r < 0)
        return NULL;
    if (r == 0)
        Py_RETURN_NOTIMPLEMENTED;
    PyObject *res = NULL, *merged = PyDict_New();
    if (merged == NULL)
        return NULL;
    if (merge_into(merged, a) == 0 && merge_into(merged, b) == 0)
        res = fs__freeze(st, merged);
    Py_DECREF(merged);
    return res;
}

/* tp_hash: hash(frozenset(self.items())), cached; self borrowed. */
static Py_hash_t map_hash(PyObject *self)
{
    fs_proxy *p = FS_PROXY(self);
    if (p->hash != -1)
        return p->hash;
    if (Py_EnterRecursiveCall(" while hashing a FrozenMap"))
        return -1;
    /* hash(frozenset(self.items())) */
    Py_hash_t h = -1;
    PyObject *fz = NULL, *items = PyList_New((Py_ssize_t)P_MAP(p)->count);
    if (items == NULL)
        goto error;
    for (uint64_t e = 0; e < P_MAP(p)->count; e++) {
        PyObject *t = map_item_tuple(p, e);
        if (t == NULL)
            goto error;
        PyList_SET_ITEM(items, (Py_ssize_t)e, t);
    }
    fz = PyFrozenSet_New(items);
    if (fz != NULL)
        h = PyObject_Hash(fz);
error:
    Py_XDECREF(items);
    Py_XDECREF(fz);
    Py_LeaveRecursiveCall();
    p->hash = h;
    return h;
}

/* New reference: ", ".join of "repr(k): repr(v)" (or of repr(k) for sets). */
static PyObject *map_join_reprs(fs_proxy *p, int with_values)
{
    const fs_map_t *m = P_MAP(p);
    PyObject *sep = NULL, *res = NULL, *parts = PyList_New((Py_ssize_t)m->count);
    if (parts == NULL)
        return NULL;
    for (uint64_t e = 0; e < P_MAP(p)->count; e++) {
        PyObject *k = fs__read(p->h, P_MAP(p)->entries[e].key), *s;
        if (k == NULL)
            goto error;
        if (with_values) {
            PyObject *v = fs__read(p->h, P_MAP(p)->entries[e].value);
            if (v == NULL) {
                Py_DECREF(k);
                goto error;
            }
            s = PyUnicode_FromFormat("%R: %R", k, v);
            Py_DECREF(v);
        }
        else {
            s = PyObject_Repr(k);
        }
        Py_DECREF(k);
        if (s == NULL)
            goto error;
        PyList_SET_ITEM(parts, (Py_ssize_t)e, s);
    }
    sep = PyUnicode_FromString(", ");
    if (sep != NULL)
        res = PyUnicode_Join(sep, parts);
error:
    Py_XDECREF(sep);
    Py_DECREF(parts);
    return res;
}

/* tp_repr: new reference; self borrowed. */
static PyObject *map_repr(PyObject *self)
{
    fs_proxy *p = FS_PROXY(self);
    int r = repr_enter(p);
    if (r < 0)
        return NULL;
    if (r == 0)
        return PyUnicode_FromString("FrozenMap({...})");
    PyObject *res = NULL, *inner = map_join_reprs(p, 1);
    if (inner != NULL) {
        res = PyUnicode_FromFormat("FrozenMap({%U})", inner);
        Py_DECREF(inner);
    }
    repr_leave(p);
    return res;
}

/* ---- FrozenMap views ---------------------------------------------------- */

typedef struct fs_mapview_s {
    PyObject_HEAD
    fs_proxy *map;           /* strong: the FrozenMap                     */
} fs_mapview;

#define VIEW_MAP(o) (((fs_mapview *)(o))->map)

/* tp_dealloc: consumes the last reference to self, drops the FrozenMap's. */
static void mapview_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    Py_DECREF(VIEW_MAP(self));
    PyObject_Free(self);
    Py_DECREF(tp);
}

/* New reference: a view of type tp over map (borrowed). */
static PyObject *mapview_new(PyObject *map, PyTypeObject *tp)
{
    fs_mapview *v = PyObject_New(fs_mapview, tp);
    if (v == NULL)
        return NULL;
    v->map = (fs_proxy *)Py_NewRef(map);
    return (PyObject *)v;
}

/* keys(): new reference; self borrowed. */
static PyObject *map_keys(PyObject *self, PyObject *unused)
{
    (void)unused;
    return mapview_new(self, P_ST(FS_PROXY(self))->keys_type);
}

/* values(): new reference; self borrowed. */
static PyObject *map_values(PyObject *self, PyObject *unused)
{
    (void)unused;
    return mapview_new(self, P_ST(FS_PROXY(self))->values_type);
}

/* items(): new reference; self borrowed. */
static PyObject *map_items(PyObject *self, PyObject *unused)
{
    (void)unused;
    return mapview_new(self, P_ST(FS_PROXY(self))->items_type);
}

/* self borrowed. */
static int view_mode(PyObject *self)
{
    fs_state *st = P_ST(VIEW_MAP(self));
    if (Py_TYPE(self) == st->keys_type)
        return IT_KEYS;
    return Py_TYPE(self) == st->values_type ? IT_VALUES : IT_ITEMS;
}

/* sq_length; self borrowed. */
static Py_ssize_t mapview_length(PyObject *self)
{
    return (Py_ssize_t)P_MAP(VIEW_MAP(self))->count;
}

/* tp_iter: new reference; self borrowed. */
static PyObject *mapview_iter(PyObject *self)
{
    return mapiter_new(VIEW_MAP(self), view_mode(self), 0);
}

/* __reversed__: new reference; self borrowed. */
static PyObject *mapview_reversed(PyObject *self, PyObject *unused)
{
    (void)unused;
    return mapiter_new(VIEW_MAP(self), view_mode(self), 1);
}

/* mapping getter: new reference to the FrozenMap; self borrowed. */
static PyObject *mapview_mapping(PyObject *self, void *closure)
{
    (void)closure;
    return Py_NewRef(VIEW_MAP(self));
}

/* sq_contains: 1, 0 or -1; self, key borrowed. */
static int keys_contains(PyObject *self, PyObject *key)
{
    int64_t e;
    return map_find(VIEW_MAP(self), key, &e);
}

/* sq_contains for (key, value) pairs: 1, 0 or -1; self, item borrowed. */
static int items_contains(PyObject *self, PyObject *item)
{
    if (Py_TYPE(item)->tp_hash == tuple_hash) {          /* a FrozenTuple pair */
        PyObject *t = seq_materialize(FS_PROXY(item), 0);
        if (t == NULL)
            return -1;
        int r = items_contains(self, t);
        Py_DECREF(t);
        return r;
    }
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2)
        return 0;
    fs_proxy *p = VIEW_MAP(self);
    int64_t e;
    int r = map_find(p, PyTuple_GET_ITEM(item, 0), &e);
    if (r <= 0)
        return r;
    PyObject *v = fs__read(p->h, P_MAP(p)->entries[e].value);
    if (v == NULL)
        return -1;
    r = PyObject_RichCompareBool(v, PyTuple_GET_ITEM(item, 1), Py_EQ);
    Py_DECREF(v);
    return r;
}

/* sq_contains (a scan): 1, 0 or -1; self, value borrowed. */
static int values_contains(PyObject *self, PyObject *value)
{
    fs_proxy *p = VIEW_MAP(self);
    for (uint64_t e = 0; e < P_MAP(p)->count; e++) {
        PyObject *v = fs__read(p->h, P_MAP(p)->entries[e].value);
        if (v == NULL)
            return -1;
        int r = PyObject_RichCompareBool(v, value, Py_EQ);
        Py_DECREF(v);
        if (r != 0)
            return r;
    }
    return 0;
}

/* o borrowed. */
static int is_setview(fs_state *st, PyObject *o)
{
    return Py_TYPE(o) == st->keys_type || Py_TYPE(o) == st->items_type;
}

/* New reference: o as a set for set operators on views. */
static PyObject *as_set(PyObject *o)
{
    if (PyAnySet_Check(o))
        return Py_NewRef(o);
    return PySet_New(o);
}

/* 1 if every element of x is in y, 0 if not, -1 on error. x, y borrowed. */
static int all_in(PyObject *x, PyObject *y)
{
    PyObject *it = PyObject_GetIter(x);
    if (it == NULL)
        return -1;
    PyObject *v;
    int r = 1, items = PyDictItems_Check(y);
    while (r == 1 && (v = PyIter_Next(it)) != NULL) {
        /* dict_items holds only exact (key, value) tuples: a FrozenSet's
        ** pairs come out as FrozenTuples, so ask with the equal tuple. */
        if (items && Py_TYPE(v)->tp_hash == tuple_hash) {
            PyObject *t = seq_materialize(FS_PROXY(v), 0);
            Py_SETREF(v, t);
            if (v == NULL) {
                r = -1;
                break;
            }
        }
        r = PySequence_Contains(y, v);
        Py_DECREF(v);
    }
    Py_DECREF(it);
    if (r == 1 && PyErr_Occurred())
        return -1;
    return r;
}

/* Set comparison by sizes and containment (as sets and dict views do: the
** elements need not be hashable). New reference; self, other borrowed. */
static PyObject *setlike_compare(PyObject *self, PyObject *other, int op)
{
    Py_ssize_t la = PyObject_Size(self), lb = PyObject_Size(other);
    if (la < 0 || lb < 0)
        return NULL;
    int r;
    switch (op) {
    case Py_EQ: r = la == lb ? all_in(self, other) : 0; break;
    case Py_NE: r = la == lb ? all_in(self, other) : 0; if (r >= 0) r = !r; break;
    case Py_LE: r = la <= lb ? all_in(self, other) : 0; break;
    case Py_LT: r = la < lb ? all_in(self, other) : 0; break;
    case Py_GE: r = la >= lb ? all_in(other, self) : 0; break;
    default:    r = la > lb ? all_in(other, self) : 0; break;
    }
    if (r < 0)
        return NULL;
    return Py_NewRef(r ? Py_True : Py_False);
}

/* tp_richcompare (set comparisons): new reference; self, other borrowed. */
static PyObject *setview_richcompare(PyObject *self, PyObject *other, int op)
{
    fs_state *st = P_ST(VIEW_MAP(self));
    if (!(PyAnySet_Check(other) || is_setview(st, other) || is_type(other, st, FS_PT_SET) ||
          PyDictKeys_Check(other) || PyDictItems_Check(other)))
        Py_RETURN_NOTIMPLEMENTED;
    return setlike_compare(self, other, op);
}

/* New reference: op(set(a), set(b)); a, b borrowed. */
static PyObject *setview_binop(PyObject *a, PyObject *b, binaryfunc op)
{
    PyObject *res = NULL, *y = NULL, *x = as_set(a);
    if (x == NULL)
        return NULL;
    y = as_set(b);
    if (y != NULL)
        res = op(x, y);
    Py_DECREF(x);
    Py_XDECREF(y);
    return res;
}

/* nb_and: new reference (a set); a, b borrowed. As CPython's dict views
** intersect: iterate the smaller side and keep what the other contains, so
** the view's own elements are hashed only when they are kept (items with
** unhashable values intersect fine). */
static PyObject *setview_and(PyObject *a, PyObject *b)
{
    PyObject *self = a, *other = b;
    if (!(Py_TYPE(a)->tp_as_number != NULL && Py_TYPE(a)->tp_as_number->nb_and == setview_and)) {
        self = b;
        other = a;
    }
    fs_state *st = P_ST(VIEW_MAP(self));
    Py_ssize_t len_self = mapview_length(self);
    if (PySet_CheckExact(other) && len_self <= PySet_GET_SIZE(other))
        return PyObject_CallMethod(other, "intersection", "O", self);
    if (is_setview(st, other) || PyDictKeys_Check(other) || PyDictItems_Check(other)) {
        Py_ssize_t len_other = PyObject_Size(other);
        if (len_other < 0)
            return NULL;
        if (len_other > len_self) {            /* iterate the smaller one */
            PyObject *t = self;
            self = other;
            other = t;
        }
    }
    PyObject *x, *it = PyObject_GetIter(other), *res = NULL;
    if (it == NULL)
        return NULL;
    res = PySet_New(NULL);
    if (res == NULL)
        goto error;
    while ((x = PyIter_Next(it)) != NULL) {
        int r = PySequence_Contains(self, x);
        if (r > 0)
            r = PySet_Add(res, x) < 0 ? -1 : 1;
        Py_DECREF(x);
        if (r < 0)
            goto error;
    }
    if (PyErr_Occurred())
        goto error;
    Py_DECREF(it);
    return res;
error:
    Py_DECREF(it);
    Py_XDECREF(res);
    return NULL;
}

/* nb_or / nb_subtract / nb_xor: new reference (a set); a, b borrowed. */
static PyObject *setview_or(PyObject *a, PyObject *b)   /* borrowed */
{ return setview_binop(a, b, PyNumber_Or); }
static PyObject *setview_sub(PyObject *a, PyObject *b)  /* borrowed */
{ return setview_binop(a, b, PyNumber_Subtract); }
static PyObject *setview_xor(PyObject *a, PyObject *b)  /* borrowed */
{ return setview_binop(a, b, PyNumber_Xor); }

/* isdisjoint(other): new reference; self, other borrowed. */
static PyObject *setview_isdisjoint(PyObject *self, PyObject *other)
{
    PyObject *it = PyObject_GetIter(other);
    if (it == NULL)
        return NULL;
    PyObject *x;
    while ((x = PyIter_Next(it)) != NULL) {
        int r = PySequence_Contains(self, x);
        Py_DECREF(x);
        if (r != 0) {
            Py_DECREF(it);
            return r < 0 ? NULL : Py_NewRef(Py_False);
        }
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_TRUE;
}

/* tp_repr: new reference; self borrowed. */
static PyObject *mapview_repr(PyObject *self)
{
    const char *name = view_mode(self) == IT_KEYS ? "FrozenMapKeys"
                     : view_mode(self) == IT_VALUES ? "FrozenMapValues" : "FrozenMapItems";
    PyObject *res = NULL, *list = PySequence_List(self);
    if (list != NULL) {
        res = PyUnicode_FromFormat("%s(%R)", name, list);
        Py_DECREF(list);
    }
    return res;
}

/* ---- FrozenSet ---------------------------------------------------------- */

/* sq_length; self borrowed. */
static Py_ssize_t set_length(PyObject *self)
{
    return (Py_ssize_t)P_MAP(FS_PROXY(self))->count;
}

/* sq_contains: 1, 0 or -1; self, key borrowed. */
static int set_contains(PyObject *self, PyObject *key)
{
    int64_t e;
    return set_find(FS_PROXY(self), key, &e);
}

/* o borrowed. */
static int is_set_proxy(PyObject *o)
{
    return Py_TYPE(o)->tp_as_sequence != NULL &&
           Py_TYPE(o)->tp_as_sequence->sq_contains == set_contains;
}

/* tp_iter: new reference; self borrowed. */
static PyObject *set_iter(PyObject *self)
{
    return mapiter_new(FS_PROXY(self), IT_KEYS, 0);
}

/* tp_richcompare (set comparisons): new reference; self, other borrowed. */
static PyObject *set_richcompare(PyObject *self, PyObject *other, int op)
{
    /* The set-likes frozenset compares with: sets, and the set-like views
    ** of dicts and FrozenMaps (frozenset == d.keys() is answered by the view;
    ** ours must answer it itself). */
    if (!(PyAnySet_Check(other) || is_set_proxy(other) ||
          PyDictKeys_Check(other) || PyDictItems_Check(other) ||
          is_setview(P_ST(FS_PROXY(self)), other)))
        Py_RETURN_NOTIMPLEMENTED;
    if (is_set_proxy(other) && same_object(FS_PROXY(self), FS_PROXY(other)))
        Py_RETURN_RICHCOMPARE(0, 0, op);
    return setlike_compare(self, other, op);
}

/* New reference: a FrozenSet as a frozenset, a set as itself, else
** Py_NotImplemented. */
static PyObject *as_frozenset(PyObject *o)
{
    if (is_set_proxy(o))
        return PyFrozenSet_New(o);
    if (PyAnySet_Check(o))
        return Py_NewRef(o);
    return Py_NewRef(Py_NotImplemented);
}

/* New reference: op(frozenset(a), frozenset(b)) or NotImplemented; a, b borrowed. */
static PyObject *set_binop(PyObject *a, PyObject *b, binaryfunc op)
{
    PyObject *res, *y, *x = as_frozenset(a);
    if (x == NULL || x == Py_NotImplemented)
        return x;
    y = as_frozenset(b);
    if (y == NULL || y == Py_NotImplemented) {
        Py_DECREF(x);
        return y;
    }
    res = op(x, y);
    Py_DECREF(x);
    Py_DECREF(y);
    return res;
}

/* nb_or / nb_and / nb_subtract / nb_xor: new reference (a frozenset or set); a, b borrowed. */
static PyObject *set_or(PyObject *a, PyObject *b) { return set_binop(a, b, PyNumber_Or); }
static PyObject *set_and(PyObject *a, PyObject *b)   /* borrowed */
{ return set_binop(a, b, PyNumber_And); }
static PyObject *set_sub(PyObject *a, PyObject *b)   /* borrowed */
{ return set_binop(a, b, PyNumber_Subtract); }
static PyObject *set_xor(PyObject *a, PyObject *b)   /* borrowed */
{ return set_binop(a, b, PyNumber_Xor); }

/* The named frozenset method applied to frozenset(self): new reference;
** self, args borrowed. */
static PyObject *set_delegate(PyObject *self, PyObject *args, const char *name)
{
    PyObject *res = NULL, *meth = NULL, *fz = PyFrozenSet_New(self);
    if (fz == NULL)
        return NULL;
    meth = PyObject_GetAttrString(fz, name);
    if (meth != NULL)
        res = PyObject_Call(meth, args, NULL);
    Py_XDECREF(meth);
    Py_DECREF(fz);
    return res;
}

#define SET_DELEGATE(NAME) \
    static PyObject *set_##NAME(PyObject *self, PyObject *args) \
    { return set_delegate(self, args, #NAME); }
SET_DELEGATE(union)
SET_DELEGATE(intersection)
SET_DELEGATE(difference)
SET_DELEGATE(symmetric_difference)
SET_DELEGATE(issubset)
SET_DELEGATE(issuperset)
#undef SET_DELEGATE

/* isdisjoint(other): new reference; self, other borrowed. */
static PyObject *set_isdisjoint(PyObject *self, PyObject *other)
{
    return setview_isdisjoint(self, other);
}

/* tp_hash: that of the equal frozenset, cached; self borrowed. */
static Py_hash_t set_hash(PyObject *self)
{
    fs_proxy *p = FS_PROXY(self);
    if (p->hash != -1)
        return p->hash;
    if (Py_EnterRecursiveCall(" while hashing a FrozenSet"))
        return -1;
    Py_hash_t h = -1;
    PyObject *fz = PyFrozenSet_New(self);      /* equal to hash(frozenset) */
    if (fz != NULL) {
        h = PyObject_Hash(fz);
        Py_DECREF(fz);
    }
    Py_LeaveRecursiveCall();
    p->hash = h;
    return h;
}

/* tp_repr: new reference; self borrowed. */
static PyObject *set_repr(PyObject *self)
{
    fs_proxy *p = FS_PROXY(self);
    if (P_MAP(p)->count == 0)
        return PyUnicode_FromString("FrozenSet()");
    int r = repr_enter(p);
    if (r < 0)
        return NULL;
    if (r == 0)
        return PyUnicode_FromString("FrozenSet({...})");
    PyObject *res = NULL, *inner = map_join_reprs(p, 0);
    if (inner != NULL) {
        res = PyUnicode_FromFormat("FrozenSet({%U})", inner);
        Py_DECREF(inner);
    }
    repr_leave(p);
    return res;
}

/* ---- .view(key_or_index) on containers ---------------------------------- */

/* view(key_or_index): new reference (a read-only memoryview); self, key borrowed. */
static PyObject *container_view(PyObject *self, PyObject *key)
{
    fs_proxy *p = FS_PROXY(self);
    int kind = P_KIND(p);
    fs_ref_t ref;
    if (kind == FS_KIND_LIST || kind == FS_KIND_TUPLE) {
        if (!PyIndex_Check(key)) {
            PyErr_Format(PyExc_TypeError, "view() index must be an integer, not '%.200s'",
                         Py_TYPE(key)->tp_name);
            return NULL;
        }
        Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred())
            return NULL;
        Py_ssize_t n = (Py_ssize_t)P_SEQ(p)->count;
        if (i < 0)
            i += n;
        if (i < 0 || i >= n) {
            PyErr_SetString(PyExc_IndexError, "view() index out of range");
            return NULL;
        }
        ref = P_SEQ(p)->items[i];
    }
    else {
        int64_t e;
        int r = kind == FS_KIND_DICT ? map_find(p, key, &e) : set_find(p, key, &e);
        if (r < 0)
            return NULL;
        if (r == 0) {
            key_error(key);
            return NULL;
        }
        ref = kind == FS_KIND_DICT ? P_MAP(p)->entries[e].value : P_MAP(p)->entries[e].key;
    }
    return view_of(p->h, ref, key);
}

/* ---- FrozenBytes -------------------------------------------------------- */

/* p borrowed. */
static inline const fs_bytes_t *P_BYTES(fs_proxy *p) { return fs_bytes(p->h->base, p->ref); }

/* sq_length / mp_length; self borrowed. */
static Py_ssize_t fbytes_length(PyObject *self)
{
    return (Py_ssize_t)P_BYTES(FS_PROXY(self))->length;
}

/* New reference: an equal bytes object; p borrowed. */
static PyObject *fbytes_materialize(fs_proxy *p)
{
    const fs_bytes_t *b = P_BYTES(p);
    return PyBytes_FromStringAndSize((const char *)b->data, (Py_ssize_t)b->length);
}

/* bf_getbuffer (read-only, I1): view->obj gets a new reference to self (borrowed). */
static int fbytes_getbuffer(PyObject *self, Py_buffer *view, int flags)
{
    const fs_bytes_t *b = P_BYTES(FS_PROXY(self));
    return PyBuffer_FillInfo(view, self, (void *)b->data, (Py_ssize_t)b->length,
                             1 /* readonly: I1 */, flags);
}

/* sq_item: new reference (an int); self borrowed. */
static PyObject *fbytes_item(PyObject *self, Py_ssize_t i)
{
    const fs_bytes_t *b = P_BYTES(FS_PROXY(self));
    if (i < 0 || (uint64_t)i >= b->length) {
        PyErr_SetString(PyExc_IndexError, "index out of range");
        return NULL;
    }
    return PyLong_FromLong(b->data[i]);
}

/* mp_subscript: new reference (int, or bytes for a slice); self, key borrowed. */
static PyObject *fbytes_subscript(PyObject *self, PyObject *key)
{
    const fs_bytes_t *b = P_BYTES(FS_PROXY(self));
    if (PyIndex_Check(key)) {
        Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred())
            return NULL;
        if (i < 0)
            i += (Py_ssize_t)b->length;
        return fbytes_item(self, i);
    }
    if (PySlice_Check(key)) {
        Py_ssize_t start, stop, step;
        if (PySlice_Unpack(key, &start, &stop, &step) < 0)
            return NULL;
        Py_ssize_t len = PySlice_AdjustIndices((Py_ssize_t)b->length, &start, &stop, step);
        if (step == 1)
            return PyBytes_FromStringAndSize((const char *)b->data + start, len);
        PyObject *out = PyBytes_FromStringAndSize(NULL, len);
        if (out == NULL)
            return NULL;
        char *dst = PyBytes_AS_STRING(out);
        for (Py_ssize_t k = 0, i = start; k < len; k++, i += step)
            dst[k] = (char)b->data[i];
        return out;
    }
    PyErr_Format(PyExc_TypeError, "byte indices must be integers or slices, not %.200s",
                 Py_TYPE(key)->tp_name);
    return NULL;
}

/* sq_contains (a byte value or a bytes-like): 1, 0 or -1; self, needle borrowed. */
static int fbytes_contains(PyObject *self, PyObject *needle)
{
    const fs_bytes_t *b = P_BYTES(FS_PROXY(self));
    if (PyIndex_Check(needle)) {
        Py_ssize_t c = PyNumber_AsSsize_t(needle, NULL);
        if (c == -1 && PyErr_Occurred())
            return -1;
        if (c < 0 || c > 255) {
            PyErr_SetString(PyExc_ValueError, "byte must be in range(0, 256)");
            return -1;
        }
        return b->length != 0 && memchr(b->data, (int)c, (size_t)b->length) != NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(needle, &view, PyBUF_SIMPLE) < 0)
        return -1;
    int found = view.len == 0 ||
                memmem(b->data, (size_t)b->length, view.buf, (size_t)view.len) != NULL;
    PyBuffer_Release(&view);
    return found;
}

/* tp_iter: new reference (an iterator over a memoryview of self); self borrowed. */
static PyObject *fbytes_iter(PyObject *self)
{
    PyObject *mv = PyMemoryView_FromObject(self);
    if (mv == NULL)
        return NULL;
    PyObject *it = PyObject_GetIter(mv);
    Py_DECREF(mv);
    return it;
}

/* Borrowed bytes of a bytes-like comparand, or 0 when it is not one. */
static int fbytes_operand(PyObject *o, const char **data, Py_ssize_t *len)
{
    if (PyBytes_Check(o)) {
        *data = PyBytes_AS_STRING(o);
        *len = PyBytes_GET_SIZE(o);
        return 1;
    }
    if (PyByteArray_Check(o)) {
        *data = PyByteArray_AS_STRING(o);
        *len = PyByteArray_GET_SIZE(o);
        return 1;
    }
    if (Py_TYPE(o)->tp_as_sequence != NULL &&
        Py_TYPE(o)->tp_as_sequence->sq_contains == fbytes_contains) {
        const fs_bytes_t *b = P_BYTES(FS_PROXY(o));
        *data = (const char *)b->data;
        *len = (Py_ssize_t)b->length;
        return 1;
    }
    return 0;
}

/* tp_richcompare with bytes-likes: new reference; self, other borrowed. */
static PyObject *fbytes_richcompare(PyObject *self, PyObject *other, int op)
{
    const char *a, *b;
    Py_ssize_t la, lb;
    fbytes_operand(self, &a, &la);
    if (!fbytes_operand(other, &b, &lb))
        Py_RETURN_NOTIMPLEMENTED;
    if ((op == Py_EQ || op == Py_NE) && la != lb)
        return Py_NewRef(op == Py_EQ ? Py_False : Py_True);
    Py_ssize_t n = la < lb ? la : lb;
    int c = n ? memcmp(a, b, (size_t)n) : 0;
    if (c == 0)
        Py_RETURN_RICHCOMPARE(la, lb, op);
    Py_RETURN_RICHCOMPARE(c, 0, op);
}

/* tp_hash: that of the equal bytes, cached; self borrowed. */
static Py_hash_t fbytes_hash(PyObject *self)
{
    fs_proxy *p = FS_PROXY(self);
    if (p->hash != -1)
        return p->hash;
#if PY_VERSION_HEX >= 0x030E0000
    const fs_bytes_t *b = P_BYTES(p);
    p->hash = Py_HashBuffer(b->data, (Py_ssize_t)b->length);
#else
    PyObject *bytes = fbytes_materialize(p);  /* same hash as the equal bytes */
    if (bytes == NULL)
        return -1;
    p->hash = PyObject_Hash(bytes);
    Py_DECREF(bytes);
#endif
    return p->hash;
}

/* tp_repr: new reference; self borrowed. */
static PyObject *fbytes_repr(PyObject *self)
{
    PyObject *res = NULL, *bytes = fbytes_materialize(FS_PROXY(self));
    if (bytes != NULL) {
        res = PyUnicode_FromFormat("FrozenBytes(%R)", bytes);
        Py_DECREF(bytes);
    }
    return res;
}

/* __bytes__: new reference; self borrowed. */
static PyObject *fbytes_bytes(PyObject *self, PyObject *unused)
{
    (void)unused;
    return fbytes_materialize(FS_PROXY(self));
}

/* decode(encoding, errors): new reference; self, args, kwds borrowed. */
static PyObject *fbytes_decode(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"encoding", "errors", NULL};
    const char *encoding = "utf-8", *errors = "strict";
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|ss:decode", kwlist, &encoding, &errors))
        return NULL;
    const fs_bytes_t *b = P_BYTES(FS_PROXY(self));
    return PyUnicode_Decode((const char *)b->data, (Py_ssize_t)b->length, encoding, errors);
}

/* Other bytes methods (hex, startswith, find, split, ...) are delegated to an
** equal bytes object. tp_getattro: new reference; self, name borrowed. */
static PyObject *fbytes_getattro(PyObject *self, PyObject *name)
{
    PyObject *res = PyObject_GenericGetAttr(self, name);
    if (res != NULL || !PyErr_ExceptionMatches(PyExc_AttributeError))
        return res;
    if (!PyUnicode_Check(name) || PyUnicode_GET_LENGTH(name) == 0 ||
        PyUnicode_READ_CHAR(name, 0) == '_')
        return NULL;
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *meth = PyObject_GetAttr((PyObject *)&PyBytes_Type, name);
    if (meth == NULL) {
        PyErr_Clear();
        PyErr_SetRaisedException(exc);
        return NULL;
    }
    Py_DECREF(meth);
    Py_DECREF(exc);
    PyObject *bytes = fbytes_materialize(FS_PROXY(self));
    if (bytes == NULL)
        return NULL;
    res = PyObject_GetAttr(bytes, name);
    Py_DECREF(bytes);
    return res;
}

/* o borrowed. */
static int is_fbytes(PyObject *o)
{
    return Py_TYPE(o)->tp_as_sequence != NULL &&
           Py_TYPE(o)->tp_as_sequence->sq_contains == fbytes_contains;
}

/* nb_add: bytes + bytes-like, either side a FrozenBytes; the result is what
** the equal bytes would give (bytes, or bytearray for bytearray + ...).
** New reference or NotImplemented; a, b borrowed. */
static PyObject *fbytes_add(PyObject *a, PyObject *b)
{
    int mine = is_fbytes(a);
    PyObject *other = mine ? b : a;
    if (!PyObject_CheckBuffer(other))
        Py_RETURN_NOTIMPLEMENTED;
    PyObject *plain = fbytes_materialize(FS_PROXY(mine ? a : b));
    if (plain == NULL)
        return NULL;
    PyObject *res = mine ? PySequence_Concat(plain, b) : PySequence_Concat(a, plain);
    Py_DECREF(plain);
    return res;
}

/* nb_multiply: FrozenBytes * n and n * FrozenBytes -> bytes. New reference
** or NotImplemented; a, b borrowed. */
static PyObject *fbytes_mul(PyObject *a, PyObject *b)
{
    int mine = is_fbytes(a);
    PyObject *n = mine ? b : a;
    if (!PyIndex_Check(n))
        Py_RETURN_NOTIMPLEMENTED;
    Py_ssize_t count = PyNumber_AsSsize_t(n, PyExc_OverflowError);
    if (count == -1 && PyErr_Occurred())
        return NULL;
    PyObject *plain = fbytes_materialize(FS_PROXY(mine ? a : b));
    if (plain == NULL)
        return NULL;
    PyObject *res = PySequence_Repeat(plain, count);
    Py_DECREF(plain);
    return res;
}

/* nb_remainder: FrozenBytes % args -> bytes (printf-style formatting); a
** right-hand FrozenBytes is left to the other operand. New reference or
** NotImplemented; a, b borrowed. */
static PyObject *fbytes_mod(PyObject *a, PyObject *b)
{
    if (!is_fbytes(a))
        Py_RETURN_NOTIMPLEMENTED;
    PyObject *plain = fbytes_materialize(FS_PROXY(a));
    if (plain == NULL)
        return NULL;
    PyObject *res = PyNumber_Remainder(plain, b);
    Py_DECREF(plain);
    return res;
}

/* ---- FrozenValue -------------------------------------------------------- */

/* value getter: new reference; self borrowed. */
static PyObject *fvalue_value(PyObject *self, void *closure)
{
    (void)closure;
    fs_proxy *p = FS_PROXY(self);
    return fs__read(p->h, p->ref);
}

static int is_value_proxy(PyObject *o);

/* tp_richcompare, that of the value: new reference; self, other borrowed. */
static PyObject *fvalue_richcompare(PyObject *self, PyObject *other, int op)
{
    PyObject *res = NULL, *b = NULL, *a = fvalue_value(self, NULL);
    if (a == NULL)
        return NULL;
    b = is_value_proxy(other) ? fvalue_value(other, NULL) : Py_NewRef(other);
    if (b != NULL)
        res = PyObject_RichCompare(a, b, op);
    Py_DECREF(a);
    Py_XDECREF(b);
    return res;
}

/* tp_hash: that of the value, cached; self borrowed. */
static Py_hash_t fvalue_hash(PyObject *self)
{
    fs_proxy *p = FS_PROXY(self);
    if (p->hash != -1)
        return p->hash;
    PyObject *v = fvalue_value(self, NULL);
    if (v == NULL)
        return -1;
    p->hash = PyObject_Hash(v);
    Py_DECREF(v);
    return p->hash;
}

/* o borrowed. */
static int is_value_proxy(PyObject *o)
{
    return Py_TYPE(o)->tp_hash == fvalue_hash;
}

/* tp_repr: new reference; self borrowed. */
static PyObject *fvalue_repr(PyObject *self)
{
    PyObject *res = NULL, *v = fvalue_value(self, NULL);
    if (v != NULL) {
        res = PyUnicode_FromFormat("FrozenValue(%R)", v);
        Py_DECREF(v);
    }
    return res;
}

/* nb_bool: the value's truth; self borrowed. */
static int fvalue_bool(PyObject *self)
{
    PyObject *v = fvalue_value(self, NULL);
    if (v == NULL)
        return -1;
    int r = PyObject_IsTrue(v);
    Py_DECREF(v);
    return r;
}

/* ---- method tables and type specs --------------------------------------- */

#define COMMON_METHODS \
    {"__reduce__", proxy_reduce, METH_NOARGS, "Pickle by value: freeze(thaw(self))."}, \
    {"__copy__", proxy_copy, METH_NOARGS, "Frozen objects are immutable: self."}, \
    {"__deepcopy__", proxy_deepcopy, METH_O, "Frozen objects are immutable: self."}, \
    {"__class_getitem__", Py_GenericAlias, METH_O | METH_CLASS, "See PEP 585."}

#define VIEW_METHOD \
    {"view", container_view, METH_O, \
     "view(key_or_index) -> zero-copy read-only memoryview of the bytes value there"}

static PyMethodDef map_methods[] = {
    {"get", FS_METH(map_get), METH_FASTCALL, "get(key, default=None, /)"},
    {"fromkeys", FS_METH(map_fromkeys), METH_FASTCALL | METH_CLASS,
     "fromkeys(iterable, value=None, /): a FrozenMap of dict.fromkeys(iterable, value)."},
    {"keys", map_keys, METH_NOARGS, "A set-like view of the keys."},
    {"values", map_values, METH_NOARGS, "A view of the values."},
    {"items", map_items, METH_NOARGS, "A set-like view of the (key, value) pairs."},
    {"copy", proxy_copy, METH_NOARGS, "Frozen: returns self."},
    {"__reversed__", map_reversed, METH_NOARGS, "Keys in reverse insertion order."},
    VIEW_METHOD,
    COMMON_METHODS,
    {NULL, NULL, 0, NULL},
};

#define SEQ_METHODS \
    {"index", seq_index, METH_VARARGS, "index(value, start=0, stop=sys.maxsize, /)"}, \
    {"count", seq_count, METH_O, "count(value, /)"}, \
    {"__reversed__", seq_reversed, METH_NOARGS, "Items in reverse order."}, \
    VIEW_METHOD, \
    COMMON_METHODS

static PyMethodDef tuple_methods[] = {
    SEQ_METHODS,
    {NULL, NULL, 0, NULL},
};

static PyMethodDef list_methods[] = {
    {"copy", proxy_copy, METH_NOARGS, "Frozen: returns self (as FrozenMap.copy does)."},
    SEQ_METHODS,
    {NULL, NULL, 0, NULL},
};


static PyMethodDef set_methods[] = {
    {"union", set_union, METH_VARARGS, "union(*others) -> frozenset"},
    {"intersection", set_intersection, METH_VARARGS, "intersection(*others) -> frozenset"},
    {"difference", set_difference, METH_VARARGS, "difference(*others) -> frozenset"},
    {"symmetric_difference", set_symmetric_difference, METH_VARARGS,
     "symmetric_difference(other, /) -> frozenset"},
    {"issubset", set_issubset, METH_VARARGS, "issubset(other, /)"},
    {"issuperset", set_issuperset, METH_VARARGS, "issuperset(other, /)"},
    {"isdisjoint", set_isdisjoint, METH_O, "isdisjoint(other, /)"},
    {"copy", proxy_copy, METH_NOARGS, "Frozen: returns self."},
    VIEW_METHOD,
    COMMON_METHODS,
    {NULL, NULL, 0, NULL},
};

static PyMethodDef fbytes_methods[] = {
    {"decode", FS_METH(fbytes_decode), METH_VARARGS | METH_KEYWORDS,
     "decode(encoding='utf-8', errors='strict')"},
    {"__bytes__", fbytes_bytes, METH_NOARGS, "A bytes copy."},
    COMMON_METHODS,
    {NULL, NULL, 0, NULL},
};

static PyMethodDef fvalue_methods[] = {
    COMMON_METHODS,
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef fvalue_getset[] = {
    {"value", fvalue_value, NULL, "The frozen value, materialized.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef seqiter_methods[] = {
    {"__length_hint__", seqiter_length_hint, METH_NOARGS, NULL},
    {"__reduce__", seqiter_reduce, METH_NOARGS, NULL},
    {"__setstate__", seqiter_setstate, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef mapiter_methods[] = {
    {"__length_hint__", mapiter_length_hint, METH_NOARGS, NULL},
    {"__reduce__", mapiter_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef setview_methods[] = {
    {"isdisjoint", setview_isdisjoint, METH_O, "isdisjoint(other, /)"},
    {"__reversed__", mapview_reversed, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef valuesview_methods[] = {
    {"__reversed__", mapview_reversed, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef mapview_getset[] = {
    {"mapping", mapview_mapping, NULL, "The FrozenMap this view reads.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

#define PROXY_FLAGS (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | \
                     Py_TPFLAGS_DISALLOW_INSTANTIATION)

static PyType_Slot map_slots[] = {
    {Py_tp_dealloc, proxy_dealloc},
    {Py_tp_repr, map_repr},
    {Py_tp_hash, map_hash},
    {Py_tp_iter, map_iter},
    {Py_tp_richcompare, map_richcompare},
    {Py_tp_methods, map_methods},
    {Py_mp_length, map_length},
    {Py_mp_subscript, map_subscript},
    {Py_sq_contains, map_contains},
    {Py_nb_or, map_or},
    {Py_tp_doc, "Read-only mapping frozen from a dict (like frozendict)."},
    {0, NULL},
};

static PyType_Spec map_spec = {
    .name = "frozenshare.FrozenMap",
    .basicsize = sizeof(fs_proxy),
    .flags = PROXY_FLAGS | Py_TPFLAGS_MAPPING,
    .slots = map_slots,
};

static PyType_Slot list_slots[] = {
    {Py_tp_dealloc, proxy_dealloc},
    {Py_tp_repr, seq_repr},
    {Py_tp_hash, PyObject_HashNotImplemented},
    {Py_tp_iter, seq_iter},
    {Py_tp_richcompare, seq_richcompare},
    {Py_tp_methods, list_methods},
    {Py_mp_length, seq_length},
    {Py_mp_subscript, seq_subscript},
    {Py_sq_length, seq_length},
    {Py_sq_item, seq_item},
    {Py_sq_contains, seq_contains},
    {Py_nb_add, list_add},
    {Py_nb_multiply, list_mul},
    {Py_tp_doc, "Read-only sequence frozen from a list (equal to the list)."},
    {0, NULL},
};

static PyType_Spec list_spec = {
    .name = "frozenshare.FrozenList",
    .basicsize = sizeof(fs_proxy),
    .flags = PROXY_FLAGS | Py_TPFLAGS_SEQUENCE,
    .slots = list_slots,
};

static PyType_Slot tuple_slots[] = {
    {Py_tp_dealloc, proxy_dealloc},
    {Py_tp_repr, seq_repr},
    {Py_tp_hash, tuple_hash},
    {Py_tp_iter, seq_iter},
    {Py_tp_richcompare, seq_richcompare},
    {Py_tp_methods, tuple_methods},
    {Py_mp_length, seq_length},
    {Py_mp_subscript, seq_subscript},
    {Py_sq_length, seq_length},
    {Py_sq_item, seq_item},
    {Py_sq_contains, seq_contains},
    {Py_nb_add, tuple_add},
    {Py_nb_multiply, tuple_mul},
    {Py_tp_doc, "Read-only sequence frozen from a tuple (equal, and hashing equal, to it)."},
    {0, NULL},
};

static PyType_Spec tuple_spec = {
    .name = "frozenshare.FrozenTuple",
    .basicsize = sizeof(fs_proxy),
    .flags = PROXY_FLAGS | Py_TPFLAGS_SEQUENCE,
    .slots = tuple_slots,
};

static PyType_Slot set_slots[] = {
    {Py_tp_dealloc, proxy_dealloc},
    {Py_tp_repr, set_repr},
    {Py_tp_hash, set_hash},
    {Py_tp_iter, set_iter},
    {Py_tp_richcompare, set_richcompare},
    {Py_tp_methods, set_methods},
    {Py_sq_length, set_length},
    {Py_sq_contains, set_contains},
    {Py_nb_or, set_or},
    {Py_nb_and, set_and},
    {Py_nb_subtract, set_sub},
    {Py_nb_xor, set_xor},
    {Py_tp_doc, "Read-only set frozen from a set or frozenset (like frozenset)."},
    {0, NULL},
};

static PyType_Spec set_spec = {
    .name = "frozenshare.FrozenSet",
    .basicsize = sizeof(fs_proxy),
    .flags = PROXY_FLAGS,
    .slots = set_slots,
};

static PyType_Slot fbytes_slots[] = {
    {Py_tp_dealloc, proxy_dealloc},
    {Py_tp_repr, fbytes_repr},
    {Py_tp_hash, fbytes_hash},
    {Py_tp_iter, fbytes_iter},
    {Py_tp_richcompare, fbytes_richcompare},
    {Py_tp_getattro, fbytes_getattro},
    {Py_tp_methods, fbytes_methods},
    {Py_mp_length, fbytes_length},
    {Py_mp_subscript, fbytes_subscript},
    {Py_sq_length, fbytes_length},
    {Py_sq_item, fbytes_item},
    {Py_sq_contains, fbytes_contains},
    {Py_bf_getbuffer, fbytes_getbuffer},
    {Py_nb_add, fbytes_add},
    {Py_nb_multiply, fbytes_mul},
    {Py_nb_remainder, fbytes_mod},
    {Py_tp_doc, "Frozen bytes or bytearray: a read-only buffer equal to the bytes."},
    {0, NULL},
};

static PyType_Spec fbytes_spec = {
    .name = "frozenshare.FrozenBytes",
    .basicsize = sizeof(fs_proxy),
    .flags = PROXY_FLAGS,
    .slots = fbytes_slots,
};

static PyType_Slot fvalue_slots[] = {
    {Py_tp_dealloc, proxy_dealloc},
    {Py_tp_repr, fvalue_repr},
    {Py_tp_hash, fvalue_hash},
    {Py_tp_richcompare, fvalue_richcompare},
    {Py_tp_methods, fvalue_methods},
    {Py_tp_getset, fvalue_getset},
    {Py_nb_bool, fvalue_bool},
    {Py_tp_doc, "A frozen scalar (str, int, float, ...); .value materializes it."},
    {0, NULL},
};

static PyType_Spec fvalue_spec = {
    .name = "frozenshare.FrozenValue",
    .basicsize = sizeof(fs_proxy),
    .flags = PROXY_FLAGS,
    .slots = fvalue_slots,
};

static PyType_Slot seqiter_slots[] = {
    {Py_tp_dealloc, seqiter_dealloc},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, seqiter_next},
    {Py_tp_methods, seqiter_methods},
    {0, NULL},
};

static PyType_Spec seqiter_spec = {
    .name = "frozenshare.FrozenSequenceIterator",
    .basicsize = sizeof(fs_seqiter),
    .flags = PROXY_FLAGS,
    .slots = seqiter_slots,
};

static PyType_Slot mapiter_slots[] = {
    {Py_tp_dealloc, mapiter_dealloc},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, mapiter_next},
    {Py_tp_methods, mapiter_methods},
    {0, NULL},
};

static PyType_Spec mapiter_spec = {
    .name = "frozenshare.FrozenMapIterator",
    .basicsize = sizeof(fs_mapiter),
    .flags = PROXY_FLAGS,
    .slots = mapiter_slots,
};

static PyType_Slot keys_slots[] = {
    {Py_tp_dealloc, mapview_dealloc},
    {Py_tp_repr, mapview_repr},
    {Py_tp_iter, mapview_iter},
    {Py_tp_richcompare, setview_richcompare},
    {Py_tp_methods, setview_methods},
    {Py_tp_getset, mapview_getset},
    {Py_sq_length, mapview_length},
    {Py_sq_contains, keys_contains},
    {Py_nb_and, setview_and},
    {Py_nb_or, setview_or},
    {Py_nb_subtract, setview_sub},
    {Py_nb_xor, setview_xor},
    {0, NULL},
};

static PyType_Spec keys_spec = {
    .name = "frozenshare.FrozenMapKeys",
    .basicsize = sizeof(fs_mapview),
    .flags = PROXY_FLAGS,
    .slots = keys_slots,
};

static PyType_Slot items_slots[] = {
    {Py_tp_dealloc, mapview_dealloc},
    {Py_tp_repr, mapview_repr},
    {Py_tp_iter, mapview_iter},
    {Py_tp_richcompare, setview_richcompare},
    {Py_tp_methods, setview_methods},
    {Py_tp_getset, mapview_getset},
    {Py_sq_length, mapview_length},
    {Py_sq_contains, items_contains},
    {Py_nb_and, setview_and},
    {Py_nb_or, setview_or},
    {Py_nb_subtract, setview_sub},
    {Py_nb_xor, setview_xor},
    {0, NULL},
};

static PyType_Spec items_spec = {
    .name = "frozenshare.FrozenMapItems",
    .basicsize = sizeof(fs_mapview),
    .flags = PROXY_FLAGS,
    .slots = items_slots,
};

static PyType_Slot values_slots[] = {
    {Py_tp_dealloc, mapview_dealloc},
    {Py_tp_repr, mapview_repr},
    {Py_tp_iter, mapview_iter},
    {Py_tp_methods, valuesview_methods},
    {Py_tp_getset, mapview_getset},
    {Py_sq_length, mapview_length},
    {Py_sq_contains, values_contains},
    {0, NULL},
};

static PyType_Spec values_spec = {
    .name = "frozenshare.FrozenMapValues",
    .basicsize = sizeof(fs_mapview),
    .flags = PROXY_FLAGS,
    .slots = values_slots,
};

/* New reference to a heap type of module, or NULL. public: also added to the
** module under its short name. */
static PyTypeObject *make_type(PyObject *module, PyType_Spec *spec, int public)
{
    PyTypeObject *tp = (PyTypeObject *)PyType_FromModuleAndSpec(module, spec, NULL);
    if (tp == NULL)
        return NULL;
    if (public && PyModule_AddType(module, tp) < 0) {
        Py_DECREF(tp);
        return NULL;
    }
    return tp;
}

/* module borrowed; st gets new references to the types. 0, or -1 with an exception. */
int fs__types_init(PyObject *module, fs_state *st)
{
    static PyType_Spec *proxy_specs[FS_PT__COUNT] = {
        [FS_PT_MAP] = &map_spec, [FS_PT_LIST] = &list_spec,
        [FS_PT_TUPLE] = &tuple_spec, [FS_PT_SET] = &set_spec,
        [FS_PT_BYTES] = &fbytes_spec, [FS_PT_VALUE] = &fvalue_spec,
    };
    for (int i = 0; i < FS_PT__COUNT; i++) {
        st->types[i] = make_type(module, proxy_specs[i], 1);
        if (st->types[i] == NULL)
            return -1;
    }
    if ((st->seqiter_type = make_type(module, &seqiter_spec, 0)) == NULL ||
        (st->mapiter_type = make_type(module, &mapiter_spec, 0)) == NULL ||
        (st->keys_type = make_type(module, &keys_spec, 1)) == NULL ||
        (st->values_type = make_type(module, &values_spec, 1)) == NULL ||
        (st->items_type = make_type(module, &items_spec, 1)) == NULL ||
        (st->bufowner_type = make_type(module, &bufowner_spec, 0)) == NULL)
        return -1;
    return 0;
}
