"""The read side: plain SQL on the PostgreSQL index, no HTTP types."""

import hashlib
from collections.abc import Sequence
from typing import NamedTuple

import asyncpg

from dicomflow.core.index import INSTANCE_ORDER, RECEIVED_TIME_TEXT
from dicomflow.core.series_metadata import SeriesInstance

_ORDER = "ORDER BY series_uid, instance_number NULLS LAST, sop_uid"


_INSTANCE_ROW = (
    "SELECT study_uid, series_uid, sop_uid, file_path, transfer_syntax_uid, sop_class_uid,"
    f" number_of_frames, file_size, {RECEIVED_TIME_TEXT} FROM dicom_image_meta"
    " WHERE tenant_id = $1 AND study_uid = $2 AND series_uid = $3"
)


async def instance(
    pool: asyncpg.Pool, tenant: str, study_uid: str, series_uid: str, sop_uid: str
) -> asyncpg.Record | None:
    return await pool.fetchrow(
        _INSTANCE_ROW + " AND sop_uid = $4", tenant, study_uid, series_uid, sop_uid
    )


async def series_instance_rows(
    pool: asyncpg.Pool,
    tenant: str,
    study_uid: str,
    series_uid: str,
    sop_uids: Sequence[str] | None = None,
) -> list[asyncpg.Record]:
    """The `instance` row of every instance of the series, or of those of `sop_uids`."""
    if sop_uids is None:
        return await pool.fetch(_INSTANCE_ROW, tenant, study_uid, series_uid)
    return await pool.fetch(
        _INSTANCE_ROW + " AND sop_uid = ANY($4::text[])", tenant, study_uid, series_uid, sop_uids
    )


async def series_files(
    pool: asyncpg.Pool, tenant: str, study_uid: str, series_uid: str
) -> list[tuple[str, int]]:
    """`(file_path, file_size)` of the series' instances, in the order a viewer shows them."""
    rows = await pool.fetch(
        "SELECT file_path, file_size FROM dicom_image_meta"
        f" WHERE tenant_id = $1 AND study_uid = $2 AND series_uid = $3 ORDER BY {INSTANCE_ORDER}",
        tenant,
        study_uid,
        series_uid,
    )
    return [(row["file_path"], row["file_size"]) for row in rows]


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


_INSTANCES_TO_BUILD = (
    f"SELECT sop_uid, file_path, {RECEIVED_TIME_TEXT}, instance_number FROM dicom_image_meta"
    " WHERE tenant_id = $1 AND study_uid = $2 AND series_uid = $3"
)


async def metadata_source(
    pool: asyncpg.Pool, tenant: str, study_uid: str, series_uid: str
) -> MetadataSource | None:
    """The series' `MetadataSource` in one round trip; None when it has no instances."""
    rows = await pool.fetch(
        "SELECT fresh.file_path AS precomputed_beside, i.* FROM (SELECT (SELECT i.file_path"
        "   FROM dicom_json_meta j JOIN dicom_state_meta s USING (tenant_id, study_uid, series_uid)"
        "   JOIN LATERAL (SELECT file_path FROM dicom_image_meta i WHERE i.tenant_id = j.tenant_id"
        "     AND i.study_uid = j.study_uid AND i.series_uid = j.series_uid LIMIT 1) i ON true"
        "   WHERE j.tenant_id = $1 AND j.study_uid = $2 AND j.series_uid = $3"
        "   AND j.json_status = 'ok' AND s.series_state = 'stable'"
        "   AND j.flag_time >= s.last_received_time) AS file_path) fresh"
        f" LEFT JOIN LATERAL ({_INSTANCES_TO_BUILD} AND fresh.file_path IS NULL) i ON true"
        f" ORDER BY {INSTANCE_ORDER}",
        tenant,
        study_uid,
        series_uid,
    )
    if rows[0]["precomputed_beside"] is not None:
        return MetadataSource(rows[0]["precomputed_beside"], None)
    if rows[0]["sop_uid"] is None:
        return None
    return _to_build(rows, study_uid, series_uid)


async def series_to_build(
    pool: asyncpg.Pool, tenant: str, study_uid: str, series_uid: str
) -> MetadataSource | None:
    """The series' version and instances, to build its metadata; None when it has none."""
    rows = await pool.fetch(
        f"{_INSTANCES_TO_BUILD} ORDER BY {INSTANCE_ORDER}", tenant, study_uid, series_uid
    )
    return _to_build(rows, study_uid, series_uid) if rows else None


def _to_build(rows: list[asyncpg.Record], study_uid: str, series_uid: str) -> MetadataSource:
    """The instances of `_INSTANCES_TO_BUILD` rows and their version: a digest that changes
    whenever an instance is added or replaced by a copy received later."""
    instances = tuple(
        SeriesInstance(
            study_uid, series_uid, row["sop_uid"], row["file_path"], row["received_time_text"]
        )
        for row in rows
    )
    received = sorted(f"{row.sop_uid} {row.received_time}" for row in instances)
    version = hashlib.md5("\n".join(received).encode(), usedforsecurity=False).hexdigest()
    return MetadataSource(None, version, instances)


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
