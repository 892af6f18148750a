"""STOW-RS (PS3.18 10.5): `POST /studies[/{study}]` with multipart/related PS3.10 instances.

The body is read as a stream; each part is spooled, then stored (`dicomflow.api.stow`). The
reply is the Store Instances Response Module as application/dicom+json: 200 all stored, 202
some, 409 none; 400 for a malformed body, 413 for a body over the limit, 415 for other media.
When the body breaks off (malformed, over the limit) after some parts were stored, the reply
is 202 with one more failed item (no UIDs) for the rest.
"""

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator

import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from dicomflow.api.deps import State, Study, Tenant, public_origin
from dicomflow.api.multipart import (
    MultipartError,
    is_valid_boundary,
    iter_parts,
    parse_content_type,
)
from dicomflow.api.state import ApiState
from dicomflow.api.stow import DICOM, Outcome, StowTransaction
from dicomflow.api.stow_response import http_status, response_module
from dicomflow.core.urls import DICOMWEB_PREFIX, tenant_base
from dicomflow.ingest.store import CANNOT_UNDERSTAND, OUT_OF_RESOURCES, Origin

log = logging.getLogger(__name__)

DICOM_JSON = "application/dicom+json"
MULTIPART_RELATED = "multipart/related"

router = APIRouter(tags=["STOW-RS"])


class BodyTooLarge(Exception):
    """The request body exceeds `stow_max_body_bytes`."""


@router.post("/studies")
async def store_instances(request: Request, state: State, tenant: Tenant) -> Response:
    return await _store(request, state, tenant, None)


@router.post("/studies/{study}")
async def store_study_instances(request: Request, ref: Study) -> Response:
    return await _store(request, ref.state, ref.tenant, ref.study)


async def _store(request: Request, state: ApiState, tenant: str, study: str | None) -> Response:
    boundary = _boundary(request.headers.get("content-type"))
    limit = state.settings.stow_max_body_bytes
    if _content_length(request) > limit:
        raise HTTPException(413, f"the request body is larger than {limit} bytes")
    client = request.client.host if request.client else None
    origin = Origin(tenant=tenant, via="stow", source_ip=client)
    transaction = StowTransaction(state.instances, origin, state.settings, study)
    try:
        await iter_parts(_limited(request.stream(), limit), boundary, transaction.open_part)
    except ClientDisconnect:
        log.info("STOW-RS client %s went away after %d parts", client, len(transaction.outcomes))
        return Response(status_code=400)  # never delivered
    except MultipartError as exc:
        _break_off(transaction, 400, CANNOT_UNDERSTAND, f"malformed multipart body: {exc}")
    except BodyTooLarge as exc:
        _break_off(transaction, 413, OUT_OF_RESOURCES, str(exc))
    if not transaction.outcomes:
        raise HTTPException(400, "the request body has no part")
    base = public_origin(request) + (
        tenant_base(tenant) if "tenant" in request.path_params else DICOMWEB_PREFIX
    )
    body = await asyncio.to_thread(_response_json, transaction.outcomes, base)
    return Response(body, status_code=http_status(transaction.outcomes), media_type=DICOM_JSON)


def _boundary(content_type: str | None) -> str:
    """The boundary of a multipart/related body of PS3.10 instances; 415 or 400 otherwise."""
    try:
        media_type, params = parse_content_type(content_type or "")
    except MultipartError as exc:
        raise HTTPException(415, f"unsupported Content-Type: {exc}") from exc
    if media_type != MULTIPART_RELATED:
        raise HTTPException(415, f'STOW-RS takes {MULTIPART_RELATED}; type="{DICOM}"')
    part_type = params.get("type", DICOM).lower()
    if part_type != DICOM:
        raise HTTPException(
            415,
            f"only {DICOM} parts (PS3.10 instances) are supported, not {part_type}"
            " (metadata and bulk data)",
        )
    boundary = params.get("boundary")
    if boundary is None or not is_valid_boundary(boundary):
        raise HTTPException(400, f"missing or invalid multipart boundary: {boundary!r}")
    return boundary


def _content_length(request: Request) -> int:
    try:
        return int(request.headers.get("content-length", "0"))
    except ValueError as exc:
        raise HTTPException(400, "invalid Content-Length") from exc


async def _limited(chunks: AsyncIterable[bytes], limit: int) -> AsyncIterator[bytes]:
    """The body chunks; BodyTooLarge once more than `limit` bytes have come."""
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > limit:
            raise BodyTooLarge(f"the request body is larger than {limit} bytes")
        yield chunk


def _break_off(transaction: StowTransaction, status: int, failure: int, reason: str) -> None:
    """The body ended early: the HTTP error when nothing was stored, else one failed item."""
    if not transaction.stored:
        raise HTTPException(status, reason)
    transaction.outcomes.append(transaction.reject(Outcome(), failure, "body_broken", reason))


def _response_json(outcomes: list[Outcome], base: str) -> bytes:
    return orjson.dumps(response_module(outcomes, base).to_json_dict())
