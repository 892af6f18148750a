"""WADO-RS retrieve bodies (PS3.18 10.4): multipart parts of instances, frames and bulk data.

Files are read in worker threads, one chunk (1 MiB: a whole CT or MR image) or one frame per
thread hop; an instance is held in memory only while it is transcoded, one at a time.
"""

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

from fastapi.responses import Response, StreamingResponse
from pydicom.dataset import Dataset
from starlette.types import Receive, Scope, Send

from dicomflow.api.multipart import Part, multipart_stream, new_boundary
from dicomflow.api.negotiation import Choice, NotAcceptable, choose_instance_media
from dicomflow.api.pixels import CannotDecode, StoredPixels, open_pixels, read_header
from dicomflow.api.transcode import as_stored_only, can_transcode, transcode_instance
from dicomflow.core.storage import FileIdentity, LocalStorage, read_at_most

CHUNK_SIZE = 1 << 20
WHOLE_BODY_SIZE = 4 << 20
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
    first = await asyncio.to_thread(_seek_and_read, fh, offset, _wanted(size))
    async for chunk in _chunks_from(fh, first, size):
        yield chunk


async def _chunks_from(fh: BinaryIO, first: bytes, size: int | None) -> AsyncIterator[bytes]:
    """`first`, then the rest of `fh` (up to `size` bytes in all), one thread hop per chunk.

    A short chunk is the end of the file (buffered reads fill up to EOF), so a file smaller than
    a chunk costs one hop, not two.
    """
    try:
        chunk, remaining = first, size
        while chunk:
            yield chunk
            if remaining is not None:
                remaining -= len(chunk)
            if len(chunk) < CHUNK_SIZE or remaining == 0:
                break
            chunk = await asyncio.to_thread(read_at_most, fh, _wanted(remaining))
    finally:
        fh.close()


def _wanted(remaining: int | None) -> int:
    return CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)


def _seek_and_read(fh: BinaryIO, offset: int, size: int) -> bytes:
    fh.seek(offset)
    return read_at_most(fh, size)


def _open_and_read(storage: LocalStorage, key: str) -> tuple[BinaryIO | None, bytes]:
    """Open a stored file and read its first chunk in one thread hop; a file that fits in
    the chunk is closed at once (no file object returned)."""
    fh = storage.open(key)
    try:
        first = read_at_most(fh, CHUNK_SIZE)
    except BaseException:
        fh.close()
        raise
    if len(first) < CHUNK_SIZE:
        fh.close()
        return None, first
    return fh, first


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
        if choice.transcode:
            try:
                body = await asyncio.to_thread(_transcode_stored, storage, instance.key)
            except CannotDecode as exc:
                choice = _as_stored(accept, instance.transfer_syntax, str(exc))
            else:
                yield Part(choice.part_content_type(), body)
                continue
        cached = storage.read_if_cached(instance.key, CHUNK_SIZE)
        if cached is not None:
            yield Part(choice.part_content_type(), cached)
            continue
        fh, first = await asyncio.to_thread(_open_and_read, storage, instance.key)
        body = first if fh is None else _chunks_from(fh, first, None)
        yield Part(choice.part_content_type(), body)


def _transcode_stored(storage: LocalStorage, key: str) -> bytes:
    """Open and transcode a stored instance in one thread hop."""
    with storage.open(key) as fh:
        return transcode_instance(fh)


def _as_stored(accept: str | None, stored: str, reason: str) -> Choice:
    try:
        return choose_instance_media(accept, stored, as_stored_only)
    except NotAcceptable:
        raise NotAcceptable(reason) from None


async def frame_parts(
    pixels: StoredPixels, indexes: Iterable[int], choice: Choice
) -> AsyncIterator[Part]:
    """One part per frame index; closes the file. A native frame the page cache holds is read
    at once; any other is read (or decoded) in a worker thread."""
    read_now: Callable[[int], memoryview | None] | None = None
    if choice.transcode:
        read: Callable[[int], bytes] = pixels.decoded_frame
    elif pixels.encapsulated:
        read = pixels.stored_frame
    else:
        read, read_now = pixels.native_frame, pixels.native_frame_if_cached
    async for frame in _read_frames(pixels, read, indexes, read_now):
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
    pixels: StoredPixels,
    read: Callable[[int], bytes],
    indexes: Iterable[int],
    read_now: Callable[[int], memoryview | None] | None = None,
) -> AsyncIterator[bytes | memoryview]:
    """Each frame from `read_now` (in the event loop) when it gives one, else from `read` in a
    worker thread; closes the file."""
    try:
        for index in indexes:
            frame = None if read_now is None else read_now(index)
            yield frame if frame is not None else await asyncio.to_thread(read, index)
    finally:
        pixels.fh.close()


class PiecesResponse(Response):
    """A body held as a few pieces (part headers, a whole file): one Content-Length, the
    pieces sent one after the other instead of being copied into one buffer first."""

    def __init__(self, pieces: list[bytes], media_type: str) -> None:
        super().__init__(media_type=media_type)
        self.pieces = pieces
        self.headers["content-length"] = str(sum(len(piece) for piece in pieces))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        for index, piece in enumerate(self.pieces, 1):
            more = index < len(self.pieces)
            await send({"type": "http.response.body", "body": piece, "more_body": more})


async def multipart_response(parts: AsyncIterator[Part], choice: Choice) -> Response:
    """A multipart/related response. The first two parts are made before the status is sent,
    so that their errors (406, 404) still become the response; a lone part already in memory
    (one instance, one frame, up to 4 MiB) is sent whole with a Content-Length, saving the
    streaming machinery; anything else is streamed.
    """
    first = await anext(parts)
    second = await anext(parts, None)
    boundary = new_boundary()
    media_type = choice.content_type(boundary)
    if (
        second is None
        and isinstance(first.body, bytes | memoryview)
        and len(first.body) <= WHOLE_BODY_SIZE
    ):
        pieces = [chunk async for chunk in multipart_stream([first], boundary)]
        return PiecesResponse(pieces, media_type=media_type)
    rest = parts if second is None else _prepend(second, parts)
    stream = multipart_stream(_prepend(first, rest), boundary)
    return StreamingResponse(stream, media_type=media_type)


async def _prepend(first: T, rest: AsyncIterator[T]) -> AsyncIterator[T]:
    yield first
    async for part in rest:
        yield part


def open_stored_pixels(storage: LocalStorage, key: str) -> StoredPixels:
    """Open a stored instance for its pixel data (blocking); the caller closes `pixels.fh`."""
    fh = storage.open(key)
    try:
        return open_pixels(fh, FileIdentity.of(fh.fileno()))
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


async def parts_in_memory(*parts: Part) -> AsyncIterator[Part]:
    for part in parts:
        yield part
