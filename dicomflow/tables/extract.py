"""The one place that turns a DICOM header into the records of every topic."""

import datetime as dt
import math
from typing import Any, BinaryIO

import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from dicomflow.core.hashing import uid_hash
from dicomflow.core.metrics import VALUES_TRUNCATED
from dicomflow.core.storage import study_date_folder
from dicomflow.tables.records import WIDTHS, ImageRecord, StateRecord, StorageEvent

MISSING_PATIENT_ID = ""
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


HEADER_DEFER_SIZE = 4096


def read_header(source: str | BinaryIO) -> Dataset:
    """Parse a Part-10 file's elements; values over 4 KiB (pixel data...) are skipped, not read."""
    return pydicom.dcmread(source, defer_size=HEADER_DEFER_SIZE)


def now_text(at: float | None = None) -> str:
    """The time `at` (seconds since the epoch; default now) as a UTC datetime column."""
    moment = dt.datetime.now(dt.UTC) if at is None else dt.datetime.fromtimestamp(at, dt.UTC)
    return format_datetime(moment.replace(tzinfo=None))


def format_datetime(value: dt.datetime) -> str:
    return value.isoformat(sep=" ", timespec="microseconds")


def fit(column: str, value: Any) -> str | None:
    """A value as text, cut at a character boundary to its column width (and counted)."""
    if value is None:
        return None
    if isinstance(value, MultiValue | list | tuple):
        text = "\\".join("" if v is None else str(v) for v in value)
    else:
        text = str(value)
    text = text.replace("\x00", "").strip()
    if not text:
        return None
    width = WIDTHS[column]
    if len(text) > width:
        VALUES_TRUNCATED.labels(column).inc()
        text = text[:width]
    return text


def _value(ds: Dataset, keyword: str) -> Any:
    element = ds.get(keyword)
    return None if element is None or element == "" else element


def _date(ds: Dataset, keyword: str) -> str | None:
    text = str(ds.get(keyword) or "").strip()
    try:
        return dt.datetime.strptime(text[:8], "%Y%m%d").date().isoformat()
    except ValueError:
        return None


def _int(ds: Dataset, keyword: str) -> int | None:
    """An integer that fits a 32-bit column, else None."""
    value = _first(_value(ds, keyword))
    try:
        number = None if value is None else int(value)
    except (TypeError, ValueError):
        return None
    return number if number is not None and INT32_MIN <= number <= INT32_MAX else None


def _float(ds: Dataset, keyword: str) -> float | None:
    """A finite number, else None (JSON has no NaN or infinity)."""
    value = _first(_value(ds, keyword))
    try:
        number = None if value is None else float(value)
    except (TypeError, ValueError):
        return None
    return number if number is not None and math.isfinite(number) else None


def _first(value: Any) -> Any:
    if isinstance(value, MultiValue | list | tuple):
        return value[0] if value else None
    return value


def number_of_frames(ds: Dataset) -> int:
    frames = _int(ds, "NumberOfFrames")
    return frames if frames and frames > 0 else 1


def _text(ds: Dataset, column: str, keyword: str) -> str | None:
    return fit(column, _value(ds, keyword))


def storage_event(
    ds: Dataset,
    *,
    tenant: str,
    file_path: str,
    file_size: int,
    transfer_syntax_uid: str,
    node_id: str,
    trace_id: str,
    source_ip: str | None,
    source_ae: str | None,
    called_ae: str | None,
) -> StorageEvent:
    """The storage event of an instance whose UIDs were validated by the caller."""
    return StorageEvent(
        trace_id=trace_id,
        worker_node_id=fit("worker_node_id", node_id) or "",
        tenant_id=tenant,
        patient_id=_text(ds, "patient_id", "PatientID") or MISSING_PATIENT_ID,
        study_uid=ds.StudyInstanceUID,
        series_uid=ds.SeriesInstanceUID,
        sop_uid=ds.SOPInstanceUID,
        study_uid_hash=uid_hash(ds.StudyInstanceUID),
        series_uid_hash=uid_hash(ds.SeriesInstanceUID),
        sop_class_uid=ds.SOPClassUID,
        file_size=file_size,
        file_path=file_path,
        transfer_syntax_uid=transfer_syntax_uid,
        number_of_frames=number_of_frames(ds),
        accession_number=_text(ds, "accession_number", "AccessionNumber"),
        study_date=_date(ds, "StudyDate"),
        source_ip=fit("source_ip", source_ip),
        source_ae=fit("source_ae", source_ae),
        called_ae=fit("called_ae", called_ae),
        created_time=now_text(),
    )


def image_record(ds: Dataset, event: StorageEvent) -> ImageRecord:
    return ImageRecord(
        tenant_id=event.tenant_id,
        study_uid=event.study_uid,
        series_uid=event.series_uid,
        sop_uid=event.sop_uid,
        study_uid_hash=event.study_uid_hash,
        series_uid_hash=event.series_uid_hash,
        sop_class_uid=event.sop_class_uid,
        transfer_syntax_uid=event.transfer_syntax_uid,
        file_path=event.file_path,
        file_size=event.file_size,
        instance_number=_int(ds, "InstanceNumber"),
        content_date=_date(ds, "ContentDate"),
        content_time=_text(ds, "content_time", "ContentTime"),
        image_type=_text(ds, "image_type", "ImageType"),
        image_orientation_patient=_text(ds, "image_orientation_patient", "ImageOrientationPatient"),
        image_position_patient=_text(ds, "image_position_patient", "ImagePositionPatient"),
        slice_thickness=_float(ds, "SliceThickness"),
        spacing_between_slices=_float(ds, "SpacingBetweenSlices"),
        slice_location=_float(ds, "SliceLocation"),
        samples_per_pixel=_int(ds, "SamplesPerPixel"),
        photometric_interpretation=_text(
            ds, "photometric_interpretation", "PhotometricInterpretation"
        ),
        number_of_frames=number_of_frames(ds),
        rows=_int(ds, "Rows"),
        columns=_int(ds, "Columns"),
        bits_allocated=_int(ds, "BitsAllocated"),
        bits_stored=_int(ds, "BitsStored"),
        high_bit=_int(ds, "HighBit"),
        pixel_representation=_int(ds, "PixelRepresentation"),
        rescale_intercept=_float(ds, "RescaleIntercept"),
        rescale_slope=_float(ds, "RescaleSlope"),
        rescale_type=_text(ds, "rescale_type", "RescaleType"),
        window_center=_text(ds, "window_center", "WindowCenter"),
        window_width=_text(ds, "window_width", "WindowWidth"),
        received_time=event.created_time,
        indexed_time=now_text(),
    )


def state_record(
    ds: Dataset,
    event: StorageEvent,
    *,
    series_related_instances: int,
    series_state: str,
    first_received_time: str,
    last_received_time: str,
) -> StateRecord:
    return StateRecord(
        tenant_id=event.tenant_id,
        study_uid=event.study_uid,
        series_uid=event.series_uid,
        study_uid_hash=event.study_uid_hash,
        series_uid_hash=event.series_uid_hash,
        study_date_origin=study_date_folder(ds.get("StudyDate")),
        patient_id=event.patient_id,
        patient_name=_text(ds, "patient_name", "PatientName"),
        patient_birth_date=_date(ds, "PatientBirthDate"),
        patient_sex=_text(ds, "patient_sex", "PatientSex"),
        patient_age=_text(ds, "patient_age", "PatientAge"),
        study_date=_date(ds, "StudyDate"),
        study_time=_text(ds, "study_time", "StudyTime"),
        accession_number=event.accession_number,
        study_id=_text(ds, "study_id", "StudyID"),
        study_description=_text(ds, "study_description", "StudyDescription"),
        referring_physician_name=_text(ds, "referring_physician_name", "ReferringPhysicianName"),
        modality=_text(ds, "modality", "Modality"),
        series_number=_int(ds, "SeriesNumber"),
        series_date=_date(ds, "SeriesDate"),
        series_time=_text(ds, "series_time", "SeriesTime"),
        series_description=_text(ds, "series_description", "SeriesDescription"),
        body_part_examined=_text(ds, "body_part_examined", "BodyPartExamined"),
        institution_name=_text(ds, "institution_name", "InstitutionName"),
        manufacturer=_text(ds, "manufacturer", "Manufacturer"),
        series_related_instances=series_related_instances,
        series_state=series_state,
        first_received_time=first_received_time,
        last_received_time=last_received_time,
        updated_time=now_text(),
    )


def series_key(tenant: str, study_uid: str, series_uid: str) -> str:
    """The partitioning key of every series-level message: `tenant|study_uid|series_uid`."""
    return f"{tenant}|{study_uid}|{series_uid}"
