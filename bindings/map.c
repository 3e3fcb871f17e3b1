/*
** map.c -- FrozenMap (a read-only dict / PEP 814 frozendict) and its keys,
** values and items views.
**
** LAYER (the picture in fs_py.h): a proxy family; calls proxy.c (entry iterator,
** set-like comparisons), freeze.c (| and fromkeys make new FrozenMaps),
** read.c (lookups) and state.c, never another family.
**
** A lookup probes the image's own index with the probe's hash (read.c):
** cost proportional to the key, never to the map. == follows dict's rules
** with any Mapping (a dict subclass is read with dict's own lookup, never its
** __missing__); hash is that of frozenset(items()).
*/
#include "fs_py.h"

/* ---- FrozenMap ---------------------------------------------------------- */

/* mp_length; self borrowed. */
static Py_ssize_t map_length(PyObject *self)
{
    return (Py_ssize_t)P_MAP_COUNT(FS_PROXY(self));
}

/* mp_subscript: new reference, KeyError when absent; self, key borrowed. */
static PyObject *map_subscript(PyObject *self, PyObject *key)
{
    fs_proxy *p = FS_PROXY(self);
    int64_t e;
    int r = fs__map_find(p, key, &e);
    if (r < 0)
        return NULL;
    if (r == 0) {
        fs__raise(FS_ENOTFOUND, key);
        return NULL;
    }
    return fs__read(p->h, P_VALUE(p, e));
}

/* sq_contains: 1, 0 or -1; self, key borrowed. */
static int map_contains(PyObject *self, PyObject *key)
{
    int64_t e;
    return fs__map_find(FS_PROXY(self), key, &e);
}

/* tp_iter (keys): new reference; self borrowed. */
static PyObject *map_iter(PyObject *self)
{
    return fs__mapiter_new(FS_PROXY(self), IT_KEYS, 0);
}

/* __reversed__: new reference; self borrowed. */
static PyObject *map_reversed(PyObject *self, PyObject *unused)
{
    (void)unused;
    return fs__mapiter_new(FS_PROXY(self), IT_KEYS, 1);
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
    int r = fs__map_find(p, args[0], &e);
    if (r < 0)
        return NULL;
    if (r == 0)
        return Py_NewRef(nargs == 2 ? args[1] : Py_None);
    return fs__read(p->h, P_VALUE(p, e));
}

/* FrozenMap.fromkeys(iterable, value=None, /): the frozen dict.fromkeys.
** Class method: new reference; cls, args borrowed. */
static PyObject *map_fromkeys(PyObject *cls, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "fromkeys expected 1 or 2 arguments, got %zd", nargs);
        return NULL;
    }
    PyObject *module = PyType_GetModule((PyTypeObject *)cls);   /* borrowed */
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
    PyObject *abc = fs__published(&st->mapping_abc);
    if (abc == NULL) {
        PyObject *m = PyImport_ImportModule("collections.abc");
        if (m == NULL)
            return -1;
        abc = fs__publish(&st->mapping_abc, PyObject_GetAttrString(m, "Mapping"));
        Py_DECREF(m);
        if (abc == NULL)
            return -1;
    }
    return PyObject_IsInstance(o, abc);
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
    int equal = (uint64_t)n == P_MAP_COUNT(p);
    for (uint64_t e = 0; equal && e < P_MAP_COUNT(p); e++) {
        PyObject *k = fs__read_key(p, e);
        if (k == NULL)
            return NULL;
        PyObject *ov;
        if (PyDict_Check(other)) {
            /* dict's own lookup, as dict == dict does: a subclass's
            ** __missing__ or __getitem__ is never called (defaultdict
            ** would insert the key, Counter would answer 0). */
            (void)fs__dict_get_ref(other, k, &ov);   /* -1: ov NULL, error set */
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
        PyObject *v = fs__read(p->h, P_VALUE(p, e));
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
    for (uint64_t e = 0; e < P_MAP_COUNT(p); e++) {
        PyObject *k = fs__read_key(p, e);
        if (k == NULL)
            return -1;
        PyObject *v = fs__read(p->h, P_VALUE(p, e));
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
    Py_hash_t cached = fs__hash_cached(p);
    if (cached != -1)
        return cached;
    if (Py_EnterRecursiveCall(" while hashing a FrozenMap"))
        return -1;
    /* hash(frozenset(self.items())) */
    Py_hash_t h = -1;
    PyObject *fz = NULL, *items = PyList_New((Py_ssize_t)P_MAP_COUNT(p));
    if (items == NULL)
        goto error;
    for (uint64_t e = 0; e < P_MAP_COUNT(p); e++) {
        PyObject *t = fs__map_item_tuple(p, e);
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
    return fs__hash_keep(p, h);
}

/* tp_repr: new reference; self borrowed. */
static PyObject *map_repr(PyObject *self)
{
    fs_proxy *p = FS_PROXY(self);
    int r = fs__repr_enter(p);
    if (r < 0)
        return NULL;
    if (r == 0)
        return PyUnicode_FromString("FrozenMap({...})");
    PyObject *res = NULL, *inner = fs__join_reprs(p, 1);
    if (inner != NULL) {
        res = PyUnicode_FromFormat("FrozenMap({%U})", inner);
        Py_DECREF(inner);
    }
    fs__repr_leave(p);
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
    return (Py_ssize_t)P_MAP_COUNT(VIEW_MAP(self));
}

/* tp_iter: new reference; self borrowed. */
static PyObject *mapview_iter(PyObject *self)
{
    return fs__mapiter_new(VIEW_MAP(self), view_mode(self), 0);
}

/* __reversed__: new reference; self borrowed. */
static PyObject *mapview_reversed(PyObject *self, PyObject *unused)
{
    (void)unused;
    return fs__mapiter_new(VIEW_MAP(self), view_mode(self), 1);
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
    return fs__map_find(VIEW_MAP(self), key, &e);
}

/* sq_contains for (key, value) pairs: 1, 0 or -1; self, item borrowed. */
static int items_contains(PyObject *self, PyObject *item)
{
    if (Py_TYPE(item) == P_ST(VIEW_MAP(self))->types[FS_PT_TUPLE]) {  /* a FrozenTuple pair */
        PyObject *t = fs__seq_materialize(FS_PROXY(item), 0);
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
    int r = fs__map_find(p, PyTuple_GET_ITEM(item, 0), &e);
    if (r <= 0)
        return r;
    PyObject *v = fs__read(p->h, P_VALUE(p, e));
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
    for (uint64_t e = 0; e < P_MAP_COUNT(p); e++) {
        PyObject *v = fs__read(p->h, P_VALUE(p, e));
        if (v == NULL)
            return -1;
        int r = PyObject_RichCompareBool(v, value, Py_EQ);
        Py_DECREF(v);
        if (r != 0)
            return r;
    }
    return 0;
}

/* New reference: o as a set for set operators on views. */
static PyObject *as_set(PyObject *o)
{
    if (PyAnySet_Check(o))
        return Py_NewRef(o);
    return PySet_New(o);
}

/* tp_richcompare (set comparisons): new reference; self, other borrowed. */
static PyObject *setview_richcompare(PyObject *self, PyObject *other, int op)
{
    fs_state *st = P_ST(VIEW_MAP(self));
    if (!(PyAnySet_Check(other) || is_setview(st, other) || is_type(other, st, FS_PT_SET) ||
          PyDictKeys_Check(other) || PyDictItems_Check(other)))
        Py_RETURN_NOTIMPLEMENTED;
    return fs__setlike_compare(st, self, other, op);
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

/* ---- method tables and type specs --------------------------------------- */

static PyMethodDef map_methods[] = {
    {"get", FS_METH(map_get), METH_FASTCALL, "get(key, default=None, /)"},
    {"fromkeys", FS_METH(map_fromkeys), METH_FASTCALL | METH_CLASS,
     "fromkeys(iterable, value=None, /): a FrozenMap of dict.fromkeys(iterable, value)."},
    {"keys", map_keys, METH_NOARGS, "A set-like view of the keys."},
    {"values", map_values, METH_NOARGS, "A view of the values."},
    {"items", map_items, METH_NOARGS, "A set-like view of the (key, value) pairs."},
    {"copy", fs__proxy_copy, METH_NOARGS, "Frozen: returns self."},
    {"__reversed__", map_reversed, METH_NOARGS, "Keys in reverse insertion order."},
    VIEW_METHOD,
    COMMON_METHODS,
    {NULL, NULL, 0, NULL},
};

static PyMethodDef setview_methods[] = {
    {"isdisjoint", fs__isdisjoint, METH_O, "isdisjoint(other, /)"},
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

static PyType_Slot map_slots[] = {
    {Py_tp_dealloc, fs__proxy_dealloc},
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

PyType_Spec fs__map_spec = {
    .name = "frozenshare.FrozenMap",
    .basicsize = sizeof(fs_proxy),
    .flags = PROXY_FLAGS | Py_TPFLAGS_MAPPING,
    .slots = map_slots,
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

PyType_Spec fs__keys_spec = {
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

PyType_Spec fs__items_spec = {
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

PyType_Spec fs__values_spec = {
    .name = "frozenshare.FrozenMapValues",
    .basicsize = sizeof(fs_mapview),
    .flags = PROXY_FLAGS,
    .slots = values_slots,
};
