"""Fan-out: each storage event becomes an image record, an object record and series progress."""

import asyncio
import logging

from dicomflow.core.cache import series_metadata_key, study_series_key
from dicomflow.streams.app import app
from dicomflow.streams.progress import (
    instance_key,
    instances_seen,
    record_instance,
    series_progress,
)
from dicomflow.streams.resources import resources
from dicomflow.streams.state import send_state
from dicomflow.streams.topics import image_topic, log_topic, storage_topic
from dicomflow.tables.extract import image_record, read_header
from dicomflow.tables.records import StorageEvent

log = logging.getLogger(__name__)


def load_header(key: str):  # type: ignore[no-untyped-def]
    with resources().storage.open(key) as fh:
        return read_header(fh)


@app.agent(storage_topic)
async def fan_out(stream):  # type: ignore[no-untyped-def]
    async for key, event in stream.items():
        try:
            header = await asyncio.to_thread(load_header, event.file_path)
        except (OSError, ValueError) as exc:
            log.error("cannot read %s for event %s: %s", event.file_path, event.trace_id, exc)
            continue
        await image_topic.send(key=key, value=image_record(header, event))
        await log_topic.send(key=key, value=event)

        seen_key = instance_key(event)
        is_new = instances_seen.get(seen_key) is None
        if is_new:
            instances_seen[seen_key] = event.created_time
        progress, announce = record_instance(series_progress.get(key), event, is_new)
        series_progress[key] = progress
        if announce:
            await forget_cached_metadata(event)
            await send_state(key, header, progress)


async def forget_cached_metadata(event: StorageEvent) -> None:
    """A new series, or a stable one that changed, must not be served from the cache.

    Only then: the API caches a series' metadata once it is stable, and a study's series
    list changes only when a series is first seen.
    """
    try:
        await resources().redis.delete(
            series_metadata_key(event.tenant_id, event.study_uid, event.series_uid),
            study_series_key(event.tenant_id, event.study_uid),
        )
    except Exception as exc:  # Redis is a cache: the API checks freshness in PostgreSQL too
        log.warning("could not invalidate the cached metadata of %s: %s", event.series_uid, exc)
