"""Where the frames of a stored file lie, read from its first bytes without pydicom.

A viewer asks for each image's frames once, so a frame request usually finds no remembered
layout; pydicom would build every element of the header to tell where Pixel Data starts (0.3 ms
for a CT image, in a worker thread). That needs only the element headers before Pixel Data and
six values of the Image Pixel module, read here straight from the bytes. Anything else (big
endian or deflated data, a header longer than the bytes given, an element this does not read as
the standard says, an Extended Offset Table) gets None, and pydicom reads the file.
"""

import struct

from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicomflow.api.frame_layouts import EncapsulatedFrames, FrameLayout, NativeFrames
from dicomflow.api.pixels import native_frame_bits
from dicomflow.core.dicom_json import PIXEL_DATA, UNDEFINED_LENGTH
from dicomflow.core.storage import FileIdentity

HEAD_SIZE = 16 * 1024  # a CT or MR header takes 2-6 kB
PREAMBLE = 128
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
# PS3.5 Table 7.1-1: these have a 4-byte length after 2 reserved bytes, the others 2 bytes.
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_SHORT_VRS = frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"PN"}
    | {b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
)
_EXTENDED_OFFSET_TABLE = 0x7FE00001
_SAMPLES, _PHOTOMETRIC, _FRAMES = 0x00280002, 0x00280004, 0x00280008
_ROWS, _COLUMNS, _BITS_ALLOCATED = 0x00280010, 0x00280011, 0x00280100
_WANTED = frozenset({_SAMPLES, _PHOTOMETRIC, _FRAMES, _ROWS, _COLUMNS, _BITS_ALLOCATED})
MAX_NESTING = 16  # sequences within sequences; deeper is left to pydicom


class _Unreadable(Exception):
    """Bytes this module does not read; pydicom will."""


def locate_frames(head: bytes | memoryview, file: FileIdentity) -> FrameLayout | None:
    """The frame layout of the Part 10 file `file` whose first bytes are `head`, or None."""
    try:
        syntax, position = _file_meta(head)
        encapsulated = UID(syntax).is_encapsulated
        if syntax not in (ExplicitVRLittleEndian, ImplicitVRLittleEndian) and not encapsulated:
            return None
        explicit = syntax != ImplicitVRLittleEndian
        values: dict[int, bytes] = {}
        previous = -1
        while True:
            tag, vr, length, position = _element(head, position, explicit)
            if tag <= previous or tag > PIXEL_DATA or tag == _EXTENDED_OFFSET_TABLE:
                return None
            previous = tag
            if tag == PIXEL_DATA:
                break
            if length == UNDEFINED_LENGTH:
                position = _skip_items(head, position, explicit and vr != b"UN")
                continue
            if tag in _WANTED:
                values[tag] = _value(head, position, length)
            position += length
        frames, bits = _frames_and_bits(values)
    except (_Unreadable, struct.error, ValueError, KeyError):
        return None
    if encapsulated:
        return EncapsulatedFrames.of(syntax, file, position, length, frames)
    return NativeFrames.of(syntax, file, position, length, frames, bits)


def _file_meta(head: bytes | memoryview) -> tuple[str, int]:
    """The transfer syntax named in the file meta (always Explicit VR Little Endian) and where
    the data set starts."""
    if bytes(head[PREAMBLE : PREAMBLE + 4]) != b"DICM":
        raise _Unreadable("no Part 10 preamble")
    position = PREAMBLE + 4
    syntax = None
    while position + 4 <= len(head) and struct.unpack_from("<H", head, position)[0] == 0x0002:
        tag, _, length, position = _element(head, position, explicit=True)
        if tag == 0x00020010:
            syntax = bytes(_value(head, position, length)).rstrip(b"\0 ").decode("ascii")
        position += length
    if syntax is None:
        raise _Unreadable("no transfer syntax")
    return syntax, position


def _element(
    head: bytes | memoryview, position: int, explicit: bool
) -> tuple[int, bytes | None, int, int]:
    """Tag, VR (explicit only), value length and value position of the element at `position`."""
    group, element = struct.unpack_from("<HH", head, position)
    tag = group << 16 | element
    if not explicit or group == 0xFFFE:
        return tag, None, struct.unpack_from("<I", head, position + 4)[0], position + 8
    vr = bytes(head[position + 4 : position + 6])
    if vr in _LONG_VRS:
        return tag, vr, struct.unpack_from("<I", head, position + 8)[0], position + 12
    if vr in _SHORT_VRS:
        return tag, vr, struct.unpack_from("<H", head, position + 6)[0], position + 8
    raise _Unreadable(f"VR {vr!r}")


def _skip_items(head: bytes | memoryview, position: int, explicit: bool, depth: int = 1) -> int:
    """Where the undefined-length sequence whose items start at `position` ends (PS3.5 7.5);
    the items of a UN of undefined length are Implicit VR (PS3.5 6.2.2)."""
    if depth > MAX_NESTING:
        raise _Unreadable("sequences nested too deep")
    while True:
        tag, _, length, position = _element(head, position, explicit)
        if tag == _SEQUENCE_END:
            return position
        if tag != _ITEM:
            raise _Unreadable("not an item")
        if length != UNDEFINED_LENGTH:
            position += length
            continue
        while True:
            tag, vr, length, position = _element(head, position, explicit)
            if tag == _ITEM_END:
                break
            if length == UNDEFINED_LENGTH:
                position = _skip_items(head, position, explicit and vr != b"UN", depth + 1)
            else:
                position += length


def _value(head: bytes | memoryview, position: int, length: int) -> bytes:
    if position + length > len(head):
        raise _Unreadable("value beyond the bytes given")
    return bytes(head[position : position + length])


def _frames_and_bits(values: dict[int, bytes]) -> tuple[int, int]:
    """Number of frames and bits per frame, as `StoredPixels` reads them with pydicom."""

    def us(tag: int) -> int:
        return struct.unpack_from("<H", values[tag])[0]

    frames_text = values.get(_FRAMES, b"").decode("ascii").strip(" \0")
    photometric = values.get(_PHOTOMETRIC, b"").decode("ascii").strip(" \0") or None
    bits = native_frame_bits(
        us(_ROWS), us(_COLUMNS), us(_SAMPLES), us(_BITS_ALLOCATED), photometric
    )
    return int(frames_text or 1) or 1, bits
