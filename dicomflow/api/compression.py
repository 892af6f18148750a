"""gzip, and the JSON bodies served again and again (series and study metadata).

Compressing 1.8 MB of DICOM JSON costs more than serving it, and making its BulkDataURIs
absolute copies it, so what is derived from a stored body is kept in memory beside the exact
body it came from: a hit needs that body byte for byte (a memory compare), so a changed series
can never get an old derived body.
"""

import asyncio
import gzip
from collections import OrderedDict
from collections.abc import Callable

GZIP_LEVEL = 5
MIN_GZIP_SIZE = 1024
_IN_THREAD_SIZE = 256 * 1024


def accepts_gzip(accept_encoding: str | None) -> bool:
    """True when `Accept-Encoding` takes gzip (named, or `*`, with a q above 0)."""
    for item in (accept_encoding or "").split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        if coding.lower() in ("gzip", "*"):
            q = next((p[2:] for p in params if p.lower().startswith("q=")), "1")
            try:
                return float(q) > 0
            except ValueError:
                return False
    return False


class DerivedBodies:
    """Least-recently-used bodies derived from others, keyed by name, at most `max_bytes` held
    (each with the body it came from)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[bytes, bytes]] = OrderedDict()
        self._held = 0

    @property
    def held_bytes(self) -> int:
        return self._held

    async def derive(
        self, key: str, body: bytes, make: Callable[[bytes], bytes], in_thread: bool = False
    ) -> bytes:
        """`make(body)`: from memory when `key` was last derived from exactly these bytes."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] == body:
            self._entries.move_to_end(key)
            return entry[1]
        derived = await asyncio.to_thread(make, body) if in_thread else make(body)
        self._store(key, body, derived)
        return derived

    async def gzip(self, key: str, body: bytes) -> bytes:
        """`body` gzipped (in a worker thread when large), from memory while unchanged."""
        return await self.derive(key, body, _gzip, in_thread=len(body) >= _IN_THREAD_SIZE)

    def _store(self, key: str, body: bytes, derived: bytes) -> None:
        self._forget(key)
        size = len(body) + len(derived)
        if size > self.max_bytes:
            return
        while self._held + size > self.max_bytes:
            self._forget(next(iter(self._entries)))
        self._entries[key] = (body, derived)
        self._held += size

    def _forget(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._held -= len(entry[0]) + len(entry[1])


def _gzip(body: bytes) -> bytes:
    return gzip.compress(body, GZIP_LEVEL, mtime=0)
