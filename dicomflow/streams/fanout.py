"""Fan-out: each storage event becomes an image record, an object record and series progress.

Events are taken in batches, so that a burst costs one worker-thread hop to read the files
and one Redis round trip to keep their DICOM JSON, not one of each per instance; records
and table updates are still made event by event, in order. While a burst of C-STOREs goes on,
a batch waits (`ingest_yield`).
"""

import asyncio
import logging
import weakref
from collections.abc import Sequence

from faust import streams as faust_streams
from faust.types import EventT, StreamT

from dicomflow.core.cache import series_metadata_key, study_series_key
from dicomflow.streams.app import app
from dicomflow.streams.ingest_yield import TopicEnd, give_way_to_ingest
from dicomflow.streams.progress import (
    instance_key,
    instances_seen,
    record_instance,
    series_progress,
)
from dicomflow.streams.resources import resources
from dicomflow.streams.series_parts import SeriesParts
from dicomflow.streams.state import send_state
from dicomflow.streams.stored_copy import NotTheEventsCopy, StoredCopy, read_and_keep_metadata
from dicomflow.streams.topics import image_topic, log_topic, storage_topic
from dicomflow.tables.extract import read_header
from dicomflow.tables.records import StorageEvent

log = logging.getLogger(__name__)

BATCH_SIZE = 100
BATCH_SECONDS = 0.05  # the longest a lone event waits for others


Reading = StoredCopy | NotTheEventsCopy | OSError | ValueError


def load_header(key: str):  # type: ignore[no-untyped-def]
    with resources().storage.open(key) as fh:
        return read_header(fh)


def read_stored_copies(events: Sequence[StorageEvent]) -> list[Reading]:
    """Each event's stored copy, or why it cannot be indexed."""
    readings: list[Reading] = []
    for event in events:
        try:
            readings.append(read_and_keep_metadata(event))
        except (NotTheEventsCopy, OSError, ValueError) as exc:
            readings.append(exc)
    return readings


series_parts = SeriesParts()


@app.agent(storage_topic)
async def fan_out(stream: StreamT) -> None:
    settings = resources().settings
    storage_end = TopicEnd(settings.kafka_servers, storage_topic.get_topic_name())
    try:
        async for events in stream.take_events(BATCH_SIZE, within=BATCH_SECONDS):
            await give_way_to_ingest(events, storage_end, settings.worker_ingest_yield_seconds)
            readings = await asyncio.to_thread(read_stored_copies, [e.value for e in events])
            await series_parts.keep(
                resources().redis,
                [
                    (event.value, reading.body)
                    for event, reading in zip(events, readings, strict=True)
                    if isinstance(reading, StoredCopy) and reading.body is not None
                ],
            )
            for event, reading in zip(events, readings, strict=True):
                make_current(event)
                await index_event(event, reading)
    finally:
        await storage_end.close()


def make_current(event: EventT) -> None:
    """Make `event` the current event of this task, whose partition a table update's
    changelog record goes to. Faust sets it in the task that fills the batch, not in this
    one, and has no public setter; the stream's own attribute is that task's to set."""
    faust_streams._current_event.set(weakref.ref(event))


async def index_event(event: EventT, reading: Reading) -> None:
    """Send the event's records and update its series' progress."""
    key, storage_event = event.key, event.value
    if isinstance(reading, NotTheEventsCopy):
        # Mostly a copy received and then replaced before this worker read it: the receipt
        # is logged (`dicom_object_meta`); the later copy's own event indexes the file.
        log.info(
            "event %s: %s is another copy (%s)",
            storage_event.trace_id,
            storage_event.file_path,
            reading,
        )
        await log_topic.send(key=key, value=storage_event)
        return
    if not isinstance(reading, StoredCopy):
        log.error(
            "cannot read %s for event %s: %s",
            storage_event.file_path,
            storage_event.trace_id,
            reading,
        )
        return
    await image_topic.send(key=key, value=reading.record)
    await log_topic.send(key=key, value=storage_event)

    seen_key = instance_key(storage_event)
    is_new = instances_seen.get(seen_key) is None
    if is_new:
        instances_seen[seen_key] = storage_event.created_time
    progress, announce = record_instance(series_progress.get(key), storage_event, is_new)
    series_progress[key] = progress
    if announce:
        await forget_cached_metadata(storage_event)
        await send_state(key, reading.header, progress)


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
