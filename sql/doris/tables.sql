-- dicomflow's analytics tables in Apache Doris (2.x): one table per Kafka topic that a
-- routine load reads (see routine_loads.sql). Each table has exactly the fields of its record
-- in dicomflow/tables/records.py; NOT NULL exactly where the field is not Optional.
--
--   log_queue         StorageEvent     -> dicom_object_meta  (every stored instance, appended)
--   dicom_state_queue StateRecord      -> dicom_state_meta   (one row per series, latest wins)
--   dicom_image_queue ImageRecord      -> dicom_image_meta   (one row per instance, latest wins)
--   access_log_queue  AccessLogRecord  -> wado_access_log    (every DICOMweb request, appended)
--
-- Doris varchar(n) counts BYTES (PostgreSQL counts characters): a column that may hold any
-- text is varchar(4 * WIDTHS[column]) so that WIDTHS[column] characters of UTF-8 always fit;
-- columns that only ever hold ASCII (UIDs, hashes, tenant ids, the trace UUID, AE titles, the
-- YYYYMMDD study date folder) are varchar(WIDTHS[column]).
-- Dates are DATE, datetimes (UTC, microseconds) DATETIME(6). Key columns come first, in key
-- order. The UNIQUE KEY tables use merge-on-write and a sequence column, so a late redelivery
-- of an older message never replaces a newer row.

CREATE DATABASE IF NOT EXISTS dicomflow;
USE dicomflow;

CREATE TABLE IF NOT EXISTS dicom_object_meta (
    `tenant_id`           VARCHAR(32)   NOT NULL,
    `study_uid`           VARCHAR(64)   NOT NULL,
    `series_uid`          VARCHAR(64)   NOT NULL,
    `sop_uid`             VARCHAR(64)   NOT NULL,
    `trace_id`            VARCHAR(36)   NOT NULL,
    `worker_node_id`      VARCHAR(256)  NOT NULL,
    `patient_id`          VARCHAR(256)  NOT NULL,
    `study_uid_hash`      VARCHAR(20)   NOT NULL,
    `series_uid_hash`     VARCHAR(20)   NOT NULL,
    `sop_class_uid`       VARCHAR(64)   NOT NULL,
    `file_size`           BIGINT        NOT NULL,
    `file_path`           VARCHAR(2048) NOT NULL,
    `transfer_syntax_uid` VARCHAR(64)   NOT NULL,
    `number_of_frames`    INT           NOT NULL,
    `accession_number`    VARCHAR(64)   NULL,
    `study_date`          DATE          NULL,
    `source_ip`           VARCHAR(180)  NULL,
    `source_ae`           VARCHAR(16)   NULL,
    `called_ae`           VARCHAR(16)   NULL,
    `created_time`        DATETIME(6)   NOT NULL
) ENGINE = OLAP
DUPLICATE KEY(`tenant_id`, `study_uid`, `series_uid`, `sop_uid`)
COMMENT "Every stored instance (log_queue, StorageEvent); a re-sent instance appends a row"
DISTRIBUTED BY HASH(`tenant_id`, `study_uid`) BUCKETS 8
PROPERTIES (
    "replication_num" = "1"
);

CREATE TABLE IF NOT EXISTS dicom_state_meta (
    `tenant_id`                VARCHAR(32)   NOT NULL,
    `study_uid`                VARCHAR(64)   NOT NULL,
    `series_uid`               VARCHAR(64)   NOT NULL,
    `study_uid_hash`           VARCHAR(20)   NOT NULL,
    `series_uid_hash`          VARCHAR(20)   NOT NULL,
    `study_date_origin`        VARCHAR(8)    NOT NULL,
    `patient_id`               VARCHAR(256)  NOT NULL,
    `patient_name`             VARCHAR(1296) NULL,
    `patient_birth_date`       DATE          NULL,
    `patient_sex`              VARCHAR(64)   NULL,
    `patient_age`              VARCHAR(16)   NULL,
    `study_date`               DATE          NULL,
    `study_time`               VARCHAR(64)   NULL,
    `accession_number`         VARCHAR(64)   NULL,
    `study_id`                 VARCHAR(64)   NULL,
    `study_description`        VARCHAR(256)  NULL,
    `referring_physician_name` VARCHAR(1296) NULL,
    `modality`                 VARCHAR(64)   NULL,
    `series_number`            INT           NULL,
    `series_date`              DATE          NULL,
    `series_time`              VARCHAR(64)   NULL,
    `series_description`       VARCHAR(256)  NULL,
    `body_part_examined`       VARCHAR(64)   NULL,
    `institution_name`         VARCHAR(256)  NULL,
    `manufacturer`             VARCHAR(256)  NULL,
    `series_related_instances` INT           NOT NULL,
    `series_state`             VARCHAR(64)   NOT NULL,
    `first_received_time`      DATETIME(6)   NOT NULL,
    `last_received_time`       DATETIME(6)   NOT NULL,
    `updated_time`             DATETIME(6)   NOT NULL
) ENGINE = OLAP
UNIQUE KEY(`tenant_id`, `study_uid`, `series_uid`)
COMMENT "The state of each series with its patient and study (dicom_state_queue, StateRecord)"
DISTRIBUTED BY HASH(`tenant_id`, `study_uid`) BUCKETS 8
PROPERTIES (
    "replication_num" = "1",
    "enable_unique_key_merge_on_write" = "true",
    "function_column.sequence_col" = "updated_time"
);

CREATE TABLE IF NOT EXISTS dicom_image_meta (
    `tenant_id`                  VARCHAR(32)   NOT NULL,
    `study_uid`                  VARCHAR(64)   NOT NULL,
    `series_uid`                 VARCHAR(64)   NOT NULL,
    `sop_uid`                    VARCHAR(64)   NOT NULL,
    `study_uid_hash`             VARCHAR(20)   NOT NULL,
    `series_uid_hash`            VARCHAR(20)   NOT NULL,
    `sop_class_uid`              VARCHAR(64)   NOT NULL,
    `transfer_syntax_uid`        VARCHAR(64)   NOT NULL,
    `file_path`                  VARCHAR(2048) NOT NULL,
    `file_size`                  BIGINT        NOT NULL,
    `instance_number`            INT           NULL,
    `content_date`               DATE          NULL,
    `content_time`               VARCHAR(64)   NULL,
    `image_type`                 VARCHAR(1024) NULL,
    `image_orientation_patient`  VARCHAR(1024) NULL,
    `image_position_patient`     VARCHAR(512)  NULL,
    `slice_thickness`            DOUBLE        NULL,
    `spacing_between_slices`     DOUBLE        NULL,
    `slice_location`             DOUBLE        NULL,
    `samples_per_pixel`          INT           NULL,
    `photometric_interpretation` VARCHAR(64)   NULL,
    `number_of_frames`           INT           NOT NULL,
    `rows`                       INT           NULL,
    `columns`                    INT           NULL,
    `bits_allocated`             INT           NULL,
    `bits_stored`                INT           NULL,
    `high_bit`                   INT           NULL,
    `pixel_representation`       INT           NULL,
    `rescale_intercept`          DOUBLE        NULL,
    `rescale_slope`              DOUBLE        NULL,
    `rescale_type`               VARCHAR(64)   NULL,
    `window_center`              VARCHAR(256)  NULL,
    `window_width`               VARCHAR(256)  NULL,
    `received_time`              DATETIME(6)   NOT NULL,
    `indexed_time`               DATETIME(6)   NOT NULL
) ENGINE = OLAP
UNIQUE KEY(`tenant_id`, `study_uid`, `series_uid`, `sop_uid`)
COMMENT "Image attributes of each instance (dicom_image_queue, ImageRecord)"
DISTRIBUTED BY HASH(`tenant_id`, `study_uid`) BUCKETS 8
PROPERTIES (
    "replication_num" = "1",
    "enable_unique_key_merge_on_write" = "true",
    "function_column.sequence_col" = "indexed_time"
);

CREATE TABLE IF NOT EXISTS wado_access_log (
    `tenant_id`      VARCHAR(32)   NOT NULL,
    `log_time`       DATETIME(6)   NOT NULL,
    `method`         VARCHAR(32)   NOT NULL,
    `path`           VARCHAR(4096) NOT NULL,
    `query`          VARCHAR(8192) NULL,
    `status`         INT           NOT NULL,
    `bytes_sent`     BIGINT        NOT NULL,
    `duration_ms`    DOUBLE        NOT NULL,
    `client_address` VARCHAR(180)  NULL,
    `user_agent`     VARCHAR(2048) NULL
) ENGINE = OLAP
DUPLICATE KEY(`tenant_id`, `log_time`)
COMMENT "Every DICOMweb request (access_log_queue, AccessLogRecord)"
DISTRIBUTED BY HASH(`tenant_id`, `log_time`) BUCKETS 8
PROPERTIES (
    "replication_num" = "1"
);
