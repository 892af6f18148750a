"""The "webworker" job: when a series becomes stable, write its DICOM JSON metadata.

The file goes to `{json_root}/{tenant}/{date}/{study}/{series}.json` atomically, and the
series' parts file beside it made to hold exactly the series' parts; the outcome is recorded in
`dicom_json_meta`; the Redis entry the API reads is refreshed.
"""

import asyncio
import logging
from collections.abc import Mapping, Sequence

from dicomflow.core.cache import (
    SERIES_METADATA_TTL,
    series_metadata_key,
    series_parts_key,
)
from dicomflow.core.index import series_instances
from dicomflow.core.series_metadata import (
    SeriesInstance,
    instance_objects,
    json_array,
    keep_series_parts,
)
from dicomflow.core.storage import SeriesLocation
from dicomflow.streams.app import app
from dicomflow.streams.progress import series_progress
from dicomflow.streams.resources import Resources, resources
from dicomflow.streams.topics import SeriesSignal, series_stable_topic
from dicomflow.tables.records import StorageEvent

log = logging.getLogger(__name__)

OK = "ok"
FAILED = "failed"
FIRST_RETRY_SECONDS = 0.5


class IncompleteSeries(Exception):
    """The instance index does not hold every instance of the series yet."""


@app.agent(series_stable_topic)
async def write_series_metadata(stream):  # type: ignore[no-untyped-def]
    async for key, signal in stream.items():
        progress = series_progress.get(key)
        if progress is None:
            continue
        await generate_or_retry_later(resources(), progress.last_event, signal)


async def generate_or_retry_later(
    res: Resources, event: StorageEvent, signal: SeriesSignal
) -> None:
    """Generate the series metadata; on failure record it and retry later with backoff.

    A retry is a new signal sent after a delay, so one failing series never holds up the
    others on its partition; after `metadata_retry_limit` retries the series stays failed.
    """
    try:
        await generate(res, event, signal.expected_instances)
    except (IncompleteSeries, OSError, ValueError) as exc:
        log.warning(
            "series metadata for %s failed (attempt %d): %s",
            signal.series_key,
            signal.attempt + 1,
            exc,
        )
        await record_outcome(res, event, FAILED, signal.attempt)
        if signal.attempt < res.settings.metadata_retry_limit:
            delay = FIRST_RETRY_SECONDS * 2**signal.attempt
            retry = signal.derive(attempt=signal.attempt + 1)
            asyncio.get_running_loop().call_later(
                delay,
                lambda: asyncio.ensure_future(
                    series_stable_topic.send(key=signal.series_key, value=retry)
                ),
            )
        return
    await record_outcome(res, event, OK, signal.attempt)


async def generate(res: Resources, event: StorageEvent, expected_instances: int) -> None:
    rows = await series_instances(
        await res.pool(), event.tenant_id, event.study_uid, event.series_uid
    )
    if len(rows) < expected_instances:
        raise IncompleteSeries(f"{len(rows)} of {expected_instances} instances indexed")
    series = (event.tenant_id, event.study_uid, event.series_uid)
    parts: dict[bytes, bytes] = {}
    try:
        parts = await res.redis.hgetall(series_parts_key(*series))
    except Exception as exc:  # Redis is a cache: the parts file is read instead
        log.warning("could not read the parts of %s from Redis: %s", event.series_uid, exc)
    body = await asyncio.to_thread(write_metadata_files, res, event, rows, parts)
    try:
        async with res.redis.pipeline(transaction=False) as pipe:
            pipe.set(series_metadata_key(*series), body, ex=SERIES_METADATA_TTL)
            pipe.delete(series_parts_key(*series))  # only series not stable are built from them
            await pipe.execute()
    except Exception as exc:  # Redis is a cache: the API falls back to the file
        log.warning("could not refresh the Redis entry of %s: %s", event.series_uid, exc)


def write_metadata_files(
    res: Resources,
    event: StorageEvent,
    instances: Sequence[SeriesInstance],
    parts: Mapping[bytes, bytes],
) -> bytes:
    """Build the series' metadata, write it beside the series, and make its parts file hold
    exactly the parts it was built from; return the metadata."""
    objects = instance_objects(res.storage, res.json_storage, event.tenant_id, instances, parts)
    body = json_array(objects)
    location = SeriesLocation.of_instance_key(event.file_path)
    res.json_storage.write_atomic(location.metadata_key, [body])
    keep_series_parts(res.json_storage, instances, objects)
    return body


async def record_outcome(res: Resources, event: StorageEvent, status: str, attempt: int) -> None:
    pool = await res.pool()
    await pool.execute(
        "INSERT INTO dicom_json_meta (tenant_id, study_uid, series_uid, study_uid_hash,"
        " series_uid_hash, study_date_origin, flag_time, created_time, json_status, retry_times)"
        " VALUES ($1, $2, $3, $4, $5, $6, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC',"
        " $7, $8)"
        " ON CONFLICT (tenant_id, study_uid, series_uid) DO UPDATE SET"
        " flag_time = EXCLUDED.flag_time, json_status = EXCLUDED.json_status,"
        " retry_times = EXCLUDED.retry_times, study_date_origin = EXCLUDED.study_date_origin",
        event.tenant_id,
        event.study_uid,
        event.series_uid,
        event.study_uid_hash,
        event.series_uid_hash,
        SeriesLocation.of_instance_key(event.file_path).study_date,
        status,
        attempt,
    )
