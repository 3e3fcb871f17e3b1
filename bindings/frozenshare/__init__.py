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

The implementation is the extension module ``frozenshare._frozenshare``; this
package re-exports it and registers the proxies with the collections.abc ABCs
(in each interpreter that imports it).
"""
from collections import abc as _abc

from ._frozenshare import (
    IMAGE_FORMAT_VERSION,
    FrozenBytes,
    FrozenList,
    FrozenMap,
    FrozenMapItems,
    FrozenMapKeys,
    FrozenMapValues,
    FrozenSet,
    FrozenTuple,
    FrozenValue,
    __version__,
    freeze,
    info,
    is_frozen,
    lookup,
    publish,
    published,
    stats,
    thaw,
    unpublish,
)

_abc.Mapping.register(FrozenMap)
_abc.Sequence.register(FrozenTuple)
_abc.Sequence.register(FrozenList)
_abc.Sequence.register(FrozenBytes)
_abc.Set.register(FrozenSet)
_abc.KeysView.register(FrozenMapKeys)
_abc.ValuesView.register(FrozenMapValues)
_abc.ItemsView.register(FrozenMapItems)

__all__ = [
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
    "__version__",
    "freeze",
    "info",
    "is_frozen",
    "lookup",
    "publish",
    "published",
    "stats",
    "thaw",
    "unpublish",
]
