"""The read side: plain SQL on the PostgreSQL index, no HTTP types."""

from dataclasses import dataclass

import asyncpg

from dicomflow.core.index import INSTANCE_ORDER, VERSION_OF_ROWS, InstanceRow

_ORDER = "ORDER BY series_uid, instance_number NULLS LAST, sop_uid"


async def instance(
    pool: asyncpg.Pool, tenant: str, study_uid: str, series_uid: str, sop_uid: str
) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT study_uid, series_uid, sop_uid, file_path, transfer_syntax_uid, sop_class_uid,"
        " number_of_frames, file_size FROM dicom_image_meta"
        " WHERE tenant_id = $1 AND study_uid = $2 AND series_uid = $3 AND sop_uid = $4",
        tenant,
        study_uid,
        series_uid,
        sop_uid,
    )


async def study_series(pool: asyncpg.Pool, tenant: str, study_uid: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT series_uid FROM dicom_state_meta WHERE tenant_id = $1 AND study_uid = $2"
        " ORDER BY series_number NULLS LAST, series_uid",
        tenant,
        study_uid,
    )
    return [r["series_uid"] for r in rows]


@dataclass(frozen=True)
class MetadataSource:
    """Where a series' metadata comes from (`metadata_source`)."""

    file_key: str | None  # an instance key of the series when its precomputed file is current
    version: str | None  # else the series' version; None when it has no instances
    instances: list[InstanceRow] | None  # and its instances, unless at `known_version`


async def metadata_source(
    pool: asyncpg.Pool,
    tenant: str,
    study_uid: str,
    series_uid: str,
    known_version: str | None = None,
) -> MetadataSource:
    """Where a series' metadata comes from, in one round trip (one snapshot, so the instances
    are exactly those of the version): the precomputed file when it is current, else the
    series' version and, unless it is `known_version` (the version of a build kept in Redis),
    its instances in metadata order."""
    row = await pool.fetchrow(
        "WITH fresh AS (SELECT i.file_path FROM dicom_json_meta j"
        "   JOIN dicom_state_meta s USING (tenant_id, study_uid, series_uid)"
        "   JOIN LATERAL (SELECT file_path FROM dicom_image_meta i WHERE i.tenant_id = j.tenant_id"
        "     AND i.study_uid = j.study_uid AND i.series_uid = j.series_uid LIMIT 1) i ON true"
        "   WHERE j.tenant_id = $1 AND j.study_uid = $2 AND j.series_uid = $3"
        "   AND j.json_status = 'ok' AND s.series_state = 'stable'"
        "   AND j.flag_time >= s.last_received_time),"
        f" series AS (SELECT {VERSION_OF_ROWS} AS version,"
        f"   array_agg(sop_uid ORDER BY {INSTANCE_ORDER}) AS sops,"
        f"   array_agg(file_path ORDER BY {INSTANCE_ORDER}) AS keys"
        "   FROM dicom_image_meta WHERE tenant_id = $1 AND study_uid = $2 AND series_uid = $3"
        "   AND NOT EXISTS (SELECT FROM fresh))"
        " SELECT (SELECT file_path FROM fresh), series.version,"
        " CASE WHEN series.version IS DISTINCT FROM $4::text THEN series.sops END AS sops,"
        " CASE WHEN series.version IS DISTINCT FROM $4::text THEN series.keys END AS keys"
        " FROM series",
        tenant,
        study_uid,
        series_uid,
        known_version,
    )
    instances = None
    if row["sops"] is not None:
        instances = [
            (study_uid, series_uid, sop, key)
            for sop, key in zip(row["sops"], row["keys"], strict=True)
        ]
    return MetadataSource(row["file_path"], row["version"], instances)


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
