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
from dicomflow.streams.series_parts import SeriesParts
from dicomflow.streams.state import send_state
from dicomflow.streams.stored_copy import NotTheEventsCopy, read_and_keep_metadata
from dicomflow.streams.topics import image_topic, log_topic, storage_topic
from dicomflow.tables.extract import read_header
from dicomflow.tables.records import StorageEvent

log = logging.getLogger(__name__)


def load_header(key: str):  # type: ignore[no-untyped-def]
    with resources().storage.open(key) as fh:
        return read_header(fh)


series_parts = SeriesParts()


@app.agent(storage_topic)
async def fan_out(stream):  # type: ignore[no-untyped-def]
    async for key, event in stream.items():
        try:
            header, record, body = await asyncio.to_thread(read_and_keep_metadata, event)
        except NotTheEventsCopy as exc:
            # Mostly a copy received and then replaced before this worker read it: the receipt
            # is logged (`dicom_object_meta`); the later copy's own event indexes the file.
            log.info("event %s: %s is another copy (%s)", event.trace_id, event.file_path, exc)
            await log_topic.send(key=key, value=event)
            continue
        except (OSError, ValueError) as exc:
            log.error("cannot read %s for event %s: %s", event.file_path, event.trace_id, exc)
            continue
        if body is not None:
            await series_parts.keep(resources().redis, event, body)
        await image_topic.send(key=key, value=record)
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
