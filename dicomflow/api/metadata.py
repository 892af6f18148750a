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
from dicomflow.api.negotiation import accepts_json
from dicomflow.api.state import ApiState
from dicomflow.core.cache import (
    DRAFT_METADATA_TTL,
    SERIES_METADATA_TTL,
    STUDY_SERIES_TTL,
    keep_parts,
    series_draft_key,
    series_metadata_key,
    series_parts_key,
    study_series_key,
)
from dicomflow.core.series_metadata import (
    SeriesInstance,
    instance_objects,
    join_parts,
    json_array,
    parse_series_parts,
    part_field,
    parts_file_key,
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


def prefetch_instance_rows(state: ApiState, tenant: str, study_uid: str, series_uid: str) -> None:
    """After the answer, read the series' instance rows into memory if they may not be there:
    a viewer asks for every instance's frames next."""
    if state.row_prefetch.needed(tenant, study_uid, series_uid):
        state.in_background(state.row_prefetch.run(tenant, study_uid, series_uid))


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

    One Redis round trip reads both the stable series' metadata and the draft of one not stable
    yet; where it comes from otherwise (and the draft's version) is kept in memory while
    PostgreSQL notifies the series' changes (`state.series_sources`)."""
    warm_key = series_metadata_key(tenant, study_uid, series_uid)
    draft_key = series_draft_key(tenant, study_uid, series_uid)
    warm = draft = None
    with _redis_is_a_cache():
        warm, draft = await state.redis.mget(warm_key, draft_key)
    if warm is not None:
        if draft is not None:  # built while the series became stable: no longer needed
            state.in_background(_cache_delete(state, draft_key))
        return warm
    source = await state.series_sources.get(tenant, study_uid, series_uid)
    if source is None:
        return None
    if source.precomputed_beside is not None:
        metadata_key = SeriesLocation.of_instance_key(source.precomputed_beside).metadata_key
        try:
            body = await _read_file(state.json_storage, metadata_key)
        except OSError as exc:
            log.warning("precomputed metadata %s unreadable (%s); building it", metadata_key, exc)
            source = await queries.series_to_build(state.pool, tenant, study_uid, series_uid)
        else:
            state.in_background(_keep_warm(state, warm_key, draft_key, body))
            return body
    return await draft_series_metadata(state, tenant, study_uid, series_uid, source, draft)


async def draft_series_metadata(
    state: ApiState,
    tenant: str,
    study_uid: str,
    series_uid: str,
    source: queries.MetadataSource | None,
    draft: bytes | None,
) -> bytes | None:
    """Metadata of a series not stable yet, at the version of `source` (None: the series has
    no instances): `draft`, its entry in Redis (version, space, body), when it is at that
    version; else joined from the series' parts in Redis (one read) when they hold every
    instance, else built with the files; concurrent requests share one build."""
    if source is None or source.version is None:
        return None
    version, instances = source.version, source.instances
    if draft is not None:
        draft_version, _, body = draft.partition(b" ")
        if draft_version == version.encode():
            return body
    draft_key = series_draft_key(tenant, study_uid, series_uid)
    parts_key = series_parts_key(tenant, study_uid, series_uid)
    return await state.draft_builds.run(
        (draft_key, version),
        lambda: _build_draft(state, tenant, draft_key, parts_key, version, instances),
    )


async def _build_draft(
    state: ApiState,
    tenant: str,
    draft_key: str,
    parts_key: str,
    version: str,
    instances: tuple[SeriesInstance, ...],
) -> bytes:
    """Joined from the series' parts in Redis when they hold every instance, else with the
    series' parts file (read in the event loop when the page cache holds it) and, for parts
    missing there too, the DICOM files (in a worker thread); the parts Redis lacked are put back
    (the next version is joined again). Kept in Redis as the draft after the answer."""
    parts: dict[bytes, bytes] = {}
    with _redis_is_a_cache():
        parts = await state.redis.hgetall(parts_key)
    body = join_parts(instances, parts)
    if body is None:
        found = {**_kept_parts_if_cached(state.json_storage, instances[0].key), **parts}
        fields = [part_field(instance.sop_uid, instance.received_time) for instance in instances]
        objects = [found[field] for field in fields if field in found]
        if len(objects) < len(fields):
            objects = await asyncio.to_thread(
                instance_objects, state.storage, state.json_storage, tenant, instances, found
            )
        body = json_array(objects)
        lacking = {
            field: made for field, made in zip(fields, objects, strict=True) if field not in parts
        }
        state.in_background(_keep_parts(state, parts_key, lacking))
    state.in_background(_keep_draft(state, draft_key, version, body))
    return body


def _kept_parts_if_cached(json_storage: LocalStorage, instance_key: str) -> dict[bytes, bytes]:
    """The parts in the series' parts file if the page cache holds all of it (no wait for the
    disk, no thread hop), else none."""
    try:
        data = json_storage.read_if_cached(parts_file_key(instance_key), INLINE_READ_LIMIT)
    except FileNotFoundError:
        return {}
    return {} if data is None else parse_series_parts(bytes(data))


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


async def _cache_delete(state: ApiState, key: str) -> None:
    with _redis_is_a_cache():
        await state.redis.delete(key)


async def _keep_draft(state: ApiState, draft_key: str, version: str, body: bytes) -> None:
    """The series' metadata at `version`, read with the stable entry by the next request."""
    await _cache_set(state, draft_key, version.encode() + b" " + body, DRAFT_METADATA_TTL)


async def _keep_parts(state: ApiState, parts_key: str, parts: dict[bytes, bytes]) -> None:
    with _redis_is_a_cache():
        await keep_parts(state.redis, {parts_key: parts})


async def _keep_warm(state: ApiState, warm_key: str, draft_key: str, body: bytes) -> None:
    """The stable series' metadata into Redis, and its draft out (each request reads both)."""
    with _redis_is_a_cache():
        async with state.redis.pipeline(transaction=False) as pipe:
            pipe.set(warm_key, body, ex=SERIES_METADATA_TTL)
            pipe.delete(draft_key)
            await pipe.execute()


@contextlib.contextmanager
def _redis_is_a_cache() -> Iterator[None]:
    """Log Redis errors instead of raising them: without Redis, answers come from PostgreSQL
    and files."""
    try:
        yield
    except Exception as exc:
        log.warning("Redis unavailable: %s", exc)
