/*
** alloc.c -- the one allocation hook, and error strings.
**
** Every heap allocation of frozenshare (fs__malloc & co.) and every arena
** allocation (arena.c) asks fs__alloc_should_fail() first, the way Lua
** routes all allocation through lua_Alloc: that single gate is what lets the
** tests fail "the Nth allocation" for every N. Heap memory comes from the C
** library's malloc: only images live in the jemalloc arena, so control
** blocks and tables never share pages with sealed images (I1).
*/
#include <stdatomic.h>
#include <stdlib.h>

#include "fs_arena.h"

static atomic_long fail_after = -1;   /* -1: trap off; else fail from this count on */
static atomic_long alloc_count;       /* allocations attempted since the last arm   */

void fs_alloc_fail_after(long n)
{
    atomic_store(&alloc_count, 0);
    atomic_store(&fail_after, n);
}

long fs_alloc_count(void)
{
    return atomic_load(&alloc_count);
}

int fs__alloc_should_fail(void)
{
    long c = atomic_fetch_add_explicit(&alloc_count, 1, memory_order_relaxed);
    long n = atomic_load_explicit(&fail_after, memory_order_relaxed);
    return n >= 0 && c >= n;
}

void *fs__malloc(size_t n)
{
    return fs__alloc_should_fail() ? NULL : malloc(n ? n : 1);
}

void *fs__calloc(size_t count, size_t size)
{
    return fs__alloc_should_fail() ? NULL : calloc(count ? count : 1, size ? size : 1);
}

void *fs__realloc(void *p, size_t n)
{
    return fs__alloc_should_fail() ? NULL : realloc(p, n ? n : 1);
}

void fs__free(void *p)
{
    free(p);
}

const char *fs_strerror(int err)
{
    switch (err) {
    case FS_OK:        return "success";
    case FS_ENOMEM:    return "out of memory";
    case FS_EINVAL:    return "invalid argument";
    case FS_ETOOBIG:   return "size exceeds a format limit";
    case FS_ECORRUPT:  return "image is corrupt";
    case FS_ENOTFOUND: return "not found";
    case FS_ESYS:      return "system error";
    case FS_EVERSION:  return "image of another format version or platform";
    default:           return "unknown error";
    }
}
