/*
** proxy.c -- what every proxy family shares: the common methods (dealloc,
** pickle by value, copy), the repr cycle guard, .view() and the buffer
** owner behind it, the entry iterator of maps, their views and sets, and
** the set-like comparisons of FrozenSet and the keys/items views.
**
** LAYER (the picture in fs_py.h): below the families (map.c, seq.c, set.c,
** bytes.c), above freeze.c/thaw.c (pickling thaws), read.c and state.c.
**
** Every object here holds a strong reference to its interpreter's handle
** (directly or through a proxy) and reads the sealed image through
** handle->base + offset (I1, I3). Only the buffer owner hands out a raw
** pointer into an image: a sealed image never moves and lives as long as
** the handle it holds (I1, I2). repr recognises cycles by (region, offset),
** since each read creates a fresh proxy.
*/
#include "fs_py.h"

/* ---- repr cycle guard --------------------------------------------------- */

/* The (region, ref) pairs this thread is repr'ing: a repr runs in one thread,
** and two threads repr'ing one object are no cycle (CPython's Py_ReprEnter
** is per thread too). Region pointers are process-wide, so one table serves
** every interpreter the thread enters. Freed when it empties (the outermost
** repr returns), so a thread that ends leaves nothing behind. */
static _Thread_local fs__tab_t repr_active;

/* 1 entered, 0 already being repr'd (a cycle), -1 error. p borrowed. */
int fs__repr_enter(fs_proxy *p)
{
    if (fs__tab_get(&repr_active, (uintptr_t)p->h->region, p->ref) != NULL)
        return 0;
    int err = fs__tab_put(&repr_active, (uintptr_t)p->h->region, p->ref, 1);
    if (err != FS_OK) {
        fs__raise(err, NULL);
        return -1;
    }
    return 1;
}

/* p borrowed. */
void fs__repr_leave(fs_proxy *p)
{
    fs__tab_del(&repr_active, (uintptr_t)p->h->region, p->ref);
    if (repr_active.used == 0)
        fs__tab_fini(&repr_active);
}

/* ---- shared methods ----------------------------------------------------- */

/* tp_dealloc of every proxy type: consumes the last reference to self, drops
** the handle reference. */
void fs__proxy_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    fs_handle *h = FS_PROXY(self)->h;
#ifndef Py_GIL_DISABLED
    fs_state *st = h->st;                  /* alive while h is */
    if (st != NULL && st->nproxy_free < FS_PROXY_FREE_MAX &&
        tp->tp_basicsize == sizeof(fs_proxy)) {
        FS_PROXY(self)->h = (fs_handle *)st->proxy_free;   /* the chain */
        st->proxy_free = FS_PROXY(self);
        st->nproxy_free++;
    }
    else
#endif
    {
        PyObject_Free(self);
    }
    Py_DECREF(h);                          /* may free the module: module_free
                                              frees the chain, self included */
    Py_DECREF(tp);
}

/* __reduce_ex__(protocol): (_unpickle, (image,)), the image being the portable
** bytes of fs__dumps -- with protocol 5 wrapped in a read-only PickleBuffer,
** which a pickler with a buffer_callback sends out of band (the in-band
** part is then a few dozen bytes) and any other writes in band. Unpickling
** maps the image (zero-copy over a read-only buffer): never thaw + freeze,
** except for the one graph without a portable image (fs__portable).
** _unpickle is loads with pickle's trust: the records' classes are imported
** by name, as unpickling the plain objects would (portable.c).
** New reference; self, protocol borrowed. */
PyObject *fs__proxy_reduce_ex(PyObject *self, PyObject *protocol)
{
    long proto = PyLong_AsLong(protocol);
    if (proto == -1 && PyErr_Occurred())
        return NULL;
    fs_proxy *p = FS_PROXY(self);
    PyObject *loads = PyObject_GetAttrString(p->h->module, "_unpickle");
    if (loads == NULL)
        return NULL;
    int entangled;
    PyObject *image = fs__portable(PyModule_GetState(p->h->module), self, &entangled);
    if (image == NULL && entangled) {
        /* A FrozenMap as a key (before 3.15): by value, freeze(thaw(self)),
        ** pickling the proxies inside the same way. */
        Py_SETREF(loads, PyObject_GetAttrString(p->h->module, "freeze"));
        if (loads == NULL)
            return NULL;
        image = fs__thaw_ref(p->h, p->ref);
    }
    else if (image != NULL && proto >= 5) {
        PyObject *pb = PyPickleBuffer_FromObject(image);
        Py_SETREF(image, pb);
    }
    if (image == NULL) {
        Py_DECREF(loads);
        return NULL;
    }
    return Py_BuildValue("(N(N))", loads, image);
}

/* __copy__ (and copy()): new reference to self. */
PyObject *fs__proxy_copy(PyObject *self, PyObject *unused)
{
    (void)unused;
    return Py_NewRef(self);
}

/* __deepcopy__: new reference to self; memo borrowed, unused. */
PyObject *fs__proxy_deepcopy(PyObject *self, PyObject *memo)
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

PyType_Spec fs__bufowner_spec = {
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
                     where, fs__kind_type_name(kind));
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
    b->data = fs_bytes_data(bs);
    b->len = (Py_ssize_t)fs_bytes_len(bs);
    PyObject *mv = PyMemoryView_FromObject((PyObject *)b);
    Py_DECREF(b);
    return mv;
}

/* ---- iterator support -------------------------------------------------- */

/* New reference: builtins.iter or builtins.reversed, for iterators' __reduce__. */
PyObject *fs__builtin(const char *name)
{
    PyObject *builtins = PyEval_GetBuiltins();      /* borrowed */
    PyObject *key = builtins != NULL ? PyUnicode_FromString(name) : NULL, *f = NULL;
    int found = key != NULL ? fs__dict_get_ref(builtins, key, &f) : -1;
    Py_XDECREF(key);
    if (found == 0 || (found < 0 && !PyErr_Occurred()))
        PyErr_Format(PyExc_RuntimeError, "frozenshare: builtins.%s not found", name);
    return f;
}

/* ---- the entry iterator of FrozenMap, its views and FrozenSet ----------- */

typedef struct fs_mapiter_s {
    PyObject_HEAD
    fs_proxy  *p;            /* strong (FrozenMap or FrozenSet); NULL at end */
    Py_ssize_t i;            /* next entry                                */
    int        mode;         /* IT_KEYS / IT_VALUES / IT_ITEMS            */
    int        reverse;
    PyObject  *pair;         /* strong: the last (key, value) handed out, reused
                                when nobody else holds it (as dict's items
                                iterator does), or NULL                   */
} fs_mapiter;

/* tp_dealloc: consumes the last reference to self, drops the proxy's. */
static void mapiter_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    Py_XDECREF(((fs_mapiter *)self)->p);
    Py_XDECREF(((fs_mapiter *)self)->pair);
    PyObject_Free(self);
    Py_DECREF(tp);
}

/* Key and value of entry e, read (new references): 0, or -1 with an
** exception and neither set. */
static int read_pair(fs_proxy *p, uint64_t e, PyObject **k, PyObject **v)
{
    if ((*k = fs__read_key(p, e)) == NULL)
        return -1;
    if ((*v = fs__read(p->h, P_VALUE(p, e))) == NULL) {
        Py_CLEAR(*k);
        return -1;
    }
    return 0;
}

/* New reference: (key, value) of entry e as a plain tuple. */
PyObject *fs__map_item_tuple(fs_proxy *p, uint64_t e)
{
    PyObject *k, *v;
    if (read_pair(p, e, &k, &v) < 0)
        return NULL;
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

/* New reference: (key, value) of entry e, in it->pair when the caller of
** the last one let go of it (`for k, v in m.items()`): no tuple made. */
static PyObject *mapiter_pair(fs_mapiter *it, fs_proxy *p, uint64_t e)
{
#ifdef Py_GIL_DISABLED
    (void)it;                                   /* threads may share it: a tuple each */
    return fs__map_item_tuple(p, e);
#else
    PyObject *t = it->pair, *k, *v;
    if (t == NULL || Py_REFCNT(t) != 1) {
        t = fs__map_item_tuple(p, e);
        if (t != NULL)
            Py_XSETREF(it->pair, Py_NewRef(t));   /* its items are no GC objects */
        return t;
    }
    if (read_pair(p, e, &k, &v) < 0)
        return NULL;
    Py_SETREF(((PyTupleObject *)t)->ob_item[0], k);
    Py_SETREF(((PyTupleObject *)t)->ob_item[1], v);
    return Py_NewRef(t);
#endif
}

/* tp_iternext: new reference, or NULL without an exception at the end. */
static PyObject *mapiter_next(PyObject *self)
{
    fs_mapiter *it = (fs_mapiter *)self;
    fs_proxy *p = it->p;
    if (p == NULL)
        return NULL;
    Py_ssize_t i = fs__iter_step(&it->i, it->reverse);
    if (i >= 0 && (uint64_t)i < P_MAP_COUNT(p)) {
        uint64_t e = (uint64_t)i;
        switch (it->mode) {
        case IT_KEYS:   return fs__read_key(p, e);
        case IT_VALUES: return fs__read(p->h, P_VALUE(p, e));
        default:        return mapiter_pair(it, p, e);
        }
    }
#ifndef Py_GIL_DISABLED
    it->p = NULL;
    Py_DECREF(p);
#endif
    return NULL;
}

/* __length_hint__: new reference; self borrowed. */
static PyObject *mapiter_length_hint(PyObject *self, PyObject *unused)
{
    (void)unused;
    fs_mapiter *it = (fs_mapiter *)self;
    if (it->p == NULL)
        return PyLong_FromLong(0);
    Py_ssize_t n = (Py_ssize_t)P_MAP_COUNT(it->p), i = fs__iter_at(&it->i);
    Py_ssize_t left = it->reverse ? i + 1 : n - i;
    return PyLong_FromSsize_t(left < 0 ? 0 : left > n ? n : left);
}

/* __reduce__, as dict iterators do: iter(list of what is left), read
** without advancing self. New reference; self borrowed. */
static PyObject *mapiter_reduce(PyObject *self, PyObject *unused)
{
    (void)unused;
    fs_mapiter *it = (fs_mapiter *)self;
    PyObject *f = fs__builtin("iter");
    if (f == NULL)
        return NULL;
    PyObject *left = PyList_New(0);
    if (left == NULL) {
        Py_DECREF(f);
        return NULL;
    }
    fs_proxy *p = it->p;
    Py_ssize_t n = p != NULL ? (Py_ssize_t)P_MAP_COUNT(p) : 0;
    for (Py_ssize_t i = fs__iter_at(&it->i); p != NULL && i >= 0 && i < n; i += it->reverse ? -1 : 1) {
        uint64_t e = (uint64_t)i;
        PyObject *v = it->mode == IT_KEYS ? fs__read_key(p, e)
                    : it->mode == IT_VALUES ? fs__read(p->h, P_VALUE(p, e))
                    : fs__map_item_tuple(p, e);
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
PyObject *fs__mapiter_new(fs_proxy *p, int mode, int reverse)
{
    fs_mapiter *it = PyObject_New(fs_mapiter, P_ST(p)->mapiter_type);
    if (it == NULL)
        return NULL;
    it->p = (fs_proxy *)Py_NewRef(p);
    it->mode = mode;
    it->reverse = reverse;
    it->pair = NULL;
    it->i = reverse ? (Py_ssize_t)P_MAP_COUNT(p) - 1 : 0;
    return (PyObject *)it;
}

/* ---- repr and set-like helpers ------------------------------------------ */

/* New reference: ", ".join of "repr(k): repr(v)" (or of repr(k) for sets). */
PyObject *fs__join_reprs(fs_proxy *p, int with_values)
{
    PyObject *sep = NULL, *res = NULL, *parts = PyList_New((Py_ssize_t)P_MAP_COUNT(p));
    if (parts == NULL)
        return NULL;
    for (uint64_t e = 0; e < P_MAP_COUNT(p); e++) {
        PyObject *k = fs__read_key(p, e), *s;
        if (k == NULL)
            goto error;
        if (with_values) {
            PyObject *v = fs__read(p->h, P_VALUE(p, e));
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

/* 1 if every element of x is in y, 0 if not, -1 on error. x, y borrowed. */
static int all_in(fs_state *st, PyObject *x, PyObject *y)
{
    PyObject *it = PyObject_GetIter(x);
    if (it == NULL)
        return -1;
    PyObject *v;
    int r = 1, items = PyDictItems_Check(y);
    while (r == 1 && (v = PyIter_Next(it)) != NULL) {
        /* dict_items holds only exact (key, value) tuples: a FrozenSet's
        ** pairs come out as FrozenTuples, so ask with the equal tuple. */
        if (items && Py_TYPE(v) == st->types[FS_PT_TUPLE]) {
            PyObject *t = fs__seq_materialize(FS_PROXY(v), 0);
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
PyObject *fs__setlike_compare(fs_state *st, PyObject *self, PyObject *other, int op)
{
    Py_ssize_t la = PyObject_Size(self), lb = PyObject_Size(other);
    if (la < 0 || lb < 0)
        return NULL;
    int r;
    switch (op) {
    case Py_EQ: r = la == lb ? all_in(st, self, other) : 0; break;
    case Py_NE: r = la == lb ? all_in(st, self, other) : 0; if (r >= 0) r = !r; break;
    case Py_LE: r = la <= lb ? all_in(st, self, other) : 0; break;
    case Py_LT: r = la < lb ? all_in(st, self, other) : 0; break;
    case Py_GE: r = la >= lb ? all_in(st, other, self) : 0; break;
    default:    r = la > lb ? all_in(st, other, self) : 0; break;
    }
    if (r < 0)
        return NULL;
    return Py_NewRef(r ? Py_True : Py_False);
}

/* isdisjoint(other): new reference; self, other borrowed. */
PyObject *fs__isdisjoint(PyObject *self, PyObject *other)
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

/* ---- .view(key_or_index) on containers ---------------------------------- */

/* view(key_or_index): new reference (a read-only memoryview); self, key borrowed. */
PyObject *fs__container_view(PyObject *self, PyObject *key)
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
        Py_ssize_t n = (Py_ssize_t)P_SEQ_COUNT(p);
        if (i < 0)
            i += n;
        if (i < 0 || i >= n) {
            PyErr_SetString(PyExc_IndexError, "view() index out of range");
            return NULL;
        }
        ref = P_ITEM(p, i);
    }
    else {
        int64_t e;
        int r = kind == FS_KIND_DICT ? fs__map_find(p, key, &e) : fs__set_find(p, key, &e);
        if (r < 0)
            return NULL;
        if (r == 0) {
            fs__raise(FS_ENOTFOUND, key);
            return NULL;
        }
        ref = kind == FS_KIND_DICT ? P_VALUE(p, e) : P_KEY(p, e);
    }
    return view_of(p->h, ref, key);
}

/* ---- type specs ---------------------------------------------------------- */

static PyMethodDef mapiter_methods[] = {
    {"__length_hint__", mapiter_length_hint, METH_NOARGS, NULL},
    {"__reduce__", mapiter_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot mapiter_slots[] = {
    {Py_tp_dealloc, mapiter_dealloc},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, mapiter_next},
    {Py_tp_methods, mapiter_methods},
    {0, NULL},
};

PyType_Spec fs__mapiter_spec = {
    .name = "frozenshare.FrozenMapIterator",
    .basicsize = sizeof(fs_mapiter),
    .flags = PROXY_FLAGS,
    .slots = mapiter_slots,
};
