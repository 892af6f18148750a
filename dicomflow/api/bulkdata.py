"""Bulk data paths (see dicomflow.core.dicom_json): `{tag}` or `{sequence tag}/{item}/{tag}`..."""

import re

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRBigEndian

from dicomflow.api.pixels import NotFound
from dicomflow.api.transcode import SWAP_UNITS, swap_bytes

_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
_ITEM = re.compile(r"^[1-9][0-9]{0,8}$")


def parse_path(path: str) -> tuple[list[tuple[int, int]], int]:
    """The (sequence tag, item number) steps and the final tag of `path` (ValueError: malformed)."""
    segments = path.strip("/").split("/")
    tags, items = segments[0::2], segments[1::2]
    if len(tags) != len(items) + 1 or not all(map(_TAG.match, tags)):
        raise ValueError(f"malformed bulk data path {path!r}")
    if not all(map(_ITEM.match, items)):
        raise ValueError(f"malformed item number in bulk data path {path!r}")
    numbers = [int(tag, 16) for tag in tags]
    return list(zip(numbers[:-1], map(int, items), strict=True)), numbers[-1]


def bulk_value(ds: Dataset, steps: list[tuple[int, int]], tag: int) -> bytes:
    """The little endian value of the binary element at the path; NotFound otherwise."""
    current = ds
    for sequence_tag, number in steps:
        element = current.get(sequence_tag)
        if element is None or element.VR != "SQ" or not 1 <= number <= len(element.value):
            raise NotFound(f"no item {number} in ({sequence_tag:08X})")
        current = element.value[number - 1]
    element = current.get(tag)
    if element is None:
        raise NotFound(f"no element ({tag:08X}) at that path")
    if not isinstance(element.value, bytes | bytearray) or not _is_binary(element.VR):
        raise NotFound(f"({tag:08X}) is not a bulk data element")
    if ds.file_meta.TransferSyntaxUID == ExplicitVRBigEndian:
        return swap_bytes(bytes(element.value), SWAP_UNITS.get(element.VR, 1))
    return bytes(element.value)


def _is_binary(vr: str) -> bool:
    """OB, OD, OF, OL, OV, OW, UN and the ambiguous `... or OW` VRs."""
    return vr == "UN" or vr.startswith("O") or vr.endswith("OW")
