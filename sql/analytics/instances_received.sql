-- Instances and bytes received per tenant, per day (UTC) and modality.
--
-- Every stored instance counts in `instances`, re-sent ones included; `distinct_instances`
-- counts each SOP Instance UID once (a re-send of the same instance on the same day counts
-- once). `received_bytes` is the size of the files as stored. The modality is the series'
-- (dicom_state_meta); it is NULL for a series whose state has not arrived yet.
-- Runs unchanged on Doris 2.x, MariaDB 10.6+ and MySQL 8.0+.
SELECT
    o.tenant_id,
    CAST(o.created_time AS DATE) AS received_date,
    s.modality,
    COUNT(*) AS instances,
    COUNT(DISTINCT o.sop_uid) AS distinct_instances,
    SUM(o.file_size) AS received_bytes
FROM dicom_object_meta o
LEFT JOIN dicom_state_meta s
    ON s.tenant_id = o.tenant_id
    AND s.study_uid = o.study_uid
    AND s.series_uid = o.series_uid
GROUP BY o.tenant_id, CAST(o.created_time AS DATE), s.modality
ORDER BY received_date DESC, o.tenant_id, s.modality;
