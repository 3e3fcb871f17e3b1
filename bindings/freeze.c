/*
** freeze.c -- freeze: an object graph -> a new region. Iterative: an
** explicit stack of frames, never C recursion, so 10^6-deep nesting costs
** heap, not C stack.
**
** LAYER (the picture in fs_py.h): below the proxies and module.c, above read.c
** (it makes the root's proxy) and state.c; it never calls thaw.c.
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
** refer to an ancestor (cycles) and every child ref is known at once. One
** exception: a dict whose keys are all scalars (str, int, float, bytes, ...:
** their hash runs no code and their conversion pushes no frame) has its
** keys converted first and is built with fs_build_dict, which shares one
** shape among dicts with the same keys (image format v2); its frame then
** converts the values only. Keys cannot reach the dict (a dict is not
** hashable), so cycles still work. A dict with the very key objects of the
** previous keyed dict (a list of records) skips even that: it is shaped
** like the previous one without hashing a key (fs_build_dict_shape).
** str, float and short bytes skip the identity memo: the builder stores
** equal values once, so the same object gets the same ref anyway. The
** memo keeps a strong reference to every object it maps (ids stay unique).
** It maps only objects the graph may reach twice: an item whose refcount is
** 1 is referenced by its container alone, so its memo lookup and entry are
** skipped (most strings, floats and records of real data). The builder
** flags objects referenced twice (FS_FLAG_SHARED, fs_image.h).
** Python code can run during a freeze (the __hash__ of an object inside a
** dict key or set member; other threads on a free-threaded build), so each
** step re-checks the container's size against the count allocated, right
** after hashing and when resuming; a dict entry is re-read after a key whose
** hash may run code; and a dict or set frame during which such a hash ran
** ends by comparing a digest of the identities it stored with the container
** as it is (a same-size delete and re-insert moves entries under
** PyDict_Next). Any change raises RuntimeError. Frames whose keys are all
** str, int, float, bytes and the like skip both (hash_runs_no_code). (A
** container already frozen is a snapshot.) On any error the builder is
** destroyed and nothing is left behind; fs_region_create consumes it on
** success (sealing the image: I1) and takes +1 on each import (I2, I6).
**
** Accepted: exact None, bool, int, float, complex, str, bytes, bytearray,
** tuple, list, dict, set, frozenset (frozendict where it is a builtin), and
** this interpreter's proxies. Subclasses are rejected, since thaw could not
** restore them; the TypeError names the type and its path:
** root['users'][3]<key (1, 2)> (<key ...> a dict key, <member ...> a set
** member).
*/
#include "fs_py.h"

enum { SEG_ROOT, SEG_INDEX, SEG_VALUE, SEG_KEY, SEG_MEMBER };

#define FS_LAST_KEYS 32      /* keys of the last keyed dict remembered    */
#define FS_DEDUP_KEYS_MAX 64 /* keys of bigger dicts are not deduplicated */

typedef struct fframe_s {
    PyObject  *obj;          /* strong: the container as read (readable())  */
    PyObject  *live;         /* strong: the container itself (the checks)  */
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
    uint64_t   hashes0;      /* fctx.code_hashes when the frame began     */
    int        keyed;        /* dict built by fs_build_dict: keys stored,
                                the frame converts values only            */
    uint64_t   kacc;         /* keyed: digest of the key identities stored */
    uint64_t   kacc2;        /* keyed: same, of the keys met with values  */
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

/* A set's digest: the same members in another order are the same set, so
** the steps commute (a sum), and a copy of the set, whose order may differ,
** digests alike. */
static inline uint64_t set_digest(uint64_t acc, const void *x)
{
    return acc + fs_keyed_mix((uint64_t)(uintptr_t)x);
}

/* What freeze reads of container o (borrowed): o itself, or, on a
** free-threaded build, a private copy of a list, dict or set. Another thread
** may change o at any moment there, and an item read borrowed from o could
** be freed under us; PyList_GetSlice, PyDict_Copy and PySet_New copy under
** o's lock, keeping order (a dict's insertion order, a list's). A frame reads
** the copy and checks o itself (its size, its digest at the end), so a change
** of o's size still raises RuntimeError, and a change that keeps the size
** leaves the freeze with o as it was when copied (DESIGN.md allows either).
** New reference, or NULL with an exception. */
static PyObject *readable(PyObject *o)
{
#ifdef Py_GIL_DISABLED
    if (PyList_CheckExact(o))
        return PyList_GetSlice(o, 0, PY_SSIZE_T_MAX);
    if (PyDict_CheckExact(o))
        return PyDict_Copy(o);
    if (PySet_CheckExact(o))
        return PySet_New(o);
#endif
    return Py_NewRef(o);
}

/* o's count now (an atomic read on free-threaded builds); kind its FS_KIND_*. */
static Py_ssize_t live_size(PyObject *o, int kind)
{
    switch (kind) {
    case FS_KIND_LIST:  return PyList_GET_SIZE(o);
    case FS_KIND_TUPLE: return PyTuple_GET_SIZE(o);
    case FS_KIND_DICT:  return PyDict_GET_SIZE(o);
    default:            return PySet_GET_SIZE(o);
    }
}

/* 1 if the first n entries of dict live (borrowed; n < 0: all of them), in
** order, digest to acc, 0 if not, -1 with an exception. Read through
** readable(live): on a free-threaded build a copy, each time. There, after a
** key's hash ran code, this check on the entries a frame stored replaces the
** position check of GIL builds (the frame reads a copy of live, whose
** positions are not live's). */
static int entries_unchanged(PyObject *live, Py_ssize_t n, uint64_t acc)
{
    PyObject *r = readable(live), *k, *v;
    if (r == NULL)
        return -1;
    Py_ssize_t pos = 0, i = 0;
    uint64_t a = 0;
    while ((n < 0 || i < n) && PyDict_Next(r, &pos, &k, &v)) {
        a = digest(a, k, v);
        i++;
    }
    Py_DECREF(r);
    return (n < 0 || i == n) && a == acc;
}

/* 1 if container o (a dict or set, borrowed) still holds exactly what frame
** f stored (a dict in the same order); 0 if not; -1 with an exception. Runs
** no Python code. */
static int unchanged(fframe *f, PyObject *o)
{
    uint64_t acc = 0;
    if (f->kind == FS_KIND_FROZENSET || (f->kind == FS_KIND_DICT && !PyDict_CheckExact(o)))
        return 1;                       /* frozenset, frozendict: immutable */
    if (f->kind == FS_KIND_DICT)
        return entries_unchanged(o, -1, f->acc);
    PyObject *r = readable(o);
    if (r == NULL)
        return -1;
    PyObject *it = PyObject_GetIter(r), *x;
    Py_DECREF(r);                       /* the iterator holds it */
    if (it == NULL)
        return -1;
    while ((x = PyIter_Next(it)) != NULL) {
        acc = set_digest(acc, x);
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
    uint64_t      code_hashes; /* hashes computed that may have run Python code */
    PyObject     *lkeys[FS_LAST_KEYS]; /* strong: the keys of the last keyed
                                dict, in order (lk_n of them) ...         */
    Py_ssize_t    lk_n;
    fs_ref_t      lk_dict;   /* ... and that dict: a dict with the same key
                                objects is shaped like it, unhashed       */
    int64_t      *khash;     /* scratch: a keyed dict's hashes ...        */
    fs_ref_t     *kref;      /* ... key refs (fs_build_dict copies) ...   */
    fs_ref_t     *vref;      /* ... and values (fs_build_record copies)   */
    size_t        kcap;
    fs__tab_t     rec_of;    /* record class -> 1 + its index in recs     */
    struct frec_s *recs;     /* what record.c said of each class met      */
    size_t        nrecs, cap_recs;
} fctx;

typedef struct frec_s {
    fs_recinfo info;
    fs_ref_t   name;         /* the class name's STR in the image, or 0   */
} frec;

/* 1 if o is a leaf: an exact builtin scalar, whose hash runs no Python code
** and whose conversion pushes no frame. */
static inline int is_leaf(PyObject *o)
{
    PyTypeObject *tp = Py_TYPE(o);
    return tp == &PyUnicode_Type || tp == &PyLong_Type || tp == &PyFloat_Type ||
           tp == &PyBytes_Type || tp == &PyBool_Type || o == Py_None ||
           tp == &PyComplex_Type;
}

/* 1 if hashing o cannot run Python code: the exact scalar types whose hash
** is computed in C (str caches it). Anything else -- a tuple, a frozenset,
** a proxy -- may reach a user __hash__ (a tuple holding an object freeze
** will refuse later). With the GIL, no other Python code runs during a
** freeze, so a dict or set frame during which no such hash was computed
** cannot have been mutated; a free-threaded build has other threads. */
static inline int hash_runs_no_code(PyObject *o)
{
#ifdef Py_GIL_DISABLED
    (void)o;
    return 0;
#else
    return is_leaf(o);
#endif
}

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
    else
        hint = " (user objects freeze as records: frozen dataclasses, named tuples, enum "
               "members, and classes given to frozenshare.register)";
    PyObject *path = render_path(c, parent, seg, key, index);
    if (path == NULL)
        return;
    PyErr_Format(PyExc_TypeError, "cannot freeze '%.200s' object at %U%s",
                 tp->tp_name, path, hint);
    Py_DECREF(path);
}

/* o (as read: readable(live)), live, key borrowed (the frame takes
** references to all three). 0, or -1 with an exception. */
static int push_frame(fctx *c, PyObject *o, PyObject *live, int kind, fs_ref_t ref, Py_ssize_t n,
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
    f->live = Py_NewRef(live);
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
    f->hashes0 = c->code_hashes;
    f->keyed = 0;
    f->kacc = f->kacc2 = 0;
    return 0;
}

static void pop_frame(fctx *c)
{
    fframe *f = &c->stack[--c->depth];
    Py_CLEAR(f->obj);
    Py_CLEAR(f->live);
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
    fs_region_t *r = fs__shareable(p->h);    /* the new region may travel */
    if (r == NULL)
        return -1;
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

static int convert(fctx *c, PyObject *o, int uniq, size_t parent, int seg, PyObject *key,
                   Py_ssize_t index, fs_ref_t *out);
static int changed_size(const char *what);

/* A TypeError just raised about the object at (parent, seg, key, index)
** gets its path appended. Returns -1. */
static int with_path(fctx *c, size_t parent, int seg, PyObject *key, Py_ssize_t index)
{
    if (!PyErr_ExceptionMatches(PyExc_TypeError))
        return -1;
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *path = render_path(c, parent, seg, key, index);
    if (path != NULL) {
        PyObject *msg = PyObject_Str(exc), *sep = PyUnicode_FromString(" (");
        Py_ssize_t cut = msg != NULL && sep != NULL
                         ? PyUnicode_Find(msg, sep, 0, PyUnicode_GET_LENGTH(msg), 1) : -1;
        Py_XDECREF(sep);
        if (msg != NULL) {       /* the path before a hint in parentheses, as unsupported() */
            if (cut < 0)
                cut = PyUnicode_GET_LENGTH(msg);
            PyObject *head = PyUnicode_Substring(msg, 0, cut);
            PyObject *tail = PyUnicode_Substring(msg, cut, PyUnicode_GET_LENGTH(msg));
            if (head != NULL && tail != NULL)
                PyErr_Format(PyExc_TypeError, "%U at %U%U", head, path, tail);
            Py_XDECREF(head);
            Py_XDECREF(tail);
            Py_DECREF(msg);
        }
        Py_DECREF(path);
    }
    if (PyErr_Occurred()) {
        PyObject *mine = PyErr_GetRaisedException();
        PyException_SetCause(mine, exc);             /* steals exc */
        PyErr_SetRaisedException(mine);
    }
    else {
        PyErr_SetRaisedException(exc);
    }
    return -1;
}

/* FS_BUF_* if o (borrowed) is a typed buffer freeze stores -- exactly a
** memoryview, an array.array or a numpy.ndarray (matched by type name:
** NumPy is never imported here) --, else 0. */
static unsigned buffer_source(PyObject *o)
{
    PyTypeObject *tp = Py_TYPE(o);
    if (tp == &PyMemoryView_Type)
        return FS_BUF_MEMORYVIEW;
    if (!PyObject_CheckBuffer(o))
        return 0;
    if (strcmp(tp->tp_name, "array.array") == 0)
        return FS_BUF_ARRAY;
    return strcmp(tp->tp_name, "numpy.ndarray") == 0 ? FS_BUF_NDARRAY : 0;
}

/* The typed buffer of o (source FS_BUF_*), memoized unless uniq. 0, or -1. */
static int build_buffer(fctx *c, PyObject *o, unsigned source, int uniq, size_t parent, int seg,
                        PyObject *key, Py_ssize_t index, fs_ref_t *out)
{
    Py_buffer v;
    if (PyObject_GetBuffer(o, &v, PyBUF_FULL_RO) < 0) {
        PyObject *exc = PyErr_GetRaisedException();
        PyObject *msg = exc != NULL ? PyObject_Str(exc) : NULL;
        PyErr_Format(PyExc_TypeError, "cannot freeze a '%.200s' whose buffer is refused (%S)",
                     Py_TYPE(o)->tp_name, msg != NULL ? msg : Py_None);
        Py_XDECREF(msg);
        Py_XDECREF(exc);
        return with_path(c, parent, seg, key, index);
    }
    const char *fmt = v.format != NULL ? v.format : "B";
    PyObject *tc = NULL;                /* array.array: its typecode ('u' exports 'w') */
    if (source == FS_BUF_ARRAY && (tc = PyObject_GetAttrString(o, "typecode")) != NULL &&
        PyUnicode_Check(tc) && PyUnicode_GET_LENGTH(tc) == 1 && PyUnicode_AsUTF8(tc) != NULL)
        fmt = PyUnicode_AsUTF8(tc);
    PyErr_Clear();
    int err = FS_OK;
    if (!PyBuffer_IsContiguous(&v, 'C'))
        PyErr_Format(PyExc_TypeError, "cannot freeze a '%.200s' that is not C-contiguous "
                     "(copy it first)", Py_TYPE(o)->tp_name);
    else if (strlen(fmt) >= FS_BUF_FORMAT_MAX || fs_buf_format_size(fmt) != (uint32_t)v.itemsize)
        PyErr_Format(PyExc_TypeError, "cannot freeze a '%.200s' of item format '%.20s' (typed "
                     "buffers hold numbers and bool)", Py_TYPE(o)->tp_name, fmt);
    else {
        uint64_t shape[FS_BUF_MAX_NDIM];
        for (int d = 0; d < v.ndim; d++)
            shape[d] = (uint64_t)v.shape[d];
        err = fs_build_buffer(c->b, source, fmt, (uint32_t)v.itemsize, (unsigned)v.ndim, shape,
                              v.buf, (uint64_t)v.len, out);
    }
    PyBuffer_Release(&v);
    Py_XDECREF(tc);
    if (PyErr_Occurred())
        return with_path(c, parent, seg, key, index);
    if (err != FS_OK) {
        fs__raise(err, NULL);
        return -1;
    }
    return uniq ? 0 : memo_put(c, o, *out);
}

/* What record.c says of o's class, asked once per class and freeze: the
** entry, or NULL (not a record: *none = 1; or an exception). */
static frec *record_class_info(fctx *c, PyTypeObject *tp, int *none)
{
    *none = 0;
    uint64_t *hit = fs__tab_get(&c->rec_of, (uintptr_t)tp, 0);
    if (hit != NULL)
        return &c->recs[*hit - 1];
    fs_recinfo ri;
    int r = fs__record_info(c->st, tp, &ri);
    if (r <= 0) {
        *none = r == 0;
        return NULL;
    }
    if (c->nrecs == c->cap_recs) {
        size_t cap = c->cap_recs ? c->cap_recs * 2 : 8;
        frec *a = fs__realloc(c->recs, cap * sizeof *a);
        if (a == NULL) {
            fs__recinfo_clear(&ri);
            fs__raise(FS_ENOMEM, NULL);
            return NULL;
        }
        c->recs = a;
        c->cap_recs = cap;
    }
    int err = fs__tab_put(&c->rec_of, (uintptr_t)tp, 0, c->nrecs + 1);
    if (err != FS_OK) {
        fs__recinfo_clear(&ri);
        fs__raise(err, NULL);
        return NULL;
    }
    c->recs[c->nrecs] = (frec){.info = ri, .name = 0};
    return &c->recs[c->nrecs++];
}

/* o (borrowed) as a record or a typed buffer: 0 with *out, 1 when o is
** neither (the caller refuses it), -1 with an exception. The record is
** allocated and memoized before its state is converted, so the state may
** refer back to it (cycles); the state is a temporary (record.c) converted
** as the record's only reference. */
static int convert_record(fctx *c, PyObject *o, int uniq, size_t parent, int seg, PyObject *key,
                          Py_ssize_t index, fs_ref_t *out)
{
    PyTypeObject *tp = Py_TYPE(o);
    unsigned source = buffer_source(o);
    if (source != 0)
        return build_buffer(c, o, source, uniq, parent, seg, key, index, out);
    int none;
    frec *fr = record_class_info(c, tp, &none);
    if (fr == NULL)
        return none ? 1 : with_path(c, parent, seg, key, index);
    int flavor;
    PyObject *state = fs__record_state(c->st, o, &fr->info, &flavor);
    if (state == NULL)
        return with_path(c, parent, seg, key, index);
    fs_ref_t rec, sref, name = 0;
    int rc = -1, err = fs_build_rec(c->b, (unsigned)flavor, &rec);
    if (err != FS_OK)
        fs__raise(err, NULL);
    else if ((uniq || memo_put(c, o, rec) == 0) &&
             (fr->name != 0 || build_str(c, fr->info.name, &fr->name) == 0) &&
             (name = fr->name, 1) &&     /* fr may move: convert can add classes */
             convert(c, state, 1, parent, seg, key, index, &sref) == 0) {
        fs_build_rec_set(c->b, rec, name, sref);
        *out = rec;
        rc = 0;
    }
    Py_DECREF(state);                   /* a frame converting it holds its own */
    return rc;
}

/* 0 if some key of dict o is not a leaf; 1 if every key is (its keys are
** converted first and it is built with fs_build_dict: a shape when another
** dict of the image has the same keys); 2 if its values are leaves too (it
** is built complete, fs_build_record: narrow values when they fit). */
static int leaf_keys(PyObject *o)
{
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    int values = 1;
    while (PyDict_Next(o, &pos, &k, &v)) {
        if (!is_leaf(k))
            return 0;
        values &= is_leaf(v) || Py_IS_TYPE(v, &PyByteArray_Type);
    }
    return 1 + values;
}

/* 1 if dict o has exactly the key objects of the last keyed dict, in
** order (*kacc: their digest); 0 if not. Runs no Python code. */
static int same_keys_as_last(fctx *c, PyObject *o, Py_ssize_t n, uint64_t *kacc)
{
    if (n != c->lk_n)
        return 0;
    Py_ssize_t pos = 0, i = 0;
    PyObject *k, *v;
    uint64_t acc = 0;
    while (PyDict_Next(o, &pos, &k, &v)) {
        if (i >= n || k != c->lkeys[i++])
            return 0;
        acc = digest(acc, k, NULL);
    }
    *kacc = acc;
    return i == n;
}

/* Remember dict o's keys (n <= FS_LAST_KEYS) and its ref. */
static void remember_keys(fctx *c, PyObject *o, Py_ssize_t n, fs_ref_t ref)
{
    for (Py_ssize_t i = 0; i < c->lk_n; i++)
        Py_CLEAR(c->lkeys[i]);
    c->lk_n = 0;
    if (n > FS_LAST_KEYS)
        return;
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (c->lk_n < n && PyDict_Next(o, &pos, &k, &v))
        c->lkeys[c->lk_n++] = Py_NewRef(k);
    c->lk_dict = ref;
}

/* Grow the scratch arrays to n entries. 0, or -1 with MemoryError. */
static int scratch(fctx *c, size_t n)
{
    if (n <= c->kcap)
        return 0;
    size_t cap = n > c->kcap * 2 ? n : c->kcap * 2;
    int64_t *kh = fs__realloc(c->khash, cap * sizeof *kh);
    if (kh != NULL)
        c->khash = kh;
    fs_ref_t *kr = kh != NULL ? fs__realloc(c->kref, cap * sizeof *kr) : NULL;
    if (kr != NULL)
        c->kref = kr;
    fs_ref_t *vr = kr != NULL ? fs__realloc(c->vref, cap * sizeof *vr) : NULL;
    if (vr == NULL) {
        fs__raise(FS_ENOMEM, NULL);
        return -1;
    }
    c->vref = vr;
    c->kcap = cap;
    return 0;
}

/* Convert the n values of dict o (all leaves) into c->vref. 0 or -1. */
static int leaf_values(fctx *c, PyObject *o, Py_ssize_t n, size_t parent)
{
    Py_ssize_t pos = 0, i = 0;
    PyObject *k, *v;
    while (PyDict_Next(o, &pos, &k, &v)) {
        if (i >= n)
            return changed_size("dictionary");
        int uniq_v = Py_REFCNT(v) == 1;
        if (convert(c, v, uniq_v, parent, SEG_VALUE, k, 0, &c->vref[i++]) < 0)
            return -1;
    }
    return i == n ? 0 : changed_size("dictionary");
}

/* Hint the builder at the str values of dict o, which are built next (one
** after another, each a likely cache miss in the dedup table: hinted
** first, the misses overlap). Hashing an exact str runs no code. */
static void prefetch_values(fctx *c, PyObject *o)
{
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(o, &pos, &k, &v)) {
        if (PyUnicode_CheckExact(v))
            fs_builder_prefetch_str(c->b, (unsigned)PyUnicode_KIND(v), (int64_t)PyObject_Hash(v));
    }
}

/* Convert the keys of dict o (leaf_keys(o) = lk) and build the dict: *ref;
** with lk 2 its values too (*complete = 1: no frame needed). *kacc: digest
** of the key identities, in order. A dict with the same key objects as the
** last one (records) skips the keys' conversion and the shape lookup.
** 0, or -1 with an exception. */
static int build_keyed_dict(fctx *c, PyObject *o, unsigned flags, Py_ssize_t n, int lk,
                            size_t parent, fs_ref_t *ref, uint64_t *kacc, int *complete)
{
    int err;
    *complete = lk == 2;
    if (scratch(c, (size_t)n) < 0)
        return -1;
    if (n <= FS_DEDUP_KEYS_MAX)
        prefetch_values(c, o);
    if (same_keys_as_last(c, o, n, kacc)) {
        if (*complete && leaf_values(c, o, n, parent) < 0)
            return -1;
        err = fs_build_record_like(c->b, flags, c->lk_dict, *complete ? c->vref : NULL, ref);
        if (err != FS_OK) {
            fs__raise(err, NULL);
            return -1;
        }
        return 0;
    }
    Py_ssize_t pos = 0, i = 0;
    PyObject *k, *v;
    uint64_t acc = 0;
    /* The keys of one dict are distinct: only a small dict's keys (record
    ** fields) are worth finding again elsewhere. A big dict's keys (a
    ** vocabulary) skip value dedup -- a table of every key would cost a
    ** cache miss per key and hardly ever hit. */
    fs_builder_dedup(c->b, n <= FS_DEDUP_KEYS_MAX);
    while (PyDict_Next(o, &pos, &k, &v)) {
        if (i >= n) {
            fs_builder_dedup(c->b, 1);
            return changed_size("dictionary");
        }
        Py_hash_t hash = PyObject_Hash(k);       /* leaves: runs no code */
        int uniq_k = Py_REFCNT(k) == 1;
        if (hash == -1 || convert(c, k, uniq_k, parent, SEG_KEY, k, 0, &c->kref[i]) < 0) {
            fs_builder_dedup(c->b, 1);
            return -1;
        }
        c->khash[i++] = (int64_t)hash;
        acc = digest(acc, k, NULL);
    }
    fs_builder_dedup(c->b, 1);
    if (i != n)
        return changed_size("dictionary");
    if (*complete && leaf_values(c, o, n, parent) < 0)
        return -1;
    err = fs_build_record(c->b, flags, (uint64_t)n, c->khash, c->kref,
                          *complete ? c->vref : NULL, ref);
    if (err != FS_OK) {
        fs__raise(err, NULL);
        return -1;
    }
    remember_keys(c, o, n, *ref);
    *kacc = acc;
    return 0;
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
    /* str, float and short bytes need no identity memo: the builder stores
    ** equal values once, so the same object gives the same ref (fs_image.h;
    ** a NaN, never equal to itself, is stored per object: it is memoized). */
    if (tp == &PyUnicode_Type)
        return build_str(c, o, out);
    if (tp == &PyFloat_Type && !Py_IS_NAN(PyFloat_AS_DOUBLE(o))) {   /* immediate or once */
        int err = fs_build_float(c->b, PyFloat_AS_DOUBLE(o), out);
        return err == FS_OK ? 0 : (fs__raise(err, NULL), -1);
    }
    if (tp == &PyBytes_Type && (uint64_t)PyBytes_GET_SIZE(o) <= FS_DEDUP_BYTES_MAX) {
        int err = fs_build_bytes(c->b, FS_KIND_BYTES, PyBytes_AS_STRING(o),
                                 (uint64_t)PyBytes_GET_SIZE(o), out);
        return err == FS_OK ? 0 : (fs__raise(err, NULL), -1);
    }
    uint64_t *hit = uniq ? NULL : fs__tab_get(&c->memo, (uintptr_t)o, 0);
    if (hit != NULL) {
        *out = *hit;
        return 0;
    }

    int err = FS_OK, kind = 0, keyed = 0, complete = 0, rc = -1;
    Py_ssize_t n = 0;
    fs_ref_t ref = 0;
    uint64_t kacc = 0;
    PyObject *src = NULL;                /* a container as read: readable(o) */
    if (tp == &PyLong_Type) {
        if (!overflow)
            err = fs_build_int64(c->b, small, &ref);
        else if (build_bigint(c, o, &ref) < 0)
            return -1;
    }
    else if (tp == &PyFloat_Type) {                 /* a NaN: one object per object */
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
        /* An export: no thread can resize it while it is copied. */
        Py_buffer view;
        if (PyObject_GetBuffer(o, &view, PyBUF_SIMPLE) < 0)
            return -1;
        err = fs_build_bytes(c->b, FS_KIND_BYTEARRAY, view.buf, (uint64_t)view.len, &ref);
        PyBuffer_Release(&view);
    }
    else if (tp == &PyTuple_Type || tp == &PyList_Type) {
        kind = tp == &PyTuple_Type ? FS_KIND_TUPLE : FS_KIND_LIST;
        if ((src = readable(o)) == NULL)
            return -1;
        n = Py_SIZE(src);
        err = fs_build_seq(c->b, kind, (uint64_t)n, &ref);
    }
    else if (tp == &PyDict_Type
#ifdef PyFrozenDict_CheckExact
             || tp == &PyFrozenDict_Type               /* 3.15+: a builtin */
#endif
             ) {
        kind = FS_KIND_DICT;
        if ((src = readable(o)) == NULL)
            return -1;
        n = PyDict_GET_SIZE(src);
        unsigned flags = tp == &PyDict_Type ? 0 : FS_FLAG_FROZENDICT;
        int lk = n > 0 ? leaf_keys(src) : 0;
        if (lk) {
            keyed = 1;
            if (build_keyed_dict(c, src, flags, n, lk, parent, &ref, &kacc, &complete) < 0)
                goto done;
        }
        else {
            err = fs_build_map(c->b, kind, flags, (uint64_t)n, &ref);
        }
    }
    else if (tp == &PySet_Type || tp == &PyFrozenSet_Type) {
        kind = tp == &PySet_Type ? FS_KIND_SET : FS_KIND_FROZENSET;
        if ((src = readable(o)) == NULL)
            return -1;
        n = PySet_GET_SIZE(src);
        err = fs_build_map(c->b, kind, 0, (uint64_t)n, &ref);
    }
    else if (fs__is_proxy(c->st, o)) {
        return embed_proxy(c, o, out);
    }
    else {
        int r = convert_record(c, o, uniq, parent, seg, key, index, out);
        if (r == 1)
            unsupported(c, o, parent, seg, key, index);
        return r == 0 ? 0 : -1;
    }
    if (err != FS_OK) {
        fs__raise(err, NULL);
        goto done;
    }
    if (!uniq && memo_put(c, o, ref) < 0)
        goto done;
    if (kind != 0 && !complete) {
        if (n > 0) {
            if (push_frame(c, src, o, kind, ref, n, parent, seg, key, index) < 0)
                goto done;
            c->stack[c->depth - 1].keyed = keyed;
            c->stack[c->depth - 1].kacc = kacc;
        }
        else if (kind != FS_KIND_TUPLE && kind != FS_KIND_LIST) {
            fs_build_map_finish(c->b, ref);
        }
    }
    *out = ref;
    rc = 0;
done:
    Py_XDECREF(src);
    return rc;
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
    int r = c->code_hashes == f->hashes0 ? 1 : unchanged(f, f->live);
    if (r < 0)
        return -1;
    if (r == 0 || (f->keyed && f->kacc != f->kacc2))
        return changed(what);
    if (!f->keyed)                         /* fs_build_dict built its index */
        fs_build_map_finish(c->b, f->ref);
    return 0;
}

/* Advance the top frame: fill items until one of them pushed a frame (the
** child runs next) or the container is complete (popped). */
static int step(fctx *c)
{
    size_t fi = c->depth - 1;
    fframe *f = &c->stack[fi];
    PyObject *o = f->obj, *live = f->live;   /* the same object with a GIL */
    int rc = 0;

    switch (f->kind) {
    case FS_KIND_TUPLE:
    case FS_KIND_LIST:
        while (f->i < f->n) {
            if (live_size(live, f->kind) != f->n)
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
        if (live_size(live, f->kind) != f->n)
            return changed_size("list");
        break;

    case FS_KIND_DICT:
        while (f->keyed && f->i < f->n) {
            PyObject *k, *v;
            if (PyDict_GET_SIZE(live) != f->n || !PyDict_Next(o, &f->pos, &k, &v))
                return changed_size("dictionary");
            int uniq_v = Py_REFCNT(v) == 1;
            Py_INCREF(k);
            Py_INCREF(v);
            size_t depth = c->depth;
            fs_ref_t vref = 0;
            rc = convert(c, v, uniq_v, fi, SEG_VALUE, k, 0, &vref);
            Py_DECREF(k);
            Py_DECREF(v);
            if (rc < 0)
                return -1;
            f = &c->stack[fi];
            fs_build_dict_value(c->b, f->ref, (uint64_t)f->i, vref);
            f->acc = digest(f->acc, k, v);       /* identities only */
            f->kacc2 = digest(f->kacc2, k, NULL);
            f->i++;
            if (c->depth != depth)
                return 0;
        }
        while (f->i < f->n) {
            PyObject *k, *v, *k2, *v2;
            Py_ssize_t pos0 = f->pos;
            if (PyDict_GET_SIZE(live) != f->n || !PyDict_Next(o, &f->pos, &k, &v))
                return changed_size("dictionary");
            int uniq_k = Py_REFCNT(k) == 1, uniq_v = Py_REFCNT(v) == 1;
            Py_INCREF(k);
            Py_INCREF(v);
            size_t depth = c->depth;
            fs_ref_t kref = 0, vref = 0;
            Py_hash_t hash = -1;
            /* hash() first: it may run Python code (a key's __hash__). */
            int code = !hash_runs_no_code(k);
            c->code_hashes += (uint64_t)code;
            hash = PyObject_Hash(k);
            if (hash == -1)
                rc = -1;
            else if (PyDict_GET_SIZE(live) != f->n)
                rc = changed_size("dictionary");
#ifdef Py_GIL_DISABLED
            else if (code) {
                int same = entries_unchanged(live, f->i + 1, digest(f->acc, k, v));
                rc = same > 0 ? 0 : same < 0 ? -1 : changed("dictionary");   /* as below */
            }
            (void)pos0; (void)k2; (void)v2;
#else
            else if (code && (!PyDict_Next(o, &pos0, &k2, &v2) || k2 != k || v2 != v ||
                              pos0 != f->pos))
                rc = changed("dictionary");      /* same size, entry moved or replaced */
#endif
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
        if (PyDict_GET_SIZE(live) != f->n)
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
            c->code_hashes += (uint64_t)!hash_runs_no_code(item);
            hash = PyObject_Hash(item);
            if (hash == -1)
                rc = -1;
            else if (PySet_GET_SIZE(live) != f->n)
                rc = changed_size("set");
            if (rc == 0)
                rc = convert(c, item, uniq, fi, SEG_MEMBER, item, 0, &ref);
            Py_DECREF(item);
            if (rc < 0)
                return -1;
            f = &c->stack[fi];
            fs_build_map_set(c->b, f->ref, (uint64_t)f->i, (int64_t)hash, ref, FS_REF_NONE);
            f->acc = set_digest(f->acc, item);
            f->i++;
            if (c->depth != depth)
                return 0;
        }
        if (PySet_GET_SIZE(live) != f->n)
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
    for (Py_ssize_t i = 0; i < c->lk_n; i++)
        Py_CLEAR(c->lkeys[i]);
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
    fs__free(c->khash);
    fs__free(c->kref);
    fs__free(c->vref);
    for (size_t i = 0; i < c->nrecs; i++)
        fs__recinfo_clear(&c->recs[i].info);
    fs__free(c->recs);
    fs__tab_fini(&c->rec_of);
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
    fs_region_t *r = NULL;
    fs_ref_t root = 0;

    /* A root blob is one object: allocate its size at once rather than
    ** doubling up to it (each doubling a copy and fresh pages). */
    size_t hint = 0;
    if (PyBytes_CheckExact(obj))
        hint = (size_t)PyBytes_GET_SIZE(obj) + 4096;
    else if (PyByteArray_CheckExact(obj))
        hint = (size_t)PyByteArray_GET_SIZE(obj) + 4096;
    else if (PyUnicode_CheckExact(obj))
        hint = (size_t)PyUnicode_GET_LENGTH(obj) * PyUnicode_KIND(obj) + 4096;
    else if (buffer_source(obj) != 0) {             /* a root typed buffer, too */
        Py_buffer v;
        if (PyObject_GetBuffer(obj, &v, PyBUF_FULL_RO) == 0) {
            hint = (size_t)v.len + 4096;
            PyBuffer_Release(&v);
        }
        PyErr_Clear();                              /* convert() reports it */
    }
    int err = fs_builder_create(&c.b, hint);
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
    return fs__root_proxy_owned(st, r, root);   /* takes the creator's count */

error:
    fctx_fini(&c);
    return NULL;
}
