/*
** state.c -- the bottom of the bindings: per-interpreter handles and THE
** mapping of FS_E* codes to Python exceptions (fs__raise).
**
** LAYER (the picture in fs_py.h): every other file of bindings/ may call this
** one; it calls only the C layers (refcount/, arena/) and table.c.
**
** Handle lifetime:
**
**   fs__handle_*()                  last proxy/iterator/view/buffer dies
**   +-- table miss (or a dying      +-- handle_dealloc: remove its entry,
**   |   handle): new handle,        |   empty its str-cache slots,
**   |   one region count (I2),      |   fs_region_release (may reclaim),
**   |   strong ref to the module    |   drop the module reference last
**   +-- table hit: a strong ref     +--
**       through its weak one
**
** The handle holds the module, so the module state (and the table) outlives
** every handle; m_free therefore always finds the table empty.
*/
#include "fs_py.h"

#include <errno.h>

/* ---- errors ------------------------------------------------------------- */

/* Returns NULL; key borrowed. See fs_py.h. */
PyObject *fs__raise(int err, PyObject *key)
{
    switch (err) {
    case FS_ENOMEM:
        return PyErr_NoMemory();
    case FS_ETOOBIG:
        PyErr_Format(PyExc_OverflowError, "frozenshare: %s", fs_strerror(err));
        return NULL;
    case FS_ENOTFOUND:
        if (key != NULL) {
            PyObject *t = PyTuple_Pack(1, key);   /* KeyError((k,)) shows k */
            if (t != NULL) {
                PyErr_SetObject(PyExc_KeyError, t);
                Py_DECREF(t);
            }
        }
        else {
            PyErr_SetString(PyExc_KeyError, fs_strerror(err));
        }
        return NULL;
    case FS_EINVAL:
    case FS_ECORRUPT:
    case FS_EVERSION:
        PyErr_Format(PyExc_ValueError, "frozenshare: %s", fs_strerror(err));
        return NULL;
    case FS_ESYS:
        return PyErr_SetFromErrno(PyExc_OSError);
    default:
        PyErr_Format(PyExc_SystemError, "frozenshare: unexpected error %d (%s)",
                     err, fs_strerror(err));
        return NULL;
    }
}

/* Returns NULL. See fs_py.h. */
PyObject *fs__raise_image(fs_state *st, int err, const char *why, PyObject *where)
{
    if (err != FS_ECORRUPT && err != FS_EVERSION)
        return fs__raise(err, NULL);
    if (why == NULL)
        why = fs_strerror(err);
    if (where != NULL)
        PyErr_Format(st->image_error, "%R: %s", where, why);
    else
        PyErr_Format(st->image_error, "frozenshare: %s", why);
    return NULL;
}

/* ---- handles ------------------------------------------------------------ */

/* st->handles maps a region to its handle's self_ref, a weak reference: on a
** free-threaded build a handle's count can reach zero in one thread while
** another finds it in the table, and reviving it then would be a use after
** free. Under st->mu, a lookup takes a strong reference through the weak one,
** which fails once the handle is dying; the finder then makes a new handle
** and replaces the entry, and the dying handle removes only its own entry.
** With a GIL no other thread runs between a count's zero and the removal, so
** the weak reference only costs one object per handle. */

/* New reference: the object of weak reference wr, or NULL (dead). */
static PyObject *weak_get(PyObject *wr)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *o = NULL;
    (void)PyWeakref_GetRef(wr, &o);   /* wr is a weak reference: no error */
    return o;
#else
    PyObject *o = PyWeakref_GetObject(wr);
    return o != NULL && o != Py_None ? Py_NewRef(o) : NULL;
#endif
}

#ifndef Py_GIL_DISABLED
/* See fs_py.h. */
void fs__strcache_drop(fs_state *st, const fs_handle *h)
{
    fs_strslot *c = st->strcache;
    if (c == NULL)
        return;
    for (size_t i = 0; i < FS_STRCACHE_SLOTS; i++) {
        if (c[i].h == NULL || (h != NULL && c[i].h != h))
            continue;
        PyObject *s = c[i].s;            /* a str: freeing it runs no code */
        ((fs_handle *)c[i].h)->nstrcache--;
        c[i].h = NULL;
        c[i].s = NULL;
        st->strcache_entries--;
        Py_DECREF(s);
    }
    if (h == NULL) {
        st->strcache = NULL;
        PyMem_Free(c);
    }
}
#endif

/* tp_dealloc: consumes the last reference to self; leaves the table, releases
** the region count (I2), drops the module last. */
static void handle_dealloc(PyObject *self)
{
    fs_handle *h = (fs_handle *)self;
    PyTypeObject *tp = Py_TYPE(self);
    PyObject *module = h->module;
    if (h->weaklist != NULL)
        PyObject_ClearWeakRefs(self);
    if (h->st != NULL) {
        FS_LOCK(&h->st->mu);
        uint64_t *v = fs__tab_get(&h->st->handles, (uintptr_t)h->region, 0);
        if (v != NULL && *v == (uint64_t)(uintptr_t)h->self_ref)   /* not a successor's */
            fs__tab_del(&h->st->handles, (uintptr_t)h->region, 0);
        FS_UNLOCK(&h->st->mu);
    }
    Py_XDECREF(h->self_ref);
#ifndef Py_GIL_DISABLED
    if (h->st != NULL && h->nstrcache != 0)
        fs__strcache_drop(h->st, h);
#endif
    if (h->keycache.slots != NULL) {
        for (size_t i = 0; i <= h->keycache.mask; i++) {
            PyObject *t = (PyObject *)(uintptr_t)(h->keycache.slots[i].v & ~UINT64_C(1));
            if (h->keycache.slots[i].k1 == 0 || t == NULL)
                continue;
            if (h->st != NULL) {
                __atomic_fetch_sub(&h->st->keycache_shapes, 1, __ATOMIC_RELAXED);
                __atomic_fetch_sub(&h->st->keycache_keys, (uint64_t)PyTuple_GET_SIZE(t),
                                   __ATOMIC_RELAXED);
            }
            Py_DECREF(t);
        }
    }
    fs__tab_fini(&h->keycache);
    if (h->classes.slots != NULL) {
        for (size_t i = 0; i <= h->classes.mask; i++)
            if (h->classes.slots[i].k1 != 0)
                Py_DECREF(fs__class_of_entry(h->classes.slots[i].v));
    }
    fs__tab_fini(&h->classes);
    Py_CLEAR(h->allow);
    fs_region_release(h->shared);      /* NULL-safe */
    fs_region_release(h->region);      /* I2: the handle's one count; a BUFFER
                                          region's last one is here, in the
                                          interpreter that lent the buffer */
    PyObject_Free(self);
    Py_DECREF(tp);
    Py_XDECREF(module);                /* last: the state belongs to it */
}

static PyMemberDef handle_members[] = {
    {"__weaklistoffset__", Py_T_PYSSIZET, offsetof(fs_handle, weaklist), Py_READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot handle_slots[] = {
    {Py_tp_dealloc, handle_dealloc},
    {Py_tp_members, handle_members},
    {Py_tp_doc, "Per-interpreter owner of one reference to a frozen region."},
    {0, NULL},
};

PyType_Spec fs__handle_spec = {
    .name = "frozenshare._Handle",
    .basicsize = sizeof(fs_handle),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = handle_slots,
};

/* New reference. owned: the caller's count of r is consumed in every case. */
static fs_handle *handle_get(fs_state *st, fs_region_t *r, int owned)
{
    FS_LOCK(&st->mu);
    uint64_t *v = fs__tab_get(&st->handles, (uintptr_t)r, 0);
    fs_handle *h = v != NULL ? (fs_handle *)weak_get((PyObject *)(uintptr_t)*v) : NULL;
    if (h != NULL) {
        FS_UNLOCK(&st->mu);
        if (owned)
            fs_region_release(r);      /* the handle already holds one */
        return h;
    }
    /* None, or one being destroyed: a new handle (the table's entry after it). */
    if (st->handle_type == NULL) {
        FS_UNLOCK(&st->mu);
        PyErr_SetString(PyExc_RuntimeError, "frozenshare: module is being finalized");
        goto error;
    }
    h = PyObject_New(fs_handle, st->handle_type);
    if (h == NULL) {
        FS_UNLOCK(&st->mu);
        goto error;
    }
    if (!owned)
        fs_region_acquire(r);
    h->region = r;
    h->base = fs_region_base(r);
    h->module = Py_NewRef(st->module);
    h->st = NULL;                      /* not in the table yet */
    const fs_image_header_t *ih = fs_image_header(h->base);
    h->trust_hash = ih->hash_domain == FS_HASH_PROCESS &&
                    ih->hash_check == (int64_t)st->hash_check && st->hash_check != -1;
    h->keyed = ih->hash_domain == FS_HASH_KEYED;
    h->seed = h->keyed ? fs_image_seed(ih) : 0;
    h->shared = NULL;
    memset(&h->keycache, 0, sizeof h->keycache);
    memset(&h->classes, 0, sizeof h->classes);
    h->allow = NULL;
    h->weaklist = NULL;
#ifdef Py_GIL_DISABLED
    memset(&h->mu, 0, sizeof h->mu);
#else
    h->nstrcache = 0;
#endif
    int err = FS_ENOMEM;
    h->self_ref = PyWeakref_NewRef((PyObject *)h, NULL);   /* runs no code */
    if (h->self_ref != NULL)
        err = fs__tab_put(&st->handles, (uintptr_t)r, 0, (uint64_t)(uintptr_t)h->self_ref);
    if (err == FS_OK)
        h->st = st;
    FS_UNLOCK(&st->mu);
    if (err != FS_OK) {
        PyErr_Clear();
        Py_DECREF(h);                  /* releases the count */
        return (fs_handle *)fs__raise(err, NULL);
    }
    return h;

error:
    if (owned)
        fs_region_release(r);
    return NULL;
}

/* New reference. See fs_py.h. */
fs_handle *fs__handle_owned(fs_state *st, fs_region_t *r)
{
    return handle_get(st, r, 1);
}

/* New reference. See fs_py.h. */
fs_handle *fs__handle_borrowed(fs_state *st, fs_region_t *r)
{
    return handle_get(st, r, 0);
}

/* Borrowed. See fs_py.h. */
fs_region_t *fs__shareable(fs_handle *h)
{
    if (fs_region_backing(h->region) != FS_BACKING_BUFFER)
        return h->region;
    int err = FS_OK;
    FS_LOCK(&h->mu);
    if (h->shared == NULL) {
        /* The buffer was proven well formed (or vouched for) at loads and
        ** cannot change (read-only): its copy is the same image. */
        err = fs_region_copy(&h->shared, h->base, fs_region_size(h->region), 0, NULL);
    }
    fs_region_t *shared = h->shared;
    FS_UNLOCK(&h->mu);
    return err == FS_OK ? shared : (fs_region_t *)fs__raise(err, NULL);
}
