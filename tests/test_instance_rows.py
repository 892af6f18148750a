"""Instance rows kept in the API's memory, against the stack's PostgreSQL and its notifications."""

from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from dicomflow.api import instance_rows, queries
from dicomflow.api.instance_rows import LISTENER_NAME, InstanceRows
from dicomflow.core.db import create_pool
from dicomflow.core.settings import Settings
from tests.services import async_wait_for

TENANT = "rows-test"
ELE, RLE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.5"
Key = tuple[str, str, str, str]


@pytest.fixture
async def pool(stack: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(stack)
    yield pool
    await pool.execute("DELETE FROM dicom_image_meta WHERE tenant_id = $1", TENANT)
    await pool.close()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SOP instance UID of every row read from PostgreSQL."""
    done: list[str] = []
    read = queries.instance

    async def counted(pool: asyncpg.Pool, *key: str) -> asyncpg.Record | None:
        done.append(key[-1])
        return await read(pool, *key)

    monkeypatch.setattr(instance_rows.queries, "instance", counted)
    return done


@pytest.fixture
async def rows(pool: asyncpg.Pool, stack: Settings) -> AsyncIterator[InstanceRows]:
    kept = InstanceRows(pool, stack.postgres_url, max_entries=100)
    await kept.start()
    assert kept.listening
    yield kept
    await kept.close()


async def insert(pool: asyncpg.Pool, uid_root: str, number: int) -> Key:
    key = (TENANT, uid_root, f"{uid_root}.1", f"{uid_root}.1.{number}")
    await pool.execute(
        "INSERT INTO dicom_image_meta (tenant_id, study_uid, series_uid, sop_uid,"
        " study_uid_hash, series_uid_hash, sop_class_uid, transfer_syntax_uid, file_path,"
        " file_size, number_of_frames, received_time, indexed_time)"
        " VALUES ($1, $2, $3, $4, 'h', 'h', '1.2.840.10008.5.1.4.1.1.2', $5, 'f.dcm', 1, 1,"
        " now(), now())",
        *key,
        ELE,
    )
    return key


async def set_syntax(pool: asyncpg.Pool, key: Key, syntax: str) -> None:
    await pool.execute(
        "UPDATE dicom_image_meta SET transfer_syntax_uid = $2"
        " WHERE tenant_id = $1 AND sop_uid = $3",
        TENANT,
        syntax,
        key[-1],
    )


async def until(condition: Callable[[], bool], what: str) -> None:
    async def check() -> bool:
        return condition()

    await async_wait_for(check, 10, 0.01, what)


async def syntax_becomes(rows: InstanceRows, key: Key, syntax: str) -> None:
    async def seen() -> bool:
        row = await rows.get(*key)
        return row is not None and row["transfer_syntax_uid"] == syntax

    await async_wait_for(seen, 10, 0.02, f"{key[-1]} in {syntax}")


async def test_a_row_is_read_once_then_kept_until_it_changes(
    pool: asyncpg.Pool, rows: InstanceRows, uid_root: str, reads: list[str]
) -> None:
    key = await insert(pool, uid_root, 1)
    for _ in range(3):
        row = await rows.get(*key)
        assert row is not None and row["transfer_syntax_uid"] == ELE
    assert reads == [key[-1]]

    await set_syntax(pool, key, RLE)
    await syntax_becomes(rows, key, RLE)
    assert await rows.get(TENANT, uid_root, f"{uid_root}.1", "9.9") is None


async def test_an_update_that_changes_nothing_keeps_the_row(
    pool: asyncpg.Pool, rows: InstanceRows, uid_root: str, reads: list[str]
) -> None:
    """An event indexed again writes the same values: no notification, the row stays kept."""
    key, other = await insert(pool, uid_root, 1), await insert(pool, uid_root, 2)
    await rows.get(*key)
    await rows.get(*other)
    same = "UPDATE dicom_image_meta SET file_size = file_size WHERE sop_uid = $1"
    await pool.execute(same, key[-1])
    await set_syntax(pool, other, RLE)
    await syntax_becomes(rows, other, RLE)  # notifications come in commit order
    await rows.get(*key)
    assert reads.count(key[-1]) == 1


async def test_rows_are_read_from_postgresql_while_nobody_listens(
    pool: asyncpg.Pool,
    rows: InstanceRows,
    uid_root: str,
    reads: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(instance_rows, "CHECK_SECONDS", 0.05)
    key = await insert(pool, uid_root, 1)
    await rows.get(*key)
    terminated = await pool.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
        LISTENER_NAME,
    )
    assert terminated >= 1
    await until(lambda: not rows.listening, "the listener to be lost")

    await set_syntax(pool, key, RLE)  # notified to nobody
    row = await rows.get(*key)
    assert row is not None and row["transfer_syntax_uid"] == RLE

    await until(lambda: rows.listening, "listening again")
    before = len(reads)
    for _ in range(3):
        await rows.get(*key)
    assert len(reads) == before + 1
