"""multipart/related (RFC 2046, RFC 2387) for DICOMweb: a streaming writer, an incremental reader.

Neither side holds a whole body part in memory: the writer passes each part's chunks through, and
the reader keeps at most a delimiter's length of body bytes between two `feed` calls.
"""

import re
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Protocol, TypeVar, cast

T = TypeVar("T")

CRLF = b"\r\n"
DEFAULT_MAX_HEADER_SIZE = 16 * 1024
_BCHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? ")
_TSPECIALS = frozenset('()<>@,;:\\"/[]?={} \t')
_PADDING = b" \t"
_ESCAPED = re.compile(r"\\(.)")


class MultipartError(ValueError):
    """A multipart body or a header value that cannot be parsed (HTTP 400)."""


class PartTooLarge(MultipartError):
    """A body part larger than the reader's `max_part_size` (HTTP 413)."""


def new_boundary() -> str:
    """A fresh random boundary (32 hex digits), never found in DICOM or image data by chance."""
    return secrets.token_hex(16)


def is_valid_boundary(boundary: str) -> bool:
    """True when `boundary` follows RFC 2046: 1-70 bchars, not ending in a space."""
    return 0 < len(boundary) <= 70 and set(boundary) <= _BCHARS and not boundary.endswith(" ")


# --- header values ---------------------------------------------------------------------------


def split_unquoted(value: str, sep: str) -> list[str]:
    """Split `value` at each `sep` outside double quotes (escapes kept); items are stripped."""
    items: list[str] = []
    start, quoted, escaped = 0, False, False
    for i, char in enumerate(value):
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == sep and not quoted:
            items.append(value[start:i].strip())
            start = i + 1
    if quoted:
        raise MultipartError(f"unterminated quoted string in {value!r}")
    items.append(value[start:].strip())
    return items


def is_token(text: str) -> bool:
    """True when `text` is an RFC 7230 token (visible ASCII without separators)."""
    return bool(text) and all(33 <= ord(c) < 127 and c not in _TSPECIALS for c in text)


def parse_content_type(header: str) -> tuple[str, dict[str, str]]:
    """Split a Content-Type value into a lower-cased media type and its parameters.

    Parameter names are lower-cased; values are unquoted, their case kept.
    """
    first, *rest = split_unquoted(header, ";")
    media_type = _parse_media_type(first)
    params: dict[str, str] = {}
    for item in filter(None, rest):
        name, eq, value = item.partition("=")
        name = name.strip().lower()
        if not eq or not is_token(name):
            raise MultipartError(f"malformed media type parameter {item!r}")
        params[name] = _unquote(value.strip())
    return media_type, params


def format_content_type(media_type: str, params: Mapping[str, str]) -> str:
    """The inverse of `parse_content_type`: values quoted when they are not tokens."""
    return "; ".join([media_type, *(f"{name}={_quote(value)}" for name, value in params.items())])


def _parse_media_type(text: str) -> str:
    kind, slash, subtype = text.lower().partition("/")
    if not slash or not is_token(kind) or not is_token(subtype):
        raise MultipartError(f"malformed media type {text!r}")
    return f"{kind}/{subtype}"


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return _ESCAPED.sub(r"\1", value[1:-1])
    return value


def _quote(value: str) -> str:
    if is_token(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- writer ----------------------------------------------------------------------------------

Body = bytes | memoryview | Iterable[bytes] | AsyncIterable[bytes]


@dataclass(frozen=True)
class Part:
    """One body part: its Content-Type, extra headers (e.g. Content-Location) and its chunks."""

    content_type: str
    body: Body
    headers: Mapping[str, str] = field(default_factory=dict)


async def multipart_stream(
    parts: Iterable[Part] | AsyncIterable[Part], boundary: str
) -> AsyncIterator[bytes]:
    """Yield a multipart/related body: each part's headers, then its chunks as they come.

    Sync iterables are consumed on the event loop: give async ones for blocking reads.
    """
    if not is_valid_boundary(boundary):
        raise ValueError(f"invalid multipart boundary {boundary!r}")
    dash_boundary = b"--" + boundary.encode("ascii")
    lead = b""
    async for part in _aiter(parts):
        yield lead + dash_boundary + CRLF + _part_head(part)
        async for chunk in _aiter(_chunks(part.body)):
            if chunk:
                yield chunk
        lead = CRLF
    yield lead + dash_boundary + b"--" + CRLF


def _part_head(part: Part) -> bytes:
    lines = [("Content-Type", part.content_type), *part.headers.items()]
    for name, value in lines:
        if not is_token(name) or "\r" in value or "\n" in value:
            raise ValueError(f"invalid part header {name!r}: {value!r}")
    return "".join(f"{name}: {value}\r\n" for name, value in lines).encode("latin-1") + CRLF


def _chunks(body: Body) -> Iterable[bytes] | AsyncIterable[bytes]:
    return (body,) if isinstance(body, bytes | bytearray | memoryview) else body


async def _aiter(items: Iterable[T] | AsyncIterable[T]) -> AsyncIterator[T]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


# --- reader ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartStart:
    """A body part begins; header names are lower-cased, repeated headers joined with ', '."""

    headers: dict[str, str]


@dataclass(frozen=True)
class PartData:
    """The next bytes of the current part's body."""

    data: bytes


@dataclass(frozen=True)
class PartEnd:
    """The current part's body is complete."""


Event = PartStart | PartData | PartEnd


class _State(Enum):
    PREAMBLE = auto()
    DELIMITER = auto()
    HEADERS = auto()
    BODY = auto()
    EPILOGUE = auto()


class MultipartReader:
    """Incremental multipart parser: `feed` chunks, get events; `close` checks the ending."""

    def __init__(
        self,
        boundary: str,
        max_part_size: int | None = None,
        max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
    ) -> None:
        if not is_valid_boundary(boundary):
            raise MultipartError(f"invalid multipart boundary {boundary!r}")
        self._delimiter = CRLF + b"--" + boundary.encode("ascii")
        self._max_part_size = max_part_size
        self._max_header_size = max_header_size
        self._buf = bytearray(CRLF)  # so that a body opening with the boundary matches too
        self._state = _State.PREAMBLE
        self._padded = False
        self._part_size = 0
        self._steps = {
            _State.PREAMBLE: self._preamble,
            _State.DELIMITER: self._after_delimiter,
            _State.HEADERS: self._headers,
            _State.BODY: self._body,
        }

    @property
    def buffered(self) -> int:
        """How many bytes the reader holds between `feed` calls."""
        return len(self._buf)

    def feed(self, chunk: bytes) -> list[Event]:
        """Parse the next chunk of the body; the epilogue is ignored."""
        if self._state is _State.EPILOGUE:
            return []
        self._buf += chunk
        events: list[Event] = []
        while self._state is not _State.EPILOGUE and self._steps[self._state](events):
            pass
        return events

    def close(self) -> None:
        """Declare the end of the body; raise unless the closing delimiter has been seen."""
        if self._state is not _State.EPILOGUE:
            raise MultipartError("multipart body ends before its closing delimiter")

    def _preamble(self, events: list[Event]) -> bool:
        """Skip to the first delimiter; each step returns False when it needs more input."""
        found = self._buf.find(self._delimiter)
        if found < 0:
            del self._buf[: max(0, len(self._buf) - len(self._delimiter) + 1)]
            return False
        del self._buf[: found + len(self._delimiter)]
        self._state = _State.DELIMITER
        return True

    def _after_delimiter(self, events: list[Event]) -> bool:
        """The rest of a boundary line: '--' (close delimiter) or padding and CRLF."""
        buf = self._buf
        if not self._padded and buf[:1] == b"-":
            if len(buf) < 2:
                return False
            if buf[:2] != b"--":
                raise MultipartError("malformed boundary line")
            self._state = _State.EPILOGUE
            buf.clear()
            return False
        padding = 0
        while padding < len(buf) and buf[padding] in _PADDING:
            padding += 1
        if padding:
            del buf[:padding]
            self._padded = True
        if buf[:2] == CRLF:
            del buf[:2]
            self._padded = False
            self._state = _State.HEADERS
            return True
        if buf in (b"", b"\r"):
            return False
        raise MultipartError("malformed boundary line")

    def _headers(self, events: list[Event]) -> bool:
        """Wait for the blank line ending the part's headers, then start the part."""
        if self._buf[:2] == CRLF:
            end, skip = 0, 2
        else:
            end, skip = self._buf.find(b"\r\n\r\n"), 4
        if end < 0 and len(self._buf) <= self._max_header_size:
            return False
        if end < 0 or end > self._max_header_size:
            raise MultipartError(f"part headers longer than {self._max_header_size} bytes")
        headers = _parse_headers(bytes(self._buf[:end]))
        del self._buf[: end + skip]
        events.append(PartStart(headers))
        self._part_size = 0
        self._state = _State.BODY
        return True

    def _body(self, events: list[Event]) -> bool:
        """Pass on body bytes up to the next delimiter, or up to what could start one."""
        found = self._buf.find(self._delimiter)
        if found < 0:
            self._emit(events, self._undecided_from())
            return False
        self._emit(events, found)
        del self._buf[: len(self._delimiter)]
        events.append(PartEnd())
        self._state = _State.DELIMITER
        return True

    def _undecided_from(self) -> int:
        """Offset of the first byte that may begin a delimiter completed by the next chunk."""
        buf, delimiter = self._buf, self._delimiter
        at = buf.find(b"\r", max(0, len(buf) - len(delimiter) + 1))
        while at >= 0 and not delimiter.startswith(buf[at:]):
            at = buf.find(b"\r", at + 1)
        return len(buf) if at < 0 else at

    def _emit(self, events: list[Event], size: int) -> None:
        """Move the first `size` buffered bytes into a PartData event."""
        if not size:
            return
        self._part_size += size
        if self._max_part_size is not None and self._part_size > self._max_part_size:
            raise PartTooLarge(f"body part larger than {self._max_part_size} bytes")
        with memoryview(self._buf) as view:
            events.append(PartData(bytes(view[:size])))
        del self._buf[:size]


def _parse_headers(block: bytes) -> dict[str, str]:
    """Parse RFC 822 header lines (folded lines allowed) into a dict keyed by lower-case name."""
    headers: dict[str, str] = {}
    name = ""
    for line in block.decode("latin-1").split("\r\n") if block else []:
        if line[:1] in (" ", "\t"):
            if not name:
                raise MultipartError(f"malformed part header: folded line {line!r} comes first")
            headers[name] = f"{headers[name]} {line.strip()}"
            continue
        raw_name, colon, value = line.partition(":")
        name = raw_name.strip().lower()
        if not colon or not is_token(name):
            raise MultipartError(f"malformed part header line {line!r}")
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


# --- streaming a request body into per-part sinks --------------------------------------------


class PartSink(Protocol):
    """Where one part's body goes (e.g. a temporary file): `close` or `abort` ends it, once."""

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...

    async def abort(self) -> None: ...


async def iter_parts(
    chunks: AsyncIterable[bytes],
    boundary: str,
    on_part: Callable[[dict[str, str]], Awaitable[PartSink]],
    max_part_size: int | None = None,
) -> int:
    """Stream a multipart body into one sink per part (from `on_part(headers)`); return the count.

    On any error, the open sink (if any) is aborted and the error re-raised.
    """
    reader = MultipartReader(boundary, max_part_size)
    sink: PartSink | None = None
    count = 0
    try:
        async for chunk in chunks:
            for event in reader.feed(chunk):
                if isinstance(event, PartStart):
                    sink = await on_part(event.headers)
                elif isinstance(event, PartData):
                    await cast(PartSink, sink).write(event.data)
                else:
                    await cast(PartSink, sink).close()
                    sink = None
                    count += 1
        reader.close()
    except BaseException:
        if sink is not None:
            await sink.abort()
        raise
    return count
