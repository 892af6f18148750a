"""WADO-RS (PS3.18 10.4): metadata of studies, series and instances."""

import asyncio

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from dicomflow.api import queries
from dicomflow.api.deps import InstanceUID, SeriesUID, State, StudyUID, Tenant
from dicomflow.api.metadata import series_metadata
from dicomflow.core.series_metadata import build_series_metadata

DICOM_JSON = "application/dicom+json"

router = APIRouter(tags=["WADO-RS"])


@router.get("/studies/{study}/metadata")
async def study_metadata(state: State, tenant: Tenant, study: StudyUID) -> Response:
    series_uids = await queries.study_series(state.pool, tenant, study)
    bodies = [await series_metadata(state, tenant, study, series) for series in series_uids]
    bodies = [body for body in bodies if body and body != b"[]"]
    if not bodies:
        raise HTTPException(404, f"study {study} not found")
    return Response(b"[" + b",".join(body[1:-1] for body in bodies) + b"]", media_type=DICOM_JSON)


@router.get("/studies/{study}/series/{series}/metadata")
async def series_metadata_route(
    state: State, tenant: Tenant, study: StudyUID, series: SeriesUID
) -> Response:
    body = await series_metadata(state, tenant, study, series)
    if body is None:
        raise HTTPException(404, f"series {series} of study {study} not found")
    return Response(body, media_type=DICOM_JSON)


@router.get("/studies/{study}/series/{series}/instances/{instance}/metadata")
async def instance_metadata(
    state: State, tenant: Tenant, study: StudyUID, series: SeriesUID, instance: InstanceUID
) -> Response:
    row = await queries.instance(state.pool, tenant, study, series, instance)
    if row is None:
        raise HTTPException(404, f"instance {instance} not found")
    body = await asyncio.to_thread(
        build_series_metadata, state.storage, tenant, [(study, series, instance, row["file_path"])]
    )
    return Response(body, media_type=DICOM_JSON)
