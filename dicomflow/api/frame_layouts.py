"""Where the frames of a stored file lie, remembered per file, so that a frame request (a viewer
asks for one per image) reads them in the event loop without parsing the file's header.

A layout names the file it was taken from (`FileIdentity`): a replaced file never gets an old
layout, whatever the cache holds.
"""

import struct
from array import array
from bisect import bisect_left
from dataclasses import dataclass
from itertools import pairwise
from typing import BinaryIO

from pydicom.encaps import get_frame, parse_basic_offsets, parse_fragments
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicomflow.api.pixels import StoredPixels, frame_index
from dicomflow.api.sized_lru import SizedLRU, one_each
from dicomflow.core.dicom_json import UNDEFINED_LENGTH
from dicomflow.core.storage import FileIdentity, LocalStorage

# An encapsulated value read whole for each frame request: beyond this, each frame's fragments
# are remembered (`FragmentedFrames`) and read alone.
ENCAPSULATED_VALUE_LIMIT = 1 << 20
ITEM_HEADER_SIZE = 8  # (FFFE,E000) and a 4-byte length
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


@dataclass(frozen=True)
class FragmentedFrames(_FramesOfAFile):
    """Encapsulated pixel data too large to read whole (a cine): where each fragment's bytes lie
    in the file, and which fragments make each frame (from the Basic Offset Table, or one
    fragment a frame, or all for one frame, as pydicom's `get_frame` reads them). Kept in
    arrays: 16 bytes a frame of one fragment."""

    syntax: UID
    file: FileIdentity
    starts: array  # of each fragment's bytes in the file
    sizes: array  # of each fragment
    first_fragments: array  # of each frame
    frames: int

    @classmethod
    def read(
        cls, fh: BinaryIO, syntax: str, file: FileIdentity, offset: int, frames: int
    ) -> "FragmentedFrames | None":
        """The layout of the encapsulated value whose Basic Offset Table item is at `offset`
        of `fh` (item headers read, fragments skipped); None when its frames cannot be told
        apart without reading them (no offset table, several frames, more fragments)."""
        try:
            fh.seek(offset)
            frame_offsets = parse_basic_offsets(fh)
            first = fh.tell()
            count, positions = parse_fragments(fh)
            if count == 0:
                return None
            fh.seek(positions[-1] + 4)
            (last_size,) = struct.unpack("<L", fh.read(4))
        except (ValueError, struct.error):
            return None
        if positions[-1] + ITEM_HEADER_SIZE + last_size > file.size:
            return None
        firsts = _first_fragments(frame_offsets, [p - first for p in positions], frames)
        if firsts is None:
            return None
        sizes = [b - a - ITEM_HEADER_SIZE for a, b in pairwise(positions)] + [last_size]
        starts = [position + ITEM_HEADER_SIZE for position in positions]
        return cls(
            UID(syntax), file, array("q", starts), array("I", sizes), array("I", firsts), frames
        )

    def read_if_cached(
        self, storage: LocalStorage, key: str, indexes: list[int], limit: int
    ) -> list[Frame] | None:
        """Frames `indexes` as stored (their fragments joined), if the file is still this one,
        they are in the page cache and together at most `limit` bytes; else None."""
        ranges = [self._fragment_range(index) for index in indexes]
        spans = [
            (self.starts[fragment], self.sizes[fragment])
            for start, end in ranges
            for fragment in range(start, end)
        ]
        if sum(size for _, size in spans) > limit:
            return None
        read = storage.read_spans_if_cached(key, self.file, spans)
        if read is None:
            return None
        frames: list[Frame] = []
        taken = 0
        for start, end in ranges:
            parts = read[taken : taken + end - start]
            frames.append(parts[0] if len(parts) == 1 else b"".join(parts))
            taken += end - start
        return frames

    def _fragment_range(self, index: int) -> tuple[int, int]:
        last = index + 1 == self.frames
        end = len(self.starts) if last else self.first_fragments[index + 1]
        return self.first_fragments[index], end


def _first_fragments(
    frame_offsets: list[int], fragment_offsets: list[int], frames: int
) -> list[int] | None:
    """The index of each frame's first fragment: from the Basic Offset Table (each offset must
    be a fragment's), else one fragment a frame, else all fragments for a single frame."""
    if frame_offsets:
        if len(frame_offsets) != frames:
            return None
        firsts = [bisect_left(fragment_offsets, offset) for offset in frame_offsets]
        for index, offset in zip(firsts, frame_offsets, strict=True):
            if index >= len(fragment_offsets) or fragment_offsets[index] != offset:
                return None
        return firsts if firsts == sorted(set(firsts)) else None
    if len(fragment_offsets) == frames or frames == 1:
        return list(range(frames))
    return None


FrameLayout = NativeFrames | EncapsulatedFrames | FragmentedFrames


def layout_of(pixels: StoredPixels) -> FrameLayout | None:
    """Where the frames of an open stored instance lie, when that is known (an Extended Offset
    Table is left to the file's own reading). Reads the item headers of a large encapsulated
    value: call it where blocking reads are allowed."""
    if pixels.file is None or pixels.offset is None:
        return None
    if pixels.encapsulated:
        if "ExtendedOffsetTable" in pixels.ds:
            return None
        if pixels.file.size - pixels.offset > ENCAPSULATED_VALUE_LIMIT:
            return FragmentedFrames.read(
                pixels.fh, pixels.syntax, pixels.file, pixels.offset, pixels.frames
            )
        return EncapsulatedFrames.of(
            pixels.syntax, pixels.file, pixels.offset, pixels.length, pixels.frames
        )
    try:
        bits, frames = pixels.frame_bits, pixels.frames
    except (AttributeError, TypeError, ValueError):
        return None
    return NativeFrames.of(pixels.syntax, pixels.file, pixels.offset, pixels.length, frames, bits)


class FrameLayouts(SizedLRU[str, FrameLayout]):
    """The least recently used layouts by storage key, at most `max_entries` (~1.2 kB each)."""

    def __init__(self, max_entries: int) -> None:
        super().__init__(max_entries, one_each)
