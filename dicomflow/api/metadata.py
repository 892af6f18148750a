"""Series metadata for WADO-RS: Redis first, then the precomputed file, else built on demand."""

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import orjson
from fastapi import HTTPException, Request
from fastapi.responses import Response

from dicomflow.api import queries
from dicomflow.api.compression import MIN_GZIP_SIZE, accepts_gzip
from dicomflow.api.deps import public_origin
from dicomflow.api.drafts import Draft, SeriesKey
from dicomflow.api.index_changes import SERIES_CHANNEL
from dicomflow.api.negotiation import accepts_json
from dicomflow.api.state import ApiState
from dicomflow.core.cache import (
    SERIES_METADATA_TTL,
    STUDY_SERIES_TTL,
    keep_parts,
    series_metadata_key,
    series_parts_key,
    study_series_key,
)
from dicomflow.core.series_metadata import (
    SeriesInstance,
    instance_objects,
    json_array,
    part_field,
    parts_file_key,
    series_parts_in,
)
from dicomflow.core.storage import LocalStorage, SeriesLocation

log = logging.getLogger(__name__)

DICOM_JSON = "application/dicom+json"
INLINE_READ_LIMIT = 2 << 20  # a 500-instance CT series' metadata is 1.8 MB
_RELATIVE_BULK_DATA_URI = b'"BulkDataURI":"/'


async def metadata_response(
    request: Request, state: ApiState, body: bytes, key: str | None = None
) -> Response:
    """DICOM JSON with every BulkDataURI made absolute for this request's origin.

    Stored metadata holds server-relative URIs (one copy serves every host name); clients
    such as dicomweb-client need absolute ones. With `key`, the body as served (URIs made
    absolute, and gzipped for a client that takes it) is kept in memory under that key and the
    origin while the body is unchanged (other bodies are left to the gzip middleware, which
    also adds `Vary`).
    """
    if not accepts_json(", ".join(request.headers.getlist("accept")) or None):
        raise HTTPException(406, "metadata is only available as application/dicom+json")
    origin = public_origin(request)
    absolute_uri = b'"BulkDataURI":"' + origin.encode() + b"/"

    def with_absolute_uris(stored: bytes) -> bytes:
        return stored.replace(_RELATIVE_BULK_DATA_URI, absolute_uri)

    if key is None:
        return Response(with_absolute_uris(body), media_type=DICOM_JSON)
    served = await state.metadata_bodies.derive(f"{key}|{origin}", body, with_absolute_uris)
    headers = {}
    if len(served) >= MIN_GZIP_SIZE and accepts_gzip(request.headers.get("accept-encoding")):
        served = await state.metadata_bodies.gzip(f"{key}|{origin}|gzip", served)
        headers = {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
    return Response(served, media_type=DICOM_JSON, headers=headers)


def prepare_for_frames(state: ApiState, tenant: str, study_uid: str, series_uid: str) -> None:
    """After the answer, as a viewer asks for every instance's frames next: read the series'
    instance rows into memory and its files into the page cache, if they may not be there."""
    if state.row_prefetch.needed(tenant, study_uid, series_uid):
        state.in_background(state.row_prefetch.run(tenant, study_uid, series_uid))
    if state.readahead.due(tenant, study_uid, series_uid):
        state.in_background(state.readahead.run(tenant, study_uid, series_uid))


async def study_series(state: ApiState, tenant: str, study_uid: str) -> list[str]:
    """The study's series UIDs: Redis first (the stream job drops the entry on any change)."""
    key = study_series_key(tenant, study_uid)
    cached = await _cache_get(state, key)
    if cached is not None:
        return orjson.loads(cached)
    series = await queries.study_series(state.pool, tenant, study_uid)
    if series:
        state.in_background(_cache_set(state, key, orjson.dumps(series), STUDY_SERIES_TTL))
    return series


async def series_metadata(
    state: ApiState, tenant: str, study_uid: str, series_uid: str
) -> bytes | None:
    """The series' DICOM JSON array as bytes, or None when the series is unknown.

    Where it comes from (the precomputed file of a stable series, or the version and instances
    of one not stable yet) is kept in memory while PostgreSQL notifies the series' changes
    (`state.series_sources`); when it is not, the stable series' Redis entry is looked at first,
    which may save reading it."""
    warm_key = series_metadata_key(tenant, study_uid, series_uid)
    warm_looked_up = not state.series_sources.holds(tenant, study_uid, series_uid)
    if warm_looked_up and (warm := await _cache_get(state, warm_key)) is not None:
        return warm
    source = await state.series_sources.get(tenant, study_uid, series_uid)
    if source is None:
        return None
    if source.precomputed_beside is not None:
        if not warm_looked_up and (warm := await _cache_get(state, warm_key)) is not None:
            return warm
        metadata_key = SeriesLocation.of_instance_key(source.precomputed_beside).metadata_key
        try:
            body = await _read_file(state.json_storage, metadata_key)
        except OSError as exc:
            log.warning("precomputed metadata %s unreadable (%s); building it", metadata_key, exc)
            source = await queries.series_to_build(state.pool, tenant, study_uid, series_uid)
        else:
            state.in_background(_cache_set(state, warm_key, body, SERIES_METADATA_TTL))
            return body
    return await draft_series_metadata(state, tenant, study_uid, series_uid, source)


async def draft_series_metadata(
    state: ApiState,
    tenant: str,
    study_uid: str,
    series_uid: str,
    source: queries.MetadataSource | None,
) -> bytes | None:
    """Metadata of a series not stable yet, at the version of `source` (None: the series has
    no instances): from memory when this process built it at that version, else built (see
    `_build_draft`); concurrent requests share one build."""
    if source is None or source.version is None:
        return None
    series = (tenant, study_uid, series_uid)
    last = state.drafts.get(series)
    if last is not None and last.version == source.version:
        return last.body
    version, instances = source.version, source.instances
    return await state.draft_builds.run(
        (series, version), lambda: _build_draft(state, series, version, instances)
    )


def build_drafts_on_change(state: ApiState) -> None:
    """When a series whose draft this process holds changes, build the new version's draft in
    the background: a viewer polling a series being received finds it in memory. Subscribed
    after `state.series_sources`, which reads the series' new version on the same notification."""

    def on_change(payload: str) -> None:
        match payload.split("|"):
            case [tenant, study_uid, series_uid] if (tenant, study_uid, series_uid) in state.drafts:
                state.in_background(_build_new_draft(state, (tenant, study_uid, series_uid)))

    state.index_changes.subscribe(SERIES_CHANNEL, on_change, lambda: None)


async def _build_new_draft(state: ApiState, series: SeriesKey) -> None:
    try:
        source = await state.series_sources.get(*series)
        await draft_series_metadata(state, *series, source)
    except Exception as exc:  # the next request builds it
        log.warning("could not build the metadata of changed series %s: %s", series[2], exc)


async def _build_draft(
    state: ApiState, series: SeriesKey, version: str, instances: tuple[SeriesInstance, ...]
) -> bytes:
    """Each instance's part from the series' last draft in memory, else from its parts in
    Redis (one read of the parts memory lacks), else from the series' parts file (read in the
    event loop when the page cache holds it), else from its DICOM file (in a worker thread);
    the parts Redis lacked are put back (another process, or a restart, joins them). Kept in
    memory as the series' last draft."""
    fields = [part_field(instance.sop_uid, instance.received_time) for instance in instances]
    last = state.drafts.get(series)
    found = dict(last.parts) if last is not None else {}
    wanted = [field for field in fields if field not in found]
    parts_key = series_parts_key(*series)
    if wanted:
        with _redis_is_a_cache():
            values = await state.redis.hmget(parts_key, wanted)
            found.update(
                (field, part)
                for field, part in zip(wanted, values, strict=True)
                if part is not None
            )
    lacking = [field for field in fields if field not in found]
    if lacking:
        in_file = _kept_parts_if_cached(state.json_storage, instances[0].key, lacking)
        found = {**in_file, **found}
        if any(field not in found for field in lacking):
            objects = await asyncio.to_thread(
                instance_objects, state.storage, state.json_storage, series[0], instances, found
            )
            found.update(zip(fields, objects, strict=True))
        state.in_background(
            _keep_parts(state, parts_key, {field: found[field] for field in lacking})
        )
    parts = {field: found[field] for field in fields}
    body = json_array(parts.values())
    state.drafts.put(series, Draft(version, body, parts))
    return body


def _kept_parts_if_cached(
    json_storage: LocalStorage, instance_key: str, fields: list[bytes]
) -> dict[bytes, bytes]:
    """The parts of `fields` in the series' parts file if the page cache holds all of it (no
    wait for the disk, no thread hop), else none."""
    try:
        data = json_storage.read_if_cached(parts_file_key(instance_key), INLINE_READ_LIMIT)
    except FileNotFoundError:
        return {}
    return {} if data is None else series_parts_in(bytes(data), fields)


async def _read_file(storage: LocalStorage, key: str) -> bytes:
    """A file's bytes: at once when it is all in the page cache (a few hundred microseconds
    at most), else from a worker thread."""
    cached = storage.read_if_cached(key, INLINE_READ_LIMIT)
    if cached is not None:
        return bytes(cached)
    return await asyncio.to_thread(storage.read_bytes, key)


async def _cache_get(state: ApiState, key: str) -> bytes | None:
    with _redis_is_a_cache():
        return await state.redis.get(key)
    return None


async def _cache_set(state: ApiState, key: str, body: bytes, ttl: int) -> None:
    with _redis_is_a_cache():
        await state.redis.set(key, body, ex=ttl)


async def _keep_parts(state: ApiState, parts_key: str, parts: dict[bytes, bytes]) -> None:
    with _redis_is_a_cache():
        await keep_parts(state.redis, {parts_key: parts})


@contextlib.contextmanager
def _redis_is_a_cache() -> Iterator[None]:
    """Log Redis errors instead of raising them: without Redis, answers come from PostgreSQL
    and files."""
    try:
        yield
    except Exception as exc:
        log.warning("Redis unavailable: %s", exc)
