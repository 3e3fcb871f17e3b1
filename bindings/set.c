/*
** set.c -- FrozenSet (like frozenset), from a set or a frozenset.
**
** LAYER (the picture in fs_py.h): a proxy family; calls proxy.c (entry
** iterator, set-like comparisons), read.c (membership) and state.c, never
** another family.
**
** Membership probes the image's index (read.c); operators and the named
** set methods return plain frozensets (or sets); hash equals frozenset's.
*/
#include "fs_py.h"

/* ---- FrozenSet ---------------------------------------------------------- */

/* sq_length; self borrowed. */
static Py_ssize_t set_length(PyObject *self)
{
    return (Py_ssize_t)P_MAP_COUNT(FS_PROXY(self));
}

/* sq_contains: 1, 0 or -1; self, key borrowed. */
static int set_contains(PyObject *self, PyObject *key)
{
    int64_t e;
    return fs__set_find(FS_PROXY(self), key, &e);
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
    return fs__mapiter_new(FS_PROXY(self), IT_KEYS, 0);
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
    return fs__setlike_compare(P_ST(FS_PROXY(self)), self, other, op);
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
    return fs__isdisjoint(self, other);
}

/* tp_hash: that of the equal frozenset, cached; self borrowed. */
static Py_hash_t set_hash(PyObject *self)
{
    fs_proxy *p = FS_PROXY(self);
    Py_hash_t cached = fs__hash_cached(p);
    if (cached != -1)
        return cached;
    if (Py_EnterRecursiveCall(" while hashing a FrozenSet"))
        return -1;
    Py_hash_t h = -1;
    PyObject *fz = PyFrozenSet_New(self);      /* equal to hash(frozenset) */
    if (fz != NULL) {
        h = PyObject_Hash(fz);
        Py_DECREF(fz);
    }
    Py_LeaveRecursiveCall();
    return fs__hash_keep(p, h);
}

/* tp_repr: new reference; self borrowed. */
static PyObject *set_repr(PyObject *self)
{
    fs_proxy *p = FS_PROXY(self);
    if (P_MAP_COUNT(p) == 0)
        return PyUnicode_FromString("FrozenSet()");
    int r = fs__repr_enter(p);
    if (r < 0)
        return NULL;
    if (r == 0)
        return PyUnicode_FromString("FrozenSet({...})");
    PyObject *res = NULL, *inner = fs__join_reprs(p, 0);
    if (inner != NULL) {
        res = PyUnicode_FromFormat("FrozenSet({%U})", inner);
        Py_DECREF(inner);
    }
    fs__repr_leave(p);
    return res;
}

/* ---- method tables and type specs --------------------------------------- */

static PyMethodDef set_methods[] = {
    {"union", set_union, METH_VARARGS, "union(*others) -> frozenset"},
    {"intersection", set_intersection, METH_VARARGS, "intersection(*others) -> frozenset"},
    {"difference", set_difference, METH_VARARGS, "difference(*others) -> frozenset"},
    {"symmetric_difference", set_symmetric_difference, METH_VARARGS,
     "symmetric_difference(other, /) -> frozenset"},
    {"issubset", set_issubset, METH_VARARGS, "issubset(other, /)"},
    {"issuperset", set_issuperset, METH_VARARGS, "issuperset(other, /)"},
    {"isdisjoint", set_isdisjoint, METH_O, "isdisjoint(other, /)"},
    {"copy", fs__proxy_copy, METH_NOARGS, "Frozen: returns self."},
    VIEW_METHOD,
    COMMON_METHODS,
    {NULL, NULL, 0, NULL},
};

static PyType_Slot set_slots[] = {
    {Py_tp_dealloc, fs__proxy_dealloc},
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

PyType_Spec fs__set_spec = {
    .name = "frozenshare.FrozenSet",
    .basicsize = sizeof(fs_proxy),
    .flags = PROXY_FLAGS,
    .slots = set_slots,
};
