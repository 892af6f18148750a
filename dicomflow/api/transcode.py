"""Transcoding a stored instance to Explicit VR Little Endian, the only target offered.

Compressed pixel data is decoded by pydicom's pixel handlers (numpy, pylibjpeg, Pillow); Implicit
VR and Deflated data sets are re-written; Big Endian values are byte-swapped. One instance in
memory at a time; blocking: call from a worker thread.
"""

from io import BytesIO
from typing import BinaryIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from dicomflow.api.pixels import DECODE_ERRORS, PIXEL_DATA, CannotDecode

_REWRITABLE = frozenset(
    {ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian}
)
SWAP_UNITS = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def can_transcode(stored: str, target: str) -> bool:
    """Whether `stored` data can be delivered as `target`: decoding to Explicit VR LE only."""
    if target != ExplicitVRLittleEndian:
        return False
    if stored in _REWRITABLE or stored == ExplicitVRBigEndian:
        return True
    try:
        return get_decoder(UID(stored)).is_available
    except NotImplementedError:
        return False


def as_stored_only(stored: str, target: str) -> bool:
    """A `can_transcode` that refuses everything: deliver the stored form or nothing."""
    return False


def transcode_instance(fh: BinaryIO) -> bytes:
    """The Part 10 file `fh` as an Explicit VR Little Endian Part 10 file (same UIDs)."""
    ds = pydicom.dcmread(fh)
    stored = ds.file_meta.TransferSyntaxUID
    try:
        if stored.is_encapsulated:
            ds.decompress(generate_instance_uid=False)
        elif stored == ExplicitVRBigEndian:
            swap_to_little_endian(ds)
    except DECODE_ERRORS as exc:
        raise CannotDecode(f"cannot decode {stored.name} pixel data: {exc}") from exc
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = BytesIO()
    pydicom.dcmwrite(out, ds, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return out.getvalue()


def swap_to_little_endian(ds: Dataset) -> None:
    """Byte-swap the binary values that pydicom keeps as read from a Big Endian file."""
    for element in ds:
        if element.VR == "SQ":
            for item in element.value:
                swap_to_little_endian(item)
        elif element.value and element.VR in SWAP_UNITS:
            unit = SWAP_UNITS[element.VR]
            if element.tag == PIXEL_DATA:  # OW words hold samples of BitsAllocated bits
                unit = max(unit, int(ds.BitsAllocated) // 8)
            element.value = swap_bytes(element.value, unit)


def swap_bytes(value: bytes, unit: int) -> bytes:
    """Reverse the byte order of each `unit`-byte word of `value`."""
    if unit == 1:
        return value
    return np.frombuffer(value, f">u{unit}").astype(f"<u{unit}").tobytes()
