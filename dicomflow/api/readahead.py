"""A viewer reads a series' metadata, then asks for every instance's frames: once the metadata
is answered, the series' files are read ahead into the page cache, so that those requests
seldom wait for the disk (files stored minutes ago may have left the cache, and a series'
metadata is served without reading them)."""

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator

from dicomflow.api.drafts import SeriesKey
from dicomflow.api.sized_lru import SizedLRU, one_each
from dicomflow.core.storage import LocalStorage

READAHEAD_INTERVAL = 30.0  # s: a series asked for again within it is not read ahead again

SeriesFiles = Callable[[str, str, str], Awaitable[list[tuple[str, int]]]]


class SeriesReadahead:
    """Asks the kernel to read a series' files, in instance order up to `max_bytes`, at most
    once per `interval` for each series (remembered for the last `max_series` series)."""

    def __init__(
        self,
        files: SeriesFiles,
        storage: LocalStorage,
        max_bytes: int,
        max_series: int,
        interval: float = READAHEAD_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._files = files
        self._storage = storage
        self._max_bytes = max_bytes
        self._interval = interval
        self._clock = clock
        self._last: SizedLRU[SeriesKey, float] = SizedLRU(max_series, one_each)

    def due(self, tenant: str, study_uid: str, series_uid: str) -> bool:
        """True, and the series counted as read ahead now, unless it was within the interval."""
        if self._max_bytes <= 0 or self._last.max_size <= 0:
            return False
        series = (tenant, study_uid, series_uid)
        now = self._clock()
        last = self._last.get(series)
        if last is not None and now - last < self._interval:
            return False
        self._last.put(series, now)
        return True

    async def run(self, tenant: str, study_uid: str, series_uid: str) -> None:
        files = await self._files(tenant, study_uid, series_uid)
        keys = list(first_files_within(files, self._max_bytes))
        await asyncio.to_thread(self._read_ahead, keys)

    def _read_ahead(self, keys: list[str]) -> None:
        for key in keys:
            self._storage.read_ahead(key)


def first_files_within(files: Iterable[tuple[str, int]], max_bytes: int) -> Iterator[str]:
    """The keys of the first files whose sizes add up to at most `max_bytes`."""
    total = 0
    for key, size in files:
        total += size
        if total > max_bytes:
            return
        yield key
