/*
** bytes.c -- FrozenBytes (root bytes/bytearray: a read-only buffer equal to
** the bytes) and FrozenValue (any other root scalar; .value materializes it).
**
** LAYER (the picture in fs_py.h): a proxy family; calls proxy.c, read.c and
** state.c, never another family.
**
** FrozenBytes exports the image's bytes in place, read-only (I1); the
** buffer's obj is the proxy, which holds the handle, so the region outlives
** every export (I2). bytes methods it lacks are delegated to an equal bytes.
*/
#include "fs_py.h"

/* ---- FrozenBytes -------------------------------------------------------- */

/* p borrowed. */
static inline const fs_bytes_t *P_BYTES(fs_proxy *p) { return fs_bytes(p->h->base, p->ref); }

/* sq_length / mp_length; self borrowed. */
static Py_ssize_t fbytes_length(PyObject *self)
{
    return (Py_ssize_t)fs_bytes_len(P_BYTES(FS_PROXY(self)));
}

/* New reference: an equal bytes object; p borrowed. */
static PyObject *fbytes_materialize(fs_proxy *p)
{
    const fs_bytes_t *b = P_BYTES(p);
    return PyBytes_FromStringAndSize((const char *)fs_bytes_data(b), (Py_ssize_t)fs_bytes_len(b));
}

/* bf_getbuffer (read-only, I1): view->obj gets a new reference to self (borrowed). */
static int fbytes_getbuffer(PyObject *self, Py_buffer *view, int flags)
{
    const fs_bytes_t *b = P_BYTES(FS_PROXY(self));
    return PyBuffer_FillInfo(view, self, (void *)fs_bytes_data(b), (Py_ssize_t)fs_bytes_len(b),
                             1 /* readonly: I1 */, flags);
}

/* sq_item: new reference (an int); self borrowed. */
static PyObject *fbytes_item(PyObject *self, Py_ssize_t i)
{
    const fs_bytes_t *b = P_BYTES(FS_PROXY(self));
    if (i < 0 || (uint64_t)i >= fs_bytes_len(b)) {
        PyErr_SetString(PyExc_IndexError, "index out of range");
        return NULL;
    }
    return PyLong_FromLong(fs_bytes_data(b)[i]);
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
            i += (Py_ssize_t)fs_bytes_len(b);
        return fbytes_item(self, i);
    }
    if (PySlice_Check(key)) {
        Py_ssize_t start, stop, step;
        if (PySlice_Unpack(key, &start, &stop, &step) < 0)
            return NULL;
        Py_ssize_t len = PySlice_AdjustIndices((Py_ssize_t)fs_bytes_len(b), &start, &stop, step);
        if (step == 1)
            return PyBytes_FromStringAndSize((const char *)fs_bytes_data(b) + start, len);
        PyObject *out = PyBytes_FromStringAndSize(NULL, len);
        if (out == NULL)
            return NULL;
        char *dst = PyBytes_AS_STRING(out);
        for (Py_ssize_t k = 0, i = start; k < len; k++, i += step)
            dst[k] = (char)fs_bytes_data(b)[i];
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
        return fs_bytes_len(b) != 0 && memchr(fs_bytes_data(b), (int)c, (size_t)fs_bytes_len(b)) != NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(needle, &view, PyBUF_SIMPLE) < 0)
        return -1;
    int found = view.len == 0 ||
                memmem(fs_bytes_data(b), (size_t)fs_bytes_len(b), view.buf, (size_t)view.len) != NULL;
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
        *data = (const char *)fs_bytes_data(b);
        *len = (Py_ssize_t)fs_bytes_len(b);
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
    Py_hash_t cached = fs__hash_cached(p);
    if (cached != -1)
        return cached;
#if PY_VERSION_HEX >= 0x030E0000
    const fs_bytes_t *b = P_BYTES(p);
    return fs__hash_keep(p, Py_HashBuffer(fs_bytes_data(b), (Py_ssize_t)fs_bytes_len(b)));
#else
    PyObject *bytes = fbytes_materialize(p);  /* same hash as the equal bytes */
    if (bytes == NULL)
        return -1;
    Py_hash_t h = PyObject_Hash(bytes);
    Py_DECREF(bytes);
    return fs__hash_keep(p, h);
#endif
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
    return PyUnicode_Decode((const char *)fs_bytes_data(b), (Py_ssize_t)fs_bytes_len(b), encoding, errors);
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
    Py_hash_t cached = fs__hash_cached(p);
    if (cached != -1)
        return cached;
    PyObject *v = fvalue_value(self, NULL);
    if (v == NULL)
        return -1;
    Py_hash_t h = PyObject_Hash(v);
    Py_DECREF(v);
    return fs__hash_keep(p, h);
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

static PyType_Slot fbytes_slots[] = {
    {Py_tp_dealloc, fs__proxy_dealloc},
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

PyType_Spec fs__fbytes_spec = {
    .name = "frozenshare.FrozenBytes",
    .basicsize = sizeof(fs_proxy),
    .flags = PROXY_FLAGS,
    .slots = fbytes_slots,
};

static PyType_Slot fvalue_slots[] = {
    {Py_tp_dealloc, fs__proxy_dealloc},
    {Py_tp_repr, fvalue_repr},
    {Py_tp_hash, fvalue_hash},
    {Py_tp_richcompare, fvalue_richcompare},
    {Py_tp_methods, fvalue_methods},
    {Py_tp_getset, fvalue_getset},
    {Py_nb_bool, fvalue_bool},
    {Py_tp_doc, "A frozen scalar (str, int, float, ...); .value materializes it."},
    {0, NULL},
};

PyType_Spec fs__fvalue_spec = {
    .name = "frozenshare.FrozenValue",
    .basicsize = sizeof(fs_proxy),
    .flags = PROXY_FLAGS,
    .slots = fvalue_slots,
};
