"""Applies `sql/postgres/NNN_*.sql` in order, once each, under an advisory lock."""

import logging
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "sql" / "postgres"
_LOCK_ID = 0x0D1C0F10


async def apply_migrations(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the migrations not applied yet; return their names."""
    connection = await asyncpg.connect(dsn)
    applied = []
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {
            r["version"] for r in await connection.fetch("SELECT version FROM schema_migrations")
        }
        for path in sorted(directory.glob("[0-9][0-9][0-9]_*.sql")):
            if path.name in done:
                continue
            async with connection.transaction():
                await connection.execute(path.read_text())
                await connection.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)", path.name
                )
            applied.append(path.name)
            log.info("applied migration %s", path.name)
    finally:
        await connection.close()
    return applied
