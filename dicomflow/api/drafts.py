"""The metadata of series not stable yet, as this API process last built each, with its parts.

A series' next version is mostly the same instances: their parts (each keyed by instance and
received time, so never stale) are taken from here, and only the new ones from Redis.
"""

from typing import NamedTuple

from dicomflow.api.sized_lru import SizedLRU

SeriesKey = tuple[str, str, str]  # tenant, study UID, series UID


class Draft(NamedTuple):
    version: str  # `MetadataSource.version` it was built at
    body: bytes  # the series' DICOM JSON array
    parts: dict[bytes, bytes]  # each instance's DICOM JSON, by `part_field`

    @property
    def size(self) -> int:
        return len(self.body) + sum(len(field) + len(part) for field, part in self.parts.items())


class Drafts(SizedLRU[SeriesKey, Draft]):
    """The last draft of each series, at most `max_bytes` of them (`max_size`, `held_size`)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(max_bytes, lambda draft: draft.size)
