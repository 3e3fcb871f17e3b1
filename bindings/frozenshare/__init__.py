"""frozenshare -- share read-only data between subinterpreters without copying it.

``freeze(obj)`` deep-copies an object graph once into a read-only region
(sealed with mprotect) and returns a proxy; every interpreter of the process
can read the region in place. Proxies cross interpreters in O(1) through the
stdlib's cross-interpreter data (queues, channels, ``run_string(shared=)``),
or by name through ``publish()`` / ``lookup()``.

    >>> import frozenshare as fs
    >>> f = fs.freeze({"users": [{"name": "ada"}], "n": 1})
    >>> f["users"][0]["name"]
    'ada'
    >>> fs.thaw(f) == {"users": [{"name": "ada"}], "n": 1}
    True

Images also leave the process: ``dump(obj, path)`` / ``load(path)`` through a
file (mapped read-only: every process shares the page cache), ``dumps`` /
``loads`` through bytes or any read-only buffer, and pickling (protocol 5
carries the image out of band, for Ray, Dask and multiprocessing). A
portable image is hashed with a seed in its header, so lookups stay O(1) in a
process with another hash secret.

The implementation is the extension module ``frozenshare._frozenshare``; this
package re-exports it, adds ``dump`` (an atomic file write around ``dumps``)
and registers the proxies with the collections.abc ABCs (in each interpreter
that imports it).
"""
import os as _os
from collections import abc as _abc

from ._frozenshare import (
    IMAGE_FORMAT_VERSION,
    FrozenArray,
    FrozenBytes,
    FrozenList,
    FrozenMap,
    FrozenMapItems,
    FrozenMapKeys,
    FrozenMapValues,
    FrozenSet,
    FrozenTuple,
    FrozenValue,
    ImageError,
    __version__,
    dumps,
    freeze,
    from_json,
    info,
    load,
    loads,
    is_frozen,
    lookup,
    publish,
    published,
    register,
    stats,
    thaw,
    to_json,
    unpublish,
)



def dump(obj, file):
    """Write the portable image of obj (a proxy, or anything freeze() accepts)
    to file: a path, or a binary file object (written at its position).

    A path is written to a temporary file in the same directory, flushed to
    disk (fsync) and renamed over the target, so a reader sees the old image
    or the new one, never part of one, and processes that loaded the old file
    keep reading it. On any error the target is untouched and no temporary
    file is left behind.
    """
    data = dumps(obj)
    if not isinstance(file, (str, bytes, _os.PathLike)):
        file.write(data)
        return
    import tempfile

    path = _os.fspath(file)
    folder = _os.path.dirname(_os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".frozenshare-", suffix=".tmp",
                               dir=folder if isinstance(folder, str) else _os.fsdecode(folder))
    try:
        umask = _os.umask(0)
        _os.umask(umask)
        _os.fchmod(fd, 0o666 & ~umask)        # as open() would have made it
        with open(fd, "wb", closefd=True) as f:
            f.write(data)
            f.flush()
            _os.fsync(f.fileno())
        _os.replace(tmp, path)
    except BaseException:
        try:
            _os.unlink(tmp)
        except OSError:
            pass
        raise
    try:                                       # make the rename itself durable
        dfd = _os.open(folder, _os.O_RDONLY | getattr(_os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        _os.fsync(dfd)
    except OSError:
        pass
    finally:
        _os.close(dfd)


_abc.Mapping.register(FrozenMap)
_abc.Sequence.register(FrozenTuple)
_abc.Sequence.register(FrozenList)
_abc.Sequence.register(FrozenBytes)
_abc.Set.register(FrozenSet)
_abc.KeysView.register(FrozenMapKeys)
_abc.ValuesView.register(FrozenMapValues)
_abc.ItemsView.register(FrozenMapItems)

__all__ = [
    "FrozenArray",
    "FrozenBytes",
    "FrozenList",
    "FrozenMap",
    "FrozenMapItems",
    "FrozenMapKeys",
    "FrozenMapValues",
    "FrozenSet",
    "FrozenTuple",
    "FrozenValue",
    "IMAGE_FORMAT_VERSION",
    "ImageError",
    "__version__",
    "dump",
    "dumps",
    "freeze",
    "from_json",
    "info",
    "load",
    "loads",
    "is_frozen",
    "lookup",
    "publish",
    "published",
    "register",
    "stats",
    "thaw",
    "to_json",
    "unpublish",
]
