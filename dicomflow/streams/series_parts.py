"""Each instance's DICOM JSON kept in Redis while its series is not stable (the series' parts)."""

import logging
import time
from collections.abc import Callable, Sequence

import redis.asyncio as aioredis

from dicomflow.core.cache import keep_parts, series_parts_key
from dicomflow.core.series_metadata import part_field
from dicomflow.tables.records import StorageEvent

log = logging.getLogger(__name__)


class SeriesParts:
    """Keeps each instance's DICOM JSON in its series' parts in Redis, before its image record
    can make it visible: the API builds the metadata of a series not stable yet from one read.
    After a failure it leaves Redis alone for `PAUSE_SECONDS`, so that a Redis that hangs does
    not slow the indexing down (the API reads the series' parts file instead)."""

    PAUSE_SECONDS = 30.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._paused_until = 0.0

    async def keep(
        self, redis: aioredis.Redis, instances: Sequence[tuple[StorageEvent, bytes]]
    ) -> None:
        """Keep each event's instance JSON in its series' parts, all in one round trip."""
        if not instances or self._clock() < self._paused_until:
            return
        parts: dict[str, dict[bytes, bytes]] = {}
        for event, body in instances:
            key = series_parts_key(event.tenant_id, event.study_uid, event.series_uid)
            parts.setdefault(key, {})[part_field(event.sop_uid, event.created_time)] = body
        try:
            await keep_parts(redis, parts)
        except Exception as exc:  # Redis is a cache
            self._paused_until = self._clock() + self.PAUSE_SECONDS
            log.warning(
                "could not keep the metadata of %d instances in Redis (%s); not trying for %.0f s",
                len(instances),
                exc,
                self.PAUSE_SECONDS,
            )
