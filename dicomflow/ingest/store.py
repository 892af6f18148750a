"""The write-and-publish path every way in shares (C-STORE, STOW-RS, bulk import)."""

import io
import logging
import os
import struct
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import BinaryIO

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import DeflatedExplicitVRLittleEndian

from dicomflow.core.identifiers import InvalidIdentifier, validate_uid
from dicomflow.core.metrics import BYTES_RECEIVED, INSTANCES_RECEIVED, REJECTIONS
from dicomflow.core.settings import Settings
from dicomflow.core.storage import LocalStorage, SeriesLocation, read_at_most, study_date_folder
from dicomflow.core.topics import STORAGE_QUEUE
from dicomflow.ingest.publisher import EventPublisher, Publication, PublishFailed
from dicomflow.tables.extract import read_header, series_key, storage_event
from dicomflow.tables.records import StorageEvent

log = logging.getLogger(__name__)

OUT_OF_RESOURCES = 0xA700
DATASET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
UNDEFINED_LENGTH = 0xFFFFFFFF
SEQUENCE_DELIMITERS = (b"\xfe\xff\xdd\xe0\x00\x00\x00\x00", b"\xff\xfe\xe0\xdd\x00\x00\x00\x00")
COPY_CHUNK = 1 << 20

# A Part-10 encoded instance: its bytes, or a seekable file holding them (a spooled STOW-RS part).
Part10 = bytes | BinaryIO


class Rejected(Exception):
    """An instance that was not stored; `status` is its DICOM failure status."""

    def __init__(self, status: int, reason: str, comment: str) -> None:
        super().__init__(comment)
        self.status = status
        self.reason = reason
        self.comment = comment


class AlreadyStored(Exception):
    """The instance is stored already with exactly these bytes."""


@dataclass(frozen=True)
class Origin:
    """Where an instance came from, for the storage event."""

    tenant: str
    via: str
    source_ip: str | None = None
    source_ae: str | None = None
    called_ae: str | None = None


class InstanceStore:
    """Validates a Part-10 encoded instance, writes it durably, publishes its event."""

    def __init__(self, settings: Settings, storage: LocalStorage, publisher: EventPublisher):
        self._settings = settings
        self._storage = storage
        self._publisher = publisher

    def store(
        self,
        part10: Part10,
        origin: Origin,
        expected_sop_class: str | None = None,
        skip_identical: bool = False,
    ) -> StorageEvent:
        """Store one instance; raise Rejected with a DICOM status when it cannot be, and
        AlreadyStored when `skip_identical` and the same bytes are stored already.

        A file is read from its start in chunks, never whole; `skip_identical` needs bytes.
        """
        try:
            return self._store(part10, origin, expected_sop_class, skip_identical)
        except Rejected as exc:
            REJECTIONS.labels(exc.reason).inc()
            log.info("rejected an instance from %s: %s", origin.source_ae or origin.via, exc)
            raise

    def _store(
        self, part10: Part10, origin: Origin, expected_sop_class: str | None, skip_identical: bool
    ) -> StorageEvent:
        header = _parse(part10)
        location, sop_uid = _validate(header, expected_sop_class, origin.tenant)
        key = location.instance_key(sop_uid)
        if (
            skip_identical
            and isinstance(part10, bytes)
            and self._storage.has_identical(key, part10)
        ):
            raise AlreadyStored(key)
        event = self._event(header, key, _size(part10), origin)
        try:
            with self._storage.replacing(key):  # a copy stored before stays if this one fails
                with self._storage.writing(key, write_id=event.write_id) as fh:
                    for chunk in _chunks(part10):
                        fh.write(chunk)
                    publication = self._publish(event, location)
                _wait(publication)
        except OSError as exc:
            raise Rejected(
                OUT_OF_RESOURCES, "write_failed", f"cannot write the file: {exc}"
            ) from exc
        INSTANCES_RECEIVED.labels(origin.tenant, origin.via).inc()
        BYTES_RECEIVED.labels(origin.via).inc(event.file_size)
        return event

    def _event(self, header: Dataset, key: str, size: int, origin: Origin) -> StorageEvent:
        return storage_event(
            header,
            tenant=origin.tenant,
            file_path=key,
            file_size=size,
            transfer_syntax_uid=str(header.file_meta.TransferSyntaxUID),
            node_id=self._settings.node_id,
            trace_id=str(uuid.uuid4()),
            source_ip=origin.source_ip,
            source_ae=origin.source_ae,
            called_ae=origin.called_ae,
        )

    def _publish(self, event: StorageEvent, location: SeriesLocation) -> Publication:
        """Send the event once the bytes are written, before they are fsynced and renamed into
        place: Kafka's acknowledgement and the fsync overlap. A worker reading the event waits
        while the write goes on (`StorageEvent.write_id`); if the write then fails, it finds
        no file, or the copy stored before (of another size), and skips the event."""
        return self._publisher.publish(
            STORAGE_QUEUE,
            series_key(event.tenant_id, location.study_uid, location.series_uid).encode(),
            event.dumps(),
        )


def _wait(publication: Publication) -> None:
    try:
        publication.wait()
    except PublishFailed as exc:
        raise Rejected(OUT_OF_RESOURCES, "publish_failed", str(exc)) from exc


def _parse(part10: Part10) -> Dataset:
    """Walk the whole data set (values of large elements are skipped, not read) and check it
    is complete; return it as the header."""
    source = io.BytesIO(part10) if isinstance(part10, bytes) else part10
    try:
        source.seek(0)
        header = read_header(source)
    except (
        InvalidDicomError,
        EOFError,
        ValueError,
        KeyError,
        TypeError,
        OSError,
        struct.error,
    ) as exc:
        raise Rejected(
            CANNOT_UNDERSTAND, "unparsable", f"cannot parse the data set: {exc}"
        ) from exc
    if "TransferSyntaxUID" not in header.file_meta:
        raise Rejected(CANNOT_UNDERSTAND, "unparsable", "no transfer syntax in the file meta")
    if header.file_meta.TransferSyntaxUID != DeflatedExplicitVRLittleEndian:
        _check_complete(header, *_size_and_tail(part10))
    return header


def _size(part10: Part10) -> int:
    return len(part10) if isinstance(part10, bytes) else part10.seek(0, os.SEEK_END)


def _size_and_tail(part10: Part10) -> tuple[int, bytes]:
    """The encoded instance's size and its last 8 bytes (where a sequence delimiter would be)."""
    size = _size(part10)
    if isinstance(part10, bytes):
        return size, part10[-8:]
    part10.seek(max(0, size - 8))
    return size, part10.read(8)


def _chunks(part10: Part10) -> Iterable[bytes]:
    if isinstance(part10, bytes):
        return (part10,)
    part10.seek(0)
    return iter(partial(read_at_most, part10, COPY_CHUNK), b"")


def _check_complete(header: Dataset, size: int, tail: bytes) -> None:
    """A truncated data set loses its last element: it must end exactly where the data ends.

    pydicom tolerates truncation while parsing; this checks the last element's extent
    (one of undefined length must end with the sequence delimitation item).
    """
    if not header:
        raise Rejected(CANNOT_UNDERSTAND, "unparsable", "the data set is empty")
    _, last = max(header.items(), key=lambda item: item[0])
    if not isinstance(last, RawDataElement) or last.value_tell is None:
        return
    if last.length == UNDEFINED_LENGTH:
        complete = tail in SEQUENCE_DELIMITERS
    else:
        complete = last.value_tell + last.length == size
    if not complete:
        raise Rejected(
            CANNOT_UNDERSTAND,
            "truncated",
            f"the data set is truncated in element {last.tag}",
        )


def _validate(
    header: Dataset, expected_sop_class: str | None, tenant: str
) -> tuple[SeriesLocation, str]:
    """Check the identifying UIDs and the SOP class; return where the instance goes."""
    try:
        sop_class = validate_uid(header.get("SOPClassUID"), "SOP Class UID")
        sop_uid = validate_uid(header.get("SOPInstanceUID"), "SOP Instance UID")
        location = SeriesLocation(
            tenant=tenant,
            study_date=study_date_folder(header.get("StudyDate")),
            study_uid=header.get("StudyInstanceUID"),
            series_uid=header.get("SeriesInstanceUID"),
        )
    except (InvalidIdentifier, ValueError, TypeError) as exc:
        raise Rejected(CANNOT_UNDERSTAND, "invalid_uid", str(exc)) from exc
    if expected_sop_class is not None and sop_class != expected_sop_class:
        raise Rejected(
            DATASET_MISMATCH,
            "sop_class_mismatch",
            f"SOP Class UID {sop_class} does not match the presentation context's "
            f"{expected_sop_class}",
        )
    media_class = header.file_meta.get("MediaStorageSOPClassUID")
    media_instance = header.file_meta.get("MediaStorageSOPInstanceUID")
    if media_instance is not None and media_instance != sop_uid:
        raise Rejected(
            DATASET_MISMATCH,
            "sop_instance_mismatch",
            f"SOP Instance UID {sop_uid} differs from the request's {media_instance}",
        )
    if media_class is not None and expected_sop_class is None and media_class != sop_class:
        raise Rejected(
            DATASET_MISMATCH,
            "sop_class_mismatch",
            f"SOP Class UID {sop_class} differs from the file meta's {media_class}",
        )
    return location, sop_uid
