/*
** json.c -- fs.from_json (JSON text -> a region, no Python object per value)
** and fs.to_json (a region or plain object -> compact UTF-8 JSON).
**
** LAYER (the picture in fs_py.h): beside freeze.c/thaw.c; calls arena's
** fs_json_build (fs_json.h: the parse and the image), read.c and state.c.
**
** from_json(data):
**   str    -> its UTF-8 (surrogates as WTF-8: json.loads keeps them); a
**             leading U+FEFF is refused as json.loads refuses it
**   bytes, any buffer -> read in place; a UTF-8 BOM skipped, UTF-16/32 text
**             (json.detect_encoding) decoded to str first; invalid UTF-8
**             refused as json.loads(bytes) refuses it (UnicodeDecodeError),
**             encoded surrogates accepted as its surrogatepass does
**   -> fs_json_build with the GIL released (the input is a buffer export
**      or an immutable str's bytes), str hashes by CPython's own function
**      of the canonical bytes (_Py_HashBytes; Py_HashBuffer from 3.14): a
**      key's stored hash is its hash() (FS_HASH_PROCESS)
**   a container at the root: sealed into a region, its proxy returned; a
**   scalar: the plain value, and the image discarded. Errors are
**   json.JSONDecodeError (a ValueError) with the position in characters.
**
** to_json(obj): a proxy's image is walked as it is (no object per value); a
** plain object is frozen first. Iterative (any depth); a cycle raises
** ValueError as json.dumps does. The output is json.dumps(obj,
** separators=(",", ":"), ensure_ascii=False) encoded in UTF-8 (surrogates
** as WTF-8): floats as repr() writes them, NaN and +-Infinity as json.dumps
** writes them, dict keys of int, float, bool and None converted to str as
** json.dumps converts them; any other type is a TypeError.
*/
#include "fs_py.h"
#include "fs_json.h"

#include <math.h>

/* ---- from_json ------------------------------------------------------------ */

#if PY_VERSION_HEX >= 0x030D0000 && PY_VERSION_HEX < 0x030E0000
/* 3.13 exports it, declared only in an internal header (pycore_pyhash.h) */
PyAPI_FUNC(Py_hash_t) _Py_HashBytes(const void *, Py_ssize_t);
#endif

/* hash() of the str whose canonical bytes these are (CPython hashes a str
** as the bytes of its canonical form, length * charsize). */
static int64_t str_hash(const void *data, size_t n)
{
#if PY_VERSION_HEX >= 0x030E0000
    return (int64_t)Py_HashBuffer(data, (Py_ssize_t)n);
#else
    return (int64_t)_Py_HashBytes(data, (Py_ssize_t)n);
#endif
}

/* Raise json.JSONDecodeError(msg, doc, pos) for a byte position in text;
** src the caller's str (or NULL: doc is text decoded). Returns NULL. */
static PyObject *decode_error(PyObject *src, const char *text, size_t len, const char *msg,
                              size_t bytepos)
{
    if (bytepos > len)
        bytepos = len;
    PyObject *json = PyImport_ImportModule("json");
    PyObject *doc = src != NULL ? Py_NewRef(src) : PyUnicode_DecodeUTF8(text, (Py_ssize_t)len, "replace");
    PyObject *head = PyUnicode_DecodeUTF8(text, (Py_ssize_t)bytepos, "surrogatepass");
    if (head == NULL) {
        PyErr_Clear();
        head = PyUnicode_DecodeUTF8(text, (Py_ssize_t)bytepos, "replace");
    }
    if (json != NULL && doc != NULL && head != NULL) {
        PyObject *e = PyObject_CallMethod(json, "JSONDecodeError", "sOn", msg, doc,
                                          PyUnicode_GET_LENGTH(head));
        if (e != NULL) {
            PyErr_SetObject((PyObject *)Py_TYPE(e), e);
            Py_DECREF(e);
        }
    }
    Py_XDECREF(json);
    Py_XDECREF(doc);
    Py_XDECREF(head);
    return NULL;
}

/* sys.get_int_max_str_digits(): json.loads refuses longer ints. */
static uint64_t int_max_digits(void)
{
    PyObject *sys = PyImport_ImportModule("sys");
    PyObject *v = sys != NULL ? PyObject_CallMethod(sys, "get_int_max_str_digits", NULL) : NULL;
    long long n = v != NULL ? PyLong_AsLongLong(v) : 4300;
    Py_XDECREF(v);
    Py_XDECREF(sys);
    PyErr_Clear();
    return n > 0 ? (uint64_t)n : 0;
}

/* New reference: the value of the JSON text: a proxy, or a plain scalar.
** NULL with an exception; *utf8 = 1 (no exception) when the text held
** invalid UTF-8 and allow was 0: the caller decides. */
static PyObject *from_text(fs_state *st, PyObject *src, const char *text, size_t len,
                           int allow, int *utf8)
{
    *utf8 = 0;
    fs_builder_t *b = NULL;
    int err = fs_builder_create(&b, len + 4096);
    if (err != FS_OK)
        return fs__raise(err, NULL);
    fs_json_opts opts = {.str_hash = str_hash, .int_max_digits = int_max_digits(),
                         .allow_surrogates = allow};
    fs_json_err jerr;
    fs_ref_t root = 0;
    Py_BEGIN_ALLOW_THREADS
    err = fs_json_build(b, text, len, &opts, &root, &jerr);
    Py_END_ALLOW_THREADS
    if (err != FS_OK) {
        fs_builder_destroy(b);
        if (err != FS_EINVAL)
            return fs__raise(err, NULL);
        if (jerr.utf8 && !allow) {
            *utf8 = 1;
            return NULL;
        }
        return decode_error(src, text, len, jerr.msg, jerr.pos);
    }
    int kind = fs_ref_kind(fs_builder_base(b), root);
    if (fs_ref_tag(root) != FS_TAG_OBJ || (kind != FS_KIND_LIST && kind != FS_KIND_DICT)) {
        PyObject *v = fs__scalar(fs_builder_base(b), root, kind, 0);    /* a top-level scalar */
        fs_builder_destroy(b);
        return v;
    }
    fs_region_t *r = NULL;
    err = fs_region_create(&r, b, root, NULL, 0, (int64_t)st->hash_check);   /* consumes b */
    if (err != FS_OK)
        return fs__raise(err, NULL);
    return fs__root_proxy_owned(st, r, root);
}

/* 1 if bytes b (n of them) are UTF-16 or UTF-32 as json.detect_encoding
** sees them (a BOM, or a zero byte among the first two). */
static int wide_encoding(const uint8_t *b, size_t n)
{
    if (n >= 2 && ((b[0] == 0xFE && b[1] == 0xFF) || (b[0] == 0xFF && b[1] == 0xFE)))
        return 1;
    return n >= 2 && (b[0] == 0 || b[1] == 0);
}

const char fs__from_json_doc[] =
"from_json(data, /)\n--\n\n"
"The frozen value of the JSON text data (str, bytes or any buffer), parsed\n"
"straight into an image: no Python object is made per JSON value. json.loads'\n"
"semantics: the same values and types (big ints exact, floats as float()\n"
"reads them, NaN and Infinity), the last of repeated keys wins, lone\n"
"surrogates kept; what json.loads refuses raises json.JSONDecodeError (a\n"
"ValueError). A top-level array or object gives its proxy, a top-level scalar\n"
"the plain value.";

/* from_json(data): new reference; module, data borrowed. */
PyObject *fs__mod_from_json(PyObject *module, PyObject *data)
{
    fs_state *st = PyModule_GetState(module);
    int utf8;
    if (PyUnicode_Check(data)) {
        if (PyUnicode_GET_LENGTH(data) > 0 && PyUnicode_READ_CHAR(data, 0) == 0xFEFF)
            return decode_error(data, "", 0, "Unexpected UTF-8 BOM (decode using utf-8-sig)", 0);
        Py_ssize_t n;
        const char *text = PyUnicode_AsUTF8AndSize(data, &n);
        if (text != NULL)
            return from_text(st, data, text, (size_t)n, 0, &utf8);
        PyErr_Clear();                               /* lone surrogates: WTF-8 */
        PyObject *wtf8 = PyUnicode_AsEncodedString(data, "utf-8", "surrogatepass");
        if (wtf8 == NULL)
            return NULL;
        PyObject *res = from_text(st, data, PyBytes_AS_STRING(wtf8),
                                  (size_t)PyBytes_GET_SIZE(wtf8), 1, &utf8);
        Py_DECREF(wtf8);
        return res;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const uint8_t *p = view.buf;
    size_t n = (size_t)view.len;
    PyObject *res = NULL;
    if (n >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF) {   /* utf-8-sig */
        p += 3;
        n -= 3;
    }
    if (wide_encoding(p, n)) {                      /* UTF-16/32: as json.loads decodes it */
        PyObject *json = PyImport_ImportModule("json");
        PyObject *raw = json != NULL ? PyBytes_FromStringAndSize((const char *)view.buf, view.len) : NULL;
        PyObject *enc = raw != NULL ? PyObject_CallMethod(json, "detect_encoding", "O", raw) : NULL;
        PyObject *s = enc != NULL ? PyObject_CallMethod(raw, "decode", "Os", enc, "surrogatepass") : NULL;
        if (s != NULL)
            res = fs__mod_from_json(module, s);
        Py_XDECREF(s);
        Py_XDECREF(enc);
        Py_XDECREF(raw);
        Py_XDECREF(json);
    }
    else {
        res = from_text(st, NULL, (const char *)p, n, 0, &utf8);
        if (res == NULL && utf8) {
            /* json.loads(bytes) decodes with surrogatepass: encoded
            ** surrogates pass, anything else invalid is UnicodeDecodeError */
            PyObject *s = PyUnicode_DecodeUTF8((const char *)p, (Py_ssize_t)n, "surrogatepass");
            if (s != NULL) {
                Py_DECREF(s);
                res = from_text(st, NULL, (const char *)p, n, 1, &utf8);
            }
        }
    }
    PyBuffer_Release(&view);
    return res;
}

/* ---- to_json ---------------------------------------------------------------- */

typedef struct jout_s {
    char  *buf;
    size_t len, cap;
} jout;

static int room(jout *o, size_t n);
static int put(jout *o, const void *s, size_t n)
{
    if (room(o, n) < 0)
        return -1;
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    return 0;
}
#define PUTS(o, lit) put((o), (lit), sizeof(lit) - 1)

/* Room for n more bytes at o->buf + o->len. 0, or -1 with MemoryError. */
static int room(jout *o, size_t n)
{
    if (o->len + n <= o->cap)
        return 0;
    size_t cap = o->cap ? o->cap * 2 : 4096;
    while (cap < o->len + n)
        cap *= 2;
    char *p = fs__realloc(o->buf, cap);
    if (p == NULL) {
        fs__raise(FS_ENOMEM, NULL);
        return -1;
    }
    o->buf = p;
    o->cap = cap;
    return 0;
}

/* 1 if an ASCII byte is written as itself inside a JSON string. */
static inline int plain_ascii(uint32_t ch)
{
    return ch >= 0x20 && ch < 0x80 && ch != '"' && ch != '\\';
}

/* A str (canonical charsize cs, length n, data d) as a JSON string,
** json.dumps(ensure_ascii=False)'s escapes, in UTF-8 (surrogates as WTF-8):
** room for the worst case (6 bytes a character) is made once, runs of plain
** ASCII are copied whole. */
static int put_str(jout *o, unsigned cs, uint64_t n, const void *d)
{
    if (room(o, (size_t)n * 6 + 2) < 0)
        return -1;
    char *w = o->buf + o->len;
    *w++ = '"';
    for (uint64_t i = 0; i < n;) {
        if (cs == 1) {                            /* a run of plain ASCII at once */
            const uint8_t *p = (const uint8_t *)d;
            uint64_t j = i;
            while (j < n && plain_ascii(p[j]))
                j++;
            memcpy(w, p + i, (size_t)(j - i));
            w += j - i;
            if ((i = j) == n)
                break;
        }
        uint32_t ch = cs == 1 ? ((const uint8_t *)d)[i] : cs == 2 ? ((const uint16_t *)d)[i]
                                                                   : ((const uint32_t *)d)[i];
        i++;
        if (plain_ascii(ch)) {
            *w++ = (char)ch;
        }
        else if (ch == '"' || ch == '\\') {
            *w++ = '\\';
            *w++ = (char)ch;
        }
        else if (ch < 0x20) {
            static const char short_esc[] = "btn\0fr";          /* \b \t \n (\v) \f \r */
            *w++ = '\\';
            if (ch >= 8 && ch <= 13 && ch != 11) {
                *w++ = short_esc[ch - 8];
            }
            else {
                static const char hex[] = "0123456789abcdef";
                *w++ = 'u';
                *w++ = '0';
                *w++ = '0';
                *w++ = hex[ch >> 4];
                *w++ = hex[ch & 15];
            }
        }
        else if (ch < 0x800) {
            *w++ = (char)(0xC0 | (ch >> 6));
            *w++ = (char)(0x80 | (ch & 0x3F));
        }
        else if (ch < 0x10000) {
            *w++ = (char)(0xE0 | (ch >> 12));
            *w++ = (char)(0x80 | ((ch >> 6) & 0x3F));
            *w++ = (char)(0x80 | (ch & 0x3F));
        }
        else {
            *w++ = (char)(0xF0 | (ch >> 18));
            *w++ = (char)(0x80 | ((ch >> 12) & 0x3F));
            *w++ = (char)(0x80 | ((ch >> 6) & 0x3F));
            *w++ = (char)(0x80 | (ch & 0x3F));
        }
    }
    *w++ = '"';
    o->len = (size_t)(w - o->buf);
    return 0;
}

/* A float as json.dumps writes it (float.__repr__, NaN, Infinity). */
static int put_float(jout *o, double d)
{
    if (isnan(d))
        return PUTS(o, "NaN");
    if (isinf(d))
        return d > 0 ? PUTS(o, "Infinity") : PUTS(o, "-Infinity");
    char *s = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (s == NULL)
        return -1;
    int rc = put(o, s, strlen(s));
    PyMem_Free(s);
    return rc;
}

static int not_serializable(int kind)
{
    PyErr_Format(PyExc_TypeError, "Object of type %s is not JSON serializable",
                 fs__kind_type_name(kind));
    return -1;
}

/* Scalar ref of base (kind) as JSON; as_key: a dict key, written as a
** JSON string (json.dumps' key conversion). */
static int put_scalar(jout *o, const uint8_t *base, fs_ref_t ref, int kind, int as_key)
{
    char tmp[32];
    int n;
    switch (kind) {
    case FS_KIND_NONE:
        return as_key ? PUTS(o, "\"null\"") : PUTS(o, "null");
    case FS_KIND_BOOL:
        if (ref == FS_REF_TRUE)
            return as_key ? PUTS(o, "\"true\"") : PUTS(o, "true");
        return as_key ? PUTS(o, "\"false\"") : PUTS(o, "false");
    case FS_KIND_STR: {
        const fs_str_t *s = fs_str(base, ref);
        return put_str(o, fs_str_charsize(s), fs_str_len(s), fs_str_data(s));
    }
    case FS_KIND_INT:
    case FS_KIND_FLOAT: {
        if (as_key && PUTS(o, "\"") < 0)
            return -1;
        int rc;
        if (kind == FS_KIND_FLOAT) {
            rc = put_float(o, fs_ref_tag(ref) == FS_TAG_FLOAT ? fs_ref_float(ref)
                                                               : ((const fs_float_t *)fs_obj(base, ref))->value);
        }
        else if (fs_ref_tag(ref) == FS_TAG_INT) {
            n = snprintf(tmp, sizeof tmp, "%lld", (long long)fs_ref_int_value(ref));
            rc = put(o, tmp, (size_t)n);
        }
        else {                                      /* beyond 61 bits: via an int */
            PyObject *v = fs__scalar(base, ref, kind, 0);
            PyObject *s = v != NULL ? PyObject_Str(v) : NULL;
            Py_ssize_t sn;
            const char *u = s != NULL ? PyUnicode_AsUTF8AndSize(s, &sn) : NULL;
            rc = u != NULL ? put(o, u, (size_t)sn) : -1;
            Py_XDECREF(s);
            Py_XDECREF(v);
        }
        if (rc == 0 && as_key)
            rc = PUTS(o, "\"");
        return rc;
    }
    default:
        if (as_key) {
            PyErr_Format(PyExc_TypeError, "keys must be str, int, float, bool or None, not %s",
                         fs__kind_type_name(kind));
            return -1;
        }
        return not_serializable(kind);
    }
}

typedef struct wframe_s {
    fs_region_t   *reg;      /* borrowed: kept by the root's region        */
    const uint8_t *base;
    fs_ref_t       ref;
    uint64_t       i, n;
    int            dict;
    int            shared;   /* in the active set (cycle detection)        */
} wframe;

/* Write the value at (reg, ref) -- resolved as reads resolve it -- into o:
** iterative, a frame per open array or object. 0, or -1 with an exception. */
static int write_value(jout *o, fs_region_t *reg, fs_ref_t ref)
{
    wframe *stack = NULL;
    size_t depth = 0, cap = 0;
    fs__tab_t active;                               /* shared containers open now */
    memset(&active, 0, sizeof active);
    int rc = 0;
    const uint8_t *base = fs_region_base(reg);
    fs_ref_t cur = ref;
    int have = 1;                                   /* cur is to be written */
    for (;;) {
        if (have) {
            have = 0;
            fs__resolve(&reg, &base, &cur);
            int kind = fs_ref_kind(base, cur);
            if (kind != FS_KIND_LIST && kind != FS_KIND_TUPLE && kind != FS_KIND_DICT) {
                if ((rc = put_scalar(o, base, cur, kind, 0)) < 0)
                    break;
            }
            else {
                int shared = fs_obj_shared(base, cur);
                if (shared) {
                    if (fs__tab_get(&active, (uintptr_t)base, cur) != NULL) {
                        PyErr_SetString(PyExc_ValueError, "Circular reference detected");
                        rc = -1;
                        break;
                    }
                    int err = fs__tab_put(&active, (uintptr_t)base, cur, 1);
                    if (err != FS_OK) {
                        fs__raise(err, NULL);
                        rc = -1;
                        break;
                    }
                }
                if (depth == cap) {
                    size_t nc = cap ? cap * 2 : 64;
                    wframe *ns = fs__realloc(stack, nc * sizeof *ns);
                    if (ns == NULL) {
                        fs__raise(FS_ENOMEM, NULL);
                        rc = -1;
                        break;
                    }
                    stack = ns;
                    cap = nc;
                }
                int dict = kind == FS_KIND_DICT;
                uint64_t n = dict ? fs_map_count(base, fs_map(base, cur)) : fs_seq_count(fs_seq(base, cur));
                stack[depth++] = (wframe){reg, base, cur, 0, n, dict, shared};
                if ((rc = dict ? PUTS(o, "{") : PUTS(o, "[")) < 0)
                    break;
            }
        }
        if (depth == 0)
            break;
        wframe *f = &stack[depth - 1];
        if (f->i == f->n) {                          /* close it */
            if ((rc = f->dict ? PUTS(o, "}") : PUTS(o, "]")) < 0)
                break;
            if (f->shared)
                fs__tab_del(&active, (uintptr_t)f->base, f->ref);
            depth--;
            if (depth == 0)
                break;
            continue;
        }
        if (f->i > 0 && (rc = PUTS(o, ",")) < 0)
            break;
        reg = f->reg;
        base = f->base;
        if (f->dict) {
            const fs_map_t *m = fs_map(base, f->ref);
            fs_ref_t k = fs_map_key(base, m, f->i);
            fs_region_t *kreg = reg;
            const uint8_t *kbase = base;
            fs__resolve(&kreg, &kbase, &k);
            if ((rc = put_scalar(o, kbase, k, fs_ref_kind(kbase, k), 1)) < 0 ||
                (rc = PUTS(o, ":")) < 0)
                break;
            cur = fs_map_value(m, f->i);
        }
        else {
            cur = fs_seq_items(fs_seq(base, f->ref))[f->i];
        }
        f->i++;
        have = 1;
    }
    fs__free(stack);
    fs__tab_fini(&active);
    return rc;
}

const char fs__to_json_doc[] =
"to_json(obj, /)\n--\n\n"
"obj (a proxy, or a plain JSON-like object: frozen first) as compact UTF-8\n"
"JSON bytes: json.dumps(obj, separators=(',', ':'), ensure_ascii=False)\n"
"encoded, read straight from the image. TypeError for what JSON cannot\n"
"hold, ValueError for a cycle; any depth.";

/* to_json(obj): new reference (bytes); module, obj borrowed. */
PyObject *fs__mod_to_json(PyObject *module, PyObject *obj)
{
    fs_state *st = PyModule_GetState(module);
    PyObject *px = fs__is_proxy(st, obj) ? Py_NewRef(obj) : fs__freeze(st, obj);
    if (px == NULL)
        return NULL;
    jout o = {NULL, 0, 0};
    fs_proxy *p = FS_PROXY(px);
    int rc = write_value(&o, p->h->region, p->ref);
    PyObject *res = rc == 0 ? PyBytes_FromStringAndSize(o.buf, (Py_ssize_t)o.len) : NULL;
    fs__free(o.buf);
    Py_DECREF(px);
    return res;
}
