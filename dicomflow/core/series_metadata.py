"""Series metadata (the DICOM JSON of every instance), from each instance's kept JSON or its file.

The worker keeps each instance's DICOM JSON under the JSON root when it indexes the instance
(`keep_instance_metadata`), and in Redis while its series is not stable (the series' parts,
`series_parts_key`, one field per instance: `part_field`). The stream job (series stable) and
the API (on demand) join them, and build from the DICOM file any instance whose JSON is missing
or was cut short by a crash.
"""

from collections.abc import Iterable, Mapping
from typing import BinaryIO, NamedTuple

import orjson
import pydicom
from pydicom.dataset import Dataset

from dicomflow.core.dicom_json import instance_json
from dicomflow.core.identifiers import InvalidIdentifier
from dicomflow.core.storage import LocalStorage
from dicomflow.core.urls import instance_url

DEFER_SIZE = 16 * 1024


class SeriesInstance(NamedTuple):
    """An indexed instance, as a series' metadata is built from it."""

    study_uid: str
    series_uid: str
    sop_uid: str
    key: str  # where the instance is stored
    received_time: str  # the storage event's time: tells a re-sent instance's JSON from the old


def part_field(sop_uid: str, received_time: str) -> bytes:
    """The field of an instance's DICOM JSON in its series' parts (a re-sent instance gets a
    new one, so a part the index no longer points to is never served)."""
    return f"{sop_uid} {received_time}".encode()


def read_instance(fh: BinaryIO) -> Dataset:
    """A stored instance's data set as the metadata is made from (values over 16 KiB left
    unread until asked for)."""
    return pydicom.dcmread(fh, defer_size=DEFER_SIZE)


def instance_metadata(
    ds: Dataset, tenant: str, study_uid: str, series_uid: str, sop_uid: str
) -> bytes:
    """One instance's DICOM JSON object; `ds` loses its unread bulk data elements, and its
    file must still be open (values read lazily are read now)."""
    return orjson.dumps(instance_json(ds, instance_url(tenant, study_uid, series_uid, sop_uid)))


def instance_metadata_key(instance_key: str) -> str:
    """Where the DICOM JSON of the instance stored under `instance_key` is kept: the same key
    under the JSON root, `.json` for `.dcm` (string work only: a series' metadata joins one
    per instance, and the storage refuses any key that would leave its root)."""
    if not instance_key.endswith(".dcm"):
        raise InvalidIdentifier(f"{instance_key!r} is not an instance key")
    return instance_key.removesuffix(".dcm") + ".json"


def keep_instance_metadata(json_storage: LocalStorage, instance_key: str, body: bytes) -> None:
    """Keep an instance's DICOM JSON (replacing any older one); not fsynced: it is rebuilt from
    the file when lost."""
    json_storage.write_atomic(instance_metadata_key(instance_key), [body], durable=False)


def json_array(objects: Iterable[bytes]) -> bytes:
    """The JSON array of already encoded JSON objects."""
    return b"[" + b",".join(objects) + b"]"


def join_parts(instances: Iterable[SeriesInstance], parts: Mapping[bytes, bytes]) -> bytes | None:
    """The series' DICOM JSON from its parts alone (no file read), or None when one is missing."""
    objects = []
    for row in instances:
        part = parts.get(part_field(row.sop_uid, row.received_time))
        if part is None:
            return None
        objects.append(part)
    return json_array(objects)


def build_series_metadata(
    storage: LocalStorage,
    json_storage: LocalStorage,
    tenant: str,
    instances: Iterable[SeriesInstance],
    parts: Mapping[bytes, bytes] | None = None,
) -> bytes:
    """DICOM JSON (a JSON array, one object per instance) of the series' instances."""
    return json_array(instance_objects(storage, json_storage, tenant, instances, parts))


def instance_objects(
    storage: LocalStorage,
    json_storage: LocalStorage,
    tenant: str,
    instances: Iterable[SeriesInstance],
    parts: Mapping[bytes, bytes] | None = None,
) -> list[bytes]:
    """Each instance's DICOM JSON object: from `parts` where they hold it, else from its kept
    JSON file, else from its file."""
    return [_instance_object(storage, json_storage, tenant, row, parts) for row in instances]


def _instance_object(
    storage: LocalStorage,
    json_storage: LocalStorage,
    tenant: str,
    row: SeriesInstance,
    parts: Mapping[bytes, bytes] | None,
) -> bytes:
    part = parts.get(part_field(row.sop_uid, row.received_time)) if parts else None
    if part is not None:
        return part
    study_uid, series_uid, sop_uid, key, _ = row
    kept = json_storage.read_bytes_if_present(instance_metadata_key(key))
    if kept is not None and kept.startswith(b"{") and kept.endswith(b"}"):
        return kept
    with storage.open(key) as fh:
        return instance_metadata(read_instance(fh), tenant, study_uid, series_uid, sop_uid)
