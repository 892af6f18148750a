"""WADO-RS (PS3.18 10.4): instances, metadata, frames and bulk data; rendered in `rendered`.

Every lookup is by (tenant, UIDs); files are streamed or transcoded one instance at a time.
"""

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

import asyncpg
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from pydicom.uid import ExplicitVRLittleEndian

from dicomflow.api import queries
from dicomflow.api.bulkdata import bulk_value, parse_path
from dicomflow.api.deps import Instance, Series, Study
from dicomflow.api.frame_layouts import FrameLayout, layout_of
from dicomflow.api.frame_locator import HEAD_SIZE, locate_frames
from dicomflow.api.metadata import (
    metadata_response,
    prepare_for_frames,
    series_metadata,
    study_series,
)
from dicomflow.api.multipart import Part
from dicomflow.api.negotiation import Choice, NotAcceptable, choose_frame_media
from dicomflow.api.pixels import PIXEL_DATA, NotFound, StoredPixels
from dicomflow.api.retrieve import (
    WHOLE_BODY_SIZE,
    StoredInstance,
    choose_for_instances,
    frame_parts,
    instance_parts,
    multipart_response,
    open_stored_pixels,
    parse_frame_list,
    parts_in_memory,
    pixel_data_parts,
    read_stored_header,
)
from dicomflow.api.routes.wado_common import (
    Accept,
    http_errors,
    instance_key,
    instance_row,
    parse_or_400,
)
from dicomflow.api.state import ApiState
from dicomflow.api.transcode import as_stored_only, can_transcode
from dicomflow.core.cache import series_metadata_key, study_series_key
from dicomflow.core.series_metadata import SeriesInstance, build_series_metadata, json_array
from dicomflow.core.storage import LocalStorage

INSTANCE = "/studies/{study}/series/{series}/instances/{instance}"

PartsOf = Callable[[StoredPixels, Choice], AsyncIterator[Part]]

router = APIRouter(tags=["WADO-RS"])


@router.get("/studies/{study}/metadata")
async def study_metadata(request: Request, ref: Study) -> Response:
    state, tenant, study = ref.state, ref.tenant, ref.study
    series_uids = await study_series(state, tenant, study)
    every_series = (series_metadata(state, tenant, study, series) for series in series_uids)
    bodies = [body for body in await asyncio.gather(*every_series) if body and body != b"[]"]
    if not bodies:
        raise HTTPException(404, f"study {study} not found")
    for series in series_uids:
        prepare_for_frames(state, tenant, study, series)
    body = json_array(body[1:-1] for body in bodies)
    return await metadata_response(request, state, body, study_series_key(tenant, study))


@router.get("/studies/{study}/series/{series}/metadata")
async def series_metadata_route(request: Request, ref: Series) -> Response:
    body = await series_metadata(ref.state, ref.tenant, ref.study, ref.series)
    if body is None:
        raise HTTPException(404, f"series {ref.series} of study {ref.study} not found")
    prepare_for_frames(ref.state, ref.tenant, ref.study, ref.series)
    key = series_metadata_key(ref.tenant, ref.study, ref.series)
    return await metadata_response(request, ref.state, body, key)


@router.get(INSTANCE + "/metadata")
async def instance_metadata(request: Request, ref: Instance) -> Response:
    row = await instance_row(ref)
    instance = SeriesInstance(
        ref.study, ref.series, ref.instance, row["file_path"], row["received_time_text"]
    )
    body = await asyncio.to_thread(
        build_series_metadata, ref.state.storage, ref.state.json_storage, ref.tenant, [instance]
    )  # its part from the series' parts file, else made from its file; Redis is not read
    return await metadata_response(request, ref.state, body)


@router.get("/studies/{study}")
async def retrieve_study(ref: Study, accept: Accept = None) -> Response:
    rows = await queries.retrievable_instances(ref.state.pool, ref.tenant, ref.study)
    if not rows:
        raise HTTPException(404, f"study {ref.study} not found")
    return await _instances_response(ref.state, rows, accept)


@router.get("/studies/{study}/series/{series}")
async def retrieve_series(ref: Series, accept: Accept = None) -> Response:
    rows = await queries.retrievable_instances(ref.state.pool, ref.tenant, ref.study, ref.series)
    if not rows:
        raise HTTPException(404, f"series {ref.series} of study {ref.study} not found")
    return await _instances_response(ref.state, rows, accept)


@router.get(INSTANCE)
async def retrieve_instance(ref: Instance, accept: Accept = None) -> Response:
    return await _instances_response(ref.state, [await instance_row(ref)], accept)


@router.get(INSTANCE + "/frames/{frames}")
async def retrieve_frames(ref: Instance, frames: str, accept: Accept = None) -> Response:
    numbers = parse_or_400(parse_frame_list, frames)
    key = await instance_key(ref)
    cached = await _cached_frames_response(ref.state, key, numbers, accept)
    if cached is not None:
        return cached

    def parts(pixels: StoredPixels, choice: Choice) -> AsyncIterator[Part]:
        return frame_parts(pixels, [pixels.check_frame(n) for n in numbers], choice)

    return await _pixels_response(ref.state, key, accept, parts)


@router.get(INSTANCE + "/bulkdata/{path:path}")
async def retrieve_bulkdata(ref: Instance, path: str, accept: Accept = None) -> Response:
    steps, tag = parse_or_400(parse_path, path)
    key = await instance_key(ref)
    if not steps and tag == PIXEL_DATA:
        return await _pixels_response(ref.state, key, accept, pixel_data_parts)
    with http_errors():
        ds = await asyncio.to_thread(read_stored_header, ref.state.storage, key)
        value = bulk_value(ds, steps, tag)
        choice = choose_frame_media(accept, ExplicitVRLittleEndian, as_stored_only)
        return await multipart_response(
            parts_in_memory(Part(choice.part_content_type(), value)), choice
        )


async def _cached_frames_response(
    state: ApiState, key: str, numbers: list[int], accept: str | None
) -> Response | None:
    """Frames as stored, read in the event loop when the file's frame layout is remembered (or
    read from its first bytes) and they are in the page cache (no pydicom parse, no thread
    hop); else None."""
    layout = state.frame_layouts.get(key) or _locate_frames(state, key)
    if layout is None:
        return None
    try:
        choice = choose_frame_media(accept, layout.syntax, can_transcode)
        indexes = [layout.index(number) for number in numbers]
    except (NotAcceptable, NotFound):
        return None  # answered from the file as it is now: it may have been replaced
    if choice.transcode:
        return None
    frames = layout.read_if_cached(state.storage, key, indexes, WHOLE_BODY_SIZE)
    if frames is None:
        return None
    parts = (Part(choice.part_content_type(), frame) for frame in frames)
    return await multipart_response(parts_in_memory(*parts), choice)


def _locate_frames(state: ApiState, key: str) -> FrameLayout | None:
    """The layout read from the file's first bytes if the page cache holds them; remembered."""
    cached = state.storage.read_head_if_cached(key, HEAD_SIZE)
    if cached is None:
        return None
    identity, head = cached
    layout = locate_frames(head, identity)
    if layout is not None:
        state.frame_layouts.put(key, layout)
    return layout


async def _instances_response(
    state: ApiState, rows: Sequence[asyncpg.Record], accept: str | None
) -> Response:
    instances = [StoredInstance(row["file_path"], row["transfer_syntax_uid"]) for row in rows]
    with http_errors():
        choices = choose_for_instances(accept, (i.transfer_syntax for i in instances))
        parts = instance_parts(state.storage, instances, choices, accept)
        return await multipart_response(parts, choices[instances[0].transfer_syntax])


def _open_with_layout(storage: LocalStorage, key: str) -> tuple[StoredPixels, FrameLayout | None]:
    """The stored instance open for its pixels, and where its frames lie (blocking)."""
    pixels = open_stored_pixels(storage, key)
    try:
        return pixels, layout_of(pixels)
    except BaseException:
        pixels.fh.close()
        raise


async def _pixels_response(
    state: ApiState, key: str, accept: str | None, parts_of: PartsOf
) -> Response:
    """Negotiate frames or pixel data bulk data against the stored syntax, then stream them."""
    with http_errors():
        pixels, layout = await asyncio.to_thread(_open_with_layout, state.storage, key)
        if layout is not None:
            state.frame_layouts.put(key, layout)
        try:
            choice = choose_frame_media(accept, pixels.syntax, can_transcode)
            return await multipart_response(parts_of(pixels, choice), choice)
        except BaseException:
            pixels.fh.close()
            raise
