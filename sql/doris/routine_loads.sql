-- dicomflow's Apache Doris (2.x) routine loads: one job per Kafka topic, each reading the JSON
-- messages of one record type in dicomflow/tables/records.py into its table in tables.sql.
-- A message is one JSON object whose keys are exactly the COLUMNS below (the record's fields,
-- in order); dates `YYYY-MM-DD`, datetimes `YYYY-MM-DD HH:MM:SS[.ffffff]`, absent values null.
-- strict_mode with max_error_number 0: a message Doris cannot load pauses the job (visible in
-- SHOW ROUTINE LOAD) instead of being dropped or silently nulled; such a message is a bug.
-- kafka_broker_list is the docker-compose Redpanda broker; change it to match the site.

USE dicomflow;

-- log_queue (StorageEvent) -> dicom_object_meta
CREATE ROUTINE LOAD dicomflow.dicom_object_meta_load ON dicom_object_meta
COLUMNS(
    `trace_id`, `worker_node_id`, `tenant_id`, `patient_id`, `study_uid`, `series_uid`,
    `sop_uid`, `study_uid_hash`, `series_uid_hash`, `sop_class_uid`, `file_size`,
    `file_path`, `transfer_syntax_uid`, `number_of_frames`, `accession_number`,
    `study_date`, `source_ip`, `source_ae`, `called_ae`, `created_time`
)
PROPERTIES (
    "format" = "json",
    "strip_outer_array" = "false",
    "strict_mode" = "true",
    "max_error_number" = "0",
    "desired_concurrent_number" = "3",
    "max_batch_interval" = "10",
    "max_batch_rows" = "300000",
    "max_batch_size" = "209715200"
)
FROM KAFKA (
    "kafka_broker_list" = "redpanda:9092",
    "kafka_topic" = "log_queue",
    "property.group.id" = "doris_dicom_object_meta",
    "property.kafka_default_offsets" = "OFFSET_BEGINNING"
);

-- dicom_state_queue (StateRecord) -> dicom_state_meta
CREATE ROUTINE LOAD dicomflow.dicom_state_meta_load ON dicom_state_meta
COLUMNS(
    `tenant_id`, `study_uid`, `series_uid`, `study_uid_hash`, `series_uid_hash`,
    `study_date_origin`, `patient_id`, `patient_name`, `patient_birth_date`, `patient_sex`,
    `patient_age`, `study_date`, `study_time`, `accession_number`, `study_id`,
    `study_description`, `referring_physician_name`, `modality`, `series_number`,
    `series_date`, `series_time`, `series_description`, `body_part_examined`,
    `institution_name`, `manufacturer`, `series_related_instances`, `series_state`,
    `first_received_time`, `last_received_time`, `updated_time`
)
PROPERTIES (
    "format" = "json",
    "strip_outer_array" = "false",
    "strict_mode" = "true",
    "max_error_number" = "0",
    "desired_concurrent_number" = "3",
    "max_batch_interval" = "10",
    "max_batch_rows" = "300000",
    "max_batch_size" = "209715200"
)
FROM KAFKA (
    "kafka_broker_list" = "redpanda:9092",
    "kafka_topic" = "dicom_state_queue",
    "property.group.id" = "doris_dicom_state_meta",
    "property.kafka_default_offsets" = "OFFSET_BEGINNING"
);

-- dicom_image_queue (ImageRecord) -> dicom_image_meta
CREATE ROUTINE LOAD dicomflow.dicom_image_meta_load ON dicom_image_meta
COLUMNS(
    `tenant_id`, `study_uid`, `series_uid`, `sop_uid`, `study_uid_hash`, `series_uid_hash`,
    `sop_class_uid`, `transfer_syntax_uid`, `file_path`, `file_size`, `instance_number`,
    `content_date`, `content_time`, `image_type`, `image_orientation_patient`,
    `image_position_patient`, `slice_thickness`, `spacing_between_slices`, `slice_location`,
    `samples_per_pixel`, `photometric_interpretation`, `number_of_frames`, `rows`,
    `columns`, `bits_allocated`, `bits_stored`, `high_bit`, `pixel_representation`,
    `rescale_intercept`, `rescale_slope`, `rescale_type`, `window_center`, `window_width`,
    `received_time`, `indexed_time`
)
PROPERTIES (
    "format" = "json",
    "strip_outer_array" = "false",
    "strict_mode" = "true",
    "max_error_number" = "0",
    "desired_concurrent_number" = "3",
    "max_batch_interval" = "10",
    "max_batch_rows" = "300000",
    "max_batch_size" = "209715200"
)
FROM KAFKA (
    "kafka_broker_list" = "redpanda:9092",
    "kafka_topic" = "dicom_image_queue",
    "property.group.id" = "doris_dicom_image_meta",
    "property.kafka_default_offsets" = "OFFSET_BEGINNING"
);

-- access_log_queue (AccessLogRecord) -> wado_access_log
CREATE ROUTINE LOAD dicomflow.wado_access_log_load ON wado_access_log
COLUMNS(
    `log_time`, `tenant_id`, `method`, `path`, `query`, `status`, `bytes_sent`,
    `duration_ms`, `client_address`, `user_agent`
)
PROPERTIES (
    "format" = "json",
    "strip_outer_array" = "false",
    "strict_mode" = "true",
    "max_error_number" = "0",
    "desired_concurrent_number" = "3",
    "max_batch_interval" = "10",
    "max_batch_rows" = "300000",
    "max_batch_size" = "209715200"
)
FROM KAFKA (
    "kafka_broker_list" = "redpanda:9092",
    "kafka_topic" = "access_log_queue",
    "property.group.id" = "doris_wado_access_log",
    "property.kafka_default_offsets" = "OFFSET_BEGINNING"
);
