"""Byte-level views of Part-10 files for byte-for-byte comparisons."""

import struct
from pathlib import Path

_LONG_VRS = {
    b"OB",
    b"OW",
    b"OF",
    b"SQ",
    b"UT",
    b"UN",
    b"UC",
    b"UR",
    b"OD",
    b"OL",
    b"OV",
    b"SV",
    b"UV",
}


def dataset_bytes(path: Path) -> bytes:
    """The bytes after the preamble, the `DICM` prefix and the file meta group (explicit VR LE)."""
    return dataset_bytes_of(path.read_bytes())


def dataset_bytes_of(data: bytes) -> bytes:
    """`dataset_bytes` of a Part-10 file held in memory."""
    if data[128:132] != b"DICM":
        raise ValueError("not a Part-10 file")
    offset = 132
    while offset + 8 <= len(data):
        group, _element = struct.unpack_from("<HH", data, offset)
        if group != 0x0002:
            break
        vr = data[offset + 4 : offset + 6]
        if vr in _LONG_VRS:
            (length,) = struct.unpack_from("<I", data, offset + 8)
            offset += 12 + length
        else:
            (length,) = struct.unpack_from("<H", data, offset + 6)
            offset += 8 + length
    return data[offset:]
