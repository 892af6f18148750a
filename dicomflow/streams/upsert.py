"""Idempotent batched upserts of topic records into PostgreSQL tables."""

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import faust

log = logging.getLogger(__name__)

_CAST_TYPES = {"date", "timestamp without time zone", "timestamp with time zone"}
MAX_BACKOFF = 30.0


@dataclass(frozen=True)
class UpsertTable:
    """A table keyed by `key` whose rows are replaced only by records at least as new."""

    name: str
    key: tuple[str, ...]
    newer_column: str

    def statement(self, columns: Sequence[str], types: dict[str, str]) -> str:
        values = ", ".join(
            f"${i}::text::{types[c]}" if types[c] in _CAST_TYPES else f"${i}"
            for i, c in enumerate(columns, start=1)
        )
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in self.key)
        return (
            f"INSERT INTO {self.name} ({', '.join(columns)}) VALUES ({values}) "
            f"ON CONFLICT ({', '.join(self.key)}) DO UPDATE SET {updates} "
            f"WHERE {self.name}.{self.newer_column} <= EXCLUDED.{self.newer_column}"
        )


class Upserter:
    """Writes batches of one record type into one table; retries until PostgreSQL accepts."""

    def __init__(self, table: UpsertTable, record_type: type[faust.Record]) -> None:
        self.table = table
        self.columns = list(record_type._options.fields)
        self._statement: str | None = None

    async def _prepare(self, pool: asyncpg.Pool) -> str:
        if self._statement is None:
            rows = await pool.fetch(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_name = $1",
                self.table.name,
            )
            types = {r["column_name"]: r["data_type"] for r in rows}
            missing = set(self.columns) - types.keys()
            if missing:
                raise RuntimeError(f"{self.table.name} lacks columns {sorted(missing)}")
            self._statement = self.table.statement(self.columns, types)
        return self._statement

    async def write(self, pool: asyncpg.Pool, records: Sequence[faust.Record]) -> None:
        """Upsert `records` in one transaction (pipelined by executemany), retrying on errors."""
        rows = [tuple(getattr(r, c) for c in self.columns) for r in records]
        delay = 0.5
        while True:
            try:
                statement = await self._prepare(pool)
                async with pool.acquire() as connection, connection.transaction():
                    await connection.executemany(statement, rows)
                return
            except (
                asyncpg.PostgresConnectionError,
                OSError,
                asyncpg.TooManyConnectionsError,
                asyncpg.CannotConnectNowError,
            ) as exc:
                log.warning(
                    "%s: PostgreSQL unavailable (%s); retrying in %.1fs",
                    self.table.name,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
