/*
** xid.c -- cross-interpreter data (XID) for the proxy types: the ONLY file
** that knows CPython's private XID API, one section per version.
**
** A proxy crosses interpreters (_interpqueues, _xxinterpchannels,
** run_string(shared=), set___main___attrs, concurrent.interpreters) as an
** O(1) hand-off of a region count, never as PyObjects (I5):
**
**   sender interpreter           process-wide               receiver
**   getdata(proxy):              fs_xid_t (fs__malloc'd)    new_object(data):
**     fs_region_acquire  ------> { region, ref, type } ---->  get-or-create the
**     (+1 owned by the data)                                  receiver's handle
**                                                             (its own +1), proxy
**   free(data), later, maybe during the sender's finalization:
**     fs_region_release + fs__free, NOTHING else (no Python API, I5)
**
** data->obj stays NULL: the data holds no PyObject of the sender.
** Registration is per interpreter (heap types since 3.12.1): module exec
** registers every proxy type, m_clear/m_free unregister them. Lookup is by
** exact type, which suits our final (non-subclassable) types.
*/
#include "fs_py.h"

#if PY_VERSION_HEX >= 0x030E0000
/* ---- 3.14+ ---------------------------------------------------------------
** Renamed to _PyXIData_*; registration takes the thread state and a
** {basic, fallback} getdata pair. Declared only in
** internal/pycore_crossinterp.h (Py_BUILD_CORE); the functions are exported
** (PyAPI_FUNC). Mirrored here, field for field, from 3.14's header. */
typedef struct _xidata fs_xidata;
typedef PyObject *(*fs_xid_newobj_fn)(fs_xidata *);
typedef void (*fs_xid_free_fn)(void *);
struct _xidata {
    void *data;
    PyObject *obj;
    int64_t interpid;
    fs_xid_newobj_fn new_object;
    fs_xid_free_fn free;
};
typedef int (*fs_xid_getdata_fn)(PyThreadState *, PyObject *, fs_xidata *);
typedef struct {
    fs_xid_getdata_fn basic;
    int (*fallback)(PyThreadState *, PyObject *, int, fs_xidata *);
} fs_xid_getdata_pair;
PyAPI_FUNC(void) _PyXIData_Init(fs_xidata *, PyInterpreterState *, void *, PyObject *,
                                fs_xid_newobj_fn);
PyAPI_FUNC(int) _PyXIData_RegisterClass(PyThreadState *, PyTypeObject *, fs_xid_getdata_pair);
PyAPI_FUNC(int) _PyXIData_UnregisterClass(PyThreadState *, PyTypeObject *);

#define XID_INIT(d, interp, shared, newobj) _PyXIData_Init((d), (interp), (shared), NULL, (newobj))
#define XID_REGISTER(tp, fn) \
    _PyXIData_RegisterClass(PyThreadState_Get(), (tp), (fs_xid_getdata_pair){.basic = (fn)})
#define XID_UNREGISTER(tp) _PyXIData_UnregisterClass(PyThreadState_Get(), (tp))

#elif PY_VERSION_HEX >= 0x030D0000
/* ---- 3.13 ----------------------------------------------------------------
** Same functions as 3.12, still exported, but declared only in
** internal/pycore_crossinterp.h (which needs Py_BUILD_CORE_MODULE); the
** owner field is renamed interpid. Mirrored here rather than compiling this
** extension as core. */
typedef struct _xid fs_xidata;
typedef PyObject *(*fs_xid_newobj_fn)(fs_xidata *);
typedef void (*fs_xid_free_fn)(void *);
struct _xid {
    void *data;
    PyObject *obj;
    int64_t interpid;
    fs_xid_newobj_fn new_object;
    fs_xid_free_fn free;
};
typedef int (*fs_xid_getdata_fn)(PyThreadState *, PyObject *, fs_xidata *);
PyAPI_FUNC(void) _PyCrossInterpreterData_Init(fs_xidata *, PyInterpreterState *, void *,
                                              PyObject *, fs_xid_newobj_fn);
PyAPI_FUNC(int) _PyCrossInterpreterData_RegisterClass(PyTypeObject *, fs_xid_getdata_fn);
PyAPI_FUNC(int) _PyCrossInterpreterData_UnregisterClass(PyTypeObject *);

#define XID_INIT(d, interp, shared, newobj) \
    _PyCrossInterpreterData_Init((d), (interp), (shared), NULL, (newobj))
#define XID_REGISTER(tp, fn) _PyCrossInterpreterData_RegisterClass((tp), (fn))
#define XID_UNREGISTER(tp) _PyCrossInterpreterData_UnregisterClass((tp))

#else
/* ---- 3.12 ----------------------------------------------------------------
** Declared by Python.h (cpython/pystate.h); the owner field is named interp.
** Heap types are registered per interpreter since 3.12.1. */
typedef _PyCrossInterpreterData fs_xidata;
typedef crossinterpdatafunc fs_xid_getdata_fn;

#define XID_INIT(d, interp, shared, newobj) \
    _PyCrossInterpreterData_Init((d), (interp), (shared), NULL, (newobj))
#define XID_REGISTER(tp, fn) _PyCrossInterpreterData_RegisterClass((tp), (fn))
#define XID_UNREGISTER(tp) _PyCrossInterpreterData_UnregisterClass((tp))
#endif

/* What travels between interpreters: process-wide C memory only. */
typedef struct fs_xid_s {
    fs_region_t *region;     /* one count, owned by the XID data (I2)     */
    fs_ref_t     ref;        /* the proxied object in region's image      */
    int          type_code;  /* FS_PT_*                                   */
} fs_xid_t;

/* Runs late, in the sender's interpreter, possibly while it is being torn
** down: a decrement and a free, no Python API (I5). */
static void xid_free(void *data)
{
    fs_xid_t *x = data;
    fs_region_release(x->region);
    fs__free(x);
}

/* Receiver side. New reference. */
static PyObject *xid_new_object(fs_xidata *data)
{
    fs_xid_t *x = data->data;
    PyObject *module = PyImport_ImportModule("frozenshare._frozenshare");
    if (module == NULL)
        return NULL;
    fs_state *st = PyModule_GetState(module);
    fs_handle *h = st != NULL ? fs__handle_borrowed(st, x->region) : NULL;
    Py_DECREF(module);                   /* the handle holds its own */
    if (h == NULL)
        return NULL;
    PyObject *res = fs__proxy_new(h, x->type_code, x->ref);
    Py_DECREF(h);
    return res;
}

/* Sender side: obj (borrowed) is one of our proxies (lookup is by exact
** type); data keeps no PyObject (obj = NULL). 0, or -1 with an exception. */
static int xid_getdata(PyThreadState *tstate, PyObject *obj, fs_xidata *data)
{
    fs_proxy *p = FS_PROXY(obj);
    fs_state *st = p->h->st;
    int tc = 0;
    while (tc < FS_PT__COUNT && Py_TYPE(obj) != st->types[tc])
        tc++;
    if (tc == FS_PT__COUNT) {
        PyErr_Format(PyExc_TypeError, "'%.200s' is not a frozenshare proxy",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    fs_xid_t *x = fs__malloc(sizeof *x);
    if (x == NULL) {
        fs__raise(FS_ENOMEM, NULL);
        return -1;
    }
    x->region = p->h->region;
    x->ref = p->ref;
    x->type_code = tc;
    fs_region_acquire(x->region);        /* +1 for the data, I2 */
    XID_INIT(data, PyThreadState_GetInterpreter(tstate), x, xid_new_object);
    data->free = xid_free;               /* not PyMem_RawFree: ours */
    return 0;
}

int fs__xid_register(fs_state *st)
{
    for (int i = 0; i < FS_PT__COUNT; i++) {
        if (XID_REGISTER(st->types[i], xid_getdata) < 0) {
            while (--i >= 0)
                (void)XID_UNREGISTER(st->types[i]);
            return -1;
        }
    }
    st->xid_registered = 1;
    return 0;
}

void fs__xid_unregister(fs_state *st)
{
    if (!st->xid_registered)
        return;
    st->xid_registered = 0;
    PyObject *exc = PyErr_GetRaisedException();
    for (int i = 0; i < FS_PT__COUNT; i++) {
        if (st->types[i] != NULL && XID_UNREGISTER(st->types[i]) < 0)
            PyErr_Clear();
    }
    PyErr_SetRaisedException(exc);
}
