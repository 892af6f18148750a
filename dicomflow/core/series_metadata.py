"""Series metadata (the DICOM JSON of every instance), built from the stored files.

Used by the stream job when a series becomes stable and by the API on demand.
"""

from collections.abc import Iterable

import orjson
import pydicom

from dicomflow.core.dicom_json import instance_json
from dicomflow.core.storage import LocalStorage
from dicomflow.core.urls import instance_url

DEFER_SIZE = 16 * 1024


def build_series_metadata(
    storage: LocalStorage, tenant: str, instances: Iterable[tuple[str, str, str, str]]
) -> bytes:
    """DICOM JSON (a JSON array, one object per instance) of `(study, series, sop, key)` rows."""
    objects = []
    for study_uid, series_uid, sop_uid, key in instances:
        with storage.open(key) as fh:
            ds = pydicom.dcmread(fh, defer_size=DEFER_SIZE)
            objects.append(instance_json(ds, instance_url(tenant, study_uid, series_uid, sop_uid)))
    return orjson.dumps(objects)
