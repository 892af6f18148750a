"""Index rows kept in memory while PostgreSQL says they have not changed.

Each kept value is the answer of one lookup by key (an instance's row, where a series'
metadata comes from), read from PostgreSQL once and then served from memory: ~0.1-0.2 ms and
the wake-up of a PostgreSQL backend saved per request. A trigger notifies every change on the
cache's channel with the key as `a|b|c`; an empty payload (TRUNCATE) means every key. Values
are kept only while `IndexChanges` listens, and a value read while a change was notified is not
kept (it may predate the change). With `read_again`, a kept value that changes is read again at
once, so that the next request (a viewer polling a series being received) finds it in memory.
"""

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, TypeVar

from dicomflow.api.index_changes import IndexChanges

log = logging.getLogger(__name__)

V = TypeVar("V")
Key = tuple[str, ...]


class NotifiedCache(Generic[V]):
    """The least recently used values of `read`, at most `max_entries` (0: none kept)."""

    def __init__(
        self,
        changes: IndexChanges,
        channel: str,
        read: Callable[..., Awaitable[V | None]],
        max_entries: int,
        read_again: bool = False,
    ) -> None:
        self._changes = changes
        self._read = read
        self.max_entries = max_entries
        self._read_again = read_again
        self._kept: OrderedDict[Key, V] = OrderedDict()
        self._reading_again: dict[Key, asyncio.Task[None]] = {}
        self._notified = 0  # notifications and losses seen so far
        if max_entries > 0:
            changes.subscribe(channel, self._on_change, self._forget_all)

    def __len__(self) -> int:
        return len(self._kept)

    async def get(self, *key: str) -> V | None:
        """`read(*key)`, from memory when kept; None (never kept) when there is no such row."""
        value = self._kept.get(key)
        if value is None and key in self._reading_again:
            await asyncio.shield(self._reading_again[key])
            value = self._kept.get(key)
        if value is not None:
            self._kept.move_to_end(key)
            return value
        return await self._read_and_keep(key)

    def holds(self, *key: str) -> bool:
        return key in self._kept

    def peek(self, *key: str) -> V | None:
        """The kept value of `key`, without reading it."""
        return self._kept.get(key)

    async def keep_all(self, read: Callable[[], Awaitable[Iterable[tuple[Key, V]]]]) -> int:
        """Keep every `(key, value)` that `read` gives (the rows a lookup by key would give),
        unless a change was notified while it read; how many were kept."""
        if self.max_entries <= 0:
            return 0
        notified = self._notified
        values = list(await read())[-self.max_entries :]
        if not self._unchanged_since(notified):
            return 0
        self._keep(values)
        return len(values)

    def _unchanged_since(self, notified: int) -> bool:
        """Whether what was read after `notified` notifications may be kept."""
        return self.max_entries > 0 and self._changes.listening and notified == self._notified

    def _keep(self, values: Iterable[tuple[Key, V]]) -> None:
        for key, value in values:
            self._kept[key] = value
            self._kept.move_to_end(key)
        while len(self._kept) > self.max_entries:
            self._kept.popitem(last=False)

    def _on_change(self, payload: str) -> None:
        self._notified += 1
        if not payload:
            self._kept.clear()
            return
        key = tuple(payload.split("|"))
        was_kept = self._kept.pop(key, None) is not None or key in self._reading_again
        if was_kept and self._read_again:
            task = asyncio.ensure_future(self._read_after(key, self._reading_again.get(key)))
            self._reading_again[key] = task
            task.add_done_callback(lambda done: self._done_reading(key, done))

    async def _read_after(self, key: Key, previous: asyncio.Task[None] | None) -> None:
        """Read `key` again (after the read of an earlier change, which is not kept)."""
        if previous is not None:
            await asyncio.wait([previous])
        try:
            await self._read_and_keep(key)
        except Exception as exc:  # the next request reads it itself
            log.warning("could not read %s again: %s", "|".join(key), exc)

    async def _read_and_keep(self, key: Key) -> V | None:
        """`read(*key)`, kept unless a change was notified while it read."""
        notified = self._notified
        value = await self._read(*key)
        if value is not None and self._unchanged_since(notified):
            self._keep([(key, value)])
        return value

    def _done_reading(self, key: Key, task: asyncio.Task[None]) -> None:
        if self._reading_again.get(key) is task:
            del self._reading_again[key]

    def _forget_all(self) -> None:
        self._notified += 1
        self._kept.clear()
