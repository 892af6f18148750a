"""A viewer reads a series' metadata, then asks for each instance's frames: the instance rows
those requests look up are read in one query once the metadata is answered, instead of one
round trip to PostgreSQL per instance."""

import asyncpg

from dicomflow.api import queries
from dicomflow.api.index_changes import SERIES_CHANNEL, IndexChanges
from dicomflow.api.notified_cache import Key, NotifiedCache
from dicomflow.api.queries import MetadataSource


class SeriesRowPrefetch:
    """Reads a series' instance rows into `instance_rows`, once per change of the series: only
    those not held when `sources` knows the series' instances (a series being received gains
    one or a few at each change), else all of them."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        changes: IndexChanges,
        instance_rows: NotifiedCache[asyncpg.Record],
        sources: NotifiedCache[MetadataSource],
        max_series: int,
    ) -> None:
        self._pool = pool
        self._instance_rows = instance_rows
        self._sources = sources
        self._read = NotifiedCache(changes, SERIES_CHANNEL, self._keep_rows, max_series)

    def needed(self, tenant: str, study_uid: str, series_uid: str) -> bool:
        """False once the rows were read and the series has not changed since."""
        if self._instance_rows.max_entries <= 0 or self._read.max_entries <= 0:
            return False
        return not self._read.holds(tenant, study_uid, series_uid)

    async def run(self, tenant: str, study_uid: str, series_uid: str) -> None:
        await self._read.get(tenant, study_uid, series_uid)

    async def _keep_rows(self, tenant: str, study_uid: str, series_uid: str) -> int | None:
        """How many rows are held; None (tried again next time) when none."""
        series = (tenant, study_uid, series_uid)
        source = self._sources.peek(*series)
        missing = None
        if source is not None and source.instances:
            missing = [
                instance.sop_uid
                for instance in source.instances
                if not self._instance_rows.holds(*series, instance.sop_uid)
            ]
            if not missing:
                return len(source.instances)

        async def rows() -> list[tuple[Key, asyncpg.Record]]:
            found = await queries.series_instance_rows(self._pool, *series, missing)
            return [((*series, row["sop_uid"]), row) for row in found]

        return await self._instance_rows.keep_all(rows) or None
