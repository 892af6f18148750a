"""Queries on the instance index that both the API and the stream jobs make."""

import asyncpg

InstanceRow = tuple[str, str, str, str]


async def series_instances(
    pool: asyncpg.Pool, tenant: str, study_uid: str, series_uid: str
) -> list[InstanceRow]:
    """`(study, series, sop, storage key)` of a series' instances, in instance-number order."""
    rows = await pool.fetch(
        "SELECT study_uid, series_uid, sop_uid, file_path FROM dicom_image_meta"
        " WHERE tenant_id = $1 AND study_uid = $2 AND series_uid = $3"
        " ORDER BY instance_number NULLS LAST, sop_uid",
        tenant,
        study_uid,
        series_uid,
    )
    return [tuple(r) for r in rows]


# A digest that changes whenever an instance of the series ($1, $2, $3) is indexed (new or
# re-sent); NULL when the series has no instances.
SERIES_VERSION = (
    "SELECT md5(string_agg(sop_uid || ' ' || indexed_time::text, ',' ORDER BY sop_uid))"
    " FROM dicom_image_meta WHERE tenant_id = $1 AND study_uid = $2 AND series_uid = $3"
)


async def series_version(
    pool: asyncpg.Pool, tenant: str, study_uid: str, series_uid: str
) -> str | None:
    """The series' version (`SERIES_VERSION`), None when it has no instances."""
    return await pool.fetchval(SERIES_VERSION, tenant, study_uid, series_uid)


async def count_series_instances(
    pool: asyncpg.Pool, tenant: str, study_uid: str, series_uid: str
) -> int:
    return await pool.fetchval(
        "SELECT count(*) FROM dicom_image_meta"
        " WHERE tenant_id = $1 AND study_uid = $2 AND series_uid = $3",
        tenant,
        study_uid,
        series_uid,
    )
