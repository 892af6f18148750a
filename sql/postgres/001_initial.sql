-- dicomflow's PostgreSQL index: series state, instances, and series-metadata bookkeeping.
-- varchar(n) counts characters; widths match dicomflow/tables/records.py WIDTHS.

CREATE TABLE dicom_state_meta (
    tenant_id                varchar(32)  NOT NULL,
    study_uid                varchar(64)  NOT NULL,
    series_uid               varchar(64)  NOT NULL,
    study_uid_hash           varchar(20)  NOT NULL,
    series_uid_hash          varchar(20)  NOT NULL,
    study_date_origin        varchar(8)   NOT NULL,
    patient_id               varchar(64)  NOT NULL,
    patient_name             varchar(324),
    patient_birth_date       date,
    patient_sex              varchar(16),
    patient_age              varchar(4),
    study_date               date,
    study_time               varchar(16),
    accession_number         varchar(16),
    study_id                 varchar(16),
    study_description        varchar(64),
    referring_physician_name varchar(324),
    modality                 varchar(16),
    series_number            integer,
    series_date              date,
    series_time              varchar(16),
    series_description       varchar(64),
    body_part_examined       varchar(16),
    institution_name         varchar(64),
    manufacturer             varchar(64),
    series_related_instances integer      NOT NULL,
    series_state             varchar(16)  NOT NULL,
    first_received_time      timestamp    NOT NULL,
    last_received_time       timestamp    NOT NULL,
    updated_time             timestamp    NOT NULL,
    PRIMARY KEY (tenant_id, study_uid, series_uid)
);

CREATE INDEX dicom_state_meta_patient ON dicom_state_meta (tenant_id, patient_id);
CREATE INDEX dicom_state_meta_study_date ON dicom_state_meta (tenant_id, study_date);
CREATE INDEX dicom_state_meta_accession ON dicom_state_meta (tenant_id, accession_number);
CREATE INDEX dicom_state_meta_patient_name ON dicom_state_meta (tenant_id, lower(patient_name) text_pattern_ops);

CREATE TABLE dicom_image_meta (
    tenant_id                  varchar(32)  NOT NULL,
    study_uid                  varchar(64)  NOT NULL,
    series_uid                 varchar(64)  NOT NULL,
    sop_uid                    varchar(64)  NOT NULL,
    study_uid_hash             varchar(20)  NOT NULL,
    series_uid_hash            varchar(20)  NOT NULL,
    sop_class_uid              varchar(64)  NOT NULL,
    transfer_syntax_uid        varchar(64)  NOT NULL,
    file_path                  varchar(512) NOT NULL,
    file_size                  bigint       NOT NULL,
    instance_number            integer,
    content_date               date,
    content_time               varchar(16),
    image_type                 varchar(256),
    image_orientation_patient  varchar(256),
    image_position_patient     varchar(128),
    slice_thickness            double precision,
    spacing_between_slices     double precision,
    slice_location             double precision,
    samples_per_pixel          integer,
    photometric_interpretation varchar(16),
    number_of_frames           integer      NOT NULL,
    rows                       integer,
    columns                    integer,
    bits_allocated             integer,
    bits_stored                integer,
    high_bit                   integer,
    pixel_representation       integer,
    rescale_intercept          double precision,
    rescale_slope              double precision,
    rescale_type               varchar(16),
    window_center              varchar(64),
    window_width               varchar(64),
    received_time              timestamp    NOT NULL,
    indexed_time               timestamp    NOT NULL,
    PRIMARY KEY (tenant_id, study_uid, series_uid, sop_uid)
);

CREATE INDEX dicom_image_meta_sop ON dicom_image_meta (tenant_id, sop_uid);

CREATE TABLE dicom_json_meta (
    tenant_id         varchar(32) NOT NULL,
    study_uid         varchar(64) NOT NULL,
    series_uid        varchar(64) NOT NULL,
    study_uid_hash    varchar(20) NOT NULL,
    series_uid_hash   varchar(20) NOT NULL,
    study_date_origin varchar(8)  NOT NULL,
    flag_time         timestamp   NOT NULL,
    created_time      timestamp   NOT NULL,
    json_status       varchar(16) NOT NULL,
    retry_times       integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, study_uid, series_uid)
);
