/*
** array.c -- FrozenArray: a typed buffer (array.array, a C-contiguous
** memoryview, a NumPy array of numbers or bool) read in place.
**
** LAYER (the picture in fs_py.h): a proxy family; calls proxy.c, read.c and
** state.c, never another family.
**
** The buffer it exports is the image's bytes, read-only (I1), with the
** source's format, item size and shape (the BUFFER object of fs_image.h),
** C-contiguous, so memoryview(x) and numpy.asarray(x) are zero-copy. The
** export's obj is the proxy, which holds the handle: the region outlives
** every export (I2). Strides, when a consumer asks for them, are computed
** into a small block owned by the export (view->internal). Everything else
** (indexing, iteration, tolist, ==) is that of memoryview(x); thaw gives the
** source type back (thaw.c). Unhashable, as its sources are.
*/
#include "fs_py.h"

/* p borrowed. */
static inline const fs_buf_t *P_BUF(fs_proxy *p) { return fs_buf(p->h->base, p->ref); }

/* bf_getbuffer: read-only, C-contiguous; self borrowed, view->obj gets a
** new reference to it. 0, or -1 with BufferError. */
static int array_getbuffer(PyObject *self, Py_buffer *view, int flags)
{
    const fs_buf_t *b = P_BUF(FS_PROXY(self));
    int ndim = (int)b->h.n;
    view->obj = NULL;                         /* as the protocol asks on failure */
    if (flags & PyBUF_WRITABLE) {
        PyErr_SetString(PyExc_BufferError, "a FrozenArray is read-only");
        return -1;
    }
    if ((flags & PyBUF_F_CONTIGUOUS) == PyBUF_F_CONTIGUOUS && ndim > 1) {
        PyErr_SetString(PyExc_BufferError, "a FrozenArray is C-contiguous, not Fortran");
        return -1;
    }
    view->internal = NULL;
    view->strides = NULL;
    if ((flags & PyBUF_STRIDES) == PyBUF_STRIDES && ndim > 0) {
        Py_ssize_t *st = PyMem_Malloc((size_t)ndim * sizeof *st);
        if (st == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        Py_ssize_t step = (Py_ssize_t)b->itemsize;
        for (int d = ndim - 1; d >= 0; d--) {
            st[d] = step;
            step *= (Py_ssize_t)b->shape[d];
        }
        view->strides = st;
        view->internal = st;
    }
    view->buf = (void *)fs_buf_data(b);
    view->obj = Py_NewRef(self);
    view->len = (Py_ssize_t)b->nbytes;
    view->readonly = 1;
    view->itemsize = (Py_ssize_t)b->itemsize;
    view->format = (flags & PyBUF_FORMAT) ? (char *)b->format : NULL;
    /* the image's u64 shape is a Py_ssize_t array (64-bit, values < 2^62) */
    view->ndim = (flags & PyBUF_ND) == PyBUF_ND ? ndim : 1;
    view->shape = (flags & PyBUF_ND) == PyBUF_ND && ndim > 0
                  ? (Py_ssize_t *)(uintptr_t)b->shape : NULL;
    view->suboffsets = NULL;
    return 0;
}

/* bf_releasebuffer: frees the strides. */
static void array_releasebuffer(PyObject *self, Py_buffer *view)
{
    (void)self;
    PyMem_Free(view->internal);
    view->internal = NULL;
}

/* New reference: memoryview(self); self borrowed. */
static PyObject *as_memoryview(PyObject *self)
{
    return PyMemoryView_FromObject(self);
}

/* sq_length / mp_length: the first dimension; self borrowed. */
static Py_ssize_t array_length(PyObject *self)
{
    const fs_buf_t *b = P_BUF(FS_PROXY(self));
    if (b->h.n == 0) {
        PyErr_SetString(PyExc_TypeError, "len() of a 0-dimensional FrozenArray");
        return -1;
    }
    return (Py_ssize_t)b->shape[0];
}

/* mp_subscript: memoryview(self)[key]; new reference, self and key borrowed. */
static PyObject *array_subscript(PyObject *self, PyObject *key)
{
    PyObject *mv = as_memoryview(self);
    if (mv == NULL)
        return NULL;
    PyObject *res = PyObject_GetItem(mv, key);
    Py_DECREF(mv);
    return res;
}

/* tp_iter: iter(memoryview(self)); new reference. */
static PyObject *array_iter(PyObject *self)
{
    PyObject *mv = as_memoryview(self);
    if (mv == NULL)
        return NULL;
    PyObject *res = PyObject_GetIter(mv);
    Py_DECREF(mv);
    return res;
}

/* tolist(): memoryview(self).tolist(); new reference. */
static PyObject *array_tolist(PyObject *self, PyObject *unused)
{
    (void)unused;
    PyObject *mv = as_memoryview(self);
    if (mv == NULL)
        return NULL;
    PyObject *res = PyObject_CallMethod(mv, "tolist", NULL);
    Py_DECREF(mv);
    return res;
}

/* tp_richcompare: memoryview(self) compared with other (a FrozenArray
** through its own memoryview); new reference. */
static PyObject *array_richcompare(PyObject *self, PyObject *other, int op)
{
    if (op != Py_EQ && op != Py_NE)
        Py_RETURN_NOTIMPLEMENTED;
    PyObject *a = as_memoryview(self), *b = NULL, *res = NULL;
    if (a == NULL)
        return NULL;
    b = Py_TYPE(other) == Py_TYPE(self) ? as_memoryview(other) : Py_NewRef(other);
    const char *f = P_BUF(FS_PROXY(self))->format;
    if (b != NULL && (strcmp(f, "u") == 0 || strcmp(f, "w") == 0) && PyObject_CheckBuffer(b)) {
        /* characters, which memoryview cannot unpack (so compares only by
        ** identity): equal when format, shape and bytes are */
        PyObject *mb = PyMemoryView_FromObject(b);
        int eq = -1;
        if (mb != NULL) {
            Py_buffer *x = PyMemoryView_GET_BUFFER(a), *y = PyMemoryView_GET_BUFFER(mb);
            eq = y->format != NULL && (strcmp(y->format, "u") == 0 || strcmp(y->format, "w") == 0) &&
                 x->itemsize == y->itemsize && x->len == y->len && x->ndim == y->ndim &&
                 (x->ndim <= 1 || memcmp(x->shape, y->shape, (size_t)x->ndim * sizeof *x->shape) == 0) &&
                 PyBuffer_IsContiguous(y, 'C') && memcmp(x->buf, y->buf, (size_t)x->len) == 0;
            Py_DECREF(mb);
        }
        if (eq >= 0)
            res = PyBool_FromLong(op == Py_EQ ? eq : !eq);
    }
    else if (b != NULL)
        res = PyObject_RichCompare(a, b, op);
    Py_DECREF(a);
    Py_XDECREF(b);
    return res;
}

/* tp_repr: new reference; the items of small arrays, the shape of any. */
static PyObject *array_repr(PyObject *self)
{
    const fs_buf_t *b = P_BUF(FS_PROXY(self));
    PyObject *shape = fs__buf_shape(b), *items = NULL, *res = NULL;
    if (shape == NULL)
        return NULL;
    if (b->nbytes / b->itemsize <= 16) {
        items = array_tolist(self, NULL);
        if (items == NULL)          /* a format memoryview cannot unpack ('u', '>i') */
            PyErr_Clear();
    }
    if (items != NULL)
        res = PyUnicode_FromFormat("FrozenArray(%R, format='%s', shape=%R)", items, b->format,
                                   shape);
    else
        res = PyUnicode_FromFormat("FrozenArray(format='%s', shape=%R, nbytes=%llu)", b->format,
                                   shape, (unsigned long long)b->nbytes);
    Py_XDECREF(items);
    Py_DECREF(shape);
    return res;
}

/* Getters; new references, self borrowed. */
static PyObject *array_format(PyObject *self, void *c)
{
    (void)c;
    return PyUnicode_FromString(P_BUF(FS_PROXY(self))->format);
}
static PyObject *array_itemsize(PyObject *self, void *c)
{
    (void)c;
    return PyLong_FromUnsignedLong(P_BUF(FS_PROXY(self))->itemsize);
}
static PyObject *array_nbytes(PyObject *self, void *c)
{
    (void)c;
    return PyLong_FromUnsignedLongLong(P_BUF(FS_PROXY(self))->nbytes);
}
static PyObject *array_ndim(PyObject *self, void *c)
{
    (void)c;
    return PyLong_FromUnsignedLong(P_BUF(FS_PROXY(self))->h.n);
}
static PyObject *array_shape(PyObject *self, void *c)
{
    (void)c;
    return fs__buf_shape(P_BUF(FS_PROXY(self)));
}
static PyObject *array_source(PyObject *self, void *c)
{
    (void)c;
    static const char *const names[] = {"?", "array.array", "memoryview", "numpy.ndarray"};
    unsigned s = P_BUF(FS_PROXY(self))->h.aux;
    return PyUnicode_FromString(names[s <= FS_BUF__MAX ? s : 0]);
}

static PyMethodDef array_methods[] = {
    {"tolist", array_tolist, METH_NOARGS, "The items as (nested) lists, as memoryview.tolist()."},
    COMMON_METHODS,
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef array_getset[] = {
    {"format", array_format, NULL, "The struct-style format of an item.", NULL},
    {"itemsize", array_itemsize, NULL, "Bytes per item.", NULL},
    {"nbytes", array_nbytes, NULL, "Bytes of data.", NULL},
    {"ndim", array_ndim, NULL, "Number of dimensions.", NULL},
    {"shape", array_shape, NULL, "The shape, a tuple.", NULL},
    {"source", array_source, NULL,
     "What was frozen: 'array.array', 'memoryview' or 'numpy.ndarray' (what thaw returns).",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot array_slots[] = {
    {Py_tp_dealloc, fs__proxy_dealloc},
    {Py_tp_repr, array_repr},
    {Py_tp_hash, PyObject_HashNotImplemented},
    {Py_tp_iter, array_iter},
    {Py_tp_richcompare, array_richcompare},
    {Py_tp_methods, array_methods},
    {Py_tp_getset, array_getset},
    {Py_mp_length, array_length},
    {Py_mp_subscript, array_subscript},
    {Py_sq_length, array_length},
    {Py_bf_getbuffer, array_getbuffer},
    {Py_bf_releasebuffer, array_releasebuffer},
    {Py_tp_doc, "A frozen typed buffer (array.array, memoryview, NumPy array): read-only,\n"
                "zero-copy through memoryview(x) and numpy.asarray(x)."},
    {0, NULL},
};

PyType_Spec fs__array_spec = {
    .name = "frozenshare.FrozenArray",
    .basicsize = sizeof(fs_proxy),
    .flags = PROXY_FLAGS,
    .slots = array_slots,
};
