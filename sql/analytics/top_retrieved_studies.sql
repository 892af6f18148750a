-- The 20 studies retrieved most, per tenant, from the access log.
--
-- A retrieval is a successful (status below 400) WADO-RS GET on a study or anything in it:
-- the study, its series or instances, frames, bulk data, metadata, rendered images and
-- thumbnails. QIDO-RS searches (paths ending in /series or /instances) do not count.
-- For each study: retrievals, bytes sent, the last retrieval, and its description.
-- Runs unchanged on Doris 2.x, MariaDB 10.6+ and MySQL 8.0+.
SELECT
    r.tenant_id,
    r.study_uid,
    MAX(s.study_description) AS study_description,
    COUNT(*) AS retrievals,
    SUM(r.bytes_sent) AS bytes_sent,
    MAX(r.log_time) AS last_retrieved
FROM (
    SELECT
        tenant_id,
        SUBSTRING_INDEX(SUBSTRING_INDEX(path, '/studies/', -1), '/', 1) AS study_uid,
        bytes_sent,
        log_time
    FROM wado_access_log
    WHERE method = 'GET'
        AND status < 400
        AND path LIKE '%/studies/%'
        AND path NOT LIKE '%/series'
        AND path NOT LIKE '%/instances'
) r
LEFT JOIN (
    SELECT tenant_id, study_uid, MAX(study_description) AS study_description
    FROM dicom_state_meta
    GROUP BY tenant_id, study_uid
) s
    ON s.tenant_id = r.tenant_id
    AND s.study_uid = r.study_uid
GROUP BY r.tenant_id, r.study_uid
ORDER BY retrievals DESC, bytes_sent DESC, r.tenant_id, r.study_uid
LIMIT 20;
