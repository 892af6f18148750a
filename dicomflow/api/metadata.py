"""Series metadata for WADO-RS: Redis first, then the precomputed file, else built on demand."""

import asyncio
import logging

from dicomflow.api import queries
from dicomflow.api.state import ApiState
from dicomflow.core.cache import SERIES_METADATA_TTL, series_metadata_key
from dicomflow.core.series_metadata import build_series_metadata
from dicomflow.core.storage import SeriesLocation

log = logging.getLogger(__name__)


async def series_metadata(
    state: ApiState, tenant: str, study_uid: str, series_uid: str
) -> bytes | None:
    """The series' DICOM JSON array as bytes, or None when the series is unknown."""
    cache_key = series_metadata_key(tenant, study_uid, series_uid)
    cached = await _cache_get(state, cache_key)
    if cached is not None:
        return cached
    instance_key = await queries.fresh_metadata_key(state.pool, tenant, study_uid, series_uid)
    if instance_key is not None:
        metadata_key = SeriesLocation.of_instance_key(instance_key).metadata_key
        try:
            body = await asyncio.to_thread(state.json_storage.read_bytes, metadata_key)
        except OSError as exc:
            log.warning("precomputed metadata %s unreadable (%s); building it", metadata_key, exc)
        else:
            await _cache_set(state, cache_key, body)
            return body
    instances = await queries.series_instances(state.pool, tenant, study_uid, series_uid)
    if not instances:
        return None
    return await asyncio.to_thread(build_series_metadata, state.storage, tenant, instances)


async def _cache_get(state: ApiState, key: str) -> bytes | None:
    try:
        return await state.redis.get(key)
    except Exception as exc:  # Redis is a cache: answer from PostgreSQL and files without it
        log.warning("Redis unavailable: %s", exc)
        return None


async def _cache_set(state: ApiState, key: str, body: bytes) -> None:
    try:
        await state.redis.set(key, body, ex=SERIES_METADATA_TTL)
    except Exception as exc:  # Redis is a cache
        log.warning("Redis unavailable: %s", exc)
