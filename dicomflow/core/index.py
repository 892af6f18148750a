"""Queries on the instance index that both the API and the stream jobs make."""

import asyncpg

from dicomflow.core.series_metadata import SeriesInstance

INSTANCE_ORDER = "instance_number NULLS LAST, sop_uid"
# As the storage event wrote it (`format_datetime`): the field of the instance's part.
RECEIVED_TIME_TEXT = "to_char(received_time, 'YYYY-MM-DD HH24:MI:SS.US') AS received_time_text"


async def series_instances(
    pool: asyncpg.Pool, tenant: str, study_uid: str, series_uid: str
) -> list[SeriesInstance]:
    """A series' instances, in instance-number order."""
    rows = await pool.fetch(
        f"SELECT study_uid, series_uid, sop_uid, file_path, {RECEIVED_TIME_TEXT}"
        " FROM dicom_image_meta WHERE tenant_id = $1 AND study_uid = $2 AND series_uid = $3"
        f" ORDER BY {INSTANCE_ORDER}",
        tenant,
        study_uid,
        series_uid,
    )
    return [SeriesInstance(*r) for r in rows]


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
