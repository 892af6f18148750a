"""WADO-RS retrieve bodies (PS3.18 10.4): multipart parts of instances, frames and bulk data.

Files are read in worker threads, one chunk or one frame at a time; an instance is held in memory
only while it is transcoded, one at a time.
"""

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

from fastapi.responses import StreamingResponse
from pydicom.dataset import Dataset

from dicomflow.api.multipart import Part, multipart_stream, new_boundary
from dicomflow.api.negotiation import Choice, NotAcceptable, choose_instance_media
from dicomflow.api.pixels import CannotDecode, StoredPixels, open_pixels, read_header
from dicomflow.api.transcode import as_stored_only, can_transcode, transcode_instance
from dicomflow.core.storage import LocalStorage

CHUNK_SIZE = 1 << 20
T = TypeVar("T")


@dataclass(frozen=True)
class StoredInstance:
    """An instance to send: its storage key and stored transfer syntax."""

    key: str
    transfer_syntax: str


async def read_chunks(
    fh: BinaryIO, offset: int = 0, size: int | None = None
) -> AsyncIterator[bytes]:
    """`size` bytes of `fh` from `offset` (or up to its end) in chunks; closes `fh` at the end."""
    try:
        await asyncio.to_thread(fh.seek, offset)
        remaining = size
        while remaining is None or remaining > 0:
            wanted = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
            chunk = await asyncio.to_thread(fh.read, wanted)
            if not chunk:
                break
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk
    finally:
        fh.close()


def choose_for_instances(accept: str | None, syntaxes: Iterable[str]) -> dict[str, Choice]:
    """A Choice for each stored transfer syntax; NotAcceptable when one cannot be delivered."""
    return {s: choose_instance_media(accept, s, can_transcode) for s in set(syntaxes)}


async def instance_parts(
    storage: LocalStorage,
    instances: Iterable[StoredInstance],
    choices: dict[str, Choice],
    accept: str | None,
) -> AsyncIterator[Part]:
    """One application/dicom part per instance: the stored file, or its transcoded form.

    When decoding fails, the stored form is sent if the client accepts it, else NotAcceptable.
    """
    for instance in instances:
        choice = choices[instance.transfer_syntax]
        fh = await asyncio.to_thread(storage.open, instance.key)
        if choice.transcode:
            try:
                body = await asyncio.to_thread(_transcode_and_close, fh)
            except CannotDecode as exc:
                choice = _as_stored(accept, instance.transfer_syntax, str(exc))
            else:
                yield Part(choice.part_content_type(), body)
                continue
            fh = await asyncio.to_thread(storage.open, instance.key)
        yield Part(choice.part_content_type(), read_chunks(fh))


def _transcode_and_close(fh: BinaryIO) -> bytes:
    with fh:
        return transcode_instance(fh)


def _as_stored(accept: str | None, stored: str, reason: str) -> Choice:
    try:
        return choose_instance_media(accept, stored, as_stored_only)
    except NotAcceptable:
        raise NotAcceptable(reason) from None


def frame_reader(pixels: StoredPixels, choice: Choice) -> Callable[[int], bytes]:
    """How to get frame `index` in the chosen syntax: decoded, stored bitstream or native slice."""
    if choice.transcode:
        return pixels.decoded_frame
    return pixels.stored_frame if pixels.encapsulated else pixels.native_frame


async def frame_parts(
    pixels: StoredPixels, indexes: Iterable[int], choice: Choice
) -> AsyncIterator[Part]:
    """One part per frame index, read (or decoded) in a worker thread; closes the file."""
    async for frame in _read_frames(pixels, frame_reader(pixels, choice), indexes):
        yield Part(choice.part_content_type(), frame)


async def pixel_data_parts(pixels: StoredPixels, choice: Choice) -> AsyncIterator[Part]:
    """The Pixel Data bulk data: one part per frame when encapsulated, else one part of all."""
    if pixels.encapsulated and not choice.transcode:
        async for part in frame_parts(pixels, range(pixels.frames), choice):
            yield part
    elif choice.transcode:
        frames = _read_frames(pixels, pixels.decoded_frame, range(pixels.frames))
        first = await anext(frames)  # a first decoding error still becomes the status
        yield Part(choice.part_content_type(), _prepend(first, frames))
    elif pixels.offset is None:
        pixels.fh.close()
        yield Part(choice.part_content_type(), bytes(pixels.ds.PixelData))
    else:
        yield Part(choice.part_content_type(), read_chunks(pixels.fh, pixels.offset, pixels.length))


async def _read_frames(
    pixels: StoredPixels, read: Callable[[int], bytes], indexes: Iterable[int]
) -> AsyncIterator[bytes]:
    try:
        for index in indexes:
            yield await asyncio.to_thread(read, index)
    finally:
        pixels.fh.close()


async def multipart_response(parts: AsyncIterator[Part], choice: Choice) -> StreamingResponse:
    """A streamed multipart/related response; the first part is made before the status is sent,
    so that its errors (406, 404) still become the response."""
    first = await anext(parts)
    boundary = new_boundary()
    return StreamingResponse(
        multipart_stream(_prepend(first, parts), boundary),
        media_type=choice.content_type(boundary),
    )


async def _prepend(first: T, rest: AsyncIterator[T]) -> AsyncIterator[T]:
    yield first
    async for part in rest:
        yield part


def open_stored_pixels(storage: LocalStorage, key: str) -> StoredPixels:
    """Open a stored instance for its pixel data (blocking); the caller closes `pixels.fh`."""
    fh = storage.open(key)
    try:
        return open_pixels(fh)
    except BaseException:
        fh.close()
        raise


def read_stored_header(storage: LocalStorage, key: str) -> Dataset:
    """The data set of a stored instance, Pixel Data left unread (blocking)."""
    with storage.open(key) as fh:
        return read_header(fh)


def parse_frame_list(text: str) -> list[int]:
    """`1,3,5`: 1-based frame numbers, in the order asked; ValueError when malformed."""
    numbers = text.split(",")
    if not all(n.isascii() and n.isdigit() and n[0] != "0" and len(n) <= 9 for n in numbers):
        raise ValueError(f"frame list must be comma-separated numbers from 1, not {text!r}")
    return [int(n) for n in numbers]


async def single_part(part: Part) -> AsyncIterator[Part]:
    yield part
