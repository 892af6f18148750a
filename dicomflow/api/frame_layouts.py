"""Where the frames of a stored file lie, remembered per file, so that a frame request (a viewer
asks for one per image) reads them in the event loop without parsing the file's header.

A layout names the file it was taken from (`FileIdentity`): a replaced file never gets an old
layout, whatever the cache holds.
"""

from collections import OrderedDict
from dataclasses import dataclass

from pydicom.encaps import get_frame
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicomflow.api.pixels import StoredPixels, frame_index
from dicomflow.core.dicom_json import UNDEFINED_LENGTH
from dicomflow.core.storage import FileIdentity, LocalStorage

# An encapsulated value read whole for each frame request: beyond this, reading only the
# frame's fragments from the file in a worker thread costs less.
ENCAPSULATED_VALUE_LIMIT = 1 << 20
_LITTLE_ENDIAN_NATIVE = frozenset({ImplicitVRLittleEndian, ExplicitVRLittleEndian})

Frame = bytes | memoryview


class _FramesOfAFile:
    """The frames of one stored file, numbered from 1 in requests."""

    frames: int

    def index(self, number: int) -> int:
        """The 0-based index of 1-based frame `number`, or NotFound."""
        return frame_index(number, self.frames)


@dataclass(frozen=True)
class NativeFrames(_FramesOfAFile):
    """Native little endian pixel data, each frame whole bytes: frame i at a fixed offset."""

    syntax: UID
    file: FileIdentity
    offset: int  # of frame 1 in the file
    frame_size: int
    frames: int

    @classmethod
    def of(
        cls, syntax: str, file: FileIdentity, offset: int, length: int, frames: int, bits: int
    ) -> "NativeFrames | None":
        """The layout of a Pixel Data value at `offset` of `length` bytes holding `frames` of
        `bits` each; None unless native little endian, whole bytes a frame, all in the value."""
        if syntax not in _LITTLE_ENDIAN_NATIVE or bits <= 0 or bits % 8:
            return None
        if frames <= 0 or length < frames * bits // 8 or offset + length > file.size:
            return None
        return cls(UID(syntax), file, offset, bits // 8, frames)

    def read_if_cached(
        self, storage: LocalStorage, key: str, indexes: list[int], limit: int
    ) -> list[Frame] | None:
        """Frames `indexes`, if the file is still this one, they are in the page cache and
        together at most `limit` bytes; else None. Never waits for the disk."""
        if len(indexes) * self.frame_size > limit:
            return None
        spans = [(self.offset + index * self.frame_size, self.frame_size) for index in indexes]
        frames = storage.read_spans_if_cached(key, self.file, spans)
        return None if frames is None else list(frames)


@dataclass(frozen=True)
class EncapsulatedFrames(_FramesOfAFile):
    """Encapsulated (compressed) pixel data: its value, from the Basic Offset Table item on, is
    read whole and the frames are cut from it by pydicom (`get_frame`)."""

    syntax: UID
    file: FileIdentity
    offset: int  # of the value's first item
    frames: int

    @classmethod
    def of(
        cls, syntax: str, file: FileIdentity, offset: int, length: int, frames: int
    ) -> "EncapsulatedFrames | None":
        """None unless the syntax is encapsulated and the value of undefined length."""
        if not UID(syntax).is_encapsulated or length != UNDEFINED_LENGTH or frames <= 0:
            return None
        if offset >= file.size:
            return None
        return cls(UID(syntax), file, offset, frames)

    def read_if_cached(
        self, storage: LocalStorage, key: str, indexes: list[int], limit: int
    ) -> list[Frame] | None:
        """Frames `indexes` as stored, if the file is still this one, the value (up to the end
        of the file) is at most `limit` bytes (and ENCAPSULATED_VALUE_LIMIT) and in the page
        cache; else None."""
        size = self.file.size - self.offset
        if size > min(limit, ENCAPSULATED_VALUE_LIMIT):
            return None
        read = storage.read_spans_if_cached(key, self.file, [(self.offset, size)])
        if read is None:
            return None
        value = bytes(read[0])  # pydicom reads bytes or files, not memoryviews
        try:
            return [get_frame(value, index, number_of_frames=self.frames) for index in indexes]
        except ValueError:
            return None  # pydicom reading the file decides what to answer


FrameLayout = NativeFrames | EncapsulatedFrames


def layout_of(pixels: StoredPixels) -> FrameLayout | None:
    """Where the frames of an open stored instance lie, when that is known (an Extended Offset
    Table is left to the file's own reading)."""
    if pixels.file is None or pixels.offset is None:
        return None
    if pixels.encapsulated:
        if "ExtendedOffsetTable" in pixels.ds:
            return None
        return EncapsulatedFrames.of(
            pixels.syntax, pixels.file, pixels.offset, pixels.length, pixels.frames
        )
    try:
        bits, frames = pixels.frame_bits, pixels.frames
    except (AttributeError, TypeError, ValueError):
        return None
    return NativeFrames.of(pixels.syntax, pixels.file, pixels.offset, pixels.length, frames, bits)


class FrameLayouts:
    """The least recently used layouts by storage key, at most `max_entries` (~1.2 kB each)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, FrameLayout] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> FrameLayout | None:
        layout = self._entries.get(key)
        if layout is not None:
            self._entries.move_to_end(key)
        return layout

    def put(self, key: str, layout: FrameLayout) -> None:
        self._entries[key] = layout
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
