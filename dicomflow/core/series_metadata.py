"""Series metadata (the DICOM JSON of every instance), from each instance's kept JSON or its file.

The worker keeps each instance's DICOM JSON under the JSON root when it indexes the instance
(`keep_instance_metadata`); the stream job (series stable) and the API (on demand) join them,
and build from the DICOM file any instance whose JSON is missing or was cut short by a crash.
"""

from collections.abc import Iterable
from typing import BinaryIO

import orjson
import pydicom
from pydicom.dataset import Dataset

from dicomflow.core.dicom_json import instance_json
from dicomflow.core.identifiers import InvalidIdentifier
from dicomflow.core.storage import LocalStorage
from dicomflow.core.urls import instance_url

DEFER_SIZE = 16 * 1024

# (study_uid, series_uid, sop_uid, instance key)
InstanceRow = tuple[str, str, str, str]


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


def build_series_metadata(
    storage: LocalStorage, json_storage: LocalStorage, tenant: str, instances: Iterable[InstanceRow]
) -> bytes:
    """DICOM JSON (a JSON array, one object per instance) of `(study, series, sop, key)` rows."""
    return (
        b"["
        + b",".join(_instance_object(storage, json_storage, tenant, row) for row in instances)
        + b"]"
    )


def _instance_object(
    storage: LocalStorage, json_storage: LocalStorage, tenant: str, row: InstanceRow
) -> bytes:
    study_uid, series_uid, sop_uid, key = row
    kept = json_storage.read_bytes_if_present(instance_metadata_key(key))
    if kept is not None and kept.startswith(b"{") and kept.endswith(b"}"):
        return kept
    with storage.open(key) as fh:
        return instance_metadata(read_instance(fh), tenant, study_uid, series_uid, sop_uid)
