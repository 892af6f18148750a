-- The API keeps instance rows in memory (dicomflow/api/instance_rows.py) and forgets one when
-- told here that it changed: a re-sent instance can move to another file (another StudyDate)
-- or arrive in another transfer syntax. A notification names the row's key as
-- `tenant|study|series|sop`; an empty one (TRUNCATE) means every row.

CREATE FUNCTION notify_instance_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('dicom_instance_changed', '');
    ELSE
        PERFORM pg_notify(
            'dicom_instance_changed',
            concat_ws('|', OLD.tenant_id, OLD.study_uid, OLD.series_uid, OLD.sop_uid)
        );
    END IF;
    RETURN NULL;
END
$$;

-- A row written again with the same values notifies nothing.
CREATE TRIGGER dicom_image_meta_updated AFTER UPDATE ON dicom_image_meta
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION notify_instance_changed();

CREATE TRIGGER dicom_image_meta_deleted AFTER DELETE ON dicom_image_meta
    FOR EACH ROW EXECUTE FUNCTION notify_instance_changed();

CREATE TRIGGER dicom_image_meta_truncated AFTER TRUNCATE ON dicom_image_meta
    FOR EACH STATEMENT EXECUTE FUNCTION notify_instance_changed();
