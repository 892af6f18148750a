"""WADO-RS rendered and thumbnail resources (PS3.18 10.4.1.1.3, 10.4.1.1.4).

A study or series is represented by the middle frame of its middle image instance; an instance
by its first frame. A thumbnail is the rendered image fitted to 128x128 unless `viewport` says.
"""

import asyncio
from collections.abc import Sequence
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from dicomflow.api import queries
from dicomflow.api.deps import Instance, Series, Study
from dicomflow.api.rendering import THUMBNAIL_VIEWPORT, RenderOptions, parse_options, render
from dicomflow.api.retrieve import open_stored_pixels
from dicomflow.api.routes.wado_common import Accept, http_errors, instance_key, parse_or_400
from dicomflow.api.state import ApiState
from dicomflow.core.storage import LocalStorage

STUDY = "/studies/{study}"
SERIES = STUDY + "/series/{series}"
INSTANCE = SERIES + "/instances/{instance}"
FRAME = INSTANCE + "/frames/{frame}"

router = APIRouter(tags=["WADO-RS rendered"])


async def render_options(
    request: Request,
    accept: Accept = None,
    window: str | None = None,
    viewport: str | None = None,
    quality: str | None = None,
) -> RenderOptions:
    """Options from Accept and the query; a thumbnail defaults to a 128x128 viewport."""
    thumbnail = request.url.path.endswith("/thumbnail")
    with http_errors():
        try:
            return parse_options(
                accept, window, viewport, quality, THUMBNAIL_VIEWPORT if thumbnail else None
            )
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc


Options = Annotated[RenderOptions, Depends(render_options)]


@router.get(STUDY + "/rendered")
@router.get(STUDY + "/thumbnail")
async def study_rendered(ref: Study, options: Options) -> Response:
    rows = await queries.retrievable_instances(
        ref.state.pool, ref.tenant, ref.study, images_only=True
    )
    return await _representative(ref.state, rows, options, f"study {ref.study}")


@router.get(SERIES + "/rendered")
@router.get(SERIES + "/thumbnail")
async def series_rendered(ref: Series, options: Options) -> Response:
    rows = await queries.retrievable_instances(
        ref.state.pool, ref.tenant, ref.study, ref.series, images_only=True
    )
    return await _representative(ref.state, rows, options, f"series {ref.series}")


@router.get(INSTANCE + "/rendered")
@router.get(INSTANCE + "/thumbnail")
async def instance_rendered(ref: Instance, options: Options) -> Response:
    return await _rendered(ref.state.storage, await instance_key(ref), 1, options)


@router.get(FRAME + "/rendered")
@router.get(FRAME + "/thumbnail")
async def frame_rendered(ref: Instance, frame: str, options: Options) -> Response:
    number = parse_or_400(_frame_number, frame)
    return await _rendered(ref.state.storage, await instance_key(ref), number, options)


async def _representative(
    state: ApiState, rows: Sequence[asyncpg.Record], options: RenderOptions, what: str
) -> Response:
    if not rows:
        raise HTTPException(404, f"{what} has no image instances")
    middle = rows[len(rows) // 2]
    frame = (middle["number_of_frames"] or 1) // 2 + 1
    return await _rendered(state.storage, middle["file_path"], frame, options)


async def _rendered(
    storage: LocalStorage, key: str, frame: int, options: RenderOptions
) -> Response:
    with http_errors():
        pixels = await asyncio.to_thread(open_stored_pixels, storage, key)
        with pixels.fh:
            index = pixels.check_frame(frame)
            body = await asyncio.to_thread(render, pixels, index, options)
    return Response(body, media_type=options.media_type)


def _frame_number(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or text[0] == "0" or len(text) > 9:
        raise ValueError(f"one frame number from 1 is rendered at a time, not {text!r}")
    return int(text)
