/*
** xid.c -- cross-interpreter data (XID) for the proxy types: the ONLY file
** that knows CPython's private XID API, one section per version.
**
** A proxy crosses interpreters (_interpqueues, _xxinterpchannels,
** run_string(shared=), set___main___attrs, concurrent.interpreters) as an
** O(1) hand-off of a region count, never as PyObjects (I5):
**
**   sender interpreter           process-wide                 receiver
**   getdata(proxy):              fs_xid_t (fs__malloc'd)      new_object(data):
**     fs_region_acquire  ------> { region, ref, type,  } ----> claims the data's
**     (+1 owned by the data)       received (atomic)          +1 (received = 1) and
**                                                             hands it to its handle
**   free(data), later, maybe in another interpreter or during the sender's
**   finalization, maybe never (below):
**     received ? fs__free : fs_region_release + fs__free -- no Python API (I5)
**
** data->obj stays NULL: the data holds no PyObject of the sender.
** Registration is per interpreter (heap types since 3.12.1): module exec
** registers every proxy type, m_clear/m_free unregister them. Lookup is by
** exact type, which suits our final (non-subclassable) types.
**
** Why the count moves at new_object, not at free. CPython releases XID data
** in the interpreter that made it: _PyCrossInterpreterData_Release (3.12),
** _xidata_release (3.13, and 3.14+ as _PyXIData_Release) look the owner up
** by id and return -1 WITHOUT calling free when it no longer exists ("XXX
** Someone leaked some memory..."); when it exists but is not the current
** one, 3.13+ queue the free as a pending call of the owner
** (_Py_CallInInterpreter -> _PyEval_AddPendingCall), which is lost if the
** owner is deleted before it runs it. Holders clear the items of a dying
** interpreter in its at-exit callbacks (3.12 _xxinterpchannels
** clear_interpreter, 3.13/3.14 _interpqueues clear_interpreter), so an item
** that is still queued is freed in time; but an item popped by a receiver
** while its sender is being destroyed (the receive races the destroy) is
** released after the owner is gone, and its free never runs. Measured before
** this design: 3.12 and 3.13, a thread receiving while another destroys the
** sender, 8 rounds of 300 items: 41 and 48 regions leaked. Every holder
** CPython has receives a data once (a queue or channel item is popped; a
** shared namespace, call argument or result is applied once), so new_object
** takes the data's count for the receiver's handle and free only frees the
** 24 bytes of fs_xid_t; a lost free then leaks those, never a region.
** A second new_object of one data is refused with RuntimeError before it
** touches the region (the first receiver may have dropped it already).
**
** What is still CPython's: a data that is never received and whose free is
** lost -- released by its holder after its owner was destroyed, with no
** receipt first -- keeps its region (no code of ours runs for it). No holder
** does that on 3.12.1, 3.13.0 or 3.14.10 in the tests (items of a destroyed
** sender are freed by the holders' at-exit clearing, in the sender), only a
** holder that kept an item past its owner's at-exit, e.g. a receive that
** pops an item and fails before new_object while the sender is destroyed.
*/
#include <stdatomic.h>

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
    fs_region_t *region;     /* one count, owned by the data until received (I2) */
    fs_ref_t     ref;        /* the proxied object in region's image      */
    int          type_code;  /* FS_PT_*                                   */
    atomic_int   received;   /* 1: new_object took the count              */
} fs_xid_t;

/* Runs late, in any interpreter or none, possibly while the sender is torn
** down, or never (see the header): a decrement if the count was not
** received, and a free; no Python API (I5). The acquire pairs with
** new_object's exchange (CPython also orders the two, by a lock or the
** pending-call queue). */
static void xid_free(void *data)
{
    fs_xid_t *x = data;
    if (!atomic_load_explicit(&x->received, memory_order_acquire))
        fs_region_release(x->region);
    fs__free(x);
}

/* Receiver side: the data's count becomes the receiver's (see the header).
** New reference. */
static PyObject *xid_new_object(fs_xidata *data)
{
    fs_xid_t *x = data->data;
    if (atomic_load_explicit(&x->received, memory_order_acquire)) {
        PyErr_SetString(PyExc_RuntimeError,
                        "frozenshare: this cross-interpreter data was already received");
        return NULL;                     /* x->region may be gone: not touched */
    }
    PyObject *module = PyImport_ImportModule("frozenshare._frozenshare");
    if (module == NULL)
        return NULL;                     /* the data keeps its count */
    fs_state *st = PyModule_GetState(module);
    if (st == NULL) {
        Py_DECREF(module);
        return NULL;
    }
    if (atomic_exchange_explicit(&x->received, 1, memory_order_acq_rel)) {
        Py_DECREF(module);               /* raced with another receipt */
        PyErr_SetString(PyExc_RuntimeError,
                        "frozenshare: this cross-interpreter data was already received");
        return NULL;
    }
    fs_handle *h = fs__handle_owned(st, x->region);   /* consumes the data's count */
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
    fs_region_t *r = fs__shareable(p->h);   /* never a buffer of this interpreter */
    if (r == NULL)
        return -1;
    fs_xid_t *x = fs__malloc(sizeof *x);
    if (x == NULL) {
        fs__raise(FS_ENOMEM, NULL);
        return -1;
    }
    x->region = r;
    x->ref = p->ref;
    x->type_code = tc;
    atomic_init(&x->received, 0);
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
