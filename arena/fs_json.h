/*
** fs_json.h -- JSON text straight into an image (fs.from_json's core),
** with json.loads' semantics; no Python here (json.c).
**
**   text --yyjson_read--> yyjson document --one walk, no recursion--> builder
**
** Parsing is yyjson's (pinned 0.10.0, cmake/yyjson.cmake); this layer adds
** what json.loads accepts beyond it and what it means:
**   - lone surrogate escapes ("\ud800"): yyjson refuses them; the text is
**     re-read with each written as its 3 WTF-8 bytes (as Python keeps it);
**   - NaN, Infinity, -Infinity exactly (yyjson takes any case and "inf"):
**     read as raw text (YYJSON_READ_BIGNUM_AS_RAW) and checked here;
**   - ints of any size (above 64 bits: decimal text to two's complement
**     here), at most opts->int_max_digits digits (sys.get_int_max_str_digits);
**     floats that overflow are +-inf, as float() gives them;
**   - objects with repeated keys: the last value wins, at the first key's
**     position (a dict's insertion);
**   - str values in CPython's canonical form (charsize 1/2/4) with the hash
**     opts->str_hash gives (CPython's hash() of the str: the caller passes
**     _Py_HashBytes or Py_HashBuffer), so FS_HASH_PROCESS lookups find them.
** Objects of the same keys in the same order share a shape (fs_image.h), and
** complete ones (scalar values) are narrow where they fit, as freeze makes
** them. Memory: yyjson's document (about 16 bytes a value plus the strings)
** lives until the walk ends; every allocation goes through fs__malloc
** (fault injection reaches it), and on failure nothing is left behind.
*/
#ifndef FS_JSON_H
#define FS_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "fs_image.h"

typedef int64_t (*fs_json_hash_fn)(const void *data, size_t nbytes);

typedef struct fs_json_opts_s {
    fs_json_hash_fn str_hash;     /* hash of a str's canonical bytes (length *
                                     charsize); never -1                      */
    uint64_t int_max_digits;      /* ints of more decimal digits are an error;
                                     0: no limit                              */
    int      allow_surrogates;    /* text may hold encoded surrogates (WTF-8):
                                     a Python str, or bytes the caller decoded
                                     with surrogatepass first                 */
} fs_json_opts;

typedef struct fs_json_err_s {
    const char *msg;              /* static text, for FS_EINVAL               */
    size_t      pos;              /* byte offset in text                      */
    int         utf8;             /* the error is invalid UTF-8 in a string
                                     (the caller may check and retry with
                                     allow_surrogates)                        */
} fs_json_err;

/* Build the value of the JSON text (len bytes, UTF-8) into b: *root. FS_OK;
** FS_EINVAL (not JSON as json.loads reads it: err says what and where);
** FS_ENOMEM; FS_ETOOBIG. On failure b may hold part of the value: destroy it. */
int fs_json_build(fs_builder_t *b, const char *text, size_t len, const fs_json_opts *opts,
                  fs_ref_t *root, fs_json_err *err);

#endif /* FS_JSON_H */
