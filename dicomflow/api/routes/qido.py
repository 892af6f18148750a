"""QIDO-RS (PS3.18 10.6): search for studies, series and instances in the PostgreSQL index.

Results are a DICOM JSON array (200, `[]` when nothing matches), built with pydicom. Matching
semantics and the errors (400) are described in `dicomflow.api.qido_sql`.
"""

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from dicomflow.api.deps import Series, State, Study, Tenant, public_origin
from dicomflow.api.negotiation import accepts_json
from dicomflow.api.qido_sql import Level, QidoQuery, QueryError, build_select, parse_query
from dicomflow.api.state import ApiState
from dicomflow.core.dicom_json import value_json
from dicomflow.core.urls import DICOMWEB_PREFIX, tenant_base

DICOM_JSON = "application/dicom+json"
_MORE_RESULTS = (
    '"The number of results exceeded the maximum supported by the server.'
    ' Additional results can be requested."'
)

# Up to this many matches are serialized in the event loop (~15 us each), saving the
# worker-thread hop (~0.13 ms); more in a worker thread.
INLINE_RESULTS = 20
SPECIFIC_CHARACTER_SET = "00080005"

router = APIRouter(tags=["QIDO-RS"])


@router.get("/studies")
async def search_studies(request: Request, state: State, tenant: Tenant) -> Response:
    return await _search(request, state, tenant, Level.STUDY)


@router.get("/series")
async def search_series(request: Request, state: State, tenant: Tenant) -> Response:
    return await _search(request, state, tenant, Level.SERIES)


@router.get("/instances")
async def search_instances(request: Request, state: State, tenant: Tenant) -> Response:
    return await _search(request, state, tenant, Level.INSTANCE)


@router.get("/studies/{study}/series")
async def search_study_series(request: Request, ref: Study) -> Response:
    return await _search(request, ref.state, ref.tenant, Level.SERIES, ref.study)


@router.get("/studies/{study}/instances")
async def search_study_instances(request: Request, ref: Study) -> Response:
    return await _search(request, ref.state, ref.tenant, Level.INSTANCE, ref.study)


@router.get("/studies/{study}/series/{series}/instances")
async def search_series_instances(request: Request, ref: Series) -> Response:
    return await _search(request, ref.state, ref.tenant, Level.INSTANCE, ref.study, ref.series)


async def _search(
    request: Request,
    state: ApiState,
    tenant: str,
    level: Level,
    study: str | None = None,
    series: str | None = None,
) -> Response:
    if not accepts_json(request.headers.get("accept")):
        raise HTTPException(406, "QIDO-RS results are only available as application/dicom+json")
    settings = state.settings
    try:
        query = parse_query(
            request.query_params.multi_items(),
            level,
            default_limit=settings.qido_default_limit,
            max_limit=settings.qido_max_limit,
            study_uid=study,
            series_uid=series,
        )
    except QueryError as exc:
        raise HTTPException(400, str(exc)) from exc
    sql, args = build_select(query, tenant)
    rows = await state.search_pool.fetch(sql, *args)
    base = public_origin(request) + (
        tenant_base(tenant) if "tenant" in request.path_params else DICOMWEB_PREFIX
    )
    matches = rows[: query.limit]
    if len(matches) <= INLINE_RESULTS:
        body = _results_json(query, matches, base)
    else:
        body = await asyncio.to_thread(_results_json, query, matches, base)
    headers: dict[str, str] = {}
    if len(rows) > query.limit and query.limited_by_server:
        headers["Warning"] = f"299 {base}: {_MORE_RESULTS}"
    return Response(body, media_type=DICOM_JSON, headers=headers)


def _results_json(query: QidoQuery, rows: Sequence[Mapping[str, Any]], base: str) -> bytes:
    return orjson.dumps([_result(query, row, base) for row in rows])


def _result(query: QidoQuery, row: Mapping[str, Any], base: str) -> dict[str, Any]:
    """One match in the DICOM JSON model: the query's attributes (empty when the index has no
    value), and Specific Character Set when a value is not ASCII."""
    model = {}
    values = []
    for attribute in query.attributes:
        if attribute.keyword == "RetrieveURL":
            value: Any = _retrieve_url(query.level, row, base)
        elif attribute.keyword == "InstanceAvailability":
            value = "ONLINE"
        else:
            value = row[attribute.keyword]
        values.append(value)
        model[f"{attribute.tag:08X}"] = value_json(attribute.vr, value)
    if any(value is not None and not str(value).isascii() for value in values):
        model[SPECIFIC_CHARACTER_SET] = value_json("CS", "ISO_IR 192")
    return dict(sorted(model.items()))


def _retrieve_url(level: Level, row: Mapping[str, Any], base: str) -> str:
    url = f"{base}/studies/{row['StudyInstanceUID']}"
    if level >= Level.SERIES:
        url += f"/series/{row['SeriesInstanceUID']}"
    if level is Level.INSTANCE:
        url += f"/instances/{row['SOPInstanceUID']}"
    return url
