"""A least-recently-used cache bounded by the bytes its values hold."""

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SizedLRU(Generic[K, V]):
    """Values by key, the least recently used first out, at most `max_bytes` by `size(value)`."""

    def __init__(self, max_bytes: int, size: Callable[[V], int]) -> None:
        self.max_bytes = max_bytes
        self._size = size
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._held = 0

    @property
    def held_bytes(self) -> int:
        return self._held

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
        exceeds `max_bytes`)."""
        self._forget(key)
        size = self._size(value)
        if size > self.max_bytes:
            return
        while self._held + size > self.max_bytes:
            self._forget(next(iter(self._entries)))
        self._entries[key] = (value, size)
        self._held += size

    def _forget(self, key: K) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._held -= entry[1]
