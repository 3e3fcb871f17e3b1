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
**   +-- table miss: new handle,     +-- handle_dealloc: remove from table,
**   |   one region count (I2),      |   fs_region_release (may reclaim),
**   |   strong ref to the module    |   drop the module reference last
**   +-- table hit: Py_INCREF        +--
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

/* tp_dealloc: consumes the last reference to self; leaves the table, releases
** the region count (I2), drops the module last. */
static void handle_dealloc(PyObject *self)
{
    fs_handle *h = (fs_handle *)self;
    PyTypeObject *tp = Py_TYPE(self);
    PyObject *module = h->module;
    if (h->st != NULL)
        fs__tab_del(&h->st->handles, (uintptr_t)h->region, 0);
    if (h->keycache.slots != NULL) {
        for (size_t i = 0; i <= h->keycache.mask; i++) {
            PyObject *t = (PyObject *)(uintptr_t)h->keycache.slots[i].v;
            if (h->keycache.slots[i].k1 == 0 || t == NULL)
                continue;
            if (h->st != NULL) {
                h->st->keycache_shapes--;
                h->st->keycache_keys -= (uint64_t)PyTuple_GET_SIZE(t);
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

static PyType_Slot handle_slots[] = {
    {Py_tp_dealloc, handle_dealloc},
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
    uint64_t *v = fs__tab_get(&st->handles, (uintptr_t)r, 0);
    if (v != NULL) {
        fs_handle *h = (fs_handle *)(uintptr_t)*v;
        Py_INCREF(h);
        if (owned)
            fs_region_release(r);      /* the handle already holds one */
        return h;
    }
    if (st->handle_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "frozenshare: module is being finalized");
        goto error;
    }
    fs_handle *h = PyObject_New(fs_handle, st->handle_type);
    if (h == NULL)
        goto error;
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
    int err = fs__tab_put(&st->handles, (uintptr_t)r, 0, (uint64_t)(uintptr_t)h);
    if (err != FS_OK) {
        Py_DECREF(h);                  /* releases the count */
        return (fs_handle *)fs__raise(err, NULL);
    }
    h->st = st;
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
    if (h->shared == NULL) {
        /* The buffer was proven well formed (or vouched for) at loads and
        ** cannot change (read-only): its copy is the same image. */
        int err = fs_region_copy(&h->shared, h->base, fs_region_size(h->region), 0, NULL);
        if (err != FS_OK)
            return (fs_region_t *)fs__raise(err, NULL);
    }
    return h->shared;
}
