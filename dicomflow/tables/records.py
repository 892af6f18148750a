"""The messages on each topic: one Faust record per topic, each field a Doris/PostgreSQL column.

Dates are `YYYY-MM-DD`, datetimes `YYYY-MM-DD HH:MM:SS[.ffffff]`, absent values `None`.
`WIDTHS` holds the character width of every varchar column; the SQL files must agree.
"""

import uuid

import faust


class StorageEvent(faust.Record, serializer="json", include_metadata=False):
    """One stored instance (`storage_queue`, and `log_queue` as `dicom_object_meta`)."""

    trace_id: str
    worker_node_id: str
    tenant_id: str
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    study_uid_hash: str
    series_uid_hash: str
    sop_class_uid: str
    file_size: int
    file_path: str
    transfer_syntax_uid: str
    number_of_frames: int
    accession_number: str | None
    study_date: str | None
    source_ip: str | None
    source_ae: str | None
    called_ae: str | None
    created_time: str

    @property
    def write_id(self) -> str:
        """The name of the write of this copy's file (`LocalStorage.writing`): the trace id."""
        return uuid.UUID(self.trace_id).hex


class StateRecord(faust.Record, serializer="json", include_metadata=False):
    """The state of one series with its patient and study (`dicom_state_queue`)."""

    tenant_id: str
    study_uid: str
    series_uid: str
    study_uid_hash: str
    series_uid_hash: str
    study_date_origin: str
    patient_id: str
    patient_name: str | None
    patient_birth_date: str | None
    patient_sex: str | None
    patient_age: str | None
    study_date: str | None
    study_time: str | None
    accession_number: str | None
    study_id: str | None
    study_description: str | None
    referring_physician_name: str | None
    modality: str | None
    series_number: int | None
    series_date: str | None
    series_time: str | None
    series_description: str | None
    body_part_examined: str | None
    institution_name: str | None
    manufacturer: str | None
    series_related_instances: int
    series_state: str
    first_received_time: str
    last_received_time: str
    updated_time: str


class ImageRecord(faust.Record, serializer="json", include_metadata=False):
    """One instance's image attributes (`dicom_image_queue`, the `dicom_image_meta` columns)."""

    tenant_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    study_uid_hash: str
    series_uid_hash: str
    sop_class_uid: str
    transfer_syntax_uid: str
    file_path: str
    file_size: int
    instance_number: int | None
    content_date: str | None
    content_time: str | None
    image_type: str | None
    image_orientation_patient: str | None
    image_position_patient: str | None
    slice_thickness: float | None
    spacing_between_slices: float | None
    slice_location: float | None
    samples_per_pixel: int | None
    photometric_interpretation: str | None
    number_of_frames: int
    rows: int | None
    columns: int | None
    bits_allocated: int | None
    bits_stored: int | None
    high_bit: int | None
    pixel_representation: int | None
    rescale_intercept: float | None
    rescale_slope: float | None
    rescale_type: str | None
    window_center: str | None
    window_width: str | None
    received_time: str
    indexed_time: str


class AccessLogRecord(faust.Record, serializer="json", include_metadata=False):
    """One DICOMweb request (`access_log_queue`, the `wado_access_log` columns)."""

    log_time: str
    tenant_id: str
    method: str
    path: str
    query: str | None
    status: int
    bytes_sent: int
    duration_ms: float
    client_address: str | None
    user_agent: str | None


WIDTHS: dict[str, int] = {
    "trace_id": 36,
    "worker_node_id": 64,
    "tenant_id": 32,
    "patient_id": 64,
    "study_uid": 64,
    "series_uid": 64,
    "sop_uid": 64,
    "study_uid_hash": 20,
    "series_uid_hash": 20,
    "sop_class_uid": 64,
    "file_path": 512,
    "transfer_syntax_uid": 64,
    "accession_number": 16,
    "source_ip": 45,
    "source_ae": 16,
    "called_ae": 16,
    "study_date_origin": 8,
    "patient_name": 324,
    "patient_sex": 16,
    "patient_age": 4,
    "study_time": 16,
    "study_id": 16,
    "study_description": 64,
    "referring_physician_name": 324,
    "modality": 16,
    "series_time": 16,
    "series_description": 64,
    "body_part_examined": 16,
    "institution_name": 64,
    "manufacturer": 64,
    "series_state": 16,
    "content_time": 16,
    "image_type": 256,
    "image_orientation_patient": 256,
    "image_position_patient": 128,
    "photometric_interpretation": 16,
    "rescale_type": 16,
    "window_center": 64,
    "window_width": 64,
    "method": 8,
    "path": 1024,
    "query": 2048,
    "client_address": 45,
    "user_agent": 512,
}
