"""The DICOM JSON model (PS3.18 Annex F) of a data set, on pydicom's `to_json_dict`.

Binary values above the threshold become `BulkDataURI`s under the instance's URL, each
with the element's path (`{tag}` or `{sequence tag}/{item index}/{tag}`...).
"""

from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

BULK_DATA_THRESHOLD = 1024
_BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW", "US or SS or OW"}


def bulk_data_paths(ds: Dataset, prefix: str = "") -> dict[int, str]:
    """Map every binary element (by identity) to its path inside the data set."""
    paths: dict[int, str] = {}
    for element in ds:
        path = f"{prefix}{element.tag:08X}"
        if element.VR == "SQ":
            for index, item in enumerate(element.value or [], start=1):
                paths.update(bulk_data_paths(item, f"{path}/{index}/"))
        elif element.VR in _BINARY_VRS:
            paths[id(element)] = path
    return paths


def instance_json(ds: Dataset, instance_url: str) -> dict[str, Any]:
    """The DICOM JSON object of one instance; bulk data as `{instance_url}/bulkdata/{path}`."""
    paths = bulk_data_paths(ds)

    def bulk_data_uri(element: DataElement) -> str:
        return f"{instance_url}/bulkdata/{paths[id(element)]}"

    return ds.to_json_dict(
        bulk_data_threshold=BULK_DATA_THRESHOLD,
        bulk_data_element_handler=bulk_data_uri,
        suppress_invalid_tags=True,
    )
