"""What the API process opens once in its lifespan: the pool, Redis, Kafka, the file stores."""

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError

from dicomflow.api.compression import DerivedBodies
from dicomflow.api.drafts import Drafts
from dicomflow.api.frame_layouts import FrameLayouts
from dicomflow.api.index_changes import IndexChanges
from dicomflow.api.notified_cache import NotifiedCache
from dicomflow.api.queries import MetadataSource
from dicomflow.api.readahead import SeriesReadahead
from dicomflow.api.row_prefetch import SeriesRowPrefetch
from dicomflow.api.single_flight import SingleFlight
from dicomflow.core.settings import Settings
from dicomflow.core.storage import LocalStorage
from dicomflow.ingest.store import InstanceStore

log = logging.getLogger(__name__)


@dataclass
class ApiState:
    settings: Settings
    pool: asyncpg.Pool  # lookups by key, each statement planned once (`generic_plans`)
    search_pool: asyncpg.Pool  # QIDO-RS searches, planned for their values
    redis: aioredis.Redis
    kafka: AIOKafkaClient
    storage: LocalStorage
    json_storage: LocalStorage
    instances: InstanceStore  # STOW-RS: the SCP's write-and-publish path, on the API's outbox
    metadata_bodies: DerivedBodies
    drafts: Drafts  # metadata of series not stable yet, as last built
    draft_builds: SingleFlight
    frame_layouts: FrameLayouts
    index_changes: IndexChanges
    instance_rows: NotifiedCache[asyncpg.Record]  # `queries.instance` by instance
    series_sources: NotifiedCache[MetadataSource]  # `queries.metadata_source` by series
    row_prefetch: SeriesRowPrefetch  # a series' instance rows, after its metadata
    readahead: SeriesReadahead  # a series' files into the page cache, after its metadata
    _background: set[asyncio.Task[None]] = field(default_factory=set)

    def in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` (e.g. filling a cache) without the request waiting for it."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def kafka_reachable(self, timeout: float = 2.0) -> bool:
        try:
            await asyncio.wait_for(self.kafka.fetch_all_metadata(), timeout)
        except (KafkaError, TimeoutError, OSError) as exc:
            log.info("Kafka not reachable: %s", exc)
            return False
        return True

    async def close(self) -> None:
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.index_changes.close()
        await self.kafka.close()
        await self.redis.aclose()
        await self.search_pool.close()
        await self.pool.close()
