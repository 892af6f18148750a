-- The slowest DICOMweb endpoints per day (UTC) and tenant, from the access log.
--
-- Endpoints as in busiest_endpoints.sql, ordered by their mean duration; only successful
-- requests (status below 400) count, so that fast failures do not hide slow answers.
-- For each: requests, the mean and greatest duration in milliseconds, and the mean bytes
-- sent per request.
-- Runs unchanged on Doris 2.x, MariaDB 10.6+ and MySQL 8.0+.
SELECT
    received_date,
    tenant_id,
    method,
    endpoint,
    COUNT(*) AS requests,
    ROUND(AVG(duration_ms), 1) AS mean_ms,
    ROUND(MAX(duration_ms), 1) AS max_ms,
    ROUND(AVG(bytes_sent), 0) AS mean_bytes
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
        bytes_sent,
        duration_ms
    FROM wado_access_log
    WHERE status < 400
) requests
GROUP BY received_date, tenant_id, method, endpoint
ORDER BY received_date DESC, mean_ms DESC, tenant_id, method, endpoint;
