-- QIDO-RS (dicomflow/api/qido_sql.py): every search is served by one of these indexes.
-- Studies and series are listed newest study first; instances in instance-number order.
-- Text matching (wild cards, person names, fuzzy matching) uses one trigram GIN index whose
-- first key is the tenant (btree_gin), so a pattern is looked up within one tenant only.

CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS btree_gin;

-- Listing order of studies (DISTINCT ON study) and of series; StudyDate ranges.
CREATE INDEX dicom_state_meta_qido_order
    ON dicom_state_meta (tenant_id, study_date DESC NULLS LAST, study_uid, updated_time DESC);

-- /series?SeriesInstanceUID=... without a study.
CREATE INDEX dicom_state_meta_series_uid ON dicom_state_meta (tenant_id, series_uid);

-- Modality (series) and ModalitiesInStudy (studies).
CREATE INDEX dicom_state_meta_modality ON dicom_state_meta (tenant_id, modality);

-- Wild card, exact (pg_trgm >= 1.6 supports =) and regular-expression matching on text keys.
CREATE INDEX dicom_state_meta_qido_text ON dicom_state_meta USING gin (
    tenant_id,
    patient_name gin_trgm_ops,
    patient_id gin_trgm_ops,
    accession_number gin_trgm_ops,
    referring_physician_name gin_trgm_ops,
    study_description gin_trgm_ops,
    study_id gin_trgm_ops,
    series_description gin_trgm_ops
);

-- Listing order of instances; instances of a study or series.
CREATE INDEX dicom_image_meta_qido_order
    ON dicom_image_meta (tenant_id, study_uid, series_uid, instance_number, sop_uid);

-- /instances?SOPClassUID=... without a study.
CREATE INDEX dicom_image_meta_sop_class ON dicom_image_meta (tenant_id, sop_class_uid);
