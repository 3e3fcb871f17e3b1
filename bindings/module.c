/*
** module.c -- the frozenshare._frozenshare module: definition, module
** state set-up (the type table every lower layer reads), the module-level
** functions, and the XID registration (through xid.c).
**
** LAYER (the picture in fs_py.h): the top; calls every file below it and is
** called by none.
**
** Isolation (PEP 489/630/684): multi-phase init, all types are heap types
** made by PyType_FromModuleAndSpec, all state lives in the module state, and
** the module declares Py_MOD_PER_INTERPRETER_GIL_SUPPORTED. Each interpreter
** that imports the module gets its own types, handle table and XID
** registrations; the only things shared between interpreters are the C
** layers below (atomic region counts, the registry's mutex: I5).
**
** Handles and errors live in state.c.
*/
#include "fs_py.h"


#define FS_VERSION "0.1.0"

/* ---- types --------------------------------------------------------------- */

/* New reference to a heap type of module, or NULL. public: also added to the
** module under its short name. */
static PyTypeObject *make_type(PyObject *module, PyType_Spec *spec, int public)
{
    PyTypeObject *tp = (PyTypeObject *)PyType_FromModuleAndSpec(module, spec, NULL);
    if (tp == NULL)
        return NULL;
    if (public && PyModule_AddType(module, tp) < 0) {
        Py_DECREF(tp);
        return NULL;
    }
    return tp;
}

/* module borrowed; st gets new references to the types. 0, or -1 with an exception. */
static int types_init(PyObject *module, fs_state *st)
{
    static PyType_Spec *proxy_specs[FS_PT__COUNT] = {
        [FS_PT_MAP] = &fs__map_spec, [FS_PT_LIST] = &fs__list_spec,
        [FS_PT_TUPLE] = &fs__tuple_spec, [FS_PT_SET] = &fs__set_spec,
        [FS_PT_BYTES] = &fs__fbytes_spec, [FS_PT_VALUE] = &fs__fvalue_spec,
        [FS_PT_ARRAY] = &fs__array_spec,
    };
    for (int i = 0; i < FS_PT__COUNT; i++) {
        st->types[i] = make_type(module, proxy_specs[i], 1);
        if (st->types[i] == NULL)
            return -1;
    }
    if ((st->seqiter_type = make_type(module, &fs__seqiter_spec, 0)) == NULL ||
        (st->mapiter_type = make_type(module, &fs__mapiter_spec, 0)) == NULL ||
        (st->keys_type = make_type(module, &fs__keys_spec, 1)) == NULL ||
        (st->values_type = make_type(module, &fs__values_spec, 1)) == NULL ||
        (st->items_type = make_type(module, &fs__items_spec, 1)) == NULL ||
        (st->bufowner_type = make_type(module, &fs__bufowner_spec, 0)) == NULL)
        return -1;
    return 0;
}

/* ---- module functions --------------------------------------------------- */

/* Borrowed state of module (borrowed). */
static fs_state *get_state(PyObject *module)
{
    return (fs_state *)PyModule_GetState(module);
}

/* Borrowed: the argument as a proxy of this interpreter, or NULL + TypeError. */
static fs_proxy *as_proxy(fs_state *st, PyObject *o, const char *fname)
{
    if (!fs__is_proxy(st, o)) {
        PyErr_Format(PyExc_TypeError,
                     "%s() argument must be a frozen object (see freeze()), not '%.200s'",
                     fname, Py_TYPE(o)->tp_name);
        return NULL;
    }
    return FS_PROXY(o);
}

/* Borrowed UTF-8 of a registry name, or NULL + exception. */
static const char *name_utf8(PyObject *name, Py_ssize_t *len)
{
    if (!PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "name must be str, not '%.200s'",
                     Py_TYPE(name)->tp_name);
        return NULL;
    }
    return PyUnicode_AsUTF8AndSize(name, len);
}

PyDoc_STRVAR(freeze_doc,
"freeze(obj, /)\n--\n\n"
"Deep-copy obj into a new read-only region and return its proxy.\n\n"
"Containers give FrozenMap, FrozenList, FrozenTuple or FrozenSet; bytes and\n"
"bytearray give FrozenBytes; any other supported scalar a FrozenValue.\n"
"Supported: None, bool, int, float, complex, str, bytes, bytearray, tuple,\n"
"list, dict, set, frozenset (and frozendict where builtin), exact types only\n"
"(subclasses are rejected: thaw could not restore them). A proxy returns\n"
"unchanged; proxies inside obj are shared by reference (imports), not\n"
"copied. Shared references and cycles are preserved.\n\n"
"TypeError names the unsupported type and its path (root['users'][3]);\n"
"RuntimeError if a dict, list or set changes size during the freeze;\n"
"MemoryError if memory runs out (nothing is left behind).");

/* freeze(obj): new reference; module, obj borrowed. */
static PyObject *mod_freeze(PyObject *module, PyObject *obj)
{
    return fs__freeze(get_state(module), obj);
}

PyDoc_STRVAR(thaw_doc,
"thaw(frozen, /)\n--\n\n"
"Deep copy of a frozen object back to ordinary objects of the original\n"
"types (list vs tuple, set vs frozenset, bytes vs bytearray, dict);\n"
"shared references and cycles are restored. TypeError if the argument is\n"
"not a frozen object.");

/* thaw(frozen): new reference; module, obj borrowed. */
static PyObject *mod_thaw(PyObject *module, PyObject *obj)
{
    fs_proxy *p = as_proxy(get_state(module), obj, "thaw");
    if (p == NULL)
        return NULL;
    return fs__thaw_ref(p->h, p->ref);
}

PyDoc_STRVAR(is_frozen_doc,
"is_frozen(obj, /)\n--\n\n"
"True if obj is a frozenshare proxy (FrozenMap, FrozenList, FrozenTuple,\n"
"FrozenSet, FrozenBytes, FrozenValue).");

/* is_frozen(obj): new reference; module, obj borrowed. */
static PyObject *mod_is_frozen(PyObject *module, PyObject *obj)
{
    return PyBool_FromLong(fs__is_proxy(get_state(module), obj));
}

PyDoc_STRVAR(publish_doc,
"publish(name, frozen, /)\n--\n\n"
"Publish a frozen object under name, process-wide (every interpreter can\n"
"lookup() it). Replaces an existing entry of that name. The entry keeps the\n"
"region alive until unpublish(name) or replacement.");

/* publish(name, frozen): new reference (None); module, args borrowed. */
static PyObject *mod_publish(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "publish() takes exactly 2 arguments (%zd given)", nargs);
        return NULL;
    }
    fs_state *st = get_state(module);
    Py_ssize_t len;
    const char *name = name_utf8(args[0], &len);
    if (name == NULL)
        return NULL;
    fs_proxy *p = as_proxy(st, args[1], "publish");
    if (p == NULL)
        return NULL;
    fs_region_t *r = fs__shareable(p->h);    /* any interpreter may look it up */
    if (r == NULL)
        return NULL;
    int err = fs_registry_publish(name, (size_t)len, r, p->ref);
    if (err != FS_OK)
        return fs__raise(err, args[0]);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(lookup_doc,
"lookup(name, /)\n--\n\n"
"The frozen object published under name (a proxy in this interpreter).\n"
"KeyError if there is none.");

/* lookup(name): new reference; module, name_obj borrowed. */
static PyObject *mod_lookup(PyObject *module, PyObject *name_obj)
{
    fs_state *st = get_state(module);
    Py_ssize_t len;
    const char *name = name_utf8(name_obj, &len);
    if (name == NULL)
        return NULL;
    fs_region_t *r = NULL;
    fs_ref_t ref = 0;
    int err = fs_registry_lookup(name, (size_t)len, &r, &ref);
    if (err != FS_OK)
        return fs__raise(err, name_obj);
    return fs__root_proxy_owned(st, r, ref);          /* consumes the +1 */
}

PyDoc_STRVAR(unpublish_doc,
"unpublish(name, /)\n--\n\n"
"Remove the published entry name (KeyError if there is none).");

/* unpublish(name): new reference (None); module, name_obj borrowed. */
static PyObject *mod_unpublish(PyObject *module, PyObject *name_obj)
{
    (void)module;
    Py_ssize_t len;
    const char *name = name_utf8(name_obj, &len);
    if (name == NULL)
        return NULL;
    int err = fs_registry_unpublish(name, (size_t)len);
    if (err != FS_OK)
        return fs__raise(err, name_obj);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(published_doc,
"published()\n--\n\n"
"Sorted list of the names currently published (process-wide).");

/* published(): new reference; module borrowed. */
static PyObject *mod_published(PyObject *module, PyObject *unused)
{
    (void)module; (void)unused;
    char **names = NULL;
    size_t *lens = NULL, count = 0;
    int err = fs_registry_list(&names, &lens, &count);
    if (err != FS_OK)
        return fs__raise(err, NULL);
    PyObject *list = PyList_New((Py_ssize_t)count);
    if (list == NULL)
        goto error;
    for (size_t i = 0; i < count; i++) {
        PyObject *s = PyUnicode_DecodeUTF8(names[i], (Py_ssize_t)lens[i], "surrogateescape");
        if (s == NULL)
            goto error;
        PyList_SET_ITEM(list, (Py_ssize_t)i, s);
    }
    fs_registry_list_free(names, lens, count);
    if (PyList_Sort(list) < 0) {
        Py_DECREF(list);
        return NULL;
    }
    return list;

error:
    Py_XDECREF(list);
    fs_registry_list_free(names, lens, count);
    return NULL;
}

/* Steals v. 0 or -1. */
static int set_item(PyObject *d, const char *key, PyObject *v)
{
    if (v == NULL)
        return -1;
    int rc = PyDict_SetItemString(d, key, v);
    Py_DECREF(v);
    return rc;
}

PyDoc_STRVAR(info_doc,
"info(frozen, /)\n--\n\n"
"dict describing the region holding a frozen object: region_id,\n"
"image_bytes, refcount (a snapshot, all interpreters and the registry\n"
"included), imports (number of regions it imports), import_ids,\n"
"object_count, offset (of this object in the image), backing (where the\n"
"image lives: 'arena' -- frozen or copied here --, 'file' -- a mapped file,\n"
"load() --, 'buffer' -- a read-only buffer lent to loads()) and hash_domain\n"
"('process': this process's hash(); 'keyed': a portable image, hashed with\n"
"the seed in its header; 'foreign process': another process's hash(),\n"
"lookups scan).");

static const char *backing_name(int backing)
{
    return backing == FS_BACKING_FILE ? "file" : backing == FS_BACKING_BUFFER ? "buffer" : "arena";
}

/* info(frozen): new reference; module, obj borrowed. */
static PyObject *mod_info(PyObject *module, PyObject *obj)
{
    fs_proxy *p = as_proxy(get_state(module), obj, "info");
    if (p == NULL)
        return NULL;
    fs_region_t *r = p->h->region;
    PyObject *ids = NULL, *d = PyDict_New();
    if (d == NULL)
        return NULL;
    uint32_t n = fs_region_nimports(r);
    ids = PyList_New(n);
    if (ids == NULL)
        goto error;
    for (uint32_t i = 0; i < n; i++) {
        PyObject *id = PyLong_FromUnsignedLongLong(fs_region_id(fs_region_import(r, i)));
        if (id == NULL)
            goto error;
        PyList_SET_ITEM(ids, i, id);
    }
    if (set_item(d, "region_id", PyLong_FromUnsignedLongLong(fs_region_id(r))) < 0 ||
        set_item(d, "image_bytes", PyLong_FromSize_t(fs_region_size(r))) < 0 ||
        set_item(d, "refcount", PyLong_FromLong(fs_region_refcount(r))) < 0 ||
        set_item(d, "imports", PyLong_FromUnsignedLong(n)) < 0 ||
        set_item(d, "import_ids", Py_NewRef(ids)) < 0 ||
        set_item(d, "object_count", PyLong_FromUnsignedLongLong(fs_region_object_count(r))) < 0 ||
        set_item(d, "offset", PyLong_FromUnsignedLongLong(
                     fs_ref_tag(p->ref) == FS_TAG_OBJ ? p->ref : 0)) < 0 ||
        set_item(d, "backing", PyUnicode_FromString(backing_name(fs_region_backing(r)))) < 0 ||
        set_item(d, "hash_domain", PyUnicode_FromString(
                     p->h->keyed ? "keyed" : p->h->trust_hash ? "process" : "foreign process")) < 0)
        goto error;
    Py_DECREF(ids);
    return d;

error:
    Py_XDECREF(ids);
    Py_DECREF(d);
    return NULL;
}

PyDoc_STRVAR(stats_doc,
"stats()\n--\n\n"
"dict of process-wide counters: live_regions, image_bytes, regions_created,\n"
"reclaims, seals, unseals, arena_live_images, arena_image_bytes,\n"
"arena_mapped_bytes, arena_reserved_bytes, arena_reservations,\n"
"arena_allocated_bytes, arena_resident_bytes, published; and handles (this\n"
"interpreter's live handles), lookups_scanned (this interpreter's lookups\n"
"that had to compare every entry: a probe of no key kind in a portable\n"
"image, or an image of another process's hash secret); this interpreter's\n"
"caches: key_cache_shapes, key_cache_keys, key_cache_hits (a shape's keys,\n"
"made once), str_cache_entries, str_cache_hits (short str values read\n"
"through proxies, at most 1024; always 0 on free-threaded builds) and\n"
"proxy_free_list.");

/* stats(): new reference; module borrowed. */
static PyObject *mod_stats(PyObject *module, PyObject *unused)
{
    (void)unused;
    fs_state *st = get_state(module);
    fs_region_stats_t rs;
    fs_arena_stats_t as;
    memset(&rs, 0, sizeof rs);
    memset(&as, 0, sizeof as);
    fs_region_get_stats(&rs);
    fs_arena_get_stats(&as);
    FS_LOCK(&st->mu);
    size_t handles = st->handles.used;
    FS_UNLOCK(&st->mu);
    PyObject *d = PyDict_New();
    if (d == NULL)
        return NULL;
#define U64(k, v) set_item(d, k, PyLong_FromUnsignedLongLong((unsigned long long)(v))) < 0
    if (U64("live_regions", rs.live_regions) ||
        U64("image_bytes", rs.image_bytes) ||
        U64("regions_created", rs.created) ||
        U64("reclaims", rs.reclaims) ||
        U64("seals", as.seals) ||
        U64("unseals", as.unseals) ||
        U64("arena_live_images", as.live_images) ||
        U64("arena_image_bytes", as.image_bytes) ||
        U64("arena_mapped_bytes", as.mapped_bytes) ||
        U64("arena_reserved_bytes", as.reserved_bytes) ||
        U64("arena_reservations", as.reservations) ||
        U64("arena_allocated_bytes", as.allocated_bytes) ||
        U64("arena_resident_bytes", as.resident_bytes) ||
        U64("published", fs_registry_count()) ||
        U64("handles", handles) ||
        U64("key_cache_shapes", __atomic_load_n(&st->keycache_shapes, __ATOMIC_RELAXED)) ||
        U64("key_cache_keys", __atomic_load_n(&st->keycache_keys, __ATOMIC_RELAXED)) ||
        U64("key_cache_hits", fs__count_total(&st->keycache_hits)) ||
        U64("lookups_scanned", fs__count_total(&st->lookups_scanned)) ||
        U64("proxy_free_list", st->nproxy_free) ||
#ifndef Py_GIL_DISABLED
        U64("str_cache_entries", st->strcache_entries) ||
        U64("str_cache_hits", st->strcache_hits) ||
#else
        U64("str_cache_entries", 0) || U64("str_cache_hits", 0) ||
#endif
        0)
        goto error;
#undef U64
    return d;

error:
    Py_DECREF(d);
    return NULL;
}

PyDoc_STRVAR(fail_alloc_after_doc,
"_fail_alloc_after(n, /)\n--\n\n"
"TESTS ONLY. The allocation after n more successful ones fails, and all\n"
"later ones, until _fail_alloc_after(-1). Process-wide.");

/* _fail_alloc_after(n): new reference (None); module, arg borrowed. */
static PyObject *mod_fail_alloc_after(PyObject *module, PyObject *arg)
{
    (void)module;
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    fs_alloc_fail_after(n);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(alloc_count_doc,
"_alloc_count()\n--\n\n"
"TESTS ONLY. Allocations attempted since the last _fail_alloc_after().");

/* _alloc_count(): new reference; module borrowed. */
static PyObject *mod_alloc_count(PyObject *module, PyObject *unused)
{
    (void)module; (void)unused;
    return PyLong_FromLong(fs_alloc_count());
}

PyDoc_STRVAR(image_summary_doc,
"_image_summary(proxy)\n--\n\n"
"For the command line's info: the header fields of proxy's image (version,\n"
"byte_order, word_size, hash_domain, seed, checksum_kind, checksum,\n"
"image_size, object_count, nimports) and 'kinds', its objects by kind, a dict\n"
"{kind: count} (kinds as the format names them: 'str', 'dict', 'shaped dict',\n"
"'narrow dict', ...).");

/* _image_summary(proxy): new reference; module, arg borrowed. */
static PyObject *mod_image_summary(PyObject *module, PyObject *arg)
{
    static const char *const names[FS_KIND__COUNT] = {
        [FS_KIND_FLOAT] = "float", [FS_KIND_COMPLEX] = "complex", [FS_KIND_INT] = "int",
        [FS_KIND_STR] = "str", [FS_KIND_BYTES] = "bytes", [FS_KIND_BYTEARRAY] = "bytearray",
        [FS_KIND_TUPLE] = "tuple", [FS_KIND_LIST] = "list", [FS_KIND_DICT] = "dict",
        [FS_KIND_SET] = "set", [FS_KIND_FROZENSET] = "frozenset",
        [FS_KIND_RECORD] = "record", [FS_KIND_BUFFER] = "typed buffer",
    };
    fs_proxy *p = as_proxy(get_state(module), arg, "_image_summary");
    if (p == NULL)
        return NULL;
    const uint8_t *base = p->h->base;
    const fs_image_header_t *h = fs_image_header(base);
    uint64_t counts[FS_KIND__COUNT + 2] = {0};  /* + shaped, narrow dicts */
    PyObject *classes = PySet_New(NULL);         /* "module.qualname" of records */
    if (classes == NULL)
        return NULL;
    for (uint64_t off = FS_IMAGE_HEADER_SIZE; off < h->objects_end; off += fs_obj_size(base, off)) {
        const fs_obj_hdr_t *o = fs_obj(base, off);
        if (o->kind == FS_KIND_RECORD && classes != NULL) {
            PyObject *n = fs__scalar(base, ((const fs_rec_t *)(const void *)o)->cls, FS_KIND_STR, 0);
            if (n == NULL || PySet_Add(classes, n) < 0)
                Py_CLEAR(classes);
            Py_XDECREF(n);
        }
        unsigned k = o->kind < FS_KIND__COUNT ? o->kind : 0;
        if (k == FS_KIND_DICT && (o->flags & FS_FLAG_SHAPED))
            k = FS_KIND__COUNT;
        else if (k == FS_KIND_DICT && (o->flags & FS_FLAG_NARROW))
            k = FS_KIND__COUNT + 1;
        counts[k]++;
    }
    PyObject *kinds = PyDict_New();
    for (unsigned k = 0; kinds != NULL && k < FS_KIND__COUNT + 2; k++) {
        if (counts[k] == 0)
            continue;
        const char *name = k == FS_KIND__COUNT ? "shaped dict" : k == FS_KIND__COUNT + 1
                           ? "narrow dict" : names[k] ? names[k] : "?";
        if (set_item(kinds, name, PyLong_FromUnsignedLongLong(counts[k])) < 0)
            Py_CLEAR(kinds);
    }
    PyObject *d = NULL;
    if (kinds == NULL || classes == NULL)
        goto error;
    d = PyDict_New();
    if (d == NULL)
        goto error;
#define U64(k, v) set_item(d, k, PyLong_FromUnsignedLongLong((unsigned long long)(v))) < 0
    if (U64("version", h->version) || U64("byte_order", h->byte_order) ||
        U64("word_size", h->word_size) || U64("hash_domain", h->hash_domain) ||
        U64("seed", fs_image_seed(h)) || U64("checksum_kind", h->checksum_kind) ||
        U64("checksum", h->checksum) || U64("image_size", h->image_size) ||
        U64("object_count", h->object_count) || U64("nimports", h->nimports) ||
        set_item(d, "kinds", Py_NewRef(kinds)) < 0 ||
        set_item(d, "record_classes", PySequence_List(classes)) < 0)
        Py_CLEAR(d);
#undef U64
error:
    Py_XDECREF(kinds);
    Py_XDECREF(classes);
    return d;
}

PyDoc_STRVAR(reseal_doc,
"_reseal(buffer)\n--\n\n"
"TESTS ONLY. Recompute the checksum of the image in a writable buffer (a\n"
"bytearray) after a test changed it, so that the validator's other checks\n"
"see the change. Needs a whole header whose image_size fits the buffer.");

/* _reseal(buffer): None; module, arg borrowed. */
static PyObject *mod_reseal(PyObject *module, PyObject *arg)
{
    (void)module;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_WRITABLE) < 0)
        return NULL;
    fs_image_header_t h;
    int ok = (size_t)view.len >= sizeof h;
    if (ok) {
        memcpy(&h, view.buf, sizeof h);
        ok = h.image_size >= sizeof h && h.image_size <= (uint64_t)view.len;
    }
    if (ok) {
        h.checksum_kind = FS_CHECKSUM_XXH3;
        memcpy(view.buf, &h, sizeof h);
        h.checksum = fs_image_checksum(view.buf, (size_t)h.image_size);
        memcpy(view.buf, &h, sizeof h);
    }
    PyBuffer_Release(&view);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "_reseal: no whole image in the buffer");
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(check_image_doc,
"_check_image(proxy)\n--\n\n"
"TESTS ONLY. Run the validator (fs_image_check) over the image of proxy's\n"
"region: None, or ValueError naming the defect.");

/* _check_image(proxy): new reference; module, arg borrowed. */
static PyObject *mod_check_image(PyObject *module, PyObject *arg)
{
    fs_state *st = get_state(module);
    if (!fs__is_proxy(st, arg)) {
        PyErr_Format(PyExc_TypeError, "_check_image() needs a frozen proxy, not '%.200s'",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    const uint8_t *base = FS_PROXY(arg)->h->base;
    const char *why = NULL;
    int err = fs_image_check_why(base, (size_t)fs_image_header(base)->image_size, &why);
    if (err == FS_ENOMEM)
        return PyErr_NoMemory();
    if (err != FS_OK) {
        PyErr_Format(st->image_error, "frozenshare: image refused: %s", why ? why : "?");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"freeze", mod_freeze, METH_O, freeze_doc},
    {"thaw", mod_thaw, METH_O, thaw_doc},
    {"is_frozen", mod_is_frozen, METH_O, is_frozen_doc},
    {"publish", FS_METH(mod_publish), METH_FASTCALL, publish_doc},
    {"lookup", mod_lookup, METH_O, lookup_doc},
    {"unpublish", mod_unpublish, METH_O, unpublish_doc},
    {"published", mod_published, METH_NOARGS, published_doc},
    {"info", mod_info, METH_O, info_doc},
    {"dumps", fs__mod_dumps, METH_O, fs__dumps_doc},
    {"loads", FS_METH(fs__mod_loads), METH_VARARGS | METH_KEYWORDS, fs__loads_doc},
    {"load", FS_METH(fs__mod_load), METH_VARARGS | METH_KEYWORDS, fs__load_doc},
    {"register", FS_METH(fs__mod_register), METH_VARARGS | METH_KEYWORDS, fs__register_doc},
    {"from_json", fs__mod_from_json, METH_O, fs__from_json_doc},
    {"_unpickle", fs__mod_unpickle, METH_O, fs__unpickle_doc},
    {"to_json", fs__mod_to_json, METH_O, fs__to_json_doc},
    {"stats", mod_stats, METH_NOARGS, stats_doc},
    {"_fail_alloc_after", mod_fail_alloc_after, METH_O, fail_alloc_after_doc},
    {"_alloc_count", mod_alloc_count, METH_NOARGS, alloc_count_doc},
    {"_check_image", mod_check_image, METH_O, check_image_doc},
    {"_reseal", mod_reseal, METH_O, reseal_doc},
    {"_image_summary", mod_image_summary, METH_O, image_summary_doc},
    {NULL, NULL, 0, NULL},
};

/* ---- module lifecycle --------------------------------------------------- */

/* Py_mod_exec: module borrowed. 0, or -1 with an exception. */
static int module_exec(PyObject *module)
{
    fs_state *st = get_state(module);
    st->module = module;                 /* borrowed: we live inside it */
    st->hash_check = -1;

    int err = fs_arena_init();
    if (err == FS_OK)
        err = fs_arena_install_reporter();
    if (err != FS_OK) {
        fs__raise(err, NULL);
        return -1;
    }

    /* Stored hashes are trusted when the image's hash_check equals ours:
    ** same process-wide hash secret (all interpreters of a process share it). */
    PyObject *probe = PyUnicode_FromString("frozenshare");
    if (probe == NULL)
        return -1;
    st->hash_check = PyObject_Hash(probe);
    Py_DECREF(probe);
    if (st->hash_check == -1)
        return -1;
    fs__process_hash_check = (int64_t)st->hash_check;   /* same value everywhere */

    st->handle_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &fs__handle_spec, NULL);
    if (st->handle_type == NULL)
        return -1;
    if (types_init(module, st) < 0)
        return -1;
    if ((st->str_dict = PyUnicode_InternFromString("__dict__")) == NULL)
        return -1;
    if (fs__xid_register(st) < 0)
        return -1;
    if (PyModule_AddStringConstant(module, "__version__", FS_VERSION) < 0)
        return -1;
    if (PyModule_AddIntConstant(module, "IMAGE_FORMAT_VERSION", FS_IMAGE_VERSION) < 0)
        return -1;
    st->image_error = PyErr_NewExceptionWithDoc(
        "frozenshare.ImageError",
        "Not a frozenshare image, or a truncated, corrupt or changed one, or one of\n"
        "another format version or platform; the message says which.",
        PyExc_ValueError, NULL);
    if (st->image_error == NULL || PyModule_AddObjectRef(module, "ImageError", st->image_error) < 0)
        return -1;
    return 0;
}

/* m_traverse: module borrowed. */
static int module_traverse(PyObject *module, visitproc visit, void *arg)
{
    fs_state *st = get_state(module);
    if (st == NULL)
        return 0;
    for (int i = 0; i < FS_PT__COUNT; i++)
        Py_VISIT(st->types[i]);
    Py_VISIT(st->handle_type);
    Py_VISIT(st->seqiter_type);
    Py_VISIT(st->mapiter_type);
    Py_VISIT(st->keys_type);
    Py_VISIT(st->values_type);
    Py_VISIT(st->items_type);
    Py_VISIT(st->bufowner_type);
    Py_VISIT(st->mapping_abc);
    Py_VISIT(st->image_error);
    Py_VISIT(st->enum_type);
    Py_VISIT(st->registry);
    Py_VISIT(st->registered_names);
    Py_VISIT(st->str_dict);
    return 0;
}

/* m_clear (also run by m_free): module borrowed; unregisters XID first. */
static int module_clear(PyObject *module)
{
    fs_state *st = get_state(module);
    if (st == NULL)
        return 0;
    fs__xid_unregister(st);              /* before the types go */
    for (int i = 0; i < FS_PT__COUNT; i++)
        Py_CLEAR(st->types[i]);
    Py_CLEAR(st->handle_type);
    Py_CLEAR(st->seqiter_type);
    Py_CLEAR(st->mapiter_type);
    Py_CLEAR(st->keys_type);
    Py_CLEAR(st->values_type);
    Py_CLEAR(st->items_type);
    Py_CLEAR(st->bufowner_type);
    Py_CLEAR(st->mapping_abc);
    Py_CLEAR(st->image_error);
    Py_CLEAR(st->enum_type);
    Py_CLEAR(st->registry);
    Py_CLEAR(st->registered_names);
    Py_CLEAR(st->str_dict);
#ifndef Py_GIL_DISABLED
    fs__strcache_drop(st, NULL);       /* the strs only: handles stay valid */
#endif
    return 0;
}

static void module_free(void *module)
{
    fs_state *st = get_state((PyObject *)module);
    module_clear((PyObject *)module);
    if (st != NULL) {
        /* Empty by construction: every handle holds the module. */
        fs__tab_fini(&st->handles);
        while (st->proxy_free != NULL) {
            fs_proxy *p = st->proxy_free;
            st->proxy_free = (fs_proxy *)p->h;
            PyObject_Free(p);
        }
        st->nproxy_free = 0;
    }
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#ifdef Py_mod_gil
    /* Threads of one interpreter may run it at once (fs_py.h, "free-threaded
    ** builds"); tests/python/test_free_threaded.py holds it to that. */
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

PyDoc_STRVAR(module_doc,
"Share read-only data between subinterpreters without copying it.\n\n"
"Low-level extension module; use the frozenshare package.");

PyModuleDef fs__module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "frozenshare._frozenshare",
    .m_doc = module_doc,
    .m_size = sizeof(fs_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__frozenshare(void)
{
    return PyModuleDef_Init(&fs__module_def);
}
