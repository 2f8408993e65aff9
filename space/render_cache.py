"""Small in-process caches of the app's costly intermediate results, keyed by the content of their inputs.

A key is built from array contents (:func:`content_key`: BLAKE2b of the bytes, ~20 ms for a 1536x1024 float
photo), not from file paths, so the same photo uploaded twice hits, and a changed photo never does.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import numpy as np

__all__ = ["ContentCache", "content_key"]

T = TypeVar("T")


def content_key(array: np.ndarray | None) -> str | None:
    """A short digest of ``array``'s bytes and shape (``None`` for ``None``)."""
    if array is None:
        return None
    return hashlib.blake2b(np.ascontiguousarray(array).data, digest_size=16).hexdigest() + str(array.shape)


class ContentCache(Generic[T]):
    """A thread-safe least-recently-used map of at most ``size`` entries.

    Two requests for the same missing key may both compute it (the work runs outside the lock, so one slow
    render never blocks another request's lookup); the later result is kept.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, T] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_make(self, key: Hashable, make: Callable[[], T]) -> tuple[T, bool]:
        """The cached value of ``key``, else ``make()`` stored; and whether it was cached."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key], True
        value = make()
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return value, False

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
