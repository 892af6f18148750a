"""A least-recently-used cache bounded by the summed sizes of its values: their bytes, or 1
each to bound how many it holds."""

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def one_each(_: object) -> int:
    """The size that makes `max_size` a number of entries."""
    return 1


class SizedLRU(Generic[K, V]):
    """Values by key, the least recently used first out, at most `max_size` by `size(value)`."""

    def __init__(self, max_size: int, size: Callable[[V], int]) -> None:
        self.max_size = max_size
        self._size = size
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._held = 0

    @property
    def held_size(self) -> int:
        return self._held

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: K, value: V) -> None:
        """Keep `value` under `key`, replacing what it held (nothing when `value` alone
        exceeds `max_size`)."""
        self._forget(key)
        size = self._size(value)
        if size > self.max_size:
            return
        while self._held + size > self.max_size:
            self._forget(next(iter(self._entries)))
        self._entries[key] = (value, size)
        self._held += size

    def _forget(self, key: K) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._held -= entry[1]
