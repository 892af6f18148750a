"""The sink's writer and commands against the stack's MariaDB: replays, redeliveries, late
messages and gaps leave each message's row exactly once."""

import asyncio
import dataclasses
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
from aiokafka.errors import IllegalStateError
from faust.types import TP

from dicomflow.analytics.agents import read_again
from dicomflow.analytics.db import connect_options
from dicomflow.analytics.dialect import MariaDBDialect
from dicomflow.analytics.metrics import ROWS_SKIPPED
from dicomflow.analytics.tables import SINK_TABLES, SinkTable
from dicomflow.analytics.writer import Row, TableWriter
from dicomflow.core.settings import Settings
from dicomflow.tables.extract import read_header, state_record, storage_event
from dicomflow.tables.records import AccessLogRecord, StateRecord, StorageEvent
from tests.dicom_factory import make_ct

ROOT = Path(__file__).resolve().parents[1]
TABLES = {table.name: table for table in SINK_TABLES}


def fetch_all(settings: Settings, sql: str, *args: object) -> list[tuple[Any, ...]]:
    connection = pymysql.connect(**connect_options(settings.mysql_url), autocommit=True)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, args)
            return list(cursor.fetchall())
    finally:
        connection.close()


def count(settings: Settings, table: str, where: str, *args: object) -> int:
    return fetch_all(settings, f"SELECT COUNT(*) FROM {table} WHERE {where}", *args)[0][0]


@pytest.fixture
def writer_for(stack: Settings, uid_root: str) -> Iterator[Any]:
    """Writers of the real tables on a topic of their own, so checkpoints never meet; the
    rows of the test's `uid_root` are deleted afterwards (the tables are the session's)."""
    topic = f"test-{uuid.uuid4().hex[:12]}"
    writers: list[TableWriter] = []

    def make(name: str) -> TableWriter:
        table = dataclasses.replace(TABLES[name], topic=topic)
        writers.append(TableWriter(table, MariaDBDialect(), stack.mysql_url))
        return writers[-1]

    yield make
    for writer in writers:
        writer._connection.close()
    for table in ("dicom_object_meta", "dicom_state_meta", "dicom_image_meta"):
        fetch_all(stack, f"DELETE FROM {table} WHERE study_uid LIKE %s", f"{uid_root}.%")
    fetch_all(stack, "DELETE FROM wado_access_log WHERE path LIKE %s", f"%{uid_root}")
    fetch_all(stack, "DELETE FROM analytics_sink_offsets WHERE topic = %s", topic)


def checkpoint(settings: Settings, writer: TableWriter) -> dict[int, int | None]:
    rows = fetch_all(
        settings,
        "SELECT partition_id, next_offset FROM analytics_sink_offsets WHERE topic = %s",
        writer.table.topic,
    )
    return dict(rows)


def access_record(marker: str, number: int) -> AccessLogRecord:
    return AccessLogRecord(
        log_time="2024-01-02 03:04:05.000001",  # the same instant: nothing tells them apart
        tenant_id="tenant-a",
        method="GET",
        path=f"/dicom-web/studies/{marker}",
        query=f"n={number}",
        status=200,
        bytes_sent=10,
        duration_ms=1.5,
        client_address="127.0.0.1",
        user_agent="pytest",
    )


def at(table: SinkTable, partition: int, offset: int, record: Any) -> Row:
    return Row(partition, offset, table.values(record))


def stored_instance(tmp_path: Path, uid_root: str, number: int = 1) -> StorageEvent:
    path = tmp_path / f"{number}.dcm"
    make_ct(
        path,
        study_uid=f"{uid_root}.1",
        series_uid=f"{uid_root}.1.1",
        sop_uid=f"{uid_root}.1.1.{number}",
        instance_number=number,
    )
    header = read_header(path)
    return storage_event(
        header,
        tenant="tenant-a",
        file_path=f"tenant-a/20240102/{uid_root}.1/{uid_root}.1.1/{uid_root}.1.1.{number}.dcm",
        file_size=path.stat().st_size,
        transfer_syntax_uid=str(header.file_meta.TransferSyntaxUID),
        node_id="node-1",
        trace_id=str(uuid.uuid4()),
        source_ip="127.0.0.1",
        source_ae="MODALITY",
        called_ae="DICOMFLOW",
    )


def series_state(event: StorageEvent, tmp_path: Path, state: str, updated: str) -> StateRecord:
    header = read_header(tmp_path / "1.dcm")
    record = state_record(
        header,
        event,
        series_related_instances=1,
        series_state=state,
        first_received_time=event.created_time,
        last_received_time=event.created_time,
    )
    return record.derive(updated_time=updated)


async def test_replayed_and_overlapping_batches_write_each_access_log_row_once(
    stack: Settings, writer_for: Any, uid_root: str
) -> None:
    writer = writer_for("wado_access_log")
    table = writer.table
    batch = [at(table, p, o, access_record(uid_root, 10 * p + o)) for p in (0, 1) for o in range(5)]
    skipped = ROWS_SKIPPED.labels(table.name)._value.get()

    assert await writer.write(batch[:3]) == {}
    assert await writer.write(batch) == {}  # overlaps the first
    assert await writer.write(batch) == {}  # a replay
    assert await writer.write(list(reversed(batch + batch))) == {}  # delivered twice, any order

    where = "path = %s"
    assert count(stack, "wado_access_log", where, f"/dicom-web/studies/{uid_root}") == 10
    assert checkpoint(stack, writer) == {0: 5, 1: 5}
    assert ROWS_SKIPPED.labels(table.name)._value.get() - skipped == 3 + 10 + 20


async def test_two_sinks_writing_the_same_messages_at_once_write_them_once(
    stack: Settings, writer_for: Any, uid_root: str
) -> None:
    """As during a rebalance, when two processes briefly read the same partitions."""
    first, second = writer_for("wado_access_log"), writer_for("wado_access_log")
    table = first.table
    batch = [at(table, p, o, access_record(uid_root, o)) for p in (0, 1, 2) for o in range(20)]

    for _ in range(3):
        await asyncio.gather(first.write(batch[::2]), second.write(list(reversed(batch))))

    assert count(stack, "wado_access_log", "path = %s", f"/dicom-web/studies/{uid_root}") == 60
    assert checkpoint(stack, first) == {0: 20, 1: 20, 2: 20}


async def test_a_gap_is_left_for_a_re_read_and_filled_by_it(
    stack: Settings, writer_for: Any, uid_root: str
) -> None:
    writer = writer_for("wado_access_log")
    table = writer.table
    record = access_record(uid_root, 0)

    assert await writer.write([at(table, 0, o, record) for o in (0, 1, 3, 4)]) == {0: 2}
    assert checkpoint(stack, writer) == {0: 2}
    assert await writer.write([at(table, 0, o, record) for o in (2, 3, 4)]) == {}
    assert count(stack, "wado_access_log", "path = %s", f"/dicom-web/studies/{uid_root}") == 5
    assert checkpoint(stack, writer) == {0: 5}


class FakeConsumer:
    """The consumer calls `read_again` makes, recorded."""

    def __init__(self, earliest: int, seek_error: Exception | None = None) -> None:
        self.earliest = earliest
        self.seek_error = seek_error
        self.seeks: list[tuple[TP, int]] = []
        self.flow: list[str] = []

    async def earliest_offsets(self, *partitions: TP) -> dict[TP, int]:
        return dict.fromkeys(partitions, self.earliest)

    def stop_flow(self) -> None:
        self.flow.append("stopped")

    def resume_flow(self) -> None:
        self.flow.append("resumed")

    async def seek_wait(self, offsets: dict[TP, int]) -> None:
        if self.seek_error:
            raise self.seek_error
        self.seeks.extend((tp, offset) for tp, offset in offsets.items())
        self.flow.append(f"sought while {self.flow[-1]}")


@dataclasses.dataclass
class FakeApp:
    consumer: FakeConsumer


async def test_a_gap_is_read_again_from_its_first_missing_offset(
    stack: Settings, writer_for: Any, uid_root: str
) -> None:
    writer = writer_for("wado_access_log")
    table = writer.table
    record = access_record(uid_root, 0)
    gaps = await writer.write([at(table, 0, 0, record), at(table, 0, 4, record)])
    app = FakeApp(FakeConsumer(earliest=0))

    await read_again(app, writer, gaps)  # type: ignore[arg-type]

    assert app.consumer.seeks == [(TP(table.topic, 0), 1)]
    assert app.consumer.flow == ["stopped", "sought while stopped", "resumed"]
    assert checkpoint(stack, writer) == {0: 1}
    failing = FakeApp(FakeConsumer(earliest=0, seek_error=IllegalStateError("revoked")))
    await read_again(failing, writer, gaps)  # type: ignore[arg-type]
    assert failing.consumer.flow == ["stopped", "resumed"]


async def test_a_gap_that_retention_deleted_is_skipped(
    stack: Settings, writer_for: Any, uid_root: str
) -> None:
    writer = writer_for("wado_access_log")
    table = writer.table
    record = access_record(uid_root, 0)
    gaps = await writer.write([at(table, 0, 0, record), at(table, 0, 4, record)])
    app = FakeApp(FakeConsumer(earliest=3))

    await read_again(app, writer, gaps)  # type: ignore[arg-type]

    assert app.consumer.seeks == [(TP(table.topic, 0), 3)]
    assert checkpoint(stack, writer) == {0: 3}
    assert await writer.write([at(table, 0, o, record) for o in (3, 4)]) == {}
    assert count(stack, "wado_access_log", "path = %s", f"/dicom-web/studies/{uid_root}") == 3


async def test_a_redelivered_storage_event_adds_no_row_a_re_sent_instance_does(
    stack: Settings, writer_for: Any, uid_root: str, tmp_path: Path
) -> None:
    writer = writer_for("dicom_object_meta")
    event = stored_instance(tmp_path, uid_root)
    re_sent = event.derive(trace_id=str(uuid.uuid4()))
    rows = [at(writer.table, 0, 0, event), at(writer.table, 0, 1, event)]

    await writer.write([*rows, at(writer.table, 0, 2, re_sent)])

    stored = fetch_all(
        stack,
        "SELECT trace_id, file_size FROM dicom_object_meta WHERE study_uid = %s",
        f"{uid_root}.1",
    )
    assert sorted(stored) == sorted(
        [(event.trace_id, event.file_size), (re_sent.trace_id, event.file_size)]
    )


async def test_a_late_older_state_never_replaces_a_newer_one(
    stack: Settings, writer_for: Any, uid_root: str, tmp_path: Path
) -> None:
    writer = writer_for("dicom_state_meta")
    event = stored_instance(tmp_path, uid_root)
    older = series_state(event, tmp_path, "receiving", "2024-01-02 03:04:05.000001")
    newer = series_state(event, tmp_path, "stable", "2024-01-02 03:04:05.000002")

    def state() -> list[tuple[Any, ...]]:
        return fetch_all(
            stack,
            "SELECT series_state, updated_time FROM dicom_state_meta WHERE study_uid = %s",
            f"{uid_root}.1",
        )

    await writer.write([at(writer.table, 0, 0, newer), at(writer.table, 0, 1, older)])
    assert [(s, str(t)) for s, t in state()] == [("stable", "2024-01-02 03:04:05.000002")]
    await writer.write([at(writer.table, 0, 2, older.derive(patient_id="other"))])
    assert [s for s, _ in state()] == ["stable"]
    later = newer.derive(series_state="receiving", updated_time="2024-01-02 03:04:06")
    await writer.write([at(writer.table, 0, 3, later)])
    assert [s for s, _ in state()] == ["receiving"]


def dicomflow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dicomflow", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )


def test_init_is_idempotent_and_a_query_prints_a_table(stack: Settings) -> None:
    for _ in range(2):
        result = dicomflow("analytics", "init")
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["applied", "sink_offsets.sql", "applied", "tables.sql"]
    result = dicomflow("analytics", "query", "study_states")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Studies still receiving vs stable")
    header = next(line for line in lines if line.startswith("tenant_id"))
    assert header.split() == [
        "tenant_id",
        "study_state",
        "studies",
        "series",
        "instances",
        "last_received_time",
    ]
    assert lines[-1].endswith("rows)")
