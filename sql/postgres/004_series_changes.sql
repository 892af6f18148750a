-- The API keeps in memory where each series' metadata comes from (its precomputed file, or the
-- series' version for a build kept in Redis: dicomflow/api/metadata.py) and forgets it when told
-- here that the series changed: an instance indexed, re-sent or deleted, the series' state or
-- its precomputed metadata written. A notification names the series as `tenant|study|series`;
-- PostgreSQL delivers one per series and transaction however many rows changed. An empty one
-- (TRUNCATE) means every series.

CREATE FUNCTION notify_series_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('dicom_series_changed', '');
    ELSIF TG_OP = 'INSERT' THEN
        PERFORM pg_notify(
            'dicom_series_changed', concat_ws('|', NEW.tenant_id, NEW.study_uid, NEW.series_uid)
        );
    ELSE
        PERFORM pg_notify(
            'dicom_series_changed', concat_ws('|', OLD.tenant_id, OLD.study_uid, OLD.series_uid)
        );
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER dicom_image_meta_series_inserted AFTER INSERT ON dicom_image_meta
    FOR EACH ROW EXECUTE FUNCTION notify_series_changed();
CREATE TRIGGER dicom_image_meta_series_updated AFTER UPDATE ON dicom_image_meta
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION notify_series_changed();
CREATE TRIGGER dicom_image_meta_series_deleted AFTER DELETE ON dicom_image_meta
    FOR EACH ROW EXECUTE FUNCTION notify_series_changed();
CREATE TRIGGER dicom_image_meta_series_truncated AFTER TRUNCATE ON dicom_image_meta
    FOR EACH STATEMENT EXECUTE FUNCTION notify_series_changed();

CREATE TRIGGER dicom_state_meta_series_inserted AFTER INSERT ON dicom_state_meta
    FOR EACH ROW EXECUTE FUNCTION notify_series_changed();
CREATE TRIGGER dicom_state_meta_series_updated AFTER UPDATE ON dicom_state_meta
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION notify_series_changed();
CREATE TRIGGER dicom_state_meta_series_deleted AFTER DELETE ON dicom_state_meta
    FOR EACH ROW EXECUTE FUNCTION notify_series_changed();
CREATE TRIGGER dicom_state_meta_series_truncated AFTER TRUNCATE ON dicom_state_meta
    FOR EACH STATEMENT EXECUTE FUNCTION notify_series_changed();

CREATE TRIGGER dicom_json_meta_series_inserted AFTER INSERT ON dicom_json_meta
    FOR EACH ROW EXECUTE FUNCTION notify_series_changed();
CREATE TRIGGER dicom_json_meta_series_updated AFTER UPDATE ON dicom_json_meta
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION notify_series_changed();
CREATE TRIGGER dicom_json_meta_series_deleted AFTER DELETE ON dicom_json_meta
    FOR EACH ROW EXECUTE FUNCTION notify_series_changed();
CREATE TRIGGER dicom_json_meta_series_truncated AFTER TRUNCATE ON dicom_json_meta
    FOR EACH STATEMENT EXECUTE FUNCTION notify_series_changed();
