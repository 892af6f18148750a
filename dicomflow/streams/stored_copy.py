"""A storage event's stored file: waited for while the SCP writes it, checked to be the event's
copy, read once for the index record and the instance's DICOM JSON."""

import logging
import os
import time
from typing import BinaryIO, NamedTuple

from pydicom.dataset import Dataset

from dicomflow.core.series_metadata import (
    instance_metadata,
    keep_instance_metadata,
    part_field,
    read_instance,
)
from dicomflow.streams.resources import resources
from dicomflow.tables.extract import image_record
from dicomflow.tables.records import ImageRecord, StorageEvent

log = logging.getLogger(__name__)

WRITE_WAIT_SECONDS = 10.0
"""Longest the worker waits for the SCP to finish writing an event's file (its rename follows
the event by an fsync; a temporary file a crash left is waited for this long, then ignored).
Below `DICOMFLOW_WORKER_STUCK_SECONDS`, so the wait never looks like a stuck partition."""
WRITE_POLL_SECONDS = 0.002


class StoredCopy(NamedTuple):
    header: Dataset
    record: ImageRecord
    body: bytes | None  # the instance's DICOM JSON, None if it could not be made


class NotTheEventsCopy(Exception):
    """The file at the event's path is another copy of the instance."""


def open_events_copy(event: StorageEvent) -> BinaryIO:
    """The event's stored file, once the SCP has finished writing it.

    The SCP sends the event before it fsyncs the file and renames it into place, so the file
    may still be on its way (`StorageEvent.write_id`). A file of another size than the event's
    is not its copy (NotTheEventsCopy): a later copy replaced it, whose own event indexes it,
    or the write failed and the copy stored before stayed. No file (FileNotFoundError): the
    write failed and there was none before.
    """
    storage = resources().storage
    deadline = time.monotonic() + WRITE_WAIT_SECONDS
    while storage.being_written(event.file_path, event.write_id):
        if time.monotonic() > deadline:
            log.warning("%s: the write of event %s is not done", event.file_path, event.trace_id)
            break
        time.sleep(WRITE_POLL_SECONDS)
    fh = storage.open(event.file_path)
    size = os.fstat(fh.fileno()).st_size
    if size != event.file_size:
        fh.close()
        raise NotTheEventsCopy(f"{size} bytes, the event's copy {event.file_size}")
    return fh


def read_and_keep_metadata(event: StorageEvent) -> StoredCopy:
    """The stored file's header, image record and DICOM JSON (None if it could not be made);
    the JSON is appended to the series' parts file on the way (one read of the file), before
    the image record can make the instance visible."""
    with open_events_copy(event) as fh:
        header = read_instance(fh)
        record = image_record(header, event)
        try:
            body = instance_metadata(
                header, event.tenant_id, event.study_uid, event.series_uid, event.sop_uid
            )
        except Exception as exc:  # never holds up indexing: the metadata is built from the file
            log.warning("cannot make the metadata of %s: %s", event.file_path, exc)
            return StoredCopy(header, record, None)
    field = part_field(event.sop_uid, event.created_time)
    try:
        keep_instance_metadata(resources().json_storage, event.file_path, field, body)
    except OSError as exc:  # Redis may still keep it; else it is made from the file again
        log.warning("cannot keep the metadata of %s: %s", event.file_path, exc)
    return StoredCopy(header, record, body)
