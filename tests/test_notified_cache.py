"""Index rows kept in the API's memory, against the stack's PostgreSQL and its notifications."""

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import asyncpg
import pytest

from dicomflow.api import index_changes, queries
from dicomflow.api.index_changes import (
    INSTANCE_CHANNEL,
    LISTENER_NAME,
    SERIES_CHANNEL,
    IndexChanges,
)
from dicomflow.api.notified_cache import NotifiedCache
from dicomflow.api.queries import MetadataSource
from dicomflow.api.row_prefetch import SeriesRowPrefetch
from dicomflow.core.db import create_pool
from dicomflow.core.settings import Settings
from tests.services import async_wait_for

TENANT = "rows-test"
ELE, RLE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.5"
Key = tuple[str, str, str, str]
T = TypeVar("T")


@pytest.fixture
async def pool(stack: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(stack)
    yield pool
    for table in ("dicom_image_meta", "dicom_json_meta", "dicom_state_meta"):
        await pool.execute(f"DELETE FROM {table} WHERE tenant_id = $1", TENANT)
    await pool.close()


@pytest.fixture
def reads() -> list[tuple[str, ...]]:
    """The key of every value read from PostgreSQL."""
    return []


def counted(read: Callable, done: list[tuple[str, ...]]) -> Callable:  # type: ignore[type-arg]
    async def reading(*key: str) -> object:
        done.append(key)
        return await read(*key)

    return reading


@pytest.fixture
async def changes(stack: Settings) -> AsyncIterator[IndexChanges]:
    listening = IndexChanges(stack.postgres_url)
    yield listening
    await listening.close()


@pytest.fixture
async def rows(
    pool: asyncpg.Pool, changes: IndexChanges, reads: list[tuple[str, ...]]
) -> NotifiedCache[asyncpg.Record]:
    read = counted(partial(queries.instance, pool), reads)
    kept = NotifiedCache(changes, INSTANCE_CHANNEL, read, max_entries=100)
    await changes.start()
    assert changes.listening
    return kept


@pytest.fixture
def notified() -> list[str]:
    """Every payload of the series channel, recorded after the cache under test saw it."""
    return []


@pytest.fixture
async def sources(
    pool: asyncpg.Pool,
    changes: IndexChanges,
    reads: list[tuple[str, ...]],
    notified: list[str],
) -> NotifiedCache[MetadataSource]:
    read = counted(partial(queries.metadata_source, pool), reads)
    kept = NotifiedCache(changes, SERIES_CHANNEL, read, max_entries=100, read_again=True)
    changes.subscribe(SERIES_CHANNEL, notified.append, lambda: None)
    await changes.start()
    assert changes.listening
    return kept


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


async def syntax_becomes(rows: NotifiedCache[asyncpg.Record], key: Key, syntax: str) -> None:
    async def seen() -> bool:
        row = await rows.get(*key)
        return row is not None and row["transfer_syntax_uid"] == syntax

    await async_wait_for(seen, 10, 0.02, f"{key[-1]} in {syntax}")


async def test_a_row_is_read_once_then_kept_until_it_changes(
    pool: asyncpg.Pool,
    rows: NotifiedCache[asyncpg.Record],
    uid_root: str,
    reads: list[tuple[str, ...]],
) -> None:
    key = await insert(pool, uid_root, 1)
    for _ in range(3):
        row = await rows.get(*key)
        assert row is not None and row["transfer_syntax_uid"] == ELE
    assert reads == [key]

    await set_syntax(pool, key, RLE)
    await syntax_becomes(rows, key, RLE)
    assert await rows.get(TENANT, uid_root, f"{uid_root}.1", "9.9") is None


async def test_an_update_that_changes_nothing_keeps_the_row(
    pool: asyncpg.Pool,
    rows: NotifiedCache[asyncpg.Record],
    uid_root: str,
    reads: list[tuple[str, ...]],
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
    assert reads.count(key) == 1


async def test_rows_are_read_from_postgresql_while_nobody_listens(
    pool: asyncpg.Pool,
    rows: NotifiedCache[asyncpg.Record],
    changes: IndexChanges,
    uid_root: str,
    reads: list[tuple[str, ...]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(index_changes, "CHECK_SECONDS", 0.05)
    key = await insert(pool, uid_root, 1)
    await rows.get(*key)
    terminated = await pool.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
        LISTENER_NAME,
    )
    assert terminated >= 1
    await until(lambda: not changes.listening, "the listener to be lost")

    await set_syntax(pool, key, RLE)  # notified to nobody
    row = await rows.get(*key)
    assert row is not None and row["transfer_syntax_uid"] == RLE

    await until(lambda: changes.listening, "listening again")
    before = len(reads)
    for _ in range(3):
        await rows.get(*key)
    assert len(reads) == before + 1


# --- where a series' metadata comes from -------------------------------------------------------


async def seen_after(notified: list[str], series: tuple[str, ...], change: Awaitable[T]) -> T:
    """Make `change`, then wait until the cache has been told that `series` changed."""
    payload = "|".join(series)
    before = notified.count(payload)
    done = await change
    await until(lambda: notified.count(payload) > before, f"a notification for {payload}")
    return done


async def mark_stable_with_metadata(pool: asyncpg.Pool, series: tuple[str, ...]) -> None:
    """What the stream jobs write once a series is stable and its metadata precomputed, in one
    transaction (PostgreSQL then notifies the series once)."""
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(
            "INSERT INTO dicom_state_meta (tenant_id, study_uid, series_uid, study_uid_hash,"
            " series_uid_hash, study_date_origin, patient_id, series_related_instances,"
            " series_state, first_received_time, last_received_time, updated_time)"
            " VALUES ($1, $2, $3, 'h', 'h', '19700101', 'p', 2, 'stable', now(), now(), now())",
            *series,
        )
        await connection.execute(
            "INSERT INTO dicom_json_meta (tenant_id, study_uid, series_uid, study_uid_hash,"
            " series_uid_hash, study_date_origin, flag_time, created_time, json_status)"
            " VALUES ($1, $2, $3, 'h', 'h', '19700101', now() + interval '1 s', now(), 'ok')",
            *series,
        )


async def test_a_series_source_is_kept_until_the_series_changes(
    pool: asyncpg.Pool,
    sources: NotifiedCache[MetadataSource],
    notified: list[str],
    uid_root: str,
    reads: list[tuple[str, ...]],
) -> None:
    series = (TENANT, uid_root, f"{uid_root}.1")
    assert await sources.get(*series) is None  # no instances: unknown, and not kept
    await seen_after(notified, series, insert(pool, uid_root, 1))
    first = await sources.get(*series)
    assert first is not None and first.precomputed_beside is None and first.version
    assert await sources.get(*series) == first
    assert reads == [series, series]

    await seen_after(notified, series, insert(pool, uid_root, 2))
    second = await sources.get(*series)
    assert second is not None and second.precomputed_beside is None
    assert second.version != first.version
    assert len(reads) == 3

    await seen_after(notified, series, mark_stable_with_metadata(pool, series))
    third = await sources.get(*series)
    assert third == MetadataSource("f.dcm", None)
    assert await sources.get(*series) == third
    assert len(reads) == 4


async def test_a_kept_source_is_read_again_as_soon_as_the_series_changes(
    pool: asyncpg.Pool,
    sources: NotifiedCache[MetadataSource],
    notified: list[str],
    uid_root: str,
    reads: list[tuple[str, ...]],
) -> None:
    """A viewer polling a series being received finds each new version in memory."""
    series = (TENANT, uid_root, f"{uid_root}.1")
    await seen_after(notified, series, insert(pool, uid_root, 1))
    first = await sources.get(*series)
    assert first is not None and len(first.instances) == 1
    await seen_after(notified, series, insert(pool, uid_root, 2))
    await until(lambda: sources.holds(*series), "the source read again")
    assert reads == [series, series]  # the second read was not asked for

    second = await sources.get(*series)
    assert second is not None and [row.sop_uid for row in second.instances] == [
        f"{uid_root}.1.1",
        f"{uid_root}.1.2",
    ]
    assert second.version != first.version and reads == [series, series]

    other = (TENANT, uid_root, f"{uid_root}.2")  # never asked for: not read when it changes
    await seen_after(notified, other, mark_stable_with_metadata(pool, other))
    assert other not in reads


async def test_another_series_changing_keeps_the_source(
    pool: asyncpg.Pool,
    sources: NotifiedCache[MetadataSource],
    notified: list[str],
    uid_root: str,
    reads: list[tuple[str, ...]],
) -> None:
    series = (TENANT, uid_root, f"{uid_root}.1")
    await seen_after(notified, series, insert(pool, uid_root, 1))
    await sources.get(*series)
    other = (TENANT, uid_root, f"{uid_root}.2")
    await seen_after(notified, other, mark_stable_with_metadata(pool, other))
    await sources.get(*series)
    assert reads == [series]


async def test_a_series_rows_are_read_at_once_until_the_series_changes(
    pool: asyncpg.Pool,
    changes: IndexChanges,
    reads: list[tuple[str, ...]],
    notified: list[str],
    uid_root: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a series' metadata request leaves for the frame requests that follow it: every row
    at first, then only those the series gained or changed."""
    rows = NotifiedCache(
        changes, INSTANCE_CHANNEL, counted(partial(queries.instance, pool), reads), 100
    )
    sources = NotifiedCache(
        changes, SERIES_CHANNEL, partial(queries.metadata_source, pool), 100, read_again=True
    )
    prefetch = SeriesRowPrefetch(pool, changes, rows, sources, max_series=10)
    asked: list[Sequence[str] | None] = []  # the SOP UIDs of each read (None: all)
    read_rows = queries.series_instance_rows

    async def recorded(*args: Any) -> list[asyncpg.Record]:
        asked.append(args[4] if len(args) > 4 else None)
        return await read_rows(*args)

    monkeypatch.setattr(queries, "series_instance_rows", recorded)
    changes.subscribe(SERIES_CHANNEL, notified.append, lambda: None)
    await changes.start()
    series = (TENANT, uid_root, f"{uid_root}.1")
    keys = [await seen_after(notified, series, insert(pool, uid_root, n)) for n in (1, 2, 3)]

    assert prefetch.needed(*series)
    await prefetch.run(*series)  # the series' instances are not known: all of them
    assert not prefetch.needed(*series)
    for key in keys:
        row = await rows.get(*key)
        assert row is not None and row["sop_uid"] == key[-1]
    assert reads == [] and asked == [None]  # every row was read with the series

    await sources.get(*series)  # as the series' metadata request does
    fourth = await seen_after(notified, series, insert(pool, uid_root, 4))
    await until(lambda: sources.holds(*series), "the series' source read again")
    assert prefetch.needed(*series)
    await prefetch.run(*series)
    assert asked == [None, [fourth[-1]]]

    await seen_after(notified, series, set_syntax(pool, keys[0], RLE))
    await until(lambda: sources.holds(*series), "the series' source read again")
    await until(lambda: not rows.holds(*keys[0]), "the changed row forgotten")
    await prefetch.run(*series)
    assert asked == [None, [fourth[-1]], [keys[0][-1]]]
    for key in [*keys, fourth]:
        assert await rows.get(*key) is not None
    assert reads == []
