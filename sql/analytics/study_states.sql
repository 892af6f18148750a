-- Studies still receiving vs stable, per tenant.
--
-- A study is `receiving` while any of its series is (an instance arrived within the series
-- stability window, DICOMFLOW_SERIES_STABLE_SECONDS), `stable` once all of its series are.
-- For each tenant and state: the studies, their series and instances (as counted by the
-- series states) and the latest instance received.
-- Runs unchanged on Doris 2.x, MariaDB 10.6+ and MySQL 8.0+.
SELECT
    tenant_id,
    study_state,
    COUNT(*) AS studies,
    SUM(series) AS series,
    SUM(instances) AS instances,
    MAX(last_received_time) AS last_received_time
FROM (
    SELECT
        tenant_id,
        study_uid,
        CASE
            WHEN SUM(CASE WHEN series_state = 'stable' THEN 0 ELSE 1 END) > 0 THEN 'receiving'
            ELSE 'stable'
        END AS study_state,
        COUNT(*) AS series,
        SUM(series_related_instances) AS instances,
        MAX(last_received_time) AS last_received_time
    FROM dicom_state_meta
    GROUP BY tenant_id, study_uid
) studies
GROUP BY tenant_id, study_state
ORDER BY tenant_id, study_state;
