-- dicomflow's analytics tables on a MySQL-protocol target (MariaDB 10.6+, MySQL 8.0+), filled
-- by `dicomflow analytics-sink` and created by `dicomflow analytics init` (idempotent).
-- The same tables and columns, in the same order, as sql/doris/tables.sql (a test compares
-- them), so the queries in sql/analytics/ run unchanged on both:
--
--   log_queue         StorageEvent     -> dicom_object_meta  (every stored instance, appended)
--   dicom_state_queue StateRecord      -> dicom_state_meta   (one row per series, latest wins)
--   dicom_image_queue ImageRecord      -> dicom_image_meta   (one row per instance, latest wins)
--   access_log_queue  AccessLogRecord  -> wado_access_log    (every DICOMweb request, appended)
--
-- Types: VARCHAR(n) counts characters here (bytes in Doris), so n is the record's width in
-- dicomflow/tables/records.py (WIDTHS); utf8mb4 holds any of them. DATE and DATETIME(6)
-- (UTC) as in Doris; the binary collation compares text byte for byte, as Doris does.
-- Keys: a Doris UNIQUE KEY is the PRIMARY KEY (the sink upserts, keeping the row with the
-- greatest sequence column: updated_time, indexed_time). A Doris DUPLICATE KEY is a plain
-- index. dicom_object_meta's primary key is trace_id (one per stored instance: a re-sent
-- instance gets a new one, a redelivered event keeps it), so a redelivered storage event
-- never adds a row. wado_access_log has no unique column: a replayed batch is recognised by
-- the offsets checkpoint (sink_offsets.sql) that each batch advances in its transaction.

CREATE TABLE IF NOT EXISTS dicom_object_meta (
    `tenant_id`           VARCHAR(32)   NOT NULL,
    `study_uid`           VARCHAR(64)   NOT NULL,
    `series_uid`          VARCHAR(64)   NOT NULL,
    `sop_uid`             VARCHAR(64)   NOT NULL,
    `trace_id`            VARCHAR(36)   NOT NULL,
    `worker_node_id`      VARCHAR(64)   NOT NULL,
    `patient_id`          VARCHAR(64)   NOT NULL,
    `study_uid_hash`      VARCHAR(20)   NOT NULL,
    `series_uid_hash`     VARCHAR(20)   NOT NULL,
    `sop_class_uid`       VARCHAR(64)   NOT NULL,
    `file_size`           BIGINT        NOT NULL,
    `file_path`           VARCHAR(512)  NOT NULL,
    `transfer_syntax_uid` VARCHAR(64)   NOT NULL,
    `number_of_frames`    INT           NOT NULL,
    `accession_number`    VARCHAR(16)   NULL,
    `study_date`          DATE          NULL,
    `source_ip`           VARCHAR(45)   NULL,
    `source_ae`           VARCHAR(16)   NULL,
    `called_ae`           VARCHAR(16)   NULL,
    `created_time`        DATETIME(6)   NOT NULL,
    PRIMARY KEY (`trace_id`),
    KEY `dicom_object_meta_instance` (`tenant_id`, `study_uid`, `series_uid`, `sop_uid`),
    KEY `dicom_object_meta_created` (`tenant_id`, `created_time`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin
COMMENT = 'Every stored instance (log_queue, StorageEvent); a re-sent instance appends a row';

CREATE TABLE IF NOT EXISTS dicom_state_meta (
    `tenant_id`                VARCHAR(32)   NOT NULL,
    `study_uid`                VARCHAR(64)   NOT NULL,
    `series_uid`               VARCHAR(64)   NOT NULL,
    `study_uid_hash`           VARCHAR(20)   NOT NULL,
    `series_uid_hash`          VARCHAR(20)   NOT NULL,
    `study_date_origin`        VARCHAR(8)    NOT NULL,
    `patient_id`               VARCHAR(64)   NOT NULL,
    `patient_name`             VARCHAR(324)  NULL,
    `patient_birth_date`       DATE          NULL,
    `patient_sex`              VARCHAR(16)   NULL,
    `patient_age`              VARCHAR(4)    NULL,
    `study_date`               DATE          NULL,
    `study_time`               VARCHAR(16)   NULL,
    `accession_number`         VARCHAR(16)   NULL,
    `study_id`                 VARCHAR(16)   NULL,
    `study_description`        VARCHAR(64)   NULL,
    `referring_physician_name` VARCHAR(324)  NULL,
    `modality`                 VARCHAR(16)   NULL,
    `series_number`            INT           NULL,
    `series_date`              DATE          NULL,
    `series_time`              VARCHAR(16)   NULL,
    `series_description`       VARCHAR(64)   NULL,
    `body_part_examined`       VARCHAR(16)   NULL,
    `institution_name`         VARCHAR(64)   NULL,
    `manufacturer`             VARCHAR(64)   NULL,
    `series_related_instances` INT           NOT NULL,
    `series_state`             VARCHAR(16)   NOT NULL,
    `first_received_time`      DATETIME(6)   NOT NULL,
    `last_received_time`       DATETIME(6)   NOT NULL,
    `updated_time`             DATETIME(6)   NOT NULL,
    PRIMARY KEY (`tenant_id`, `study_uid`, `series_uid`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin
COMMENT = 'The state of each series with its patient and study (dicom_state_queue, StateRecord)';

CREATE TABLE IF NOT EXISTS dicom_image_meta (
    `tenant_id`                  VARCHAR(32)   NOT NULL,
    `study_uid`                  VARCHAR(64)   NOT NULL,
    `series_uid`                 VARCHAR(64)   NOT NULL,
    `sop_uid`                    VARCHAR(64)   NOT NULL,
    `study_uid_hash`             VARCHAR(20)   NOT NULL,
    `series_uid_hash`            VARCHAR(20)   NOT NULL,
    `sop_class_uid`              VARCHAR(64)   NOT NULL,
    `transfer_syntax_uid`        VARCHAR(64)   NOT NULL,
    `file_path`                  VARCHAR(512)  NOT NULL,
    `file_size`                  BIGINT        NOT NULL,
    `instance_number`            INT           NULL,
    `content_date`               DATE          NULL,
    `content_time`               VARCHAR(16)   NULL,
    `image_type`                 VARCHAR(256)  NULL,
    `image_orientation_patient`  VARCHAR(256)  NULL,
    `image_position_patient`     VARCHAR(128)  NULL,
    `slice_thickness`            DOUBLE        NULL,
    `spacing_between_slices`     DOUBLE        NULL,
    `slice_location`             DOUBLE        NULL,
    `samples_per_pixel`          INT           NULL,
    `photometric_interpretation` VARCHAR(16)   NULL,
    `number_of_frames`           INT           NOT NULL,
    `rows`                       INT           NULL,
    `columns`                    INT           NULL,
    `bits_allocated`             INT           NULL,
    `bits_stored`                INT           NULL,
    `high_bit`                   INT           NULL,
    `pixel_representation`       INT           NULL,
    `rescale_intercept`          DOUBLE        NULL,
    `rescale_slope`              DOUBLE        NULL,
    `rescale_type`               VARCHAR(16)   NULL,
    `window_center`              VARCHAR(64)   NULL,
    `window_width`               VARCHAR(64)   NULL,
    `received_time`              DATETIME(6)   NOT NULL,
    `indexed_time`               DATETIME(6)   NOT NULL,
    PRIMARY KEY (`tenant_id`, `study_uid`, `series_uid`, `sop_uid`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin
COMMENT = 'Image attributes of each instance (dicom_image_queue, ImageRecord)';

CREATE TABLE IF NOT EXISTS wado_access_log (
    `tenant_id`      VARCHAR(32)   NOT NULL,
    `log_time`       DATETIME(6)   NOT NULL,
    `method`         VARCHAR(8)    NOT NULL,
    `path`           VARCHAR(1024) NOT NULL,
    `query`          VARCHAR(2048) NULL,
    `status`         INT           NOT NULL,
    `bytes_sent`     BIGINT        NOT NULL,
    `duration_ms`    DOUBLE        NOT NULL,
    `client_address` VARCHAR(45)   NULL,
    `user_agent`     VARCHAR(512)  NULL,
    KEY `wado_access_log_time` (`tenant_id`, `log_time`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin
COMMENT = 'Every DICOMweb request (access_log_queue, AccessLogRecord)';
