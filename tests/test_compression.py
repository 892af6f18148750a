"""Bodies derived from repeated JSON bodies (gzipped, URIs made absolute): reused only for the
exact same bytes, within a memory budget."""

import gzip

import pytest

from dicomflow.api.compression import GZIP_LEVEL, DerivedBodies, accepts_gzip


async def test_a_body_is_compressed_once_and_reused_while_unchanged() -> None:
    cache = DerivedBodies(max_bytes=1 << 20)
    body = b'[{"00080018":{"vr":"UI","Value":["1.2.3"]}}]' * 100
    first = await cache.gzip("series", body)
    assert gzip.decompress(first) == body
    assert await cache.gzip("series", bytes(body)) is first


async def test_a_body_is_derived_once_per_key_while_unchanged() -> None:
    cache = DerivedBodies(max_bytes=1 << 20)
    made: list[bytes] = []

    def absolute(origin: bytes):  # type: ignore[no-untyped-def]
        def make(body: bytes) -> bytes:
            made.append(body)
            return body.replace(b'"/', b'"' + origin + b"/")

        return make

    stored = b'[{"BulkDataURI":"/studies/1"}]'
    one = await cache.derive("series|http://a", stored, absolute(b"http://a"))
    assert one == b'[{"BulkDataURI":"http://a/studies/1"}]'
    assert await cache.derive("series|http://a", bytes(stored), absolute(b"http://a")) is one
    other = await cache.derive("series|http://b", stored, absolute(b"http://b"))
    assert other == b'[{"BulkDataURI":"http://b/studies/1"}]'
    changed = stored.replace(b"/1", b"/2")
    assert await cache.derive("series|http://a", changed, absolute(b"http://a")) == (
        b'[{"BulkDataURI":"http://a/studies/2"}]'
    )
    assert made == [stored, stored, changed]


async def test_a_changed_body_under_the_same_key_is_compressed_again() -> None:
    cache = DerivedBodies(max_bytes=1 << 20)
    await cache.gzip("series", b"[" + b"1," * 1000 + b"1]")
    changed = b"[" + b"2," * 1000 + b"2]"
    assert gzip.decompress(await cache.gzip("series", changed)) == changed
    assert cache.held_bytes == len(changed) + len(await cache.gzip("series", changed))


async def test_the_least_recently_used_entries_go_first_and_the_budget_holds() -> None:
    bodies = {key: key.encode() * 20_000 for key in ("a", "b", "c")}
    one_entry = len(bodies["a"]) + len(gzip.compress(bodies["a"], GZIP_LEVEL, mtime=0))
    cache = DerivedBodies(max_bytes=2 * one_entry + 10)
    kept_a = await cache.gzip("a", bodies["a"])
    await cache.gzip("b", bodies["b"])
    assert await cache.gzip("a", bodies["a"]) is kept_a  # "a" is now the most recent
    await cache.gzip("c", bodies["c"])  # evicts "b"
    assert await cache.gzip("a", bodies["a"]) is kept_a
    assert cache.held_bytes <= cache.max_bytes


async def test_a_body_larger_than_the_budget_is_compressed_but_not_kept() -> None:
    cache = DerivedBodies(max_bytes=100)
    body = bytes(range(256)) * 10
    assert gzip.decompress(await cache.gzip("big", body)) == body
    assert cache.held_bytes == 0


@pytest.mark.parametrize(
    ("header", "gzip_ok"),
    [
        ("gzip, deflate", True),
        ("deflate, gzip;q=0.5", True),
        ("gzip;q=0", False),
        ("*", True),
        ("identity", False),
        (None, False),
        ("gzip;q=abc", False),
        ("br;q=1, gzip;q=0", False),
    ],
)
def test_accept_encoding(header: str | None, gzip_ok: bool) -> None:
    assert accepts_gzip(header) is gzip_ok
