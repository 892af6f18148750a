"""What the agents use (settings, file stores, PostgreSQL pool, Redis), bound once at start-up."""

import asyncio
from dataclasses import dataclass, field

import asyncpg
import redis.asyncio as aioredis

from dicomflow.core import cache
from dicomflow.core.db import create_pool
from dicomflow.core.settings import Settings
from dicomflow.core.storage import LocalStorage


@dataclass
class Resources:
    settings: Settings
    storage: LocalStorage
    json_storage: LocalStorage
    redis: aioredis.Redis
    _pool: asyncpg.Pool | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def pool(self) -> asyncpg.Pool:
        """The process's one PostgreSQL pool, created on first use."""
        async with self._lock:
            if self._pool is None:
                self._pool = await create_pool(self.settings)
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        await self.redis.aclose()


_bound: Resources | None = None


def bind(settings: Settings) -> Resources:
    global _bound
    _bound = Resources(
        settings=settings,
        storage=LocalStorage(settings.storage_dir),
        json_storage=LocalStorage(settings.json_dir),
        redis=cache.connect(settings.redis_location),
    )
    return _bound


def resources() -> Resources:
    if _bound is None:
        raise RuntimeError("worker resources are not bound; call bind(settings) first")
    return _bound
