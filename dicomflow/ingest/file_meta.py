"""The Part-10 header (preamble, prefix and File Meta Information, PS3.10 section 7.1) of an
instance received over C-STORE: the one pynetdicom's `Event.encoded_dataset` writes, encoded
here directly, since pydicom's writer builds an element object per attribute (0.2 ms per
instance, on the path every C-STORE response waits for)."""

import struct

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

PREAMBLE_AND_PREFIX = b"\0" * 128 + b"DICM"
FILE_META_VERSION = b"\x00\x01"
_LONG_LENGTH_VRS = {b"OB"}  # of the VRs used here, those with a 4-byte length (PS3.5 7.1.2)


def part10_header(sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str) -> bytes:
    """Preamble, prefix and the group 0002 elements; raise ValueError for a value that cannot
    be encoded (not ASCII, or too long)."""
    elements = b"".join(
        (
            _element(0x0001, b"OB", FILE_META_VERSION),
            _element(0x0002, b"UI", encoded_uid(sop_class_uid)),
            _element(0x0003, b"UI", encoded_uid(sop_instance_uid)),
            _element(0x0010, b"UI", encoded_uid(transfer_syntax_uid)),
            _element(0x0012, b"UI", encoded_uid(PYNETDICOM_IMPLEMENTATION_UID)),
            _element(0x0013, b"SH", _text(PYNETDICOM_IMPLEMENTATION_VERSION)),
        )
    )
    group_length = _element(0x0000, b"UL", struct.pack("<I", len(elements)))
    return b"".join((PREAMBLE_AND_PREFIX, group_length, elements))


def _element(element: int, vr: bytes, value: bytes) -> bytes:
    """One explicit VR little endian element of group 0002."""
    try:
        if vr in _LONG_LENGTH_VRS:
            return struct.pack("<HH2s2xI", 0x0002, element, vr, len(value)) + value
        return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value
    except struct.error as exc:
        raise ValueError(f"(0002,{element:04X}) is {len(value)} bytes long: {exc}") from exc


def encoded_uid(value: str) -> bytes:
    """A UI value as encoded: ASCII, padded with a NUL to an even length (PS3.5 6.2)."""
    encoded = value.encode("ascii")
    return encoded + b"\0" if len(encoded) % 2 else encoded


def _text(value: str) -> bytes:
    encoded = value.encode("ascii")
    return encoded + b" " if len(encoded) % 2 else encoded
