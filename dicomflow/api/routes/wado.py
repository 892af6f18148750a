"""WADO-RS (PS3.18 10.4): metadata, with instances and frames to follow."""

import asyncio

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from dicomflow.api import queries
from dicomflow.api.deps import SeriesUID, State, StudyUID, Tenant
from dicomflow.core.series_metadata import build_series_metadata

DICOM_JSON = "application/dicom+json"

router = APIRouter(tags=["WADO-RS"])


@router.get("/studies/{study}/series/{series}/metadata")
async def series_metadata(
    state: State, tenant: Tenant, study: StudyUID, series: SeriesUID
) -> Response:
    instances = await queries.series_instances(state.pool, tenant, study, series)
    if not instances:
        raise HTTPException(404, f"series {series} of study {study} not found")
    body = await asyncio.to_thread(build_series_metadata, state.storage, tenant, instances)
    return Response(body, media_type=DICOM_JSON)
