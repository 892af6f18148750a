-- The API keeps in memory where each series' metadata comes from (its precomputed file, or the
-- series' version for a build kept in memory: dicomflow/api/metadata.py) and forgets it when told
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

-- On each table that says something of a series: rows inserted, really changed (a row written
-- again with the same values notifies nothing), deleted, and the table truncated.
DO $$
DECLARE
    series_table text;
BEGIN
    FOREACH series_table IN ARRAY ARRAY['dicom_image_meta', 'dicom_state_meta', 'dicom_json_meta']
    LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %I FOR EACH ROW'
            ' EXECUTE FUNCTION notify_series_changed()', series_table || '_series_inserted',
            series_table);
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %I FOR EACH ROW'
            ' WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION notify_series_changed()',
            series_table || '_series_updated', series_table);
        EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %I FOR EACH ROW'
            ' EXECUTE FUNCTION notify_series_changed()', series_table || '_series_deleted',
            series_table);
        EXECUTE format('CREATE TRIGGER %I AFTER TRUNCATE ON %I FOR EACH STATEMENT'
            ' EXECUTE FUNCTION notify_series_changed()', series_table || '_series_truncated',
            series_table);
    END LOOP;
END
$$;
