"""The PostgreSQL pool: one per process, opened at start-up."""

import asyncpg
import orjson

from dicomflow.core.settings import Settings


async def _init_connection(connection: asyncpg.Connection) -> None:
    await connection.set_type_codec(
        "jsonb",
        encoder=lambda v: orjson.dumps(v).decode(),
        decoder=orjson.loads,
        schema="pg_catalog",
    )


async def create_pool(settings: Settings, max_size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        settings.postgres_url,
        min_size=1,
        max_size=max_size,
        init=_init_connection,
        command_timeout=60,
    )
