-- Series whose instance count changed after they had become stable.
--
-- A series becomes stable when no new instance arrived for DICOMFLOW_SERIES_STABLE_SECONDS
-- (10 by default: the INTERVAL below; change both together). A new SOP instance received
-- that long or longer after the series' previous new instance changed a stable series (its
-- metadata was written again). Re-sent instances do not count: each SOP instance counts at
-- its first reception. For each such series: when it first changed, its instances before
-- that change and now, and how many times it changed.
-- Runs unchanged on Doris 2.x, MariaDB 10.6+ and MySQL 8.0+.
WITH first_receptions AS (
    SELECT tenant_id, study_uid, series_uid, sop_uid, MIN(created_time) AS received_time
    FROM dicom_object_meta
    GROUP BY tenant_id, study_uid, series_uid, sop_uid
),
with_previous AS (
    SELECT
        tenant_id,
        study_uid,
        series_uid,
        received_time,
        MAX(received_time) OVER (
            PARTITION BY tenant_id, study_uid, series_uid
            ORDER BY received_time
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
        ) AS previous_time
    FROM first_receptions
),
changes AS (
    SELECT
        tenant_id,
        study_uid,
        series_uid,
        MIN(received_time) AS first_changed_time,
        COUNT(*) AS times_changed
    FROM with_previous
    WHERE received_time >= DATE_ADD(previous_time, INTERVAL 10 SECOND)
    GROUP BY tenant_id, study_uid, series_uid
)
SELECT
    c.tenant_id,
    c.study_uid,
    c.series_uid,
    c.first_changed_time,
    SUM(CASE WHEN r.received_time < c.first_changed_time THEN 1 ELSE 0 END)
        AS instances_when_stable,
    COUNT(*) AS instances_now,
    MAX(c.times_changed) AS times_changed
FROM changes c
JOIN first_receptions r
    ON r.tenant_id = c.tenant_id
    AND r.study_uid = c.study_uid
    AND r.series_uid = c.series_uid
GROUP BY c.tenant_id, c.study_uid, c.series_uid, c.first_changed_time
ORDER BY c.first_changed_time DESC, c.tenant_id, c.study_uid, c.series_uid;
