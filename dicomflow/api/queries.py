"""The read side: plain SQL on the PostgreSQL index, no HTTP types."""

from typing import NamedTuple

import asyncpg

from dicomflow.core.index import INSTANCE_ORDER, RECEIVED_TIME_TEXT
from dicomflow.core.series_metadata import SeriesInstance

_ORDER = "ORDER BY series_uid, instance_number NULLS LAST, sop_uid"


_INSTANCE_ROW = (
    "SELECT study_uid, series_uid, sop_uid, file_path, transfer_syntax_uid, sop_class_uid,"
    " number_of_frames, file_size FROM dicom_image_meta"
    " WHERE tenant_id = $1 AND study_uid = $2 AND series_uid = $3"
)


async def instance(
    pool: asyncpg.Pool, tenant: str, study_uid: str, series_uid: str, sop_uid: str
) -> asyncpg.Record | None:
    return await pool.fetchrow(
        _INSTANCE_ROW + " AND sop_uid = $4", tenant, study_uid, series_uid, sop_uid
    )


async def series_instance_rows(
    pool: asyncpg.Pool, tenant: str, study_uid: str, series_uid: str
) -> list[asyncpg.Record]:
    """The `instance` row of every instance of the series."""
    return await pool.fetch(_INSTANCE_ROW, tenant, study_uid, series_uid)


async def study_series(pool: asyncpg.Pool, tenant: str, study_uid: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT series_uid FROM dicom_state_meta WHERE tenant_id = $1 AND study_uid = $2"
        " ORDER BY series_number NULLS LAST, series_uid",
        tenant,
        study_uid,
    )
    return [r["series_uid"] for r in rows]


class MetadataSource(NamedTuple):
    """Where a series' metadata comes from: an instance key of the series when its precomputed
    metadata is current (the file sits beside it), else the series' version and instances to
    build it from."""

    precomputed_beside: str | None
    version: str | None
    instances: tuple[SeriesInstance, ...] = ()


# The version: a digest that changes whenever an instance of the series ($1, $2, $3) is
# indexed (new or re-sent); NULL when the series has no instances.
_SERIES_TO_BUILD = (
    "SELECT md5(string_agg(sop_uid || ' ' || indexed_time::text, ',' ORDER BY sop_uid))"
    f" AS version, array_agg(sop_uid ORDER BY {INSTANCE_ORDER}) AS sop_uids,"
    f" array_agg(file_path ORDER BY {INSTANCE_ORDER}) AS keys,"
    f" array_agg({RECEIVED_TIME_TEXT} ORDER BY {INSTANCE_ORDER}) AS received_times"
    " FROM dicom_image_meta WHERE tenant_id = $1 AND study_uid = $2 AND series_uid = $3"
)


async def metadata_source(
    pool: asyncpg.Pool, tenant: str, study_uid: str, series_uid: str
) -> MetadataSource | None:
    """The series' `MetadataSource` in one round trip; None when it has no instances."""
    row = await pool.fetchrow(
        "SELECT fresh.file_path, build.* FROM (SELECT (SELECT i.file_path FROM dicom_json_meta j"
        "   JOIN dicom_state_meta s USING (tenant_id, study_uid, series_uid)"
        "   JOIN LATERAL (SELECT file_path FROM dicom_image_meta i WHERE i.tenant_id = j.tenant_id"
        "     AND i.study_uid = j.study_uid AND i.series_uid = j.series_uid LIMIT 1) i ON true"
        "   WHERE j.tenant_id = $1 AND j.study_uid = $2 AND j.series_uid = $3"
        "   AND j.json_status = 'ok' AND s.series_state = 'stable'"
        "   AND j.flag_time >= s.last_received_time) AS file_path) fresh"
        f" LEFT JOIN LATERAL ({_SERIES_TO_BUILD} AND fresh.file_path IS NULL) build ON true",
        tenant,
        study_uid,
        series_uid,
    )
    if row["file_path"] is not None:
        return MetadataSource(row["file_path"], None)
    return _to_build(row, study_uid, series_uid)


async def series_to_build(
    pool: asyncpg.Pool, tenant: str, study_uid: str, series_uid: str
) -> MetadataSource | None:
    """The series' version and instances, to build its metadata; None when it has none."""
    row = await pool.fetchrow(_SERIES_TO_BUILD, tenant, study_uid, series_uid)
    return _to_build(row, study_uid, series_uid)


def _to_build(row: asyncpg.Record, study_uid: str, series_uid: str) -> MetadataSource | None:
    if row["version"] is None:
        return None
    instances = tuple(
        SeriesInstance(study_uid, series_uid, *instance)
        for instance in zip(row["sop_uids"], row["keys"], row["received_times"], strict=True)
    )
    return MetadataSource(None, row["version"], instances)


async def retrievable_instances(
    pool: asyncpg.Pool,
    tenant: str,
    study_uid: str,
    series_uid: str | None = None,
    *,
    images_only: bool = False,
) -> list[asyncpg.Record]:
    """`sop_uid, file_path, transfer_syntax_uid, number_of_frames` of a study or series' instances.

    In series then instance-number order; `images_only` keeps instances with pixel data (Rows).
    """
    args = [tenant, study_uid] if series_uid is None else [tenant, study_uid, series_uid]
    series_clause = "" if series_uid is None else " AND series_uid = $3"
    images_clause = " AND rows IS NOT NULL" if images_only else ""
    return await pool.fetch(
        "SELECT sop_uid, file_path, transfer_syntax_uid, number_of_frames FROM dicom_image_meta"
        f" WHERE tenant_id = $1 AND study_uid = $2{series_clause}{images_clause} {_ORDER}",
        *args,
    )
