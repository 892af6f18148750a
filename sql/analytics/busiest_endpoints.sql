-- The most requested DICOMweb endpoints per day (UTC) and tenant, from the access log.
--
-- An endpoint is the method and the path with its UIDs, frame lists and the
-- /tenants/{tenant} prefix replaced, e.g. GET /dicom-web/studies/{uid}/series/{uid}/metadata.
-- For each: requests, failed requests (status 400 or more), bytes sent, and the mean and
-- greatest duration in milliseconds.
-- Runs unchanged on Doris 2.x, MariaDB 10.6+ and MySQL 8.0+.
SELECT
    received_date,
    tenant_id,
    method,
    endpoint,
    COUNT(*) AS requests,
    SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS failed,
    SUM(bytes_sent) AS bytes_sent,
    ROUND(AVG(duration_ms), 1) AS mean_ms,
    ROUND(MAX(duration_ms), 1) AS max_ms
FROM (
    SELECT
        CAST(log_time AS DATE) AS received_date,
        tenant_id,
        method,
        REGEXP_REPLACE(
            REGEXP_REPLACE(
                CONCAT(REGEXP_REPLACE(path, '^/tenants/[^/]+', ''), '/'),
                '/[0-9][0-9.,]*/',
                '/{uid}/'
            ),
            '/$',
            ''
        ) AS endpoint,
        status,
        bytes_sent,
        duration_ms
    FROM wado_access_log
) requests
GROUP BY received_date, tenant_id, method, endpoint
ORDER BY received_date DESC, requests DESC, tenant_id, method, endpoint;
