/*
** thaw.c -- thaw: a region -> plain objects (and the pickle-by-value path
** of every proxy). Iterative like freeze: an explicit stack of frames.
**
** LAYER (the picture in fs_py.h): below the proxies and module.c, above read.c
** (scalars, proxies for keys before 3.15) and state.c; it never calls
** freeze.c.
**
** The same loop as freeze, in the other direction. Its memo ((region, ref) ->
** object) holds only the objects that can be reached twice: those flagged
** FS_FLAG_SHARED, the thaw's root, and anything in an imported region. Lists, tuples, dicts and sets
** are created empty before their items (cycles through them are restored);
** frozensets and frozendicts are created from their finished items. Items
** are inserted only once complete, so a dict key or set member is always
** hashable when inserted; a corrupt image with a cycle through a hashable
** object raises ValueError instead of hashing a half-built tuple.
*/
#include "fs_py.h"

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
    int            flavor;   /* RECORD: FS_REC_FIELDS or FS_REC_TUPLE     */
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
    fs_region_t *kreg;       /* the shape whose keys are in kkeys ...     */
    fs_ref_t  kshape;
    PyObject *kkeys;         /* ... strong: a tuple of them, as thawed    */
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

static PyObject *shape_keys(tctx *c, fs_region_t *reg, const uint8_t *base,
                            const fs_map_t *m);
static int thaw_value(tctx *c, fs_region_t *reg, const uint8_t *base, fs_ref_t ref,
                      int hctx, PyObject **out);

/* Field f->i of the FIELDS record of frame f is o (borrowed): set it as
** object.__setattr__ does. 0, or -1. */
static int set_field(tctx *c, tframe *f, PyObject *o)
{
    const fs_map_t *m = fs_map(f->base, fs_rec(f->base, f->ref)->state);
    PyObject *name = NULL, *keys = fs_map_shaped(m) ? shape_keys(c, f->reg, f->base, m) : NULL;
    fs_ref_t k = fs_map_key(f->base, m, (uint64_t)f->i);
    if (keys != NULL)
        name = Py_NewRef(PyTuple_GET_ITEM(keys, f->i));
    else if (!PyErr_Occurred() && fs_ref_tag(k) == FS_TAG_OBJ &&
             fs_ref_kind(f->base, k) == FS_KIND_STR)     /* a str only: nothing to push */
        name = fs__scalar(f->base, k, FS_KIND_STR, 0);
    if (name == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "frozenshare: a record field name is not a str");
        return -1;
    }
    int rc = -1;
    if (!PyUnicode_Check(name))
        PyErr_SetString(PyExc_TypeError, "frozenshare: a record field name is not a str");
    else
        rc = PyObject_GenericSetAttr(f->obj, name, o);
    Py_DECREF(name);
    return rc;
}

/* New reference: this thaw's handle of reg (the root's, or reg's own). */
static fs_handle *handle_of(tctx *c, fs_region_t *reg)
{
    return reg == c->h->region ? (fs_handle *)Py_NewRef(c->h) : fs__handle_borrowed(c->h->st, reg);
}

/* New reference: the source type of the typed buffer at ref of h's image
** (thaw): an array.array, a memoryview (cast to its format and shape where
** memoryview.cast can, else over the frozen buffer itself), or a NumPy array
** (numpy imported only here). */
static PyObject *thaw_buffer(fs_handle *h, const uint8_t *base, fs_ref_t ref)
{
    PyObject *o = NULL;
    const fs_buf_t *b = fs_buf(base, ref);
    if (b->h.aux == FS_BUF_NDARRAY) {          /* NumPy: imported only here */
        PyObject *np = PyImport_ImportModule("numpy");
        PyObject *px = np != NULL ? fs__proxy_new(h, FS_PT_ARRAY, ref) : NULL;
        if (px != NULL)
            o = PyObject_CallMethod(np, "array", "O", px);
        Py_XDECREF(px);
        Py_XDECREF(np);
    }
    else {
        PyObject *data = PyBytes_FromStringAndSize((const char *)fs_buf_data(b),
                                                   (Py_ssize_t)b->nbytes);
        if (data != NULL && b->h.aux == FS_BUF_ARRAY) {
            PyObject *am = PyImport_ImportModule("array");
            if (am != NULL)
                o = PyObject_CallMethod(am, "array", "sO", b->format, data);
            Py_XDECREF(am);
        }
        else if (data != NULL) {                /* a memoryview, cast back */
            PyObject *mv = PyMemoryView_FromObject(data);
            PyObject *shape = mv != NULL ? fs__buf_shape(b) : NULL;
            if (shape != NULL && (strcmp(b->format, "B") != 0 || b->h.n != 1))
                o = PyObject_CallMethod(mv, "cast", "sO", b->format, shape);
            else if (shape != NULL)
                o = Py_NewRef(mv);
            if (o == NULL && shape != NULL) {
                /* a format cast() refuses ('<i', 'Zd'): the frozen buffer's
                ** own view keeps it (read-only, as the source may have been) */
                PyErr_Clear();
                PyObject *px = fs__proxy_new(h, FS_PT_ARRAY, ref);
                o = px != NULL ? PyMemoryView_FromObject(px) : NULL;
                Py_XDECREF(px);
            }
            Py_XDECREF(shape);
            Py_XDECREF(mv);
        }
        Py_XDECREF(data);
    }
    return o;
}

/* A record (reg, ref) of kind RECORD, or a BUFFER: *o, a new reference, and
** for a FIELDS or TUPLE record *n > 0 and *flavor (its frame fills it);
** 0, or -1 with an exception. */
static int thaw_object(tctx *c, fs_region_t *reg, const uint8_t *base, fs_ref_t ref, int kind,
                       PyObject **o, Py_ssize_t *n, int *flavor)
{
    fs_handle *h = handle_of(c, reg);
    if (h == NULL)
        return -1;
    *o = NULL;
    *n = 0;
    *flavor = 0;
    if (kind == FS_KIND_BUFFER) {
        *o = thaw_buffer(h, base, ref);
    }
    else {
        const fs_rec_t *r = fs_rec(base, ref);
        *flavor = r->h.aux;
        if (*flavor == FS_REC_FIELDS || *flavor == FS_REC_TUPLE) {
            PyObject *cls = fs__record_class(h, ref);
            *n = *flavor == FS_REC_TUPLE ? (Py_ssize_t)fs_seq_count(fs_seq(base, r->state))
                                         : (Py_ssize_t)fs_map_count(base, fs_map(base, r->state));
            if (cls != NULL)
                *o = fs__record_alloc(cls, *flavor, *n);
        }
        else {
            *o = fs__record_read(h, ref);          /* built from a state of plain values */
        }
    }
    Py_DECREF(h);
    return *o != NULL ? 0 : -1;
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
    case FS_KIND_RECORD:
        if (f->flavor == FS_REC_TUPLE) {
            PyTuple_SET_ITEM(f->obj, f->i, o);     /* allocated with NULL items */
            break;
        }
        rc = set_field(c, f, o);
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
    if (f->kind == FS_KIND_RECORD && f->flavor == FS_REC_FIELDS)
        return cycle_error(0);                     /* a field cannot be patched later */
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

static int thaw_flat(tctx *c, fs_region_t *reg, const uint8_t *base,
                     const fs_map_t *m, PyObject **out);

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
    int frozen = 0, rec_flavor = 0;
    PyObject *o = NULL;
    switch (kind) {
    case FS_KIND_LIST:
    case FS_KIND_TUPLE:
        n = (Py_ssize_t)fs_seq_count(fs_seq(base, ref));
        o = kind == FS_KIND_LIST ? PyList_New(n) : PyTuple_New(n);
        break;
    case FS_KIND_DICT:
        n = (Py_ssize_t)fs_map_count(base, fs_map(base, ref));
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
        if (!frozen) {
            int r = thaw_flat(c, reg, base, fs_map(base, ref), &o);
            if (r <= 0) {
                if (r == 0 && memo && tmemo_put(c, reg, mkey, o, 0) < 0)
                    Py_CLEAR(o);
                *out = o;
                return o != NULL ? 0 : -1;
            }
        }
        /* A dict that holds containers: filled by its frame. Sized for its
        ** n entries at once, unless its keys look like str (the first one
        ** is): _PyDict_NewPresized (exported by 3.12-3.15) makes a general
        ** table (see fs__dict_from_items). */
        if (n > 5 && fs_ref_kind(base, fs_map_key(base, fs_map(base, ref), 0)) != FS_KIND_STR)
            o = _PyDict_NewPresized(n);
        else
            o = PyDict_New();
        break;
    case FS_KIND_SET:
    case FS_KIND_FROZENSET:
        n = (Py_ssize_t)fs_map_count(base, fs_map(base, ref));
        frozen = hctx || kind == FS_KIND_FROZENSET;
        if (frozen) {
            kind = FS_KIND_FROZENSET;
            o = PyList_New(0);
        }
        else {
            o = PySet_New(NULL);
        }
        break;
    case FS_KIND_RECORD:
    case FS_KIND_BUFFER: {
        int flavor;
        if (thaw_object(c, reg, base, ref, kind, &o, &n, &flavor) < 0)
            return -1;
        if (n > 0) {
            rec_flavor = flavor;
            break;                                 /* a frame fills it */
        }
        if (memo && tmemo_put(c, reg, mkey, o, 0) < 0) {
            Py_DECREF(o);
            return -1;
        }
        *out = o;
        return 0;
    }
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
        .memo = memo, .hctx = hctx, .phase = 0, .flavor = rec_flavor, .pend = -1, .obj = o,
        .key = NULL, .n = n, .i = 0,
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

/* Borrowed: the keys of shaped dict m (frame f) as thawed -- the same
** objects for every dict of the shape, as the memo would give them (shape
** keys are FS_FLAG_SHARED) -- or NULL: with an exception, or without one
** when a key is not a scalar (then the frame thaws its keys one by one).
** One shape is kept at a time: records come in runs. */
static PyObject *shape_keys(tctx *c, fs_region_t *reg, const uint8_t *base,
                            const fs_map_t *m)
{
    fs_ref_t shape = fs_map_shape(m);
    if (c->kkeys != NULL && c->kreg == reg && c->kshape == shape)
        return c->kkeys;
    const fs_map_t *ks = fs_map(base, shape);
    Py_ssize_t n = (Py_ssize_t)fs_map_count(base, ks);
    for (Py_ssize_t i = 0; i < n; i++) {       /* scalars thaw at once */
        int kind = fs_ref_kind(base, fs_keyset_key(ks, (uint64_t)i));
        if (kind == FS_KIND_XREF || kind >= FS_KIND_BYTEARRAY)
            return NULL;
    }
    PyObject *t = PyTuple_New(n);
    if (t == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o;
        if (thaw_value(c, reg, base, fs_keyset_key(ks, (uint64_t)i), 1, &o) != 0) {
            Py_DECREF(t);
            return NULL;                       /* scalars: an error, never 1 or 2 */
        }
        fs__key_hash(o, base, fs_keyset_hash(ks, (uint64_t)i));
        PyTuple_SET_ITEM(t, i, o);
    }
    Py_XSETREF(c->kkeys, t);
    c->kreg = reg;
    c->kshape = shape;
    return t;
}

/* A flat dict: one whose keys and values are all scalars (records, a
** vocabulary), built in one call instead of a frame and a step per entry
** (a third of a thaw of same-keyed records), and sized for its entries at
** once. New reference in *out and 0; 1 when m is not flat (nothing made,
** no exception); -1 with an exception. */
#define FLAT_STACK 16
static int is_scalar_ref(const uint8_t *base, fs_ref_t r)
{
    unsigned tag = fs_ref_tag(r);
    return tag != FS_TAG_XREF && (tag != FS_TAG_OBJ || fs_ref_kind(base, r) < FS_KIND_TUPLE);
}
static int thaw_flat(tctx *c, fs_region_t *reg, const uint8_t *base,
                     const fs_map_t *m, PyObject **out)
{
    Py_ssize_t n = (Py_ssize_t)fs_map_count(base, m);
    int shaped = fs_map_shaped(m);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!is_scalar_ref(base, fs_map_value(m, i)) ||
            (!shaped && !is_scalar_ref(base, fs_keyset_key(m, (uint64_t)i))))
            return 1;
    }
    PyObject *kt = NULL;
    if (shaped && (kt = shape_keys(c, reg, base, m)) == NULL)
        return PyErr_Occurred() ? -1 : 1;
    PyObject *stack[2 * FLAT_STACK], **items = stack;
    if (n > FLAT_STACK && (items = fs__calloc((size_t)n * 2, sizeof *items)) == NULL) {
        fs__raise(FS_ENOMEM, NULL);
        return -1;
    }
    PyObject **ks = items, **vs = items + n;
    Py_ssize_t done = 0;
    int rc = 0;
    for (; done < n; done++) {
        if (kt != NULL) {
            ks[done] = Py_NewRef(PyTuple_GET_ITEM(kt, done));
        }
        else if (thaw_value(c, reg, base, fs_keyset_key(m, (uint64_t)done), 1, &ks[done]) != 0) {
            rc = -1;
            break;
        }
        else {
            fs__key_hash(ks[done], base, fs_keyset_hash(m, (uint64_t)done));
        }
        if (thaw_value(c, reg, base, fs_map_value(m, done), 0, &vs[done]) != 0) {
            Py_DECREF(ks[done]);
            rc = -1;
            break;
        }
    }
    if (rc == 0 && (*out = fs__dict_from_items(ks, vs, n)) == NULL)
        rc = -1;
    for (Py_ssize_t i = 0; i < done; i++) {
        Py_DECREF(ks[i]);
        Py_DECREF(vs[i]);
    }
    if (items != stack)
        fs__free(items);
    return rc;
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
        child = fs_seq_items(fs_seq(f->base, f->ref))[f->i];
        break;
    case FS_KIND_DICT: {
        const fs_map_t *m = fs_map(f->base, f->ref);
        if (f->phase == 0 && fs_map_shaped(m)) {   /* records: keys thawed once */
            PyObject *keys = shape_keys(c, f->reg, f->base, m);
            if (keys != NULL)
                return deliver(c, fi, Py_NewRef(PyTuple_GET_ITEM(keys, f->i)));
            if (PyErr_Occurred())
                return -1;
        }
        child = f->phase == 0 ? fs_map_key(f->base, m, f->i) : fs_map_value(m, f->i);
        hctx |= f->phase == 0;
        break;
    }
    case FS_KIND_RECORD: {                         /* a field's value, an item */
        fs_ref_t st = fs_rec(f->base, f->ref)->state;
        child = f->flavor == FS_REC_TUPLE ? fs_seq_items(fs_seq(f->base, st))[f->i]
                                          : fs_map_value(fs_map(f->base, st), (uint64_t)f->i);
        break;
    }
    default:
        child = fs_map_key(f->base, fs_map(f->base, f->ref), f->i);
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
    if (hctx && !f->hctx && (f->kind != FS_KIND_DICT || f->phase == 0))   /* a key */
        fs__key_hash(o, f->base, fs_map_hash(f->base, fs_map(f->base, f->ref), f->i));
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
    Py_XDECREF(c.kkeys);
    Py_XDECREF(c.result);
    if (gc_was_on)
        PyGC_Enable();
    return r < 0 ? NULL : o;
}
