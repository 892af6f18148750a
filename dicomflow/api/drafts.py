"""The metadata of series not stable yet, as this API process last built each, with its parts.

A series' next version is mostly the same instances: their parts (each keyed by instance and
received time, so never stale) are taken from here, and only the new ones from Redis.
"""

from collections import OrderedDict
from typing import NamedTuple

SeriesKey = tuple[str, str, str]  # tenant, study UID, series UID


class Draft(NamedTuple):
    version: str  # `MetadataSource.version` it was built at
    body: bytes  # the series' DICOM JSON array
    parts: dict[bytes, bytes]  # each instance's DICOM JSON, by `part_field`

    @property
    def size(self) -> int:
        return len(self.body) + sum(len(field) + len(part) for field, part in self.parts.items())


class Drafts:
    """The last draft of each series, least recently used first out, at most `max_bytes`."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._drafts: OrderedDict[SeriesKey, Draft] = OrderedDict()
        self._held = 0

    @property
    def held_bytes(self) -> int:
        return self._held

    def __contains__(self, series: object) -> bool:
        return series in self._drafts

    def get(self, series: SeriesKey) -> Draft | None:
        draft = self._drafts.get(series)
        if draft is not None:
            self._drafts.move_to_end(series)
        return draft

    def keep(self, series: SeriesKey, draft: Draft) -> None:
        """Keep `draft` as the series' last (none when it alone exceeds `max_bytes`)."""
        self._forget(series)
        size = draft.size
        if size > self.max_bytes:
            return
        while self._held + size > self.max_bytes:
            self._forget(next(iter(self._drafts)))
        self._drafts[series] = draft
        self._held += size

    def _forget(self, series: SeriesKey) -> None:
        draft = self._drafts.pop(series, None)
        if draft is not None:
            self._held -= draft.size
