"""Redis, the cache of the stream jobs and the API: its keys and how to connect to it."""

from collections.abc import Mapping

import redis.asyncio as aioredis

TIMEOUT = 2.0  # seconds: a Redis that hangs must not hold up a request or the indexing for long
SERIES_METADATA_TTL = 7 * 24 * 3600
STUDY_SERIES_TTL = 24 * 3600
SERIES_PARTS_TTL = 3600  # from the series' last instance: it is stable long before


def connect(location: str) -> aioredis.Redis:
    """A client of the Redis at `location` (a URL); it connects when first used."""
    return aioredis.from_url(location, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)


async def keep_parts(redis: aioredis.Redis, parts: Mapping[str, Mapping[bytes, bytes]]) -> None:
    """Add to each series' parts (`series_parts_key` → its new parts), kept for
    `SERIES_PARTS_TTL` from now; one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for key, fields in parts.items():
            pipe.hset(key, mapping=fields)
            pipe.expire(key, SERIES_PARTS_TTL)
        await pipe.execute()


def series_metadata_key(tenant: str, study_uid: str, series_uid: str) -> str:
    return f"dicomflow:series-metadata:{tenant}:{study_uid}:{series_uid}"


def study_series_key(tenant: str, study_uid: str) -> str:
    return f"dicomflow:study-series:{tenant}:{study_uid}"


def series_parts_key(tenant: str, study_uid: str, series_uid: str) -> str:
    """A hash of each instance's DICOM JSON while the series is not stable (`part_field`)."""
    return f"dicomflow:series-parts:{tenant}:{study_uid}:{series_uid}"
