/*
** fuzz_json.c -- libFuzzer over the JSON-to-image path (arena/json.c): any
** input either is refused (FS_EINVAL, FS_ENOMEM, FS_ETOOBIG) or gives an
** image that fs_image_check accepts, under ASan+UBSan, never a crash or a
** leak. The first byte's low bit picks allow_surrogates (the text may then
** hold any bytes in strings, as after a surrogatepass decode), so the UTF-8
** decoder meets malformed input too. Seeds: tests/fuzz/json_corpus/.
*/
#include <stdint.h>
#include <stdlib.h>

#include "fs_json.h"

static int64_t fnv(const void *data, size_t n)       /* any hash will do here */
{
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const uint8_t *)data)[i]) * 1099511628211u;
    return (int64_t)h == -1 ? -2 : (int64_t)h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fs_builder_t *b = NULL;
    if (fs_builder_create(&b, 0) != FS_OK)
        return 0;
    fs_json_opts o = { fnv, 4300, size > 0 && (data[0] & 1) };
    fs_json_err e;
    fs_ref_t root;
    if (fs_json_build(b, (const char *)data, size, &o, &root, &e) == FS_OK &&
        fs_builder_finish(b, root, NULL, 0, 0) == FS_OK &&
        fs_image_check(fs_builder_base(b), fs_builder_size(b)) != FS_OK)
        abort();                      /* JSON made an image the validator refuses */
    fs_builder_destroy(b);
    return 0;
}
