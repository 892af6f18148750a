"""Pixel data of one stored instance: frames read from its file without loading the others.

Blocking (file reads, decoding): call from a worker thread, but `native_frame_if_cached`, which
never waits for the disk.
"""

from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.pixels import pack_bits, pixel_array
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from dicomflow.core.dicom_json import PIXEL_DATA, UNDEFINED_LENGTH
from dicomflow.core.series_metadata import DEFER_SIZE
from dicomflow.core.storage import FileIdentity, pread_if_cached

DECODE_ERRORS = (RuntimeError, ValueError, NotImplementedError, AttributeError, KeyError)


class NotFound(Exception):
    """The instance has no such frame or element (HTTP 404)."""


class CannotDecode(Exception):
    """The stored pixel data cannot be decoded here (HTTP 406)."""


def frame_index(number: int, frames: int) -> int:
    """The 0-based index of 1-based frame `number` among `frames`, or NotFound."""
    if not 1 <= number <= frames:
        raise NotFound(f"frame {number} does not exist: the instance has {frames}")
    return number - 1


def native_frame_bits(
    rows: int, columns: int, samples: int, bits_allocated: int, photometric: str | None
) -> int:
    """Bits of one native frame; YBR_FULL_422 stores two samples a pixel (PS3.3 C.7.6.3)."""
    if photometric == "YBR_FULL_422":
        samples = 2
    return rows * columns * samples * bits_allocated


@dataclass
class StoredPixels:
    """An open instance: its header (every value but Pixel Data loaded) and where its pixels are."""

    fh: BinaryIO
    ds: Dataset
    syntax: UID
    offset: int | None  # of the Pixel Data value in `fh`; None when `ds` holds the value
    length: int
    file: FileIdentity | None = None  # of the stored file `fh` reads

    @property
    def encapsulated(self) -> bool:
        return self.syntax.is_encapsulated

    @property
    def frames(self) -> int:
        return int(self.ds.get("NumberOfFrames") or 1)

    @property
    def frame_bits(self) -> int:
        ds = self.ds
        return native_frame_bits(
            int(ds.Rows),
            int(ds.Columns),
            int(ds.SamplesPerPixel),
            int(ds.BitsAllocated),
            ds.get("PhotometricInterpretation"),
        )

    def check_frame(self, number: int) -> int:
        """The 0-based index of 1-based frame `number`, or NotFound."""
        return frame_index(number, self.frames)

    def read(self, offset: int, size: int) -> bytes:
        """`size` bytes of the Pixel Data value from `offset`."""
        if self.offset is None:
            data = bytes(self.ds.PixelData[offset : offset + size])
        else:
            self.fh.seek(self.offset + offset)
            data = self.fh.read(size)
        if len(data) != size:
            raise NotFound("the stored pixel data is shorter than its attributes say")
        return data

    def native_frame(self, index: int) -> bytes:
        """Frame `index` as stored in native (little endian) pixel data."""
        bits = self.frame_bits
        start, end = index * bits, (index + 1) * bits
        if bits % 8 == 0:
            return self.read(start // 8, bits // 8)
        # BitsAllocated 1: frames need not start on a byte boundary (PS3.5 8.1.1).
        covering = self.read(start // 8, (end + 7) // 8 - start // 8)
        unpacked = np.unpackbits(np.frombuffer(covering, np.uint8), bitorder="little")
        return np.packbits(unpacked[start % 8 : start % 8 + bits], bitorder="little").tobytes()

    def native_frame_if_cached(self, index: int) -> memoryview | None:
        """Frame `index` of native pixel data in the file, if the page cache holds all of it
        (the read never waits for the disk: an event loop may call this); else None."""
        bits = self.frame_bits
        if self.offset is None or bits % 8:
            return None
        size = bits // 8
        return pread_if_cached(self.fh.fileno(), self.offset + index * size, size)

    def stored_frame(self, index: int) -> bytes:
        """Frame `index` of encapsulated pixel data: its compressed bitstream, as stored."""
        if self.offset is None:
            buffer: bytes | BinaryIO = bytes(self.ds.PixelData)
        else:
            self.fh.seek(self.offset)
            buffer = self.fh
        offsets = self.ds.get("ExtendedOffsetTable"), self.ds.get("ExtendedOffsetTableLengths")
        try:
            return get_frame(
                buffer,
                index,
                number_of_frames=self.frames,
                extended_offsets=offsets if all(offsets) else None,
            )
        except ValueError as exc:
            raise NotFound(f"frame {index + 1} not found in the pixel data: {exc}") from exc

    def decode(self, index: int) -> np.ndarray:
        """Frame `index` decoded by pydicom (colour as RGB), in native byte order."""
        try:
            if self.offset is None:
                return pixel_array(self.ds, index=index)
            self.fh.seek(0)
            return pixel_array(self.fh, index=index)
        except DECODE_ERRORS as exc:
            raise CannotDecode(f"cannot decode {self.syntax.name} pixel data: {exc}") from exc

    def decoded_frame(self, index: int) -> bytes:
        """Frame `index` decoded to native little endian bytes (packed bits when 1-bit)."""
        arr = self.decode(index)
        if int(self.ds.BitsAllocated) == 1:
            return pack_bits(arr)
        return arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


def open_pixels(fh: BinaryIO, file: FileIdentity | None = None) -> StoredPixels:
    """Read the header of the Part 10 file `fh` (the stored file `file`, when given); NotFound
    when it has no Pixel Data."""
    ds = read_header(fh)
    raw = ds.get_item(PIXEL_DATA, keep_deferred=True)
    if raw is None:
        raise NotFound("the instance has no pixel data")
    syntax = ds.file_meta.TransferSyntaxUID
    if isinstance(raw, RawDataElement) and raw.value is None:
        return StoredPixels(fh, ds, syntax, raw.value_tell, raw.length, file)
    return StoredPixels(fh, ds, syntax, None, len(ds.PixelData), file)


def read_header(fh: BinaryIO) -> Dataset:
    """The data set of `fh` with every top-level value but Pixel Data read from `fh`.

    Deferred values are read here, never by pydicom re-opening the file by name.
    """
    ds = pydicom.dcmread(fh, defer_size=DEFER_SIZE)
    if ds.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian:
        fh.seek(0)
        return pydicom.dcmread(fh)  # offsets would be in the inflated stream
    for tag in list(ds.keys()):
        raw = ds.get_item(tag, keep_deferred=True)
        if tag == PIXEL_DATA or not isinstance(raw, RawDataElement) or raw.value is not None:
            continue
        if raw.length != UNDEFINED_LENGTH:
            fh.seek(raw.value_tell)
            ds[tag] = raw._replace(value=fh.read(raw.length))
    return ds
