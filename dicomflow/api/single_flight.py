"""Concurrent requests for the same expensive result share one computation of it."""

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class SingleFlight:
    """`run(key, make)`: the first caller for `key` starts `make()`, callers that come while it
    runs wait for the same result (or exception). A caller that is cancelled (its client went
    away) stops waiting without cancelling the run the others wait for."""

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Future[Any]] = {}

    async def run(self, key: Hashable, make: Callable[[], Awaitable[T]]) -> T:
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(make())
            self._running[key] = running
            running.add_done_callback(lambda _: self._running.pop(key, None))
        return await asyncio.shield(running)

    @property
    def running(self) -> int:
        return len(self._running)
