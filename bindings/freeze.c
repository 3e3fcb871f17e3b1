/*
** freeze.c -- freeze (object graph -> new region) and thaw (region -> plain
** objects), both iterative: an explicit stack of frames, never C recursion,
** so 10^6-deep nesting costs heap, not C stack.
**
** freeze:
**
**   convert(o) ----- None/bool/small int ----------> immediate ref (no object)
**       |  memo hit (id(o) seen before) -----------> the same ref (sharing, cycles)
**       |  scalar -------------------------------> fs_build_* now
**       |  proxy --------------------------------> xref into its region (import)
**       +  container ----------------------------> allocate NOW (count fixed),
**                                                  memo it, push a frame
**   frame loop: the top frame converts its next items and stores their refs;
**   when an item pushed a frame it yields (the child runs first), otherwise it
**   runs to its end (maps: build the index) and pops.
**
** Containers are allocated before their items are converted, so a child can
** refer to an ancestor (cycles) and every child ref is known at once. The
** memo keeps a strong reference to every object it maps (ids stay unique).
** It maps only objects the graph may reach twice: an item whose refcount is
** 1 is referenced by its container alone, so its memo lookup and entry are
** skipped (most strings, floats and records of real data). The builder
** flags objects referenced twice (FS_FLAG_SHARED, fs_image.h).
** Python code can run during a freeze (the __hash__ of an object inside a
** dict key or set member), so each step re-checks the container's size
** against the count allocated, right after hashing and when resuming: a
** change raises RuntimeError. (A container already frozen is a snapshot.) On any error the builder is
** destroyed and nothing is left behind; fs_region_create consumes it on
** success (sealing the image: I1) and takes +1 on each import (I2, I6).
**
** Accepted: exact None, bool, int, float, complex, str, bytes, bytearray,
** tuple, list, dict, set, frozenset (frozendict where it is a builtin), and
** this interpreter's proxies. Subclasses are rejected, since thaw could not
** restore them; the TypeError names the type and its path:
** root['users'][3]<key (1, 2)> (<key ...> a dict key, <member ...> a set
** member).
**
** thaw: the same loop in the other direction. Its memo ((region, ref) ->
** object) holds only the objects that can be reached twice: those flagged
** FS_FLAG_SHARED, the thaw's root, and anything in an imported region. Lists, tuples, dicts and sets
** are created empty before their items (cycles through them are restored);
** frozensets and frozendicts are created from their finished items. Items
** are inserted only once complete, so a dict key or set member is always
** hashable when inserted; a corrupt image with a cycle through a hashable
** object raises ValueError instead of hashing a half-built tuple.
*/
#include "fs_py.h"

/* ===================================================================== */
/* freeze                                                                  */
/* ===================================================================== */

enum { SEG_ROOT, SEG_INDEX, SEG_VALUE, SEG_KEY, SEG_MEMBER };

typedef struct fframe_s {
    PyObject  *obj;          /* strong: the container                      */
    PyObject  *iter;         /* strong: set iterator, or NULL             */
    PyObject  *seg_key;      /* strong: dict key / set member leading here */
    Py_ssize_t seg_index;    /* list/tuple index leading here             */
    size_t     parent;       /* frame index of the parent; SIZE_MAX: root */
    int        seg;          /* SEG_*: how the parent reaches this frame  */
    int        kind;         /* FS_KIND_* of the container                */
    fs_ref_t   ref;          /* the container in the image                */
    Py_ssize_t n;            /* count fixed at allocation                 */
    Py_ssize_t i;            /* next item                                 */
    Py_ssize_t pos;          /* PyDict_Next position                      */
    uint64_t   acc;          /* dict/set: order-sensitive digest of the
                                (key, value) identities stored so far     */
} fframe;

/* One step of the digest over the identities of what a dict or set frame
** stored, in order. Python code (a key's __hash__, a __del__) can delete and
** re-insert entries without changing the size, so PyDict_Next and the set
** iterator may then yield an entry twice or skip one; at the end the digest
** of the container as it is must equal the digest of what was stored. */
static inline uint64_t digest(uint64_t acc, const void *k, const void *v)
{
    acc = (acc ^ (uint64_t)(uintptr_t)k) * UINT64_C(0x9E3779B97F4A7C15);
    return (acc ^ (uint64_t)(uintptr_t)v) * UINT64_C(0xC2B2AE3D27D4EB4F);
}

/* 1 if container o (a dict or set, borrowed) still holds exactly what frame
** f stored, in the same order; 0 if not; -1 with an exception. Runs no
** Python code. */
static int unchanged(fframe *f, PyObject *o)
{
    uint64_t acc = 0;
    if (f->kind == FS_KIND_FROZENSET || (f->kind == FS_KIND_DICT && !PyDict_CheckExact(o)))
        return 1;                       /* frozenset, frozendict: immutable */
    if (f->kind == FS_KIND_DICT) {
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (PyDict_Next(o, &pos, &k, &v))
            acc = digest(acc, k, v);
        return acc == f->acc;
    }
    PyObject *it = PyObject_GetIter(o), *x;
    if (it == NULL)
        return -1;
    while ((x = PyIter_Next(it)) != NULL) {
        acc = digest(acc, x, NULL);
        Py_DECREF(x);
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return -1;
    return acc == f->acc;
}

typedef struct fctx_s {
    fs_state     *st;
    fs_builder_t *b;         /* owned until fs_region_create consumes it  */
    fs__tab_t     memo;      /* id(obj) -> ref; holds a reference to obj  */
    fs__tab_t     slot_of;   /* region -> import slot                     */
    fs_region_t **imports;   /* borrowed: their proxies are in the memo   */
    uint32_t      nimports, cap_imports;
    fframe       *stack;     /* fs__realloc'd                             */
    size_t        depth, cap;
} fctx;

/* Append one path segment ("[3]", "['users']", ...) to parts; key, parts
** borrowed. 0, or -1 with an exception. */
static int path_segment(PyObject *parts, int seg, PyObject *key, Py_ssize_t index)
{
    PyObject *s = NULL;
    if (seg == SEG_INDEX) {
        s = PyUnicode_FromFormat("[%zd]", index);
    }
    else if (seg != SEG_ROOT) {
        PyObject *r = PyObject_Repr(key);
        if (r == NULL) {
            PyErr_Clear();
            r = PyUnicode_FromString("?");
            if (r == NULL)
                return -1;
        }
        if (PyUnicode_GET_LENGTH(r) > 60) {
            PyObject *cut = PyUnicode_Substring(r, 0, 57);
            Py_DECREF(r);
            if (cut == NULL)
                return -1;
            r = PyUnicode_FromFormat("%U...", cut);
            Py_DECREF(cut);
            if (r == NULL)
                return -1;
        }
        s = PyUnicode_FromFormat(seg == SEG_VALUE ? "[%U]" :
                                 seg == SEG_KEY ? "<key %U>" : "<member %U>", r);
        Py_DECREF(r);
    }
    else {
        return 0;
    }
    if (s == NULL)
        return -1;
    int rc = PyList_Append(parts, s);
    Py_DECREF(s);
    return rc;
}

/* New reference: "root[...]..." for an item of frame fi reached by seg. */
static PyObject *render_path(fctx *c, size_t fi, int seg, PyObject *key, Py_ssize_t index)
{
    PyObject *empty = NULL, *joined = NULL, *res = NULL, *parts = PyList_New(0);
    if (parts == NULL)
        return NULL;
    if (path_segment(parts, seg, key, index) < 0)
        goto error;
    for (size_t i = fi; i != SIZE_MAX; i = c->stack[i].parent) {
        fframe *f = &c->stack[i];
        if (path_segment(parts, f->seg, f->seg_key, f->seg_index) < 0)
            goto error;
    }
    if (PyList_Reverse(parts) < 0)
        goto error;
    empty = PyUnicode_FromString("");
    if (empty == NULL)
        goto error;
    joined = PyUnicode_Join(empty, parts);
    if (joined != NULL)
        res = PyUnicode_FromFormat("root%U", joined);
error:
    Py_XDECREF(empty);
    Py_XDECREF(joined);
    Py_DECREF(parts);
    return res;
}

/* Set TypeError naming o's type and path; o, key borrowed. */
static void unsupported(fctx *c, PyObject *o, size_t parent, int seg, PyObject *key,
                        Py_ssize_t index)
{
    PyTypeObject *tp = Py_TYPE(o);
    const char *hint = "";
    if (PyLong_Check(o) || PyFloat_Check(o) || PyComplex_Check(o) || PyUnicode_Check(o) ||
        PyBytes_Check(o) || PyByteArray_Check(o) || PyTuple_Check(o) || PyList_Check(o) ||
        PyDict_Check(o) || PyAnySet_Check(o))
        hint = " (a subclass of a builtin type: only exact builtin types can be frozen)";
    PyObject *path = render_path(c, parent, seg, key, index);
    if (path == NULL)
        return;
    PyErr_Format(PyExc_TypeError, "cannot freeze '%.200s' object at %U%s",
                 tp->tp_name, path, hint);
    Py_DECREF(path);
}

/* o, key borrowed (the frame takes references to both). 0, or -1 with an exception. */
static int push_frame(fctx *c, PyObject *o, int kind, fs_ref_t ref, Py_ssize_t n,
                      size_t parent, int seg, PyObject *key, Py_ssize_t index)
{
    if (c->depth == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        fframe *s = fs__realloc(c->stack, cap * sizeof(fframe));
        if (s == NULL) {
            fs__raise(FS_ENOMEM, NULL);
            return -1;
        }
        c->stack = s;
        c->cap = cap;
    }
    PyObject *iter = NULL;
    if (kind == FS_KIND_SET || kind == FS_KIND_FROZENSET) {
        iter = PyObject_GetIter(o);
        if (iter == NULL)
            return -1;
    }
    fframe *f = &c->stack[c->depth++];
    f->obj = Py_NewRef(o);
    f->iter = iter;
    f->seg_key = Py_XNewRef(key);
    f->seg_index = index;
    f->parent = parent;
    f->seg = seg;
    f->kind = kind;
    f->ref = ref;
    f->n = n;
    f->i = 0;
    f->pos = 0;
    f->acc = 0;
    return 0;
}

static void pop_frame(fctx *c)
{
    fframe *f = &c->stack[--c->depth];
    Py_CLEAR(f->obj);
    Py_CLEAR(f->iter);
    Py_CLEAR(f->seg_key);
}

/* o borrowed: the memo takes a reference. 0, or -1 with an exception. */
static int memo_put(fctx *c, PyObject *o, fs_ref_t ref)
{
    int err = fs__tab_put(&c->memo, (uintptr_t)o, 0, ref);
    if (err != FS_OK) {
        fs__raise(err, NULL);
        return -1;
    }
    Py_INCREF(o);                      /* keeps id(o) unique until the end */
    return 0;
}

/* o borrowed (an int beyond 64 bits). 0, or -1 with an exception. */
static int build_bigint(fctx *c, PyObject *o, fs_ref_t *out)
{
#if PY_VERSION_HEX >= 0x030D0000
    Py_ssize_t n = PyLong_AsNativeBytes(o, NULL, 0, Py_ASNATIVEBYTES_LITTLE_ENDIAN);
    if (n < 0)
        return -1;
#else
    size_t nbits = _PyLong_NumBits(o);
    if (nbits == (size_t)-1 && PyErr_Occurred())
        return -1;
    Py_ssize_t n = (Py_ssize_t)(nbits / 8 + 1);     /* + sign bit */
#endif
    uint8_t *buf = fs__malloc((size_t)n);
    if (buf == NULL) {
        fs__raise(FS_ENOMEM, NULL);
        return -1;
    }
#if PY_VERSION_HEX >= 0x030D0000
    Py_ssize_t got = PyLong_AsNativeBytes(o, buf, n, Py_ASNATIVEBYTES_LITTLE_ENDIAN);
    int rc = got < 0 ? -1 : 0;
    if (got > n) {                      /* cannot happen: n was the size asked */
        PyErr_SetString(PyExc_SystemError, "frozenshare: int changed size");
        rc = -1;
    }
#else
    int rc = _PyLong_AsByteArray((PyLongObject *)o, buf, (size_t)n, 1, 1);
#endif
    if (rc == 0) {
        int err = fs_build_bigint(c->b, buf, (size_t)n, out);
        if (err != FS_OK) {
            fs__raise(err, NULL);
            rc = -1;
        }
    }
    fs__free(buf);
    return rc;
}

/* o borrowed (an exact str). 0, or -1 with an exception. */
static int build_str(fctx *c, PyObject *o, fs_ref_t *out)
{
    Py_ssize_t len = PyUnicode_GET_LENGTH(o);
    int kind = PyUnicode_KIND(o);
    const void *data = PyUnicode_DATA(o);
    Py_hash_t hash = PyObject_Hash(o);             /* cached by str */
    if (hash == -1)
        return -1;
    /* CPython's kind is canonical: the builder finds maxchar in one scan. */
    int err = fs_build_str(c->b, (unsigned)kind, (uint64_t)len, FS_MAXCHAR_SCAN,
                           (int64_t)hash, data, out);
    if (err != FS_OK) {
        fs__raise(err, NULL);
        return -1;
    }
    return 0;
}

/* An embedded proxy: a reference into its (older, sealed) region (I6).
** o borrowed (the memo takes a reference). 0, or -1 with an exception. */
static int embed_proxy(fctx *c, PyObject *o, fs_ref_t *out)
{
    fs_proxy *p = FS_PROXY(o);
    if (fs_ref_tag(p->ref) != FS_TAG_OBJ) {         /* FrozenValue(None/1/True) */
        *out = p->ref;
        return 0;
    }
    fs_region_t *r = p->h->region;
    uint64_t *slot = fs__tab_get(&c->slot_of, (uintptr_t)r, 0);
    uint32_t s;
    if (slot != NULL) {
        s = (uint32_t)*slot;
    }
    else {
        if (c->nimports == UINT32_MAX) {
            fs__raise(FS_ETOOBIG, NULL);
            return -1;
        }
        if (c->nimports == c->cap_imports) {
            uint32_t cap = c->cap_imports ? c->cap_imports * 2 : 8;
            fs_region_t **imps = fs__realloc(c->imports, cap * sizeof(fs_region_t *));
            if (imps == NULL) {
                fs__raise(FS_ENOMEM, NULL);
                return -1;
            }
            c->imports = imps;
            c->cap_imports = cap;
        }
        s = c->nimports;
        int err = fs__tab_put(&c->slot_of, (uintptr_t)r, 0, s);
        if (err != FS_OK) {
            fs__raise(err, NULL);
            return -1;
        }
        c->imports[c->nimports++] = r;
    }
    int err = fs_build_xref(c->b, s, p->ref, out);
    if (err != FS_OK) {
        fs__raise(err, NULL);
        return -1;
    }
    return memo_put(c, o, *out);
}

/* The reference for o, an item of frame `parent` reached by (seg, key,
** index). Containers are allocated now and a frame is pushed to fill them.
** uniq: the container item is o's only reference (its refcount was 1), so
** the graph cannot reach o again and the identity memo is skipped; most
** leaves of real data (and most records) are such. o, key borrowed. 0, or
** -1 with an exception. */
static int convert(fctx *c, PyObject *o, int uniq, size_t parent, int seg, PyObject *key,
                   Py_ssize_t index, fs_ref_t *out)
{
    PyTypeObject *tp = Py_TYPE(o);
    if (o == Py_None) { *out = FS_REF_NONE; return 0; }
    if (o == Py_True) { *out = FS_REF_TRUE; return 0; }
    if (o == Py_False) { *out = FS_REF_FALSE; return 0; }
    long long small = 0;
    int overflow = 1;
    if (tp == &PyLong_Type) {
        small = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (small == -1 && !overflow && PyErr_Occurred())
            return -1;
        if (!overflow && small >= FS_SMALL_INT_MIN && small <= FS_SMALL_INT_MAX) {
            *out = fs_ref_small_int(small);
            return 0;
        }
    }
    uint64_t *hit = uniq ? NULL : fs__tab_get(&c->memo, (uintptr_t)o, 0);
    if (hit != NULL) {
        *out = *hit;
        return 0;
    }

    int err = FS_OK, kind = 0;
    Py_ssize_t n = 0;
    fs_ref_t ref = 0;
    if (tp == &PyLong_Type) {
        if (!overflow)
            err = fs_build_int64(c->b, small, &ref);
        else if (build_bigint(c, o, &ref) < 0)
            return -1;
    }
    else if (tp == &PyUnicode_Type) {
        if (build_str(c, o, &ref) < 0)
            return -1;
    }
    else if (tp == &PyFloat_Type) {
        err = fs_build_float(c->b, PyFloat_AS_DOUBLE(o), &ref);
    }
    else if (tp == &PyComplex_Type) {
        Py_complex z = PyComplex_AsCComplex(o);
        err = fs_build_complex(c->b, z.real, z.imag, &ref);
    }
    else if (tp == &PyBytes_Type) {
        err = fs_build_bytes(c->b, FS_KIND_BYTES, PyBytes_AS_STRING(o),
                             (uint64_t)PyBytes_GET_SIZE(o), &ref);
    }
    else if (tp == &PyByteArray_Type) {
        err = fs_build_bytes(c->b, FS_KIND_BYTEARRAY, PyByteArray_AS_STRING(o),
                             (uint64_t)PyByteArray_GET_SIZE(o), &ref);
    }
    else if (tp == &PyTuple_Type || tp == &PyList_Type) {
        kind = tp == &PyTuple_Type ? FS_KIND_TUPLE : FS_KIND_LIST;
        n = Py_SIZE(o);
        err = fs_build_seq(c->b, kind, (uint64_t)n, &ref);
    }
    else if (tp == &PyDict_Type) {
        kind = FS_KIND_DICT;
        n = PyDict_GET_SIZE(o);
        err = fs_build_map(c->b, kind, 0, (uint64_t)n, &ref);
    }
#ifdef PyFrozenDict_CheckExact
    else if (tp == &PyFrozenDict_Type) {           /* 3.15+: a builtin */
        kind = FS_KIND_DICT;
        n = PyDict_GET_SIZE(o);
        err = fs_build_map(c->b, kind, FS_FLAG_FROZENDICT, (uint64_t)n, &ref);
    }
#endif
    else if (tp == &PySet_Type || tp == &PyFrozenSet_Type) {
        kind = tp == &PySet_Type ? FS_KIND_SET : FS_KIND_FROZENSET;
        n = PySet_GET_SIZE(o);
        err = fs_build_map(c->b, kind, 0, (uint64_t)n, &ref);
    }
    else if (fs__is_proxy(c->st, o)) {
        return embed_proxy(c, o, out);
    }
    else {
        unsupported(c, o, parent, seg, key, index);
        return -1;
    }
    if (err != FS_OK) {
        fs__raise(err, NULL);
        return -1;
    }
    if (!uniq && memo_put(c, o, ref) < 0)
        return -1;
    if (kind != 0) {
        if (n > 0) {
            if (push_frame(c, o, kind, ref, n, parent, seg, key, index) < 0)
                return -1;
        }
        else if (kind != FS_KIND_TUPLE && kind != FS_KIND_LIST) {
            fs_build_map_finish(c->b, ref);
        }
    }
    *out = ref;
    return 0;
}

static int changed_size(const char *what)
{
    PyErr_Format(PyExc_RuntimeError, "%s changed size during freeze", what);
    return -1;
}

static int changed(const char *what)
{
    PyErr_Format(PyExc_RuntimeError, "%s changed during freeze", what);
    return -1;
}

/* The end of a dict or set frame: the same-size mutation check, then the
** index. 0, or -1 with an exception. */
static int finish_map(fctx *c, fframe *f, const char *what)
{
    int r = unchanged(f, f->obj);
    if (r < 0)
        return -1;
    if (r == 0)
        return changed(what);
    fs_build_map_finish(c->b, f->ref);
    return 0;
}

/* Advance the top frame: fill items until one of them pushed a frame (the
** child runs next) or the container is complete (popped). */
static int step(fctx *c)
{
    size_t fi = c->depth - 1;
    fframe *f = &c->stack[fi];
    PyObject *o = f->obj;
    int rc = 0;

    switch (f->kind) {
    case FS_KIND_TUPLE:
    case FS_KIND_LIST:
        while (f->i < f->n) {
            if (Py_SIZE(o) != f->n)
                return changed_size("list");
            PyObject *item = f->kind == FS_KIND_LIST ? PyList_GET_ITEM(o, f->i)
                                                     : PyTuple_GET_ITEM(o, f->i);
            int uniq = Py_REFCNT(item) == 1;
            Py_INCREF(item);
            size_t depth = c->depth;
            fs_ref_t ref;
            rc = convert(c, item, uniq, fi, SEG_INDEX, NULL, f->i, &ref);
            Py_DECREF(item);
            if (rc < 0)
                return -1;
            f = &c->stack[fi];                  /* the stack may have moved */
            fs_build_seq_set(c->b, f->ref, (uint64_t)f->i, ref);
            f->i++;
            if (c->depth != depth)
                return 0;
        }
        if (Py_SIZE(o) != f->n)
            return changed_size("list");
        break;

    case FS_KIND_DICT:
        while (f->i < f->n) {
            PyObject *k, *v, *k2, *v2;
            Py_ssize_t pos0 = f->pos;
            if (PyDict_GET_SIZE(o) != f->n || !PyDict_Next(o, &f->pos, &k, &v))
                return changed_size("dictionary");
            int uniq_k = Py_REFCNT(k) == 1, uniq_v = Py_REFCNT(v) == 1;
            Py_INCREF(k);
            Py_INCREF(v);
            size_t depth = c->depth;
            fs_ref_t kref = 0, vref = 0;
            Py_hash_t hash = -1;
            /* hash() first: it may run Python code (a key's __hash__). */
            hash = PyObject_Hash(k);
            if (hash == -1)
                rc = -1;
            else if (PyDict_GET_SIZE(o) != f->n)
                rc = changed_size("dictionary");
            else if (!PyDict_Next(o, &pos0, &k2, &v2) || k2 != k || v2 != v || pos0 != f->pos)
                rc = changed("dictionary");      /* same size, entry moved or replaced */
            if (rc == 0)
                rc = convert(c, k, uniq_k, fi, SEG_KEY, k, 0, &kref);
            if (rc == 0)
                rc = convert(c, v, uniq_v, fi, SEG_VALUE, k, 0, &vref);
            Py_DECREF(k);
            Py_DECREF(v);
            if (rc < 0)
                return -1;
            f = &c->stack[fi];
            fs_build_map_set(c->b, f->ref, (uint64_t)f->i, (int64_t)hash, kref, vref);
            f->acc = digest(f->acc, k, v);   /* identities only: k, v may be gone */
            f->i++;
            if (c->depth != depth)
                return 0;
        }
        if (PyDict_GET_SIZE(o) != f->n)
            return changed_size("dictionary");
        if (finish_map(c, f, "dictionary") < 0)
            return -1;
        break;

    default:                                    /* set, frozenset */
        while (f->i < f->n) {
            PyObject *item = PyIter_Next(f->iter);   /* raises if the set changed */
            if (item == NULL)
                return PyErr_Occurred() ? -1 : changed_size("set");
            int uniq = Py_REFCNT(item) == 2;        /* the set's and ours */
            size_t depth = c->depth;
            fs_ref_t ref = 0;
            Py_hash_t hash = -1;
            hash = PyObject_Hash(item);
            if (hash == -1)
                rc = -1;
            else if (PySet_GET_SIZE(o) != f->n)
                rc = changed_size("set");
            if (rc == 0)
                rc = convert(c, item, uniq, fi, SEG_MEMBER, item, 0, &ref);
            Py_DECREF(item);
            if (rc < 0)
                return -1;
            f = &c->stack[fi];
            fs_build_map_set(c->b, f->ref, (uint64_t)f->i, (int64_t)hash, ref, FS_REF_NONE);
            f->acc = digest(f->acc, item, NULL);
            f->i++;
            if (c->depth != depth)
                return 0;
        }
        if (PySet_GET_SIZE(o) != f->n)
            return changed_size("set");
        if (finish_map(c, f, "set") < 0)
            return -1;
        break;
    }
    pop_frame(c);
    return 0;
}

static void fctx_fini(fctx *c)
{
    while (c->depth > 0)
        pop_frame(c);
    fs__free(c->stack);
    if (c->memo.slots != NULL) {
        for (size_t i = 0; i <= c->memo.mask; i++)
            if (c->memo.slots[i].k1 != 0)
                Py_DECREF((PyObject *)c->memo.slots[i].k1);
    }
    fs__tab_fini(&c->memo);
    fs__tab_fini(&c->slot_of);
    fs__free(c->imports);
    fs_builder_destroy(c->b);                   /* NULL once consumed */
}

/* New reference; obj borrowed. See fs_py.h. */
PyObject *fs__freeze(fs_state *st, PyObject *obj)
{
    if (fs__is_proxy(st, obj))
        return Py_NewRef(obj);
    /* Re-install on top of handlers installed since (faulthandler): the
    ** reporter is a diagnostic, its failure does not stop a freeze. */
    (void)fs_arena_install_reporter();

    fctx c;
    memset(&c, 0, sizeof c);
    c.st = st;
    PyObject *res = NULL;
    fs_handle *h = NULL;
    fs_region_t *r = NULL;
    fs_ref_t root = 0;

    int err = fs_builder_create(&c.b, 0);
    if (err != FS_OK) {
        fs__raise(err, NULL);
        goto error;
    }
    if (convert(&c, obj, 0, SIZE_MAX, SEG_ROOT, NULL, 0, &root) < 0)
        goto error;
    while (c.depth > 0)
        if (step(&c) < 0)
            goto error;

    err = fs_region_create(&r, c.b, root, c.imports, c.nimports, (int64_t)st->hash_check);
    c.b = NULL;                                 /* consumed in every case */
    if (err != FS_OK) {
        fs__raise(err, NULL);
        goto error;
    }
    fctx_fini(&c);                              /* imports now hold their +1 */
    h = fs__handle_owned(st, r);                /* takes the creator's count */
    if (h == NULL)
        return NULL;
    res = fs__proxy_new(h, fs__root_type_code(h->base, root), root);
    Py_DECREF(h);
    return res;

error:
    fctx_fini(&c);
    return NULL;
}

/* ===================================================================== */
/* thaw                                                                    */
/* ===================================================================== */

#define INCOMPLETE UINT64_C(1)   /* memo value bit: object still being filled */
#define HCTX       UINT64_C(1)   /* memo key bit (object refs are multiples of
                                    8): the object as built in a key context */

typedef struct tframe_s {
    fs_region_t   *reg;      /* borrowed (kept alive by the root's region) */
    const uint8_t *base;
    fs_ref_t       ref;
    int            kind;     /* FS_KIND_* as built (a SET in a key context
                                builds as a FROZENSET)                    */
    int            frozen;   /* frozenset/frozendict: obj is a temporary   */
    int            memo;     /* in the memo (which owns obj unless frozen) */
    int            hctx;     /* a dict key or set member, or below one     */
    int            phase;    /* dict: 0 = key next, 1 = value next        */
    int32_t        pend;     /* frozendict holding placeholders: its index
                                in tctx.pend, else -1                     */
    PyObject      *obj;      /* memo's object, or strong (frozen, !memo)  */
    PyObject      *key;      /* strong: dict key waiting for its value    */
    Py_ssize_t     n, i;
} tframe;

/* A frozendict whose items hold placeholders (see "Cycles through a
** frozendict" above thaw_value). */
typedef struct tpend_s {
    fs_region_t *reg;        /* the frozendict in the image               */
    fs_ref_t     ref;
    PyObject    *temp;       /* strong: its items (a dict); NULL once built */
    int          memo;       /* memoize the frozendict when built         */
    int          finished;   /* its frame has ended                       */
    Py_ssize_t   waits;      /* placeholders in temp not yet patched      */
} tpend;

/* A slot holding a placeholder until the object it waits for is built. */
typedef struct tfix_s {
    PyObject  *target;       /* strong: the list, tuple or dict holding it */
    PyObject  *key;          /* strong: the dict key, or NULL             */
    Py_ssize_t index;        /* list/tuple position                        */
    int32_t    pend;         /* target is tctx.pend[pend].temp, or -1     */
    int64_t    next;         /* next slot waiting for the same object, -1 */
} tfix;

typedef struct tctx_s {
    fs_handle *h;            /* borrowed: the thaw's handle               */
    fs__tab_t memo;          /* (region, ref | HCTX?) -> PyObject* |
                                INCOMPLETE; holds a reference to each object */
    fs_region_t *reg0;       /* the thaw's root: its region ...           */
    fs_ref_t     ref0;       /* ... and reference (resolved)              */
    tframe   *stack;
    size_t    depth, cap;
    PyObject *result;        /* strong: the root, once complete           */
    fs__tab_t waiters;       /* (region, ref) -> first tfix waiting for it */
    tfix     *fix;
    size_t    nfix, cap_fix;
    tpend    *pend;
    size_t    npend, cap_pend, unbuilt;   /* unbuilt: pend not yet built  */
    int32_t  *work;          /* pend indices ready to build (built())     */
    size_t    cap_work;
} tctx;

/* Grow *arr (of elem bytes each) to hold one more than n. 0, or -1 with
** MemoryError. */
static int grow(void **arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 16;
    void *a = fs__realloc(*arr, ncap * elem);
    if (a == NULL) {
        fs__raise(FS_ENOMEM, NULL);
        return -1;
    }
    *arr = a;
    *cap = ncap;
    return 0;
}

/* o borrowed, may be NULL (a marker): the memo takes a reference. 0, or -1. */
static int tmemo_put(tctx *c, fs_region_t *reg, uint64_t key, PyObject *o, uint64_t flags)
{
    int err = fs__tab_put(&c->memo, (uintptr_t)reg, key, (uint64_t)(uintptr_t)o | flags);
    if (err != FS_OK) {
        fs__raise(err, NULL);
        return -1;
    }
    Py_XINCREF(o);
    return 0;
}

static int cycle_error(int hashable)
{
    PyErr_Format(PyExc_ValueError, "frozenshare: cannot thaw a cycle through a %s",
                 hashable ? "hashable object (dict key or set member)"
                          : "frozenset or frozendict alone");
    return -1;
}

/* New reference: the frozenset (kind FROZENSET) or frozendict (DICT) of a
** frame's temporary items (a list or a dict; NULL: none). */
static PyObject *make_frozen(int kind, PyObject *items)
{
#ifdef PyFrozenDict_CheckExact
    if (kind == FS_KIND_DICT)
        return PyFrozenDict_New(items);
#endif
    (void)kind;
    return PyFrozenSet_New(items);
}

/* Put o (borrowed) in the slot x waited for, replacing its placeholder. 0, or -1. */
static int patch(tfix *x, PyObject *o)
{
    if (x->key != NULL)
        return PyDict_SetItem(x->target, x->key, o);
    if (PyList_CheckExact(x->target))
        return PyList_SetItem(x->target, x->index, Py_NewRef(o));
    PyObject *old = PyTuple_GET_ITEM(x->target, x->index);   /* made by this thaw, */
    PyTuple_SET_ITEM(x->target, x->index, Py_NewRef(o));     /* never hashed (not */
    Py_DECREF(old);                                          /* in a key context) */
    return 0;
}

/* The frozen object (reg, ref) is built as o (borrowed): patch every slot
** waiting for it; a frozendict whose last placeholder that was, and whose
** frame has ended, is built now and its own waiters patched in turn (a
** worklist, no recursion). 0, or -1 with an exception. */
static int built(tctx *c, fs_region_t *reg, fs_ref_t ref, PyObject *o)
{
    size_t nwork = 0;
    PyObject *held = Py_NewRef(o);
    for (;;) {
        uint64_t *head = c->waiters.used ? fs__tab_get(&c->waiters, (uintptr_t)reg, ref) : NULL;
        if (head != NULL) {
            int64_t j = (int64_t)*head;
            fs__tab_del(&c->waiters, (uintptr_t)reg, ref);
            for (; j >= 0; j = c->fix[j].next) {
                tfix *x = &c->fix[j];
                int rc = patch(x, held);
                Py_CLEAR(x->target);
                Py_CLEAR(x->key);
                if (rc < 0)
                    goto error;
                if (x->pend >= 0) {
                    tpend *pd = &c->pend[x->pend];
                    if (--pd->waits == 0 && pd->finished) {
                        if (grow((void **)&c->work, &c->cap_work, nwork, sizeof *c->work) < 0)
                            goto error;
                        c->work[nwork++] = x->pend;
                    }
                }
            }
        }
        Py_DECREF(held);
        if (nwork == 0)
            return 0;
        tpend *pd = &c->pend[c->work[--nwork]];
        held = make_frozen(FS_KIND_DICT, pd->temp);
        if (held == NULL)
            return -1;
        Py_CLEAR(pd->temp);
        c->unbuilt--;
        if (pd->memo && tmemo_put(c, pd->reg, pd->ref, held, 0) < 0)
            goto error;
        reg = pd->reg;
        ref = pd->ref;
    }
error:
    Py_DECREF(held);
    return -1;
}

/* Put item o at the current position of frame fi; steals o. */
static int deliver(tctx *c, size_t fi, PyObject *o)
{
    tframe *f = &c->stack[fi];
    int rc = 0;
    switch (f->kind) {
    case FS_KIND_LIST:
        PyList_SET_ITEM(f->obj, f->i, o);
        break;
    case FS_KIND_TUPLE:
        PyTuple_SET_ITEM(f->obj, f->i, o);
        break;
    case FS_KIND_DICT:
        if (f->phase == 0) {
            f->key = o;
            f->phase = 1;
            return 0;
        }
        rc = PyDict_SetItem(f->obj, f->key, o);
        Py_CLEAR(f->key);
        Py_DECREF(o);
        f->phase = 0;
        break;
    case FS_KIND_SET:
        rc = PySet_Add(f->obj, o);
        Py_DECREF(o);
        break;
    default:                                       /* frozenset: collect */
        rc = PyList_Append(f->obj, o);
        Py_DECREF(o);
        break;
    }
    f->i++;
    return rc;
}

/* The current slot of frame fi is to hold the frozen object (wreg, wref),
** which is not built yet: record the slot and deliver a placeholder. Only a
** list item, tuple item or dict value can wait (a key or member would be
** hashed now). 0, or -1 with an exception. */
static int wait_for(tctx *c, size_t fi, fs_region_t *wreg, fs_ref_t wref)
{
    tframe *f = &c->stack[fi];
    if (f->hctx || f->kind == FS_KIND_SET || f->kind == FS_KIND_FROZENSET ||
        (f->kind == FS_KIND_DICT && f->phase == 0))
        return cycle_error(1);
    if (grow((void **)&c->fix, &c->cap_fix, c->nfix, sizeof *c->fix) < 0)
        return -1;
    if (f->frozen && f->pend < 0) {                /* a frozendict starts waiting */
        if (grow((void **)&c->pend, &c->cap_pend, c->npend, sizeof *c->pend) < 0)
            return -1;
        c->pend[c->npend] = (tpend){.reg = f->reg, .ref = f->ref, .temp = Py_NewRef(f->obj),
                                    .memo = f->memo};
        f->pend = (int32_t)c->npend++;
        c->unbuilt++;
    }
    uint64_t *head = fs__tab_get(&c->waiters, (uintptr_t)wreg, wref);
    int64_t next = head != NULL ? (int64_t)*head : -1;
    int err = fs__tab_put(&c->waiters, (uintptr_t)wreg, wref, c->nfix);
    if (err != FS_OK) {
        fs__raise(err, NULL);
        return -1;
    }
    c->fix[c->nfix++] = (tfix){
        .target = Py_NewRef(f->obj), .key = Py_XNewRef(f->key), .index = f->i,
        .pend = f->frozen ? f->pend : -1, .next = next,
    };
    if (f->frozen)
        c->pend[f->pend].waits++;
    return deliver(c, fi, Py_NewRef(Py_None));
}

/* The plain object for ref, reached in a key context (hctx) or not: 0 with
** *out (new reference) when ready, 1 when a frame was pushed (its result is
** delivered when it completes), 2 when ref is a frozendict still being
** built (the caller's slot waits for it: wait_for), -1 error.
**
** Key contexts: a dict key, a set member, and everything below one, must be
** hashable and complete when inserted. There a set builds as a frozenset,
** a bytearray as bytes, a dict as a frozendict (3.15+) or, before 3.15, as
** the FrozenMap proxy itself -- the source of such a key was a proxy, which
** is hashable and equal to them. Objects reached in both contexts are built
** once per context (the memo key carries HCTX). Nothing incomplete is ever
** used in a key context: reaching one is a cycle through a hashable object,
** which Python cannot build but a hand-made image can (DESIGN.md D7):
** ValueError, never a half-built tuple hashed.
**
** Cycles through a frozendict (3.15+; lst = []; fd = frozendict(a=lst);
** lst.append(fd)): a frozendict can only be made from its finished items,
** so a slot below it that refers back to it gets a placeholder and is
** patched when the frozendict is built (built()); a frozendict holding such
** a placeholder is itself built only when it is patched. Every such cycle
** Python can build runs through a list, dict or tuple, which can hold a
** placeholder; one through frozen containers alone stays unbuilt and is a
** ValueError. */
static int thaw_value(tctx *c, fs_region_t *reg, const uint8_t *base, fs_ref_t ref,
                      int hctx, PyObject **out)
{
    fs__resolve(&reg, &base, &ref);
    int kind = fs_ref_kind(base, ref);
    if (fs_ref_tag(ref) != FS_TAG_OBJ) {
        *out = fs__scalar(base, ref, kind, 1);
        return *out != NULL ? 0 : -1;
    }
    if (c->reg0 == NULL) {                          /* the root */
        c->reg0 = reg;
        c->ref0 = ref;
    }
    /* Only containers and bytearrays differ in a key context. */
    int ctx_bit = hctx && kind >= FS_KIND_BYTEARRAY;
    uint64_t mkey = ref | (ctx_bit ? HCTX : 0);
    /* Reached at most once (see the header comment): no memo. */
    int memo = reg != c->reg0 || ref == c->ref0 || fs_obj_shared(base, ref);
    uint64_t *hit = memo ? fs__tab_get(&c->memo, (uintptr_t)reg, mkey) : NULL;
    if (hit != NULL) {
        PyObject *o = (PyObject *)(uintptr_t)(*hit & ~INCOMPLETE);
        if (*hit & INCOMPLETE) {
            if (hctx)
                return cycle_error(1);
            if (o == NULL)                          /* a frozen one: wait */
                return kind == FS_KIND_DICT ? 2 : cycle_error(0);
        }
        *out = Py_NewRef(o);
        return 0;
    }

    Py_ssize_t n = 0;
    int frozen = 0;
    PyObject *o = NULL;
    switch (kind) {
    case FS_KIND_LIST:
    case FS_KIND_TUPLE:
        n = (Py_ssize_t)fs_seq(base, ref)->count;
        o = kind == FS_KIND_LIST ? PyList_New(n) : PyTuple_New(n);
        break;
    case FS_KIND_DICT:
        n = (Py_ssize_t)fs_map(base, ref)->count;
#ifdef PyFrozenDict_CheckExact
        frozen = hctx ||
                 (((const fs_obj_hdr_t *)fs_obj(base, ref))->flags & FS_FLAG_FROZENDICT) != 0;
#else
        if (hctx) {                                 /* no frozendict: the proxy */
            fs_handle *h2 = reg == c->h->region ? (fs_handle *)Py_NewRef(c->h)
                                                : fs__handle_borrowed(c->h->st, reg);
            if (h2 == NULL)
                return -1;
            o = fs__proxy_new(h2, FS_PT_MAP, ref);
            Py_DECREF(h2);
            if (o == NULL || (memo && tmemo_put(c, reg, mkey, o, 0) < 0)) {
                Py_XDECREF(o);
                return -1;
            }
            *out = o;
            return 0;
        }
#endif
        o = PyDict_New();
        break;
    case FS_KIND_SET:
    case FS_KIND_FROZENSET:
        n = (Py_ssize_t)fs_map(base, ref)->count;
        frozen = hctx || kind == FS_KIND_FROZENSET;
        if (frozen) {
            kind = FS_KIND_FROZENSET;
            o = PyList_New(0);
        }
        else {
            o = PySet_New(NULL);
        }
        break;
    default:                                       /* scalars: share them too */
        o = fs__scalar(base, ref, kind, !hctx);
        if (o == NULL || (memo && tmemo_put(c, reg, mkey, o, 0) < 0)) {
            Py_XDECREF(o);
            return -1;
        }
        *out = o;
        return 0;
    }
    if (o == NULL)
        return -1;
    if (frozen && n == 0) {                        /* complete at once */
        PyObject *fz = make_frozen(kind, NULL);
        Py_DECREF(o);
        if (fz == NULL || (memo && tmemo_put(c, reg, mkey, fz, 0) < 0)) {
            Py_XDECREF(fz);
            return -1;
        }
        *out = fz;
        return 0;
    }
    if (n == 0) {
        if (memo && tmemo_put(c, reg, mkey, o, 0) < 0) {
            Py_DECREF(o);
            return -1;
        }
        *out = o;
        return 0;
    }
    if (grow((void **)&c->stack, &c->cap, c->depth, sizeof *c->stack) < 0) {
        Py_DECREF(o);
        return -1;
    }
    /* Mutable containers and tuples are visible (incomplete) to their
    ** descendants; frozen ones only as a marker (cycles wait for them). */
    if (memo && tmemo_put(c, reg, mkey, frozen ? NULL : o, INCOMPLETE) < 0) {
        Py_DECREF(o);
        return -1;
    }
    tframe *f = &c->stack[c->depth++];
    *f = (tframe){
        .reg = reg, .base = base, .ref = ref, .kind = kind, .frozen = frozen,
        .memo = memo, .hctx = hctx, .phase = 0, .pend = -1, .obj = o, .key = NULL,
        .n = n, .i = 0,
    };
    if (memo && !frozen)
        Py_DECREF(o);                 /* the memo's reference keeps it */
    return 1;
}

static void tpop(tctx *c)
{
    tframe *f = &c->stack[--c->depth];
    Py_CLEAR(f->key);
    if (f->frozen || !f->memo)
        Py_CLEAR(f->obj);
}

/* The memo key of frame f's object. */
static uint64_t frame_mkey(const tframe *f)
{
    return f->ref | (f->hctx && f->kind >= FS_KIND_BYTEARRAY ? HCTX : 0);
}

/* The top frame is complete: make its object final and deliver it. */
static int tfinish(tctx *c)
{
    tframe *f = &c->stack[c->depth - 1];
    fs_region_t *reg = f->reg;
    fs_ref_t ref = f->ref;
    PyObject *res;
    if (f->frozen) {
        if (f->pend >= 0 && c->pend[f->pend].waits > 0) {
            /* Holds placeholders: built by built() once they are patched;
            ** until then its own parent's slot waits for it. */
            c->pend[f->pend].finished = 1;
            tpop(c);
            if (c->depth == 0)
                return cycle_error(0);
            return wait_for(c, c->depth - 1, reg, ref);
        }
        res = make_frozen(f->kind, f->obj);
        if (res == NULL)
            return -1;
        if (f->pend >= 0) {                        /* waited, all patched now */
            Py_CLEAR(c->pend[f->pend].temp);
            c->unbuilt--;
        }
        if ((f->memo && tmemo_put(c, reg, frame_mkey(f), res, 0) < 0) ||
            built(c, reg, ref, res) < 0) {
            Py_DECREF(res);
            return -1;
        }
    }
    else {
        if (f->memo) {
            uint64_t *v = fs__tab_get(&c->memo, (uintptr_t)reg, frame_mkey(f));
            *v &= ~INCOMPLETE;
        }
        res = Py_NewRef(f->obj);
    }
    tpop(c);
    if (c->depth == 0) {
        c->result = res;
        return 0;
    }
    return deliver(c, c->depth - 1, res);
}

static int tstep(tctx *c)
{
    size_t fi = c->depth - 1;
    tframe *f = &c->stack[fi];
    if (f->i >= f->n)
        return tfinish(c);
    fs_ref_t child;
    int hctx = f->hctx;
    switch (f->kind) {
    case FS_KIND_LIST:
    case FS_KIND_TUPLE:
        child = fs_seq(f->base, f->ref)->items[f->i];
        break;
    case FS_KIND_DICT: {
        const fs_map_entry_t *e = &fs_map(f->base, f->ref)->entries[f->i];
        child = f->phase == 0 ? e->key : e->value;
        hctx |= f->phase == 0;
        break;
    }
    default:
        child = fs_map(f->base, f->ref)->entries[f->i].key;
        hctx = 1;
        break;
    }
    PyObject *o;
    fs_region_t *reg = f->reg;
    const uint8_t *base = f->base;
    int r = thaw_value(c, reg, base, child, hctx, &o);
    if (r == 2) {                                  /* a frozendict being built */
        fs__resolve(&reg, &base, &child);
        return wait_for(c, fi, reg, child);
    }
    if (r != 0)
        return r < 0 ? -1 : 0;                     /* 1: the child runs first */
    return deliver(c, fi, o);
}

/* New reference; h borrowed. See fs_py.h. */
PyObject *fs__thaw_ref(fs_handle *h, fs_ref_t ref)
{
    tctx c;
    memset(&c, 0, sizeof c);
    c.h = h;
    PyObject *o = NULL;
    /* No collection while the containers are made: every one of them is
    ** reachable from the frames or the memo until it is returned, so a
    ** collection would traverse them in vain (~15% of a thaw of records in
    ** the profile). No Python code runs in between (builtin types only), so
    ** nothing else sees the switch; the allocations still count toward the
    ** next collection. */
    int gc_was_on = PyGC_Disable();
    int r = thaw_value(&c, h->region, h->base, ref, 0, &o);
    if (r == 1) {
        while (c.depth > 0) {
            if (tstep(&c) < 0) {
                r = -1;
                break;
            }
        }
        if (r != -1 && c.unbuilt != 0)             /* frozen containers alone */
            r = cycle_error(0);
        if (r != -1) {
            o = c.result;
            c.result = NULL;
        }
    }
    while (c.depth > 0)
        tpop(&c);
    fs__free(c.stack);
    if (c.memo.slots != NULL) {
        for (size_t i = 0; i <= c.memo.mask; i++) {
            if (c.memo.slots[i].k1 != 0) {
                PyObject *m = (PyObject *)(uintptr_t)(c.memo.slots[i].v & ~INCOMPLETE);
                Py_XDECREF(m);
            }
        }
    }
    fs__tab_fini(&c.memo);
    for (size_t i = 0; i < c.nfix; i++) {
        Py_XDECREF(c.fix[i].target);
        Py_XDECREF(c.fix[i].key);
    }
    for (size_t i = 0; i < c.npend; i++)
        Py_XDECREF(c.pend[i].temp);
    fs__free(c.fix);
    fs__free(c.pend);
    fs__free(c.work);
    fs__tab_fini(&c.waiters);
    Py_XDECREF(c.result);
    if (gc_was_on)
        PyGC_Enable();
    return r < 0 ? NULL : o;
}
