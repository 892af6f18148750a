"""The DICOM JSON model (PS3.18 Annex F) of a data set, on pydicom's `to_json_dict`.

Binary values above the threshold become `BulkDataURI`s under the instance's URL, each
with the element's path (`{tag}` or `{sequence tag}/{item index}/{tag}`...).
"""

import logging
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

log = logging.getLogger(__name__)

BULK_DATA_THRESHOLD = 1024
ELEMENT_MEMO_ENTRIES = 4096  # ~1 MB; a CT series adds five or six values an instance
MEMO_VALUE_LIMIT = 1024  # bytes: longer values are not remembered
PIXEL_DATA = 0x7FE00010
UNDEFINED_LENGTH = 0xFFFFFFFF

_BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW", "US or SS or OW"}
_SINGLE_VALUED_TEXT = {"LT", "ST", "UT"}  # a backslash is part of the value (pydicom's set)
_INTEGER_VRS = {"IS", "SL", "SS", "SV", "UL", "US", "UV"}
_FLOAT_VRS = {"DS", "FD", "FL"}

PlainValue = str | int | float | Sequence[str | int | float] | None

_ELEMENT_MEMO: dict[Hashable, dict[str, Any] | None] = {}
_UNKNOWN: Any = object()


def bulk_data_paths(ds: Dataset, prefix: str = "") -> dict[int, str]:
    """Map every binary element (by identity) to its path inside the data set."""
    paths: dict[int, str] = {}
    for element in ds:
        path = f"{prefix}{element.tag:08X}"
        if element.VR == "SQ":
            paths.update(_item_paths(element, path))
        elif element.VR in _BINARY_VRS:
            paths[id(element)] = path
    return paths


def _item_paths(sequence: DataElement, path: str) -> dict[int, str]:
    paths: dict[int, str] = {}
    for index, item in enumerate(sequence.value or [], start=1):
        paths.update(bulk_data_paths(item, f"{path}/{index}/"))
    return paths


def instance_json(ds: Dataset, instance_url: str) -> dict[str, Any]:
    """The DICOM JSON object of one instance; bulk data as `{instance_url}/bulkdata/{path}`.

    Top-level binary values that were not read (`dcmread(defer_size=...)`, e.g. Pixel Data)
    become BulkDataURIs from their header alone: their bytes are never read. `ds` is consumed.
    Element by element what pydicom's `Dataset.to_json_dict` gives (a value pydicom reads
    with a warning is kept; an element it cannot read at all is left out, with a warning).
    The JSON of a plain element (text or number, outside sequences) is remembered by its
    encoded value (`_memo_key`): most of a series' elements repeat from instance to instance,
    and converting them is most of the cost. The returned object's elements may be shared
    with other objects: they must not be changed.
    """
    unread = _unread_bulk_data(ds)
    for tag in unread:
        del ds[tag]
    nested_paths: dict[int, str] = {}

    def bulk_data_uri(element: DataElement) -> str:
        path = nested_paths.get(id(element), f"{element.tag:08X}")
        return f"{instance_url}/bulkdata/{path}"

    charset = ds.original_character_set
    charset_key = charset if isinstance(charset, str) else tuple(charset)
    model: dict[str, Any] = {}
    for tag in list(ds.keys()):
        memo_key = _memo_key(ds.get_item(tag, keep_deferred=True), charset_key)
        element_json = _ELEMENT_MEMO.get(memo_key, _UNKNOWN) if memo_key else _UNKNOWN
        if element_json is _UNKNOWN:
            element_json = _element_json(ds, tag, bulk_data_uri, nested_paths)
            if memo_key is not None:
                _remember(memo_key, element_json)
        if element_json is not None:
            model[f"{tag:08X}"] = element_json
    for tag, vr in unread.items():
        model[f"{tag:08X}"] = {"vr": vr, "BulkDataURI": f"{instance_url}/bulkdata/{tag:08X}"}
    return dict(sorted(model.items()))


def _element_json(
    ds: Dataset,
    tag: int,
    bulk_data_uri: Callable[[DataElement], str],
    nested_paths: dict[int, str],
) -> dict[str, Any] | None:
    """pydicom's JSON of the element, None (logged) if pydicom cannot read its value."""
    try:
        element = ds[tag]
        if element.VR == "SQ":
            nested_paths.update(_item_paths(element, f"{tag:08X}"))
        return element.to_json_dict(
            bulk_data_element_handler=bulk_data_uri, bulk_data_threshold=BULK_DATA_THRESHOLD
        )
    except Exception as exc:
        log.warning(
            "element (%04X,%04X) left out of the DICOM JSON: %s", tag >> 16, tag & 0xFFFF, exc
        )
        return None


def _memo_key(element: DataElement | RawDataElement, charset: Hashable) -> Hashable | None:
    """What a plain element's JSON depends on, or None for an element that is not plain (a
    sequence, binary, of a VR that depends on other elements, or read already)."""
    if not isinstance(element, RawDataElement) or element.value is None:
        return None
    if element.length > MEMO_VALUE_LIMIT:
        return None
    vr = element.VR
    if vr is None:
        if element.tag.is_private:  # its VR depends on its private creator
            return None
        vr = _dictionary_vr(element.tag)
    if vr == "SQ" or vr in _BINARY_VRS or " or " in vr:
        return None
    return (
        element.tag,
        element.VR,
        element.value,
        element.is_implicit_VR,
        element.is_little_endian,
        charset,
    )


def _remember(key: Hashable, element_json: dict[str, Any] | None) -> None:
    if len(_ELEMENT_MEMO) >= ELEMENT_MEMO_ENTRIES:
        _ELEMENT_MEMO.clear()  # values unique to an instance fill it; starting again is cheap
    _ELEMENT_MEMO[key] = element_json


def _unread_bulk_data(ds: Dataset) -> dict[int, str]:
    """Top-level elements whose binary value is still unread, with their VR."""
    unread = {}
    for tag, element in ds.items():
        if not isinstance(element, RawDataElement) or element.value is not None:
            continue
        if element.length == 0:  # empty: pydicom reads it as None too
            continue
        vr = element.VR or _dictionary_vr(tag)
        if vr in _BINARY_VRS:
            unread[tag] = _resolve_ambiguous(vr, element, ds)
    return unread


def _dictionary_vr(tag: int) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def _resolve_ambiguous(vr: str, element: RawDataElement, ds: Dataset) -> str:
    """PS3.5 A.1-A.4 (as pydicom decides it): pixel data is OB when encapsulated, OW in
    Implicit VR, else OW beyond 8 bits allocated."""
    if " or " not in vr:
        return vr
    native_pixel_data = element.tag == PIXEL_DATA and element.length != UNDEFINED_LENGTH
    if native_pixel_data and (element.is_implicit_VR or ds.get("BitsAllocated", 16) > 8):
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
