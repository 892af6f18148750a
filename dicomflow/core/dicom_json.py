"""The DICOM JSON model (PS3.18 Annex F) of a data set, on pydicom's `to_json_dict`.

Binary values above the threshold become `BulkDataURI`s under the instance's URL, each
with the element's path (`{tag}` or `{sequence tag}/{item index}/{tag}`...).
"""

from collections.abc import Sequence
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

BULK_DATA_THRESHOLD = 1024
PIXEL_DATA = 0x7FE00010
UNDEFINED_LENGTH = 0xFFFFFFFF
_BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW", "US or SS or OW"}
_SINGLE_VALUED_TEXT = {"LT", "ST", "UT"}  # a backslash is part of the value (pydicom's set)
_INTEGER_VRS = {"IS", "SL", "SS", "SV", "UL", "US", "UV"}
_FLOAT_VRS = {"DS", "FD", "FL"}

PlainValue = str | int | float | Sequence[str | int | float] | None


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
    """The DICOM JSON object of one instance; bulk data as `{instance_url}/bulkdata/{path}`.

    Top-level binary values that were not read (`dcmread(defer_size=...)`, e.g. Pixel Data)
    become BulkDataURIs from their header alone: their bytes are never read. `ds` is consumed.
    """
    unread = _unread_bulk_data(ds)
    for tag in unread:
        del ds[tag]
    paths = bulk_data_paths(ds)

    def bulk_data_uri(element: DataElement) -> str:
        return f"{instance_url}/bulkdata/{paths[id(element)]}"

    model = ds.to_json_dict(
        bulk_data_threshold=BULK_DATA_THRESHOLD,
        bulk_data_element_handler=bulk_data_uri,
        suppress_invalid_tags=True,
    )
    for tag, vr in unread.items():
        model[f"{tag:08X}"] = {"vr": vr, "BulkDataURI": f"{instance_url}/bulkdata/{tag:08X}"}
    return dict(sorted(model.items()))


def _unread_bulk_data(ds: Dataset) -> dict[int, str]:
    """Top-level elements whose binary value is still unread, with their VR."""
    unread = {}
    for tag, element in ds.items():
        if not isinstance(element, RawDataElement) or element.value is not None:
            continue
        vr = element.VR or _dictionary_vr(tag)
        if vr in _BINARY_VRS:
            unread[tag] = _resolve_ambiguous(vr, tag, element.length, ds)
    return unread


def _dictionary_vr(tag: int) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def _resolve_ambiguous(vr: str, tag: int, length: int, ds: Dataset) -> str:
    """PS3.5 A.1: native pixel data of more than 8 bits is OW, encapsulated data OB."""
    if " or " not in vr:
        return vr
    if tag == PIXEL_DATA and length != UNDEFINED_LENGTH and ds.get("BitsAllocated", 16) > 8:
        return "OW"
    return "OB" if vr.startswith("OB") else "OW"


def value_json(vr: str, value: PlainValue) -> dict[str, Any]:
    """The DICOM JSON of an element of text, person name or number VR holding `value`, as
    pydicom's `to_json_dict` gives it (the tests compare the two), without building the
    element: that costs ~10 us, and a QIDO-RS page has thousands."""
    values = _values(vr, value)
    if not values:
        return {"vr": vr}
    if vr == "PN":
        return {"vr": vr, "Value": [_person_name(str(v)) for v in values]}
    if vr in _INTEGER_VRS:
        return {"vr": vr, "Value": [int(v) for v in values]}
    if vr in _FLOAT_VRS:
        return {"vr": vr, "Value": [float(v) for v in values]}
    return {"vr": vr, "Value": values}


def _values(vr: str, value: PlainValue) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value] if vr in _SINGLE_VALUED_TEXT else value.split("\\")
    if isinstance(value, int | float):
        return [value]
    return list(value)


def _person_name(value: str) -> dict[str, str]:
    """Its component groups, empty trailing ones left out."""
    groups = value.split("=")[:3]
    while len(groups) > 1 and not groups[-1]:
        groups.pop()
    return dict(zip(("Alphabetic", "Ideographic", "Phonetic"), groups, strict=False))
