"""Unit tests of the multipart/related writer and incremental reader."""

import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator

import pytest

from dicomflow.api.multipart import (
    MultipartError,
    MultipartReader,
    Part,
    PartData,
    PartEnd,
    PartStart,
    PartTooLarge,
    format_content_type,
    is_valid_boundary,
    iter_parts,
    multipart_stream,
    new_boundary,
    parse_content_type,
    split_unquoted,
)

B = "b0und4ry"
DICOM_HEADERS = {"content-type": "application/dicom"}

Parsed = list[tuple[dict[str, str], bytes]]


def encode(
    *bodies: bytes, boundary: str = B, preamble: bytes = b"", epilogue: bytes = b""
) -> bytes:
    """A multipart body built by hand, each part typed application/dicom."""
    parts = b"".join(
        b"--%s\r\nContent-Type: application/dicom\r\n\r\n%s\r\n" % (boundary.encode(), body)
        for body in bodies
    )
    return preamble + parts + b"--%s--\r\n" % boundary.encode() + epilogue


def parse(chunks: Iterable[bytes], boundary: str = B, **options: int) -> Parsed:
    """Feed all chunks, check that events nest properly, and gather (headers, body) per part."""
    reader = MultipartReader(boundary, **options)
    parts: Parsed = []
    body: bytearray | None = None
    for chunk in chunks:
        for event in reader.feed(chunk):
            if isinstance(event, PartStart):
                assert body is None
                body = bytearray()
                parts.append((event.headers, b""))
            elif isinstance(event, PartData):
                assert body is not None and event.data
                body += event.data
            else:
                assert body is not None
                parts[-1] = (parts[-1][0], bytes(body))
                body = None
    reader.close()
    assert body is None
    return parts


def split_at(data: bytes, sizes: Iterable[int]) -> Iterator[bytes]:
    start = 0
    for size in sizes:
        yield data[start : start + size]
        start += size
    yield data[start:]


def one_byte_chunks(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def random_chunks(data: bytes, rng: random.Random, largest: int) -> list[bytes]:
    sizes: list[int] = []
    while sum(sizes) < len(data):
        sizes.append(rng.randint(0, largest))
    return list(split_at(data, sizes))


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def agen(*items: bytes) -> AsyncIterator[bytes]:
    for item in items:
        yield item


# Bodies that look like delimiters without being one.
TRICKY = [
    b"",
    b"\r\n",
    b"\r\n\r\n",
    b"--",
    b"\r\n--",
    b"\r\n--" + B[:-1].encode(),
    b"--" + B.encode(),  # a boundary not at the start of a line
    b"x\r\n-" + B.encode(),
    b"\r\r\n\r\n--b0und",
    b"\x00\xff\r\n" * 10,
    bytes(range(256)),
]


# --- header values ---------------------------------------------------------------------------


def test_parse_content_type() -> None:
    header = 'Multipart/Related; Type="application/dicom"; boundary=abc ; x="a;b \\"q\\" \\\\"'
    assert parse_content_type(header) == (
        "multipart/related",
        {"type": "application/dicom", "boundary": "abc", "x": 'a;b "q" \\'},
    )


def test_parse_content_type_tolerates_unquoted_slash_and_trailing_semicolon() -> None:
    assert parse_content_type("multipart/related; type=application/dicom;") == (
        "multipart/related",
        {"type": "application/dicom"},
    )


@pytest.mark.parametrize(
    "header",
    ["", "text", "text/", "/plain", "te xt/plain", "a/b; c", "a/b; =1", 'a/b; c="d', "a/b/c"],
)
def test_parse_content_type_rejects(header: str) -> None:
    with pytest.raises(MultipartError):
        parse_content_type(header)


def test_multipart_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_content_type("nonsense")


def test_split_unquoted() -> None:
    assert split_unquoted(' a , "b,\\"c" ,d', ",") == ["a", '"b,\\"c"', "d"]


@pytest.mark.parametrize(
    "params",
    [{"type": "application/dicom", "boundary": "abc"}, {"x": 'a "b" \\ c;d'}, {"t": "1.2.3"}],
)
def test_format_content_type_round_trip(params: dict[str, str]) -> None:
    assert parse_content_type(format_content_type("a/b", params)) == ("a/b", params)


def test_format_content_type_quotes_only_non_tokens() -> None:
    assert format_content_type("a/b", {"t": "1.2", "u": "x/y"}) == 'a/b; t=1.2; u="x/y"'


def test_new_boundary_is_valid_and_fresh() -> None:
    boundaries = {new_boundary() for _ in range(100)}
    assert len(boundaries) == 100
    assert all(is_valid_boundary(b) and len(b) >= 32 for b in boundaries)


@pytest.mark.parametrize(
    ("boundary", "valid"),
    [
        *[("a", True), ("a" * 70, True), ("a b", True), ("0'()+_,-./:=?", True)],
        *[("a" * 71, False), ("", False), ("a ", False), ("a\r", False), ("a;b", False)],
        ("é", False),
    ],
)
def test_is_valid_boundary(boundary: str, valid: bool) -> None:
    assert is_valid_boundary(boundary) is valid


# --- writer ----------------------------------------------------------------------------------


async def test_writer_output() -> None:
    parts = [
        Part("application/dicom", [b"ab", b"cd"]),
        Part("image/jp2", agen(b"xyz"), {"Content-Location": "/frames/2"}),
    ]
    assert await collect(multipart_stream(parts, B)) == (
        b"--b0und4ry\r\nContent-Type: application/dicom\r\n\r\nabcd\r\n"
        b"--b0und4ry\r\nContent-Type: image/jp2\r\nContent-Location: /frames/2\r\n\r\nxyz\r\n"
        b"--b0und4ry--\r\n"
    )


async def test_writer_accepts_async_parts_and_bytes_bodies() -> None:
    async def parts() -> AsyncIterator[Part]:
        yield Part("application/dicom", b"one")
        yield Part("application/dicom", bytearray(b""))
        yield Part("application/dicom", memoryview(b"three"))

    assert await collect(multipart_stream(parts(), B)) == encode(b"one", b"", b"three")


async def test_writer_without_parts() -> None:
    assert await collect(multipart_stream([], B)) == b"--b0und4ry--\r\n"


async def test_writer_streams_lazily() -> None:
    """No chunk is read before the previous one is passed on, and none is merged with another."""
    consumed: list[str] = []

    def body(name: str) -> Iterator[bytes]:
        for i in range(3):
            consumed.append(f"{name}{i}")
            yield b"%s%d" % (name.encode(), i) * 1000

    stream = multipart_stream([Part("a/b", body("p")), Part("a/b", body("q"))], B)
    outputs = []
    async for chunk in stream:
        outputs.append((len(chunk), list(consumed)))
    assert [size for size, _ in outputs] == [33, 2000, 2000, 2000, 35, 2000, 2000, 2000, 16]
    assert outputs[1][1] == ["p0"] and outputs[4][1] == ["p0", "p1", "p2"]


async def test_writer_skips_empty_chunks() -> None:
    chunks = [chunk async for chunk in multipart_stream([Part("a/b", [b"", b"x", b""])], B)]
    assert b"" not in chunks and b"".join(chunks).count(b"x") == 1


@pytest.mark.parametrize(
    "part",
    [
        Part("a/b\r\nX-Injected: 1", b""),
        Part("a/b", b"", {"X-Evil": "1\nX-Injected: 2"}),
        Part("a/b", b"", {"Bad Name": "1"}),
    ],
)
async def test_writer_refuses_header_injection(part: Part) -> None:
    with pytest.raises(ValueError):
        await collect(multipart_stream([part], B))


async def test_writer_refuses_invalid_boundary() -> None:
    with pytest.raises(ValueError):
        await collect(multipart_stream([], "bad;boundary"))


async def test_writer_output_read_back() -> None:
    bodies = [b"", *TRICKY, b"\r\n--" + B.encode() + b"-", bytes(100_000)]
    boundary = new_boundary()
    written = await collect(
        multipart_stream([Part("application/dicom", [b]) for b in bodies], boundary)
    )
    assert parse([written], boundary) == [(DICOM_HEADERS, body) for body in bodies]


# --- reader ----------------------------------------------------------------------------------


def test_reader_events() -> None:
    reader = MultipartReader(B)
    events = reader.feed(encode(b"hello", b"", b"world"))
    assert events == [
        PartStart(DICOM_HEADERS),
        PartData(b"hello"),
        PartEnd(),
        PartStart(DICOM_HEADERS),
        PartEnd(),
        PartStart(DICOM_HEADERS),
        PartData(b"world"),
        PartEnd(),
    ]
    reader.close()


def test_reader_ignores_preamble_and_epilogue() -> None:
    data = encode(
        b"body",
        preamble=b"preamble --b0und4ry\r\n--not\r\n",
        epilogue=b"--b0und4ry\r\nX: y\r\n\r\n",
    )
    assert parse([data]) == [(DICOM_HEADERS, b"body")]


def test_reader_accepts_missing_final_crlf() -> None:
    assert parse([encode(b"x")[:-2]]) == [(DICOM_HEADERS, b"x")]


def test_reader_accepts_transport_padding() -> None:
    data = b"--b0und4ry \t \r\n\r\none\r\n--b0und4ry\t\r\n\r\ntwo\r\n--b0und4ry-- \r\nepilogue"
    assert parse(one_byte_chunks(data)) == [({}, b"one"), ({}, b"two")]
    assert parse([data]) == [({}, b"one"), ({}, b"two")]


def test_reader_feed_after_close_delimiter_is_ignored() -> None:
    reader = MultipartReader(B)
    reader.feed(encode(b"x"))
    assert reader.feed(b"--b0und4ry\r\n\r\nmore") == []
    assert reader.buffered == 0
    reader.close()


def test_reader_headers() -> None:
    data = (
        b"--b0und4ry\r\n"
        b"Content-Type: application/dicom;\r\n\ttransfer-syntax=1.2.840.10008.1.2.1\r\n"
        b"X-A: 1\r\nx-a: 2\r\nContent-Location :  /a/b \r\n\r\nbody\r\n--b0und4ry--"
    )
    assert parse(one_byte_chunks(data)) == [
        (
            {
                "content-type": "application/dicom; transfer-syntax=1.2.840.10008.1.2.1",
                "x-a": "1, 2",
                "content-location": "/a/b",
            },
            b"body",
        )
    ]


@pytest.mark.parametrize("body", TRICKY)
def test_reader_bodies_resembling_delimiters(body: bytes) -> None:
    data = encode(body, body)
    expected = [(DICOM_HEADERS, body)] * 2
    assert parse([data]) == expected
    assert parse(one_byte_chunks(data)) == expected


def test_reader_every_split_point() -> None:
    data = encode(*TRICKY, preamble=b"pre\r\n", epilogue=b"\r\nepi")
    expected = [(DICOM_HEADERS, body) for body in TRICKY]
    for cut in range(len(data) + 1):
        assert parse([data[:cut], data[cut:]]) == expected, cut


def test_reader_every_pair_of_split_points_around_a_delimiter() -> None:
    data = encode(b"\r\n--b0und", b"ab\r\n")
    expected = [(DICOM_HEADERS, b"\r\n--b0und"), (DICOM_HEADERS, b"ab\r\n")]
    for first in range(len(data) + 1):
        for second in range(first, len(data) + 1):
            assert parse([data[:first], data[first:second], data[second:]]) == expected


def test_reader_random_chunk_sizes() -> None:
    rng = random.Random(2046)
    for _ in range(50):
        bodies = [rng.choice(TRICKY) + rng.randbytes(rng.randint(0, 300)) for _ in range(5)]
        data = encode(*bodies, preamble=rng.randbytes(20).replace(b"-", b"") + b"\r\n")
        expected = [(DICOM_HEADERS, body) for body in bodies]
        assert parse(random_chunks(data, rng, 40)) == expected


def test_reader_many_parts() -> None:
    bodies = [b"%d" % i * (i % 7) for i in range(2000)]
    assert parse(split_at(encode(*bodies), [1000] * 20)) == [(DICOM_HEADERS, b) for b in bodies]


def test_reader_buffer_stays_small_for_large_bodies() -> None:
    rng = random.Random(18)
    bodies = [rng.randbytes(3 << 20) + b"\r\n--b0und4r", rng.randbytes(2 << 20)]
    data = encode(*bodies)
    reader = MultipartReader(B)
    received = [bytearray(), bytearray()]
    part = -1
    for start in range(0, len(data), 64 * 1024):
        for event in reader.feed(data[start : start + 64 * 1024]):
            if isinstance(event, PartStart):
                part += 1
            elif isinstance(event, PartData):
                assert len(event.data) <= 64 * 1024 + len(B) + 4
                received[part] += event.data
        assert reader.buffered <= 64  # a delimiter's length, or part headers not yet complete
    reader.close()
    assert [bytes(r) for r in received] == bodies


def test_reader_buffer_bounded_while_body_arrives_byte_by_byte() -> None:
    reader = MultipartReader(B)
    reader.feed(b"--b0und4ry\r\n\r\n")
    for byte in one_byte_chunks(b"x\r\n--b0und4r\r\n-y" * 10):
        reader.feed(byte)
        assert reader.buffered <= len("\r\n--") + len(B) - 1


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"no delimiter at all",
        b"--b0und4ry",
        b"--b0und4ry\r\n",
        b"--b0und4ry\r\nContent-Type: a/b\r\n",
        b"--b0und4ry\r\nContent-Type: a/b\r\n\r\nbody",
        b"--b0und4ry\r\n\r\nbody\r\n--b0und4ry",
        b"--b0und4ry\r\n\r\nbody\r\n--b0und4ry-",
    ],
)
def test_reader_missing_close_delimiter(data: bytes) -> None:
    reader = MultipartReader(B)
    reader.feed(data)
    with pytest.raises(MultipartError, match="closing delimiter"):
        reader.close()


@pytest.mark.parametrize(
    "data",
    [
        b"--b0und4ry\r\nContent-Type a/b\r\n\r\n",  # no colon
        b"--b0und4ry\r\nBad Name: x\r\n\r\n",
        b"--b0und4ry\r\n: x\r\n\r\n",
        b"--b0und4ry\r\n continued: x\r\n\r\n",  # folding without a header before it
        b"--b0und4ryX\r\n\r\n",  # a longer boundary
        b"--b0und4ry-x\r\n",
        b"--b0und4ry \t-\r\n",
        b"--b0und4ry --\r\n",  # padding before the close mark
        b"--b0und4ry\n\nbody\n--b0und4ry--\n",  # LF line ends
        b"--b0und4ry\r\n\r\nbody\r\n--b0und4ry+\r\n",  # a delimiter inside a body
    ],
)
def test_reader_malformed(data: bytes) -> None:
    for chunks in ([data], one_byte_chunks(data)):
        reader = MultipartReader(B)
        with pytest.raises(MultipartError, match="malformed"):
            for chunk in chunks:
                reader.feed(chunk)


def test_reader_limits_header_size() -> None:
    data = b"--b0und4ry\r\nX: " + b"y" * 100
    reader = MultipartReader(B, max_header_size=64)
    with pytest.raises(MultipartError, match="longer than 64"):
        reader.feed(data)
    assert parse([encode(b"x")], max_header_size=64) == [(DICOM_HEADERS, b"x")]


def test_reader_limits_header_size_when_fed_whole() -> None:
    with pytest.raises(MultipartError, match="longer than 64"):
        parse(
            [b"--b0und4ry\r\nX: " + b"y" * 100 + b"\r\n\r\nbody\r\n--b0und4ry--"],
            max_header_size=64,
        )


def test_reader_limits_part_size() -> None:
    assert parse(one_byte_chunks(encode(b"x" * 10, b"")), max_part_size=10) == [
        (DICOM_HEADERS, b"x" * 10),
        (DICOM_HEADERS, b""),
    ]
    with pytest.raises(PartTooLarge, match="larger than 10"):
        parse([encode(b"x" * 5, b"x" * 11)], max_part_size=10)


def test_reader_refuses_invalid_boundary() -> None:
    with pytest.raises(MultipartError):
        MultipartReader("x" * 71)


# --- iter_parts ------------------------------------------------------------------------------


class Sink:
    """A sink recording what it received and how it ended."""

    def __init__(self, headers: dict[str, str], fail_on_write: bool = False) -> None:
        self.headers = headers
        self.data = bytearray()
        self.ended = ""
        self.fail_on_write = fail_on_write

    async def write(self, data: bytes) -> None:
        if self.fail_on_write:
            raise OSError("disk full")
        self.data += data

    async def close(self) -> None:
        assert not self.ended
        self.ended = "closed"

    async def abort(self) -> None:
        assert not self.ended
        self.ended = "aborted"


def sink_factory(
    sinks: list[Sink], fail_on_write: int = -1
) -> Callable[[dict[str, str]], Awaitable[Sink]]:
    """An on_part callback appending sinks to `sinks`; the one numbered `fail_on_write` fails."""

    async def on_part(headers: dict[str, str]) -> Sink:
        sinks.append(Sink(headers, fail_on_write=len(sinks) == fail_on_write))
        return sinks[-1]

    return on_part


async def test_iter_parts_streams_into_sinks() -> None:
    data = encode(b"first", b"", b"third\r\n--")
    sinks: list[Sink] = []
    count = await iter_parts(agen(*split_at(data, [7] * 20)), B, sink_factory(sinks))
    assert count == 3
    assert [(s.headers, bytes(s.data), s.ended) for s in sinks] == [
        (DICOM_HEADERS, b"first", "closed"),
        (DICOM_HEADERS, b"", "closed"),
        (DICOM_HEADERS, b"third\r\n--", "closed"),
    ]


async def test_iter_parts_aborts_the_open_sink_on_truncated_body() -> None:
    data = encode(b"first", b"second")[:-20]
    sinks: list[Sink] = []
    with pytest.raises(MultipartError):
        await iter_parts(agen(data), B, sink_factory(sinks))
    assert [s.ended for s in sinks] == ["closed", "aborted"]


async def test_iter_parts_aborts_when_the_sink_fails() -> None:
    sinks: list[Sink] = []
    with pytest.raises(OSError, match="disk full"):
        await iter_parts(agen(encode(b"a", b"b", b"c")), B, sink_factory(sinks, fail_on_write=1))
    assert [s.ended for s in sinks] == ["closed", "aborted"]


async def test_iter_parts_aborts_when_the_stream_fails() -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield encode(b"abc")[:50]
        raise ConnectionResetError("client went away")

    sinks: list[Sink] = []
    with pytest.raises(ConnectionResetError):
        await iter_parts(broken(), B, sink_factory(sinks))
    assert [(bytes(s.data), s.ended) for s in sinks] == [(b"abc", "aborted")]


async def test_iter_parts_enforces_part_size() -> None:
    sinks: list[Sink] = []
    with pytest.raises(PartTooLarge):
        chunks = agen(*split_at(encode(b"x" * 100), [50]))
        await iter_parts(chunks, B, sink_factory(sinks), max_part_size=99)
    assert [(len(s.data), s.ended) for s in sinks] == [(3, "aborted")]
