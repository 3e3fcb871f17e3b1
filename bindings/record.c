/*
** record.c -- records: user objects immutable by contract and the stdlib's
** values, frozen by their state and rebuilt without running user code
** (DESIGN.md "Records and typed buffers"; the RECORD object in fs_image.h).
**
** LAYER (the picture in fs_py.h): beside read.c, which calls it for RECORD
** references; freeze.c and thaw.c call it too. It calls read.c (fs__read,
** for the fields of a record being read) and state.c.
**
**   class                        flavor   state            rebuilt as
**   @dataclass(frozen=True)      FIELDS   {field: value}   object.__new__ +
**   fs.register(cls, fields=)    FIELDS   {field: value}     object.__setattr__
**   namedtuple, NamedTuple       TUPLE    (items)          tp_alloc, items set
**   enum member                  MEMBER   name             cls._member_map_[name]
**   composite enum.Flag member   FLAG     value            cls(value)
**   date time datetime timedelta VALUE    (args)           cls(*args): only the
**   timezone Decimal UUID Fraction                         classes of
**                                                          fs_rec_value_class
**
** Where classes come from (DESIGN.md "Trust"): a record is stored with its
** class's "module:qualname". An image this process built (fs_region_foreign
** 0) names classes this process had: an interpreter imports the module if it
** has not yet. A foreign image (loads, load) names classes nobody vouched
** for: only those the reader allowed (classes= at load, h->allow) or
** registered (fs.register in this interpreter) are built, and no module is
** ever imported on its say-so; the stdlib values need no allowlist. An image
** that came by unpickling (_unpickle) has pickle's trust: its classes are
** imported by name, as unpickling the plain objects would import them. Each
** handle caches the classes its records resolved to (h->classes), dropped
** with it.
**
** What freeze refuses, with a TypeError naming type and path (freeze.c adds
** the path): a dataclass that is not frozen, a class with <locals> in its
** qualified name or that its module does not give back by that name, a
** registered class's instance whose fields differ from the registration.
*/
#include "fs_py.h"

/* ---- classes by name ----------------------------------------------------- */

/* o.name: 1 with *out (new reference), 0 when it has none, -1 (3.13's
** PyObject_GetOptionalAttrString, for 3.12 too). */
static int optional_attr(PyObject *o, const char *name, PyObject **out)
{
    *out = PyObject_GetAttrString(o, name);
    if (*out != NULL)
        return 1;
    if (!PyErr_ExceptionMatches(PyExc_AttributeError))
        return -1;
    PyErr_Clear();
    return 0;
}

/* New reference: the object at the dotted path qual (a str) below obj
** (borrowed), or NULL with an exception. */
static PyObject *walk_qualname(PyObject *obj, PyObject *qual)
{
    PyObject *dot = PyUnicode_FromString(".");
    PyObject *parts = dot != NULL ? PyUnicode_Split(qual, dot, -1) : NULL;
    Py_XDECREF(dot);
    if (parts == NULL)
        return NULL;
    obj = Py_NewRef(obj);
    for (Py_ssize_t i = 0; obj != NULL && i < PyList_GET_SIZE(parts); i++) {
        PyObject *next = PyObject_GetAttr(obj, PyList_GET_ITEM(parts, i));
        Py_SETREF(obj, next);
    }
    Py_DECREF(parts);
    return obj;
}

/* New reference: "module.qualname" of a stored "module:qualname" (messages). */
static PyObject *dotted(PyObject *name)
{
    PyObject *colon = PyUnicode_FromString(":"), *dot = PyUnicode_FromString(".");
    PyObject *res = colon && dot ? PyUnicode_Replace(name, colon, dot, 1) : NULL;
    Py_XDECREF(colon);
    Py_XDECREF(dot);
    if (res == NULL) {
        PyErr_Clear();
        res = Py_NewRef(name);
    }
    return res;
}

/* New reference: "module:qualname" of class tp, checked to give tp back
** (sys.modules[module], then each qualname part; nothing is imported).
** NULL with TypeError. */
static PyObject *class_name(PyTypeObject *tp)
{
    PyObject *mod = PyObject_GetAttrString((PyObject *)tp, "__module__");
    PyObject *qual = mod != NULL ? PyType_GetQualName(tp) : NULL;
    PyObject *m = NULL, *obj = NULL, *name = NULL;
    if (qual != NULL && PyUnicode_Check(mod) &&
        PyUnicode_FindChar(qual, '<', 0, PyUnicode_GET_LENGTH(qual), 1) < 0 &&   /* <locals> */
        (m = PyImport_GetModule(mod)) != NULL)
        obj = walk_qualname(m, qual);
    if (obj == (PyObject *)tp)
        name = PyUnicode_FromFormat("%U:%U", mod, qual);
    else {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError,
                     "cannot freeze an instance of '%.200s': its class cannot be found again "
                     "by module and qualified name (defined inside a function, or not "
                     "reachable from its module)", tp->tp_name);
    }
    Py_XDECREF(obj);
    Py_XDECREF(m);
    Py_XDECREF(mod);
    Py_XDECREF(qual);
    return name;
}

/* Borrowed: enum.EnumType (EnumMeta), imported once per interpreter. */
static PyObject *enum_type(fs_state *st)
{
    PyObject *et = fs__published(&st->enum_type);
    if (et == NULL) {
        PyObject *m = PyImport_ImportModule("enum");
        if (m == NULL)
            return NULL;
        et = fs__publish(&st->enum_type, PyObject_GetAttrString(m, "EnumMeta"));
        Py_DECREF(m);
    }
    return et;
}

/* 1 if tp's metaclass is an enum.EnumType (tp an Enum class), 0, -1. */
static int is_enum_class(fs_state *st, PyObject *tp)
{
    PyObject *et = enum_type(st);
    if (et == NULL)
        return -1;
    return PyObject_TypeCheck(tp, (PyTypeObject *)et);
}

/* The fields of a frozen dataclass: a tuple of str (new reference); NULL
** with *none = 1 when tp is no dataclass, or with TypeError (not frozen). */
static PyObject *dataclass_fields(PyTypeObject *tp, int *none)
{
    *none = 0;
    PyObject *params = NULL, *frozen = NULL, *fields = NULL, *names = NULL;
    if (optional_attr((PyObject *)tp, "__dataclass_params__", &params) <= 0) {
        *none = params == NULL && !PyErr_Occurred();
        return NULL;
    }
    frozen = PyObject_GetAttrString(params, "frozen");
    if (frozen == NULL)
        goto done;
    int fz = PyObject_IsTrue(frozen);
    if (fz <= 0) {
        if (fz == 0)
            PyErr_Format(PyExc_TypeError,
                         "cannot freeze a '%.200s': a dataclass that is not frozen "
                         "(only @dataclass(frozen=True) instances are records)", tp->tp_name);
        goto done;
    }
    PyObject *dc = PyImport_ImportModule("dataclasses");
    if (dc == NULL)
        goto done;
    fields = PyObject_CallMethod(dc, "fields", "O", (PyObject *)tp);
    Py_DECREF(dc);
    if (fields == NULL)
        goto done;
    Py_ssize_t n = PyTuple_Check(fields) ? PyTuple_GET_SIZE(fields) : -1;
    if (n < 0) {
        PyErr_SetString(PyExc_TypeError, "dataclasses.fields() did not return a tuple");
        goto done;
    }
    names = PyTuple_New(n);
    for (Py_ssize_t i = 0; names != NULL && i < n; i++) {
        PyObject *nm = PyObject_GetAttrString(PyTuple_GET_ITEM(fields, i), "name");
        if (nm == NULL || !PyUnicode_CheckExact(nm)) {
            Py_XDECREF(nm);
            Py_CLEAR(names);
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "a dataclass field name is not a str");
            break;
        }
        PyUnicode_InternInPlace(&nm);
        PyTuple_SET_ITEM(names, i, nm);
    }
done:
    Py_XDECREF(params);
    Py_XDECREF(frozen);
    Py_XDECREF(fields);
    return names;
}

/* ---- freeze: what a record is -------------------------------------------- */

/* See fs_py.h. */
int fs__record_info(fs_state *st, PyTypeObject *tp, fs_recinfo *out)
{
    memset(out, 0, sizeof *out);
    PyObject *registry = fs__published(&st->registry), *reg = NULL;
    if (registry != NULL && fs__dict_get_ref(registry, (PyObject *)tp, &reg) < 0)
        return -1;
    int none = 1, en = 0;
    if (reg != NULL) {
        out->flavor = FS_REC_FIELDS;
        out->fields = reg;                      /* the reference taken */
        out->registered = 1;
    }
    else if ((en = is_enum_class(st, (PyObject *)tp)) != 0) {
        if (en < 0)
            return -1;
        out->flavor = FS_REC_MEMBER;
    }
    else if (PyType_IsSubtype(tp, &PyTuple_Type)) {
        PyObject *f = NULL;
        if (tp->tp_base != &PyTuple_Type || tp->tp_dictoffset != 0 ||
            optional_attr((PyObject *)tp, "_fields", &f) <= 0) {
            Py_XDECREF(f);
            return PyErr_Occurred() ? -1 : 0;   /* a tuple subclass, not a named tuple */
        }
        Py_DECREF(f);
        out->flavor = FS_REC_TUPLE;
    }
    else if ((out->fields = dataclass_fields(tp, &none)) != NULL) {
        out->flavor = FS_REC_FIELDS;
    }
    else if (!none) {
        return -1;                                /* a dataclass, not frozen */
    }
    if (out->flavor == 0) {
        /* Only the stdlib value classes remain: ask by name before the full
        ** check, so that any other class keeps freeze's plain refusal. */
        PyObject *mod = PyObject_GetAttrString((PyObject *)tp, "__module__");
        PyObject *qual = mod != NULL ? PyType_GetQualName(tp) : NULL;
        PyObject *nm = qual != NULL && PyUnicode_Check(mod) ? PyUnicode_FromFormat("%U:%U", mod, qual)
                                                           : NULL;
        Py_ssize_t n = 0;
        const char *s = nm != NULL ? PyUnicode_AsUTF8AndSize(nm, &n) : NULL;
        int value = s != NULL && fs_rec_value_class(s, (size_t)n);
        Py_XDECREF(nm);
        Py_XDECREF(qual);
        Py_XDECREF(mod);
        PyErr_Clear();
        if (!value)
            return 0;
        out->flavor = FS_REC_VALUE;
    }
    out->name = class_name(tp);
    if (out->name == NULL) {
        Py_CLEAR(out->fields);
        return -1;
    }
    return 1;
}

void fs__recinfo_clear(fs_recinfo *ri)
{
    Py_CLEAR(ri->name);
    Py_CLEAR(ri->fields);
}

/* New reference: the state of a VALUE record o: its constructor's args. */
static PyObject *value_state(PyObject *o)
{
    if (strcmp(Py_TYPE(o)->tp_name, "UUID") == 0) {      /* uuid.UUID(str) */
        PyObject *s = PyObject_Str(o);
        return s != NULL ? Py_BuildValue("(N)", s) : NULL;
    }
    PyObject *r = PyObject_CallMethod(o, "__reduce_ex__", "i", 4);
    if (r == NULL)
        return NULL;
    PyObject *args = NULL;
    if (PyTuple_Check(r) && PyTuple_GET_SIZE(r) >= 2 &&
        PyTuple_GET_ITEM(r, 0) == (PyObject *)Py_TYPE(o) && PyTuple_CheckExact(PyTuple_GET_ITEM(r, 1)))
        args = Py_NewRef(PyTuple_GET_ITEM(r, 1));
    for (Py_ssize_t i = 2; args != NULL && i < PyTuple_GET_SIZE(r); i++)
        if (PyTuple_GET_ITEM(r, i) != Py_None)
            Py_CLEAR(args);
    if (args == NULL)
        PyErr_Format(PyExc_TypeError, "cannot freeze a '%.200s': unexpected __reduce_ex__",
                     Py_TYPE(o)->tp_name);
    Py_DECREF(r);
    return args;
}

/* See fs_py.h. */
PyObject *fs__record_state(fs_state *st, PyObject *o, const fs_recinfo *ri, int *flavor)
{
    (void)st;
    *flavor = ri->flavor;
    switch (ri->flavor) {
    case FS_REC_TUPLE:
        return PyTuple_GetSlice(o, 0, PyTuple_GET_SIZE(o));    /* an exact tuple */
    case FS_REC_VALUE:
        return value_state(o);
    case FS_REC_MEMBER: {
        PyObject *name = PyObject_GetAttrString(o, "_name_"), *map = NULL, *m = NULL;
        if (name != NULL && PyUnicode_CheckExact(name))
            map = PyObject_GetAttrString((PyObject *)Py_TYPE(o), "_member_map_");
        if (map != NULL && PyDict_Check(map))
            m = PyDict_GetItemWithError(map, name);
        Py_XDECREF(map);
        if (m == o)
            return name;
        Py_XDECREF(name);
        if (PyErr_Occurred())
            return NULL;
        *flavor = FS_REC_FLAG;             /* a composite flag: by its value */
        return PyObject_GetAttrString(o, "_value_");
    }
    default:
        break;
    }
    /* FIELDS: the named attributes, read as object.__getattribute__ would
    ** (slots or the instance dict; no user __getattr__). An instance dict
    ** holding exactly the fields, in order (a frozen dataclass's), is the
    ** state itself: its same key objects make the records one shape. */
    Py_ssize_t n = PyTuple_GET_SIZE(ri->fields);
    PyObject **dp = _PyObject_GetDictPtr(o);
    PyObject *dict = dp != NULL && *dp != NULL && PyDict_CheckExact(*dp) ? Py_NewRef(*dp) : NULL;
    if (dict != NULL && PyDict_GET_SIZE(dict) == n) {
        Py_ssize_t pos = 0, i = 0;
        PyObject *k, *v;
        Py_BEGIN_CRITICAL_SECTION(dict);        /* runs no code: safe while locked */
        while (PyDict_Next(dict, &pos, &k, &v) && i < n && k == PyTuple_GET_ITEM(ri->fields, i))
            i++;
        Py_END_CRITICAL_SECTION();
        if (i == n)
            return dict;                        /* freeze reads a copy (freeze.c) */
    }
    if (ri->registered && dict != NULL) {
        /* Its keys, as strong references: the check runs code (str == str
        ** does not, but a field name could be compared with a str subclass). */
        PyObject *keys = PyDict_Keys(dict);
        for (Py_ssize_t i = 0; keys != NULL && i < PyList_GET_SIZE(keys); i++) {
            PyObject *k = PyList_GET_ITEM(keys, i);
            int found = PySequence_Contains(ri->fields, k);
            if (found == 0)
                PyErr_Format(PyExc_TypeError,
                             "cannot freeze a '%.200s': attribute %R is not one of the "
                             "fields it was registered with", Py_TYPE(o)->tp_name, k);
            if (found <= 0)
                Py_CLEAR(keys);
        }
        if (keys == NULL) {
            Py_DECREF(dict);
            return NULL;
        }
        Py_DECREF(keys);
    }
    Py_XDECREF(dict);
    PyObject *d = _PyDict_NewPresized(n);
    for (Py_ssize_t i = 0; d != NULL && i < n; i++) {
        PyObject *name = PyTuple_GET_ITEM(ri->fields, i);
        PyObject *v = PyObject_GenericGetAttr(o, name);
        if (v == NULL) {
            if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_TypeError, "cannot freeze a '%.200s': field %R is not set",
                             Py_TYPE(o)->tp_name, name);
            }
            Py_CLEAR(d);
            break;
        }
        int rc = PyDict_SetItem(d, name, v);
        Py_DECREF(v);
        if (rc < 0)
            Py_CLEAR(d);
    }
    return d;
}

/* ---- reading: classes ---------------------------------------------------- */

/* New reference: the class named by "module:qualname" (name), its module
** imported if need be. NULL with ImportError (the cause chained). */
static PyObject *import_class(PyObject *name)
{
    Py_ssize_t colon = PyUnicode_FindChar(name, ':', 0, PyUnicode_GET_LENGTH(name), 1);
    PyObject *mod = colon > 0 ? PyUnicode_Substring(name, 0, colon) : NULL;
    PyObject *qual = mod ? PyUnicode_Substring(name, colon + 1, PyUnicode_GET_LENGTH(name)) : NULL;
    PyObject *m = qual != NULL ? PyImport_Import(mod) : NULL;
    PyObject *obj = m != NULL ? walk_qualname(m, qual) : NULL;
    if (obj != NULL && !PyType_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "'%U' is not a class", qual);
        Py_CLEAR(obj);
    }
    if (obj == NULL) {
        PyObject *cause = PyErr_GetRaisedException(), *d = dotted(name);
        PyErr_Format(PyExc_ImportError, "frozenshare: cannot find record class '%U'", d);
        Py_DECREF(d);
        PyObject *mine = PyErr_GetRaisedException();
        PyException_SetCause(mine, cause);         /* steals cause (may be NULL) */
        PyErr_SetRaisedException(mine);
    }
    Py_XDECREF(m);
    Py_XDECREF(mod);
    Py_XDECREF(qual);
    return obj;
}

/* 1 if cls can be built as flavor (the image says so; the class must agree). */
static int flavor_fits(fs_state *st, PyObject *cls, int flavor)
{
    PyTypeObject *tp = (PyTypeObject *)cls;
    switch (flavor) {
    case FS_REC_MEMBER:
    case FS_REC_FLAG:
        return is_enum_class(st, cls);
    case FS_REC_TUPLE:
        return tp->tp_base == &PyTuple_Type && tp->tp_dictoffset == 0;
    case FS_REC_FIELDS:
        return !PyType_IsSubtype(tp, &PyTuple_Type) && is_enum_class(st, cls) == 0;
    default:
        return 1;                                 /* VALUE: checked by name */
    }
}

/* 1 if a FIELDS record of class cls with the field names of its state
** (the dict at state of base) can get its attributes as one instance dict:
** cls's instances have a __dict__ and no field is a data descriptor (a
** slot). Else each is set by object.__setattr__. */
static int dict_at_once(PyObject *cls, const uint8_t *base, fs_ref_t state)
{
    PyTypeObject *tp = (PyTypeObject *)cls;
    if (tp->tp_dictoffset == 0 && !(tp->tp_flags & Py_TPFLAGS_MANAGED_DICT))
        return 0;
    const fs_map_t *m = fs_map(base, state);
    for (uint64_t i = 0, n = fs_map_count(base, m); i < n; i++) {
        fs_ref_t k = fs_map_key(base, m, i);
        if (fs_ref_kind(base, k) != FS_KIND_STR)
            return 0;
        PyObject *name = fs__scalar(base, k, FS_KIND_STR, 0);
        if (name == NULL) {
            PyErr_Clear();
            return 0;
        }
        PyObject *d = _PyType_Lookup(tp, name);          /* borrowed, no error */
        Py_DECREF(name);
        if (d != NULL && Py_TYPE(d)->tp_descr_set != NULL)
            return 0;
    }
    return 1;
}

/* Borrowed: the class of record r of h's image (cached in h->classes, the
** low bit of the entry for *dict_ok: dict_at_once). NULL with an exception. */
static PyObject *record_class(fs_handle *h, const fs_rec_t *r, int *dict_ok)
{
    uint64_t hit = fs__tab_get_shared(&h->classes, (uintptr_t)r->cls, r->h.aux);   /* by flavor too */
    if (hit != 0) {
        *dict_ok = (hit & FS_CLASS_DICT_OK) != 0;
        return fs__class_of_entry(hit);
    }
    *dict_ok = 0;
    PyObject *name = fs__scalar(h->base, r->cls, FS_KIND_STR, 0), *cls = NULL;
    if (name == NULL)
        return NULL;
    int flavor = r->h.aux;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(name, &n);
    if (s == NULL)
        goto done;
    if (flavor == FS_REC_VALUE) {
        if (!fs_rec_value_class(s, (size_t)n)) {
            PyErr_Format(PyExc_TypeError, "frozenshare: a value record of class %R, which is "
                         "not one of the stdlib value classes", name);
            goto done;
        }
        cls = import_class(name);                  /* stdlib modules only */
    }
    else if (!fs_region_foreign(h->region) || h->allow == Py_True) {
        cls = import_class(name);   /* built here, or unpickled: pickle's trust */
    }
    else {
        PyObject *names = fs__published(&h->st->registered_names);
        int found = h->allow != NULL ? fs__dict_get_ref(h->allow, name, &cls) : 0;
        if (found == 0 && names != NULL)
            found = fs__dict_get_ref(names, name, &cls);
        if (found == 0) {
            PyObject *d = dotted(name);
            PyErr_Format(PyExc_TypeError,
                         "frozenshare: the image holds records of class '%U', which this "
                         "reader did not allow: pass the class in classes= to load()/loads(), "
                         "or fs.register() it (nothing is imported on an image's say-so)", d);
            Py_DECREF(d);
        }
    }
    if (cls != NULL) {
        int ok = flavor_fits(h->st, cls, flavor);
        if (ok <= 0) {
            if (ok == 0)
                PyErr_Format(PyExc_TypeError, "frozenshare: class %R cannot be rebuilt as "
                             "the image's record (flavor %d)", name, flavor);
            Py_CLEAR(cls);
        }
    }
    if (cls != NULL) {
        *dict_ok = flavor == FS_REC_FIELDS && dict_at_once(cls, h->base, r->state);
        /* Found without the lock (an import runs code); another thread may
        ** have cached it meanwhile: the first entry stays. */
        int err = FS_OK;
        FS_LOCK(&h->mu);
        hit = fs__tab_get_shared(&h->classes, (uintptr_t)r->cls, (uint64_t)flavor);
        if (hit == 0)
            err = fs__tab_put_shared(&h->classes, (uintptr_t)r->cls, (uint64_t)flavor,
                                     (uint64_t)(uintptr_t)cls | (*dict_ok ? FS_CLASS_DICT_OK : 0));
        FS_UNLOCK(&h->mu);
        if (hit != 0) {
            Py_SETREF(cls, fs__class_of_entry(hit));    /* borrowed: the cache's */
            *dict_ok = (hit & FS_CLASS_DICT_OK) != 0;
            Py_DECREF(name);
            return cls;
        }
        if (err != FS_OK) {
            Py_CLEAR(cls);
            fs__raise(err, NULL);
        }
    }
done:
    Py_DECREF(name);
    return cls;                                    /* the cache owns it */
}

/* See fs_py.h. */
PyObject *fs__record_class(fs_handle *h, fs_ref_t ref)
{
    int dict_ok;
    return record_class(h, fs_rec(h->base, ref), &dict_ok);
}

/* ---- reading: instances -------------------------------------------------- */

/* See fs_py.h. */
PyObject *fs__record_alloc(PyObject *cls, int flavor, Py_ssize_t n)
{
    if (flavor == FS_REC_TUPLE) {
        PyObject *t = ((PyTypeObject *)cls)->tp_alloc((PyTypeObject *)cls, n);
#if PY_VERSION_HEX >= 0x030E0000
        if (t != NULL)                       /* 3.14+ tuples cache their hash: */
            ((PyTupleObject *)t)->ob_hash = -1;   /* none yet, as tuple.__new__ */
#endif
        return t;
    }
    PyObject *empty = PyTuple_New(0);
    if (empty == NULL)
        return NULL;
    PyObject *o = PyBaseObject_Type.tp_new((PyTypeObject *)cls, empty, NULL);
    Py_DECREF(empty);
    return o;
}

/* See fs_py.h. */
PyObject *fs__record_from_state(fs_state *st, PyObject *cls, int flavor, PyObject *state)
{
    (void)st;
    switch (flavor) {
    case FS_REC_MEMBER: {
        PyObject *map = PyObject_GetAttrString(cls, "_member_map_");
        PyObject *m = NULL;
        if (map != NULL && PyDict_Check(map))
            (void)fs__dict_get_ref(map, state, &m);   /* -1: m NULL, error set */
        Py_XDECREF(map);
        if (m == NULL && !PyErr_Occurred())
            PyErr_Format(PyExc_TypeError, "frozenshare: enum %R has no member %R", cls, state);
        return m;
    }
    case FS_REC_FLAG:
        return PyObject_CallOneArg(cls, state);
    case FS_REC_VALUE:
        if (!PyTuple_Check(state)) {
            PyErr_SetString(PyExc_TypeError, "frozenshare: a value record without arguments");
            return NULL;
        }
        return PyObject_Call(cls, state, NULL);
    default:
        PyErr_SetString(PyExc_SystemError, "frozenshare: not a record built from a state");
        return NULL;
    }
}

/* t (a new reference, a tuple or tuple subclass of the sequence's length,
** or NULL) with its items set to those of the sequence at seq of h's image,
** read; NULL (t released) on failure. */
static PyObject *fill_items(fs_handle *h, fs_ref_t seq, PyObject *t)
{
    const fs_seq_t *sq = fs_seq(h->base, seq);
    for (Py_ssize_t i = 0, n = (Py_ssize_t)fs_seq_count(sq); t != NULL && i < n; i++) {
        PyObject *v = fs__read(h, fs_seq_items(sq)[i]);
        if (v == NULL)
            Py_CLEAR(t);
        else
            PyTuple_SET_ITEM(t, i, v);
    }
    return t;
}

/* New reference: the record at ref of h's image, its container fields as
** proxies. See fs_py.h. */
PyObject *fs__record_read(fs_handle *h, fs_ref_t ref)
{
    const fs_rec_t *r = fs_rec(h->base, ref);
    int dict_ok;
    PyObject *cls = record_class(h, r, &dict_ok);
    if (cls == NULL)
        return NULL;
    if (Py_EnterRecursiveCall(" while reading a record"))
        return NULL;
    int flavor = r->h.aux;
    PyObject *o = NULL;
    if (flavor == FS_REC_FIELDS) {
        const fs_map_t *m = fs_map(h->base, r->state);
        PyObject *keys = fs__keys_of(h, r->state);
        uint64_t n = fs_map_count(h->base, m);
        o = fs__record_alloc(cls, flavor, 0);
        if (o != NULL && keys != NULL && dict_ok) {
            /* the instance dict in one piece (its keys cached, their hashes
            ** stored), not n object.__setattr__ calls */
            PyObject *vals[FS_KEYCACHE_KEYS], *d = NULL;
            uint64_t i = 0;
            for (; i < n; i++)
                if ((vals[i] = fs__read(h, fs_map_value(m, i))) == NULL)
                    break;
            if (i == n)
                d = fs__dict_from_items(&PyTuple_GET_ITEM(keys, 0), vals, (Py_ssize_t)n);
            while (i-- > 0)
                Py_DECREF(vals[i]);
            /* through the type's __dict__ descriptor, as object.__setattr__
            ** does (PyObject_GenericSetDict leaves 3.13's inline values
            ** of the instance in charge, hiding the new dict) */
            if (d == NULL || h->st->str_dict == NULL ||
                PyObject_GenericSetAttr(o, h->st->str_dict, d) < 0)
                Py_CLEAR(o);
            Py_XDECREF(d);
            n = 0;                                 /* done */
        }
        for (uint64_t i = 0; o != NULL && i < n; i++) {
            PyObject *k = keys != NULL ? Py_NewRef(PyTuple_GET_ITEM(keys, (Py_ssize_t)i))
                                       : fs__read(h, fs_map_key(h->base, m, i));
            PyObject *v = k != NULL ? fs__read(h, fs_map_value(m, i)) : NULL;
            if (v != NULL && !PyUnicode_Check(k))
                PyErr_SetString(PyExc_TypeError, "frozenshare: a record field name is not a str");
            if (v == NULL || !PyUnicode_Check(k) || PyObject_GenericSetAttr(o, k, v) < 0)
                Py_CLEAR(o);
            Py_XDECREF(k);
            Py_XDECREF(v);
        }
    }
    else if (flavor == FS_REC_TUPLE) {
        o = fs__record_alloc(cls, flavor, (Py_ssize_t)fs_seq_count(fs_seq(h->base, r->state)));
        o = fill_items(h, r->state, o);
    }
    else {
        PyObject *state = flavor != FS_REC_VALUE ? fs__read(h, r->state)
            : fill_items(h, r->state, PyTuple_New((Py_ssize_t)fs_seq_count(fs_seq(h->base, r->state))));
        if (state != NULL)                    /* VALUE: its arguments, plain values */
            o = fs__record_from_state(h->st, cls, flavor, state);
        Py_XDECREF(state);
    }
    Py_LeaveRecursiveCall();
    return o;
}

/* ---- fs.register ---------------------------------------------------------- */

const char fs__register_doc[] =
"register(cls, /, *, fields)\n--\n\n"
"Let instances of cls (a class immutable by contract that is no frozen\n"
"dataclass, named tuple or enum) be frozen as records: stored by the named\n"
"fields and rebuilt with object.__new__ and object.__setattr__, never running\n"
"cls's own code. An instance whose attributes differ from fields is refused\n"
"at freeze. Registration is for this interpreter; it also allows cls for the\n"
"records of loaded images (as classes= does).";

/* register(cls, *, fields): None; module, args, kwargs borrowed. */
PyObject *fs__mod_register(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kw[] = {"cls", "fields", NULL};
    PyObject *cls, *fields;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!$O:register", kw, &PyType_Type, &cls,
                                     &fields))
        return NULL;
    fs_state *st = PyModule_GetState(module);
    PyTypeObject *tp = (PyTypeObject *)cls;
    if (PyType_IsSubtype(tp, &PyTuple_Type) || tp == &PyBaseObject_Type ||
        (tp->tp_flags & (Py_TPFLAGS_LONG_SUBCLASS | Py_TPFLAGS_LIST_SUBCLASS |
                         Py_TPFLAGS_BYTES_SUBCLASS | Py_TPFLAGS_UNICODE_SUBCLASS |
                         Py_TPFLAGS_DICT_SUBCLASS)) ||
        is_enum_class(st, cls) != 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "register: '%.200s' cannot be a registered record (a "
                     "builtin type, its subclass, or an enum)", tp->tp_name);
        return NULL;
    }
    PyObject *t = PySequence_Tuple(fields);
    if (t == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(t); i++) {
        PyObject *f = PyTuple_GET_ITEM(t, i);
        if (!PyUnicode_CheckExact(f) || !PyUnicode_IsIdentifier(f)) {
            PyErr_Format(PyExc_TypeError, "register: field names must be identifiers, not %R", f);
            Py_DECREF(t);
            return NULL;
        }
        PyObject *old = f;
        Py_INCREF(f);
        PyUnicode_InternInPlace(&f);              /* may give another object */
        PyTuple_SET_ITEM(t, i, f);
        Py_DECREF(old);                           /* the tuple's reference to it */
    }
    PyObject *name = class_name(tp);
    if (name == NULL) {
        Py_DECREF(t);
        return NULL;
    }
    int rc = -1;
    PyObject *registry = fs__published(&st->registry), *names = fs__published(&st->registered_names);
    if (registry == NULL && (registry = fs__publish(&st->registry, PyDict_New())) == NULL)
        goto done;
    if (names == NULL && (names = fs__publish(&st->registered_names, PyDict_New())) == NULL)
        goto done;
    if (PyDict_SetItem(registry, cls, t) == 0 && PyDict_SetItem(names, name, cls) == 0)
        rc = 0;
done:
    Py_DECREF(t);
    Py_DECREF(name);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ---- classes= at load ----------------------------------------------------- */

/* See fs_py.h. */
int fs__allowlist(PyObject *classes, PyObject **out)
{
    *out = NULL;
    if (classes == NULL || classes == Py_None)
        return 0;
    PyObject *seq = PySequence_Fast(classes, "classes must be an iterable of classes");
    if (seq != NULL && PyList_Check(seq))       /* a copy: the caller's list may change */
        Py_SETREF(seq, PyList_AsTuple(seq));
    if (seq == NULL)
        return -1;
    PyObject *d = PyDict_New();
    for (Py_ssize_t i = 0; d != NULL && i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *c = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyType_Check(c)) {
            PyErr_Format(PyExc_TypeError, "classes must hold classes, not '%.200s'",
                         Py_TYPE(c)->tp_name);
            Py_CLEAR(d);
            break;
        }
        PyObject *name = class_name((PyTypeObject *)c);
        if (name == NULL || PyDict_SetItem(d, name, c) < 0)
            Py_CLEAR(d);
        Py_XDECREF(name);
    }
    Py_DECREF(seq);
    *out = d;
    return d != NULL ? 0 : -1;
}
