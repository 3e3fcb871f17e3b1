/*
** portable.c -- images that leave or enter the process: dumps, loads, load
** and pickling (DESIGN.md "Round 2"; the format in arena/fs_image.h).
**
** LAYER (the picture in fs_py.h): beside freeze.c/thaw.c; calls them, read.c
** and state.c. module.c exposes the functions, proxy.c's __reduce_ex__
** calls fs__portable.
**
** Leaving: fs__dumps(obj)
**   obj a proxy of its region's root, the region importing nothing
**     -> copy the image into a new bytes, rekey it (portable.c of arena/:
**        FS_HASH_KEYED under a fresh random seed, indexes rebuilt, checksum)
**   anything else (a plain object, a proxy inside a region, a region with
**   imports) -> frozen first (a proxy thawed and frozen again: flattened, so
**   a portable image never refers to another region), then as above.
**   Pickling is _unpickle(image): protocol 5 hands the image to the pickler as
**   one read-only PickleBuffer (out of band with a buffer_callback, else in
**   band); older protocols carry the bytes. Never thaw + freeze again, but
**   for the one graph with no portable image (a FrozenMap used as a key
**   before 3.15: flattened() says "entangled"), which pickles by value.
**
** Entering: loads(buffer) / load(file)
**   read-only, 8-aligned buffer -> verified in place, a BUFFER region holds
**       the Py_buffer (its exporter) until its last count is released.
**       Only this interpreter may release a buffer it lent, so such a region
**       never leaves it: XID, publish and imports take a sealed copy
**       instead (fs__shareable, state.c). Its last count is therefore
**       dropped by a handle of this interpreter, under its GIL.
**   writable or misaligned buffer -> copied into a sealed ARENA region, and
**       the copy verified (the owner could change the original under readers).
**   file -> mapped read-only and shared (a FILE region owns the mapping).
** _unpickle(buffer) is loads(buffer) with pickle's trust for records: an
** unpickler imports whatever classes a pickle names, so the records of an
** image that arrived by pickling (Ray, Dask, multiprocessing) are built as
** the classes their names give, imported if need be (h->allow = Py_True);
** loads and load import nothing (classes= or fs.register only).
** verify=True runs fs_image_check (checksum, every offset, length, tag,
** index slot and shared-flag claim); verify=False checks only the header.
** Every defect is frozenshare.ImageError naming it.
*/
#include "fs_py.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* ---- leaving: dumps ------------------------------------------------------ */

typedef struct rekey_ctx_s {
    fs_handle *h;            /* the source region: same offsets as the copy */
    uint64_t   seed;
} rekey_ctx;

/* fs_rekey_fn: K of a tuple, frozenset or frozendict key, from its value
** (thawed from the source region) -- the very function lookups hash probes
** with. FS_OK, or FS_EINVAL with a Python exception set. */
static int rekey_composite(void *vctx, const void *image, fs_ref_t key, int64_t *out)
{
    rekey_ctx *c = vctx;
    (void)image;
    PyObject *o = fs__thaw_ref(c->h, key);
    if (o == NULL)
        return FS_EINVAL;
    int ok = fs__keyed_hash(o, c->seed, out);
    Py_DECREF(o);
    if (ok == 0)             /* a record (or holds one): its probes have no K either, */
        *out = 0;            /* and scan (read.c); any stored value will do */
    return ok >= 0 ? FS_OK : FS_EINVAL;
}

static uint64_t fresh_seed(void)
{
    uint64_t seed;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) == (ssize_t)sizeof seed)
        return seed;
    struct timespec ts;                     /* no entropy yet: still distinct */
    clock_gettime(CLOCK_REALTIME, &ts);
    return fs_keyed_mix((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^
                        ((uint64_t)getpid() << 48) ^ (uint64_t)(uintptr_t)&ts);
}

/* New reference: a proxy of the root of a region importing nothing, for
** obj (borrowed). NULL with an exception, or NULL with *entangled set and no exception
** when obj cannot be had without another region: a FrozenMap used as a
** dict key or set member thaws to itself where no frozendict exists (before
** 3.15), so freezing the thawed graph imports it again. */
static PyObject *flattened(fs_state *st, PyObject *obj, int *entangled)
{
    PyObject *cur = Py_NewRef(obj);
    *entangled = 0;
    /* A proxy: thaw it, freeze the plain graph (no proxies left in it: no
    ** imports), done. A plain graph holding proxies: freeze (imports), thaw,
    ** freeze. Imports after two thaws: entangled. */
    for (int thaws = 0;;) {
        if (fs__is_proxy(st, cur)) {
            fs_proxy *p = FS_PROXY(cur);
            fs_region_t *r = p->h->region;
            if (p->ref == fs_region_root(r) && fs_region_nimports(r) == 0)
                return cur;
            if (thaws++ == 2) {
                Py_DECREF(cur);
                *entangled = 1;
                return NULL;
            }
            PyObject *plain = fs__thaw_ref(p->h, p->ref);
            Py_DECREF(cur);
            if (plain == NULL)
                return NULL;
            cur = plain;
        }
        PyObject *fz = fs__freeze(st, cur);
        Py_DECREF(cur);
        if (fz == NULL)
            return NULL;
        cur = fz;
    }
}

/* New reference. See fs_py.h. */
PyObject *fs__portable(fs_state *st, PyObject *obj, int *entangled)
{
    PyObject *src = flattened(st, obj, entangled);
    if (src == NULL)
        return NULL;
    fs_handle *h = FS_PROXY(src)->h;
    size_t size = fs_region_size(h->region);
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
    if (out != NULL) {
        char *data = PyBytes_AS_STRING(out);        /* 8-aligned: PyBytesObject */
        memcpy(data, h->base, size);
        if (!h->keyed) {
            rekey_ctx c = { h, fresh_seed() };
            int err = fs_image_rekey(data, c.seed, rekey_composite, &c);
            if (err != FS_OK) {
                if (!PyErr_Occurred())
                    fs__raise(err, NULL);
                Py_CLEAR(out);
            }
        }
    }
    Py_DECREF(src);
    return out;
}

/* New reference. See fs_py.h. */
PyObject *fs__dumps(fs_state *st, PyObject *obj)
{
    int entangled;
    PyObject *out = fs__portable(st, obj, &entangled);
    if (out == NULL && entangled)
        PyErr_SetString(PyExc_TypeError,
                        "frozenshare: no portable image without another region: a FrozenMap "
                        "is used as a dict key or set member (it has no plain hashable "
                        "equivalent before Python 3.15's frozendict)");
    return out;
}

const char fs__dumps_doc[] =
"dumps(obj, /)\n--\n\n"
"The portable image of obj (a proxy, or anything freeze() accepts) as bytes:\n"
"what dump() writes and loads() reads, in any process. Its hashes are keyed\n"
"by a seed in its header (lookups stay O(1) under any PYTHONHASHSEED) and it\n"
"carries a checksum. A proxy of a region's root is copied; anything else is\n"
"frozen first (a region that imports others is flattened).";

/* dumps(obj): new reference (bytes); module, obj borrowed. */
PyObject *fs__mod_dumps(PyObject *module, PyObject *obj)
{
    return fs__dumps(PyModule_GetState(module), obj);
}

/* ---- entering: loads, load ---------------------------------------------- */

/* The loaded root proxy px (a new reference, or NULL) keeps allow (a new
** reference to classes= as record.c made it, or NULL) on its handle, a
** fresh one (every load makes a new region): records of the image are
** built as those classes (DESIGN.md "Trust"). Returns px. */
static PyObject *with_allowlist(PyObject *px, PyObject *allow)
{
    if (px != NULL && allow != NULL)
        Py_XSETREF(FS_PROXY(px)->h->allow, Py_NewRef(allow));
    Py_XDECREF(allow);
    return px;
}

/* fs_release_fn of BUFFER regions: runs in the lending interpreter (see the
** top of this file), with its GIL. */
static void buffer_release(void *ctx, const void *image, size_t size)
{
    (void)image;
    (void)size;
    Py_buffer *view = ctx;
    PyBuffer_Release(view);
    PyMem_RawFree(view);
}

/* New reference: the proxy over buffer obj (borrowed; a BUFFER region
** keeps its own export of it). */
static PyObject *loads_buffer(fs_state *st, PyObject *obj, int verify)
{
    Py_buffer *view = PyMem_RawMalloc(sizeof *view);
    if (view == NULL)
        return PyErr_NoMemory();
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0) {
        PyMem_RawFree(view);
        return NULL;
    }
    const char *why = NULL;
    fs_region_t *r = NULL;
    size_t size = (size_t)view->len;
    int err;
    if (view->readonly && (uintptr_t)view->buf % 8 == 0) {
        /* in place: the exporter promised the bytes will not change */
        err = fs_region_check(view->buf, size, verify, &why);
        if (err == FS_OK)
            err = fs_region_adopt(&r, view->buf, size, FS_BACKING_BUFFER, buffer_release, view);
        if (err == FS_OK)
            return fs__root_proxy_owned(st, r, fs_region_root(r));     /* r owns view now */
    }
    else {
        /* copied, then the copy checked: only it is what readers will see */
        err = fs_region_copy(&r, view->buf, size, verify, &why);
    }
    PyBuffer_Release(view);
    PyMem_RawFree(view);
    if (err != FS_OK)
        return fs__raise_image(st, err, why, NULL);
    return fs__root_proxy_owned(st, r, fs_region_root(r));
}

/* loads(x, *, verify=True, classes=()) and load alike: 0 with *x,
** *verify and *allow (a new reference or NULL: fs__allowlist), or -1. */
static int parse_args(PyObject *args, PyObject *kwargs, const char *fmt, char **kw,
                      PyObject **x, int *verify, PyObject **allow)
{
    PyObject *classes = NULL;
    *verify = 1;
    *allow = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, fmt, kw, x, verify, &classes))
        return -1;
    return fs__allowlist(classes, allow);
}

const char fs__loads_doc[] =
"loads(buffer, /, *, verify=True, classes=())\n--\n\n"
"The proxy of the image in buffer (bytes, mmap, memoryview, SharedMemory.buf,\n"
"a pickle-5 out-of-band buffer, ...). A read-only buffer is read in place,\n"
"zero-copy (its exporter is kept, and must not change it); a writable one\n"
"is copied into a sealed region first. verify=True (the default) proves the\n"
"image well formed (linear in its size); verify=False checks only its\n"
"header: for images you produced. ImageError names what is wrong.\n"
"classes: the classes the image's records may be built as (records of other\n"
"classes raise TypeError when read; their modules are never imported). The\n"
"stdlib values (datetime, Decimal, UUID, Fraction) and classes registered\n"
"with register() need no listing.";

/* loads(buffer, ...): new reference (a proxy); module, args, kwargs borrowed. */
PyObject *fs__mod_loads(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kw[] = {"buffer", "verify", "classes", NULL};
    PyObject *buffer, *allow;
    int verify;
    if (parse_args(args, kwargs, "O|$pO:loads", kw, &buffer, &verify, &allow) < 0)
        return NULL;
    return with_allowlist(loads_buffer(PyModule_GetState(module), buffer, verify), allow);
}

const char fs__unpickle_doc[] =
"_unpickle(buffer, /)\n--\n\n"
"What a pickled proxy calls to come back: loads(buffer), its records built as\n"
"the classes they name (imported as unpickling plain objects would).";

/* _unpickle(buffer): new reference; module, buffer borrowed. */
PyObject *fs__mod_unpickle(PyObject *module, PyObject *buffer)
{
    return with_allowlist(loads_buffer(PyModule_GetState(module), buffer, 1), Py_NewRef(Py_True));
}

/* New reference: the proxy over the file open at fd (name, borrowed: for
** messages). */
static PyObject *load_fd(fs_state *st, int fd, int verify, PyObject *name)
{
    fs_region_t *r;
    const char *why = NULL;
    int err = fs_region_map_file(&r, fd, verify, &why);
    if (err == FS_ESYS)
        return PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, name);
    if (err != FS_OK)
        return fs__raise_image(st, err, why, name);
    return fs__root_proxy_owned(st, r, fs_region_root(r));
}

const char fs__load_doc[] =
"load(file, /, *, verify=True, classes=())\n--\n\n"
"The proxy of the image file (a path, or a binary file object), mapped\n"
"read-only and shared: every process that loads the same file reads the\n"
"same page-cache pages. The region owns the mapping; the file may be\n"
"replaced (dump() does so atomically) but must not be written in place\n"
"while loaded. A file object at position 0 is mapped the same way (the\n"
"whole file is the image); one positioned further on, or without a\n"
"fileno(), is read from its position and loaded as loads() would.\n"
"verify and classes as for loads().";

static PyObject *load_file(fs_state *st, PyObject *file, int verify);

/* load(file, ...): new reference (a proxy); module, args, kwargs borrowed. */
PyObject *fs__mod_load(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kw[] = {"file", "verify", "classes", NULL};
    PyObject *file, *allow;
    int verify;
    if (parse_args(args, kwargs, "O|$pO:load", kw, &file, &verify, &allow) < 0)
        return NULL;
    return with_allowlist(load_file(PyModule_GetState(module), file, verify), allow);
}

/* New reference: the proxy of file (borrowed), as load() describes. */
static PyObject *load_file(fs_state *st, PyObject *file, int verify)
{
    if (PyUnicode_Check(file) || PyBytes_Check(file) || PyObject_HasAttrString(file, "__fspath__")) {
        PyObject *path = NULL;
        if (!PyUnicode_FSConverter(file, &path))
            return NULL;
        int fd;
        Py_BEGIN_ALLOW_THREADS
        fd = open(PyBytes_AS_STRING(path), O_RDONLY | O_CLOEXEC);
        Py_END_ALLOW_THREADS
        PyObject *res = NULL;
        if (fd < 0)
            PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, file);
        else {
            res = load_fd(st, fd, verify, file);
            close(fd);
        }
        Py_DECREF(path);
        return res;
    }
    /* A file object at position 0 is the whole file: map it. Elsewhere (an
    ** image after other data) or without a descriptor: read from there. */
    int at_start = 1;
    if (PyObject_HasAttrString(file, "tell")) {
        PyObject *pos = PyObject_CallMethod(file, "tell", NULL);
        if (pos == NULL)
            PyErr_Clear();              /* unseekable: the descriptor decides */
        else {
            at_start = PyLong_Check(pos) && PyLong_AsLongLong(pos) == 0;
            Py_DECREF(pos);
            PyErr_Clear();
        }
    }
    if (at_start && PyObject_HasAttrString(file, "fileno")) {
        PyObject *r = PyObject_CallMethod(file, "fileno", NULL);
        if (r != NULL) {
            int fd = PyObject_AsFileDescriptor(r);
            Py_DECREF(r);
            if (fd < 0)
                return NULL;
            PyObject *name = PyObject_GetAttrString(file, "name");
            if (name == NULL)
                PyErr_Clear();
            PyObject *res = load_fd(st, fd, verify, name != NULL ? name : file);
            Py_XDECREF(name);
            return res;
        }
        /* io.BytesIO and friends: fileno() raises io.UnsupportedOperation */
        if (!PyErr_ExceptionMatches(PyExc_OSError) && !PyErr_ExceptionMatches(PyExc_ValueError))
            return NULL;
        PyErr_Clear();
    }
    PyObject *data = PyObject_CallMethod(file, "read", NULL);
    if (data == NULL)
        return NULL;
    PyObject *res = loads_buffer(st, data, verify);
    Py_DECREF(data);
    return res;
}
