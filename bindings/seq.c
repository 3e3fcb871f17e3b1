/*
** seq.c -- FrozenList and FrozenTuple (read-only list, tuple) and their
** iterator.
**
** LAYER (the picture in fs_py.h): a proxy family; calls proxy.c, read.c and
** state.c, never another family.
**
** Both read fs_seq_t items[] of a sealed image (I1) by offset (I3): length
** is O(1), item i one read. Comparison is lexicographic like tuple's and
** list's; FrozenTuple hashes as the equal tuple. Concatenation and
** repetition return plain tuples/lists. Deep nesting ends in RecursionError
** (PyObject_RichCompare, Py_EnterRecursiveCall), never a C stack overflow.
*/
#include "fs_py.h"

/* ---- sequences: FrozenList, FrozenTuple --------------------------------- */

/* sq_length / mp_length; self borrowed. */
static Py_ssize_t seq_length(PyObject *self)
{
    return (Py_ssize_t)P_SEQ_COUNT(FS_PROXY(self));
}

/* sq_item: new reference; self borrowed. */
static PyObject *seq_item(PyObject *self, Py_ssize_t i)
{
    fs_proxy *p = FS_PROXY(self);
    const fs_seq_t *s = P_SEQ(p);
    if (i < 0 || (uint64_t)i >= fs_seq_count(s)) {
        PyErr_SetString(PyExc_IndexError, Py_TYPE(self) == P_ST(p)->types[FS_PT_TUPLE]
                        ? "tuple index out of range" : "list index out of range");
        return NULL;
    }
    return fs__read(p->h, fs_seq_items(s)[i]);
}

/* New reference: a list or tuple of len items from start by step; p borrowed. */
static PyObject *seq_slice(fs_proxy *p, Py_ssize_t start, Py_ssize_t step,
                           Py_ssize_t len, int as_list)
{
    PyObject *out = as_list ? PyList_New(len) : PyTuple_New(len);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t k = 0, i = start; k < len; k++, i += step) {
        PyObject *v = fs__read(p->h, P_ITEM(p, i));
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
    for (uint64_t i = 0; i < P_SEQ_COUNT(p); i++) {
        PyObject *v = fs__read(p->h, P_ITEM(p, i));
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
        PyObject *v = fs__read(p->h, P_ITEM(p, i));
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
    for (uint64_t i = 0; i < P_SEQ_COUNT(p); i++) {
        PyObject *v = fs__read(p->h, P_ITEM(p, i));
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
        if ((uint64_t)i >= P_SEQ_COUNT(p))
            return NULL;
        return fs__read(p->h, P_ITEM(p, i));
    }
#if PY_VERSION_HEX >= 0x030D0000
    if (PyList_Check(o)) {                     /* another thread may shrink it */
        PyObject *x = PyList_GetItemRef(o, i);
        if (x == NULL)
            PyErr_Clear();                     /* IndexError: past the end */
        return x;
    }
#endif
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
    Py_hash_t cached = fs__hash_cached(p);
    if (cached != -1)
        return cached;
    if (Py_EnterRecursiveCall(" while hashing a FrozenTuple"))
        return -1;
    /* Equal to hash(tuple(self)): the same algorithm over the same items. */
    PyObject *t = fs__seq_materialize(p, 0);
    Py_hash_t h = t != NULL ? PyObject_Hash(t) : -1;
    Py_XDECREF(t);
    Py_LeaveRecursiveCall();
    return fs__hash_keep(p, h);
}

/* tp_repr: new reference; self borrowed. */
static PyObject *seq_repr(PyObject *self)
{
    fs_proxy *p = FS_PROXY(self);
    int list = is_list_proxy(self);
    const char *name = list ? "FrozenList" : "FrozenTuple";
    int r = fs__repr_enter(p);
    if (r < 0)
        return NULL;
    if (r == 0)
        return PyUnicode_FromFormat(list ? "%s([...])" : "%s((...))", name);
    PyObject *res = NULL, *plain = fs__seq_materialize(p, list);
    if (plain != NULL) {
        res = PyUnicode_FromFormat("%s(%R)", name, plain);
        Py_DECREF(plain);
    }
    fs__repr_leave(p);
    return res;
}

/* New reference: o as a plain tuple/list for concatenation, or
** Py_NotImplemented. */
static PyObject *as_plain_seq(PyObject *o, PyTypeObject *proxy_tp, int list)
{
    if (Py_TYPE(o) == proxy_tp)
        return fs__seq_materialize(FS_PROXY(o), list);
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
    PyObject *plain = fs__seq_materialize(FS_PROXY(self), list);
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
    Py_ssize_t i = fs__iter_step(&it->i, it->reverse);
    if (i >= 0 && (uint64_t)i < fs_seq_count(s)) {
        fs_ref_t r = fs_seq_items(s)[i];
        if (fs_ref_tag(r) == FS_TAG_INT)                /* the common leaves, inline */
            return PyLong_FromLongLong(fs_ref_int_value(r));
        if (fs_ref_tag(r) == FS_TAG_FLOAT)
            return PyFloat_FromDouble(fs_ref_float(r));
        return fs__read(p->h, r);
    }
#ifndef Py_GIL_DISABLED
    it->p = NULL;
    Py_DECREF(p);
#endif
    return NULL;
}

/* __length_hint__: new reference; self borrowed. */
static PyObject *seqiter_length_hint(PyObject *self, PyObject *unused)
{
    (void)unused;
    fs_seqiter *it = (fs_seqiter *)self;
    if (it->p == NULL)
        return PyLong_FromLong(0);
    Py_ssize_t n = (Py_ssize_t)P_SEQ_COUNT(it->p), i = fs__iter_at(&it->i);
    Py_ssize_t left = it->reverse ? i + 1 : n - i;
    return PyLong_FromSsize_t(left < 0 ? 0 : left > n ? n : left);
}

/* __reduce__, as list and tuple iterators do: (iter or reversed, (seq,),
** position), restored by __setstate__; an exhausted iterator reduces to
** iter(()). copy.copy and pickle both go through it. New reference. */
static PyObject *seqiter_reduce(PyObject *self, PyObject *unused)
{
    (void)unused;
    fs_seqiter *it = (fs_seqiter *)self;
    PyObject *f = fs__builtin(it->reverse && it->p != NULL ? "reversed" : "iter");
    if (f == NULL)
        return NULL;
    if (it->p == NULL)
        return Py_BuildValue("N(())", f);
    return Py_BuildValue("N(O)n", f, (PyObject *)it->p, fs__iter_at(&it->i));
}

/* __setstate__(position): new reference (None); self, state borrowed. */
static PyObject *seqiter_setstate(PyObject *self, PyObject *state)
{
    fs_seqiter *it = (fs_seqiter *)self;
    Py_ssize_t i = PyLong_AsSsize_t(state);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    if (it->p != NULL) {
        Py_ssize_t n = (Py_ssize_t)P_SEQ_COUNT(it->p);
        i = it->reverse ? (i < -1 ? -1 : i >= n ? n - 1 : i) : (i < 0 ? 0 : i > n ? n : i);
        __atomic_store_n(&it->i, i, __ATOMIC_RELAXED);
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
    it->i = reverse ? (Py_ssize_t)P_SEQ_COUNT(p) - 1 : 0;
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

/* ---- method tables and type specs --------------------------------------- */

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
    {"copy", fs__proxy_copy, METH_NOARGS, "Frozen: returns self (as FrozenMap.copy does)."},
    SEQ_METHODS,
    {NULL, NULL, 0, NULL},
};

static PyMethodDef seqiter_methods[] = {
    {"__length_hint__", seqiter_length_hint, METH_NOARGS, NULL},
    {"__reduce__", seqiter_reduce, METH_NOARGS, NULL},
    {"__setstate__", seqiter_setstate, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot list_slots[] = {
    {Py_tp_dealloc, fs__proxy_dealloc},
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

PyType_Spec fs__list_spec = {
    .name = "frozenshare.FrozenList",
    .basicsize = sizeof(fs_proxy),
    .flags = PROXY_FLAGS | Py_TPFLAGS_SEQUENCE,
    .slots = list_slots,
};

static PyType_Slot tuple_slots[] = {
    {Py_tp_dealloc, fs__proxy_dealloc},
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

PyType_Spec fs__tuple_spec = {
    .name = "frozenshare.FrozenTuple",
    .basicsize = sizeof(fs_proxy),
    .flags = PROXY_FLAGS | Py_TPFLAGS_SEQUENCE,
    .slots = tuple_slots,
};

static PyType_Slot seqiter_slots[] = {
    {Py_tp_dealloc, seqiter_dealloc},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, seqiter_next},
    {Py_tp_methods, seqiter_methods},
    {0, NULL},
};

PyType_Spec fs__seqiter_spec = {
    .name = "frozenshare.FrozenSequenceIterator",
    .basicsize = sizeof(fs_seqiter),
    .flags = PROXY_FLAGS,
    .slots = seqiter_slots,
};
