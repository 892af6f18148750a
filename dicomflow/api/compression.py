"""gzip for JSON bodies that are served again and again (series and study metadata).

Compressing 1.8 MB of DICOM JSON costs more than serving it, so the compressed form is kept in
memory beside the exact plain body it came from: a hit needs the plain body to be byte-for-byte
the same (a memory compare), so a changed series can never get an old compressed body.
"""

import asyncio
import gzip
from collections import OrderedDict

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


class GzipCache:
    """Least-recently-used compressed bodies, keyed by name, at most `max_bytes` held."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[bytes, bytes]] = OrderedDict()
        self._held = 0

    @property
    def held_bytes(self) -> int:
        return self._held

    async def compress(self, key: str, body: bytes) -> bytes:
        """`body` gzipped: from memory when `key` last compressed exactly these bytes."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] == body:
            self._entries.move_to_end(key)
            return entry[1]
        if len(body) >= _IN_THREAD_SIZE:
            compressed = await asyncio.to_thread(gzip.compress, body, GZIP_LEVEL, mtime=0)
        else:
            compressed = gzip.compress(body, GZIP_LEVEL, mtime=0)
        self._store(key, body, compressed)
        return compressed

    def _store(self, key: str, body: bytes, compressed: bytes) -> None:
        self._forget(key)
        size = len(body) + len(compressed)
        if size > self.max_bytes:
            return
        while self._held + size > self.max_bytes:
            self._forget(next(iter(self._entries)))
        self._entries[key] = (body, compressed)
        self._held += size

    def _forget(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._held -= len(entry[0]) + len(entry[1])
