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
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from dicomflow.api.deps import Series, State, Study, Tenant, public_origin
from dicomflow.api.negotiation import accepts_json
from dicomflow.api.qido_sql import Level, QidoQuery, QueryError, build_select, parse_query
from dicomflow.api.state import ApiState
from dicomflow.core.urls import DICOMWEB_PREFIX, tenant_base

DICOM_JSON = "application/dicom+json"
_MORE_RESULTS = (
    '"The number of results exceeded the maximum supported by the server.'
    ' Additional results can be requested."'
)

# A match costs ~0.17 ms to serialize (pydicom's JSON model); up to this many are serialized in
# the event loop, saving the worker-thread hop (~0.13 ms), more in a worker thread.
INLINE_RESULTS = 5

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
    rows = await state.pool.fetch(sql, *args)
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
    return orjson.dumps([_result(query, row, base).to_json_dict() for row in rows])


def _result(query: QidoQuery, row: Mapping[str, Any], base: str) -> Dataset:
    """One match as a data set of the query's attributes (empty when the index has no value)."""
    ds = Dataset()
    for attribute in query.attributes:
        if attribute.keyword == "RetrieveURL":
            value: Any = _retrieve_url(query.level, row, base)
        elif attribute.keyword == "InstanceAvailability":
            value = "ONLINE"
        else:
            value = row[attribute.keyword]
        ds.add(DataElement(attribute.tag, attribute.vr, value))
    if any(e.value is not None and not str(e.value).isascii() for e in ds):
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def _retrieve_url(level: Level, row: Mapping[str, Any], base: str) -> str:
    url = f"{base}/studies/{row['StudyInstanceUID']}"
    if level >= Level.SERIES:
        url += f"/series/{row['SeriesInstanceUID']}"
    if level is Level.INSTANCE:
        url += f"/instances/{row['SOPInstanceUID']}"
    return url
