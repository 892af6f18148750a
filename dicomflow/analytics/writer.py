"""Writes one topic's batches into its table, each message once, retrying until committed."""

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import groupby
from operator import attrgetter
from typing import Any, TypeVar

import pymysql
from pymysql.cursors import Cursor

from dicomflow.analytics.db import Connection
from dicomflow.analytics.dialect import Checkpoint, Dialect
from dicomflow.analytics.metrics import ROWS_SKIPPED, ROWS_WRITTEN, WRITE_ERRORS
from dicomflow.analytics.tables import SinkTable

log = logging.getLogger(__name__)
T = TypeVar("T")

FIRST_BACKOFF = 0.5
MAX_BACKOFF = 10.0


@dataclass(frozen=True)
class Row:
    """One message: where it was read and its column values."""

    partition: int
    offset: int
    values: tuple[Any, ...]


@dataclass
class Plan:
    """What one batch writes: its rows, the partitions' next offsets, the gaps found."""

    rows: list[Row] = field(default_factory=list)
    next_offsets: dict[int, int] = field(default_factory=dict)
    gaps: dict[int, int] = field(default_factory=dict)


def plan_batch(rows: Sequence[Row], checkpoint: Mapping[int, int | None]) -> Plan:
    """The rows of a batch not written yet, in offset order, each offset once.

    `checkpoint` maps a partition to its next offset to write (None or absent: nothing
    written yet, the first row read starts it). Rows below it were written before (a
    replay). A row above it means that messages in between were not delivered (Faust can
    drop fetched messages during a rebalance): that row and the partition's later rows wait
    for a re-read from the gap, which `gaps` names.
    """
    plan = Plan()
    ordered = sorted(rows, key=attrgetter("partition", "offset"))
    for partition, group in groupby(ordered, key=attrgetter("partition")):
        expected = checkpoint.get(partition)
        for row in group:
            if expected is not None and row.offset < expected:
                continue
            if expected is not None and row.offset > expected:
                plan.gaps[partition] = expected
                break
            plan.rows.append(row)
            expected = row.offset + 1
        if expected is not None and expected != checkpoint.get(partition):
            plan.next_offsets[partition] = expected
    return plan


def distinct(rows: Sequence[Row]) -> Plan:
    """Every row once, for targets without a checkpoint."""
    unique = {(r.partition, r.offset): r for r in rows}
    return Plan(rows=[unique[k] for k in sorted(unique)])


class TableWriter:
    """Writes the rows of `table`; one connection, used by one agent."""

    def __init__(self, table: SinkTable, dialect: Dialect, url: str) -> None:
        self.table = table
        self._dialect = dialect
        self._connection = Connection(url, dialect)
        for counter in (ROWS_WRITTEN, ROWS_SKIPPED):
            counter.labels(table.name)  # exported as 0 before the first batch

    async def write(self, rows: Sequence[Row]) -> dict[int, int]:
        """Write `rows` in one transaction; return the gaps (partition -> offset to re-read)."""
        plan = await self._retry(partial(self._write, rows))
        ROWS_WRITTEN.labels(self.table.name).inc(len(plan.rows))
        ROWS_SKIPPED.labels(self.table.name).inc(len(rows) - len(plan.rows))
        return plan.gaps

    async def skip_to(self, partition: int, offset: int) -> None:
        """Move a partition's checkpoint to `offset`: the messages before it no longer exist."""
        await self._retry(partial(self._advance, {partition: offset}))

    def _write(self, rows: Sequence[Row], cursor: Cursor) -> Plan:
        checkpoint = self._dialect.checkpoint
        if checkpoint is None:
            plan = distinct(rows)
        else:
            plan = plan_batch(rows, self._claim(checkpoint, {r.partition for r in rows}, cursor))
        if plan.rows:
            cursor.execute(
                self._dialect.insert(self.table, len(plan.rows)),
                [value for row in plan.rows for value in row.values],
            )
        self._advance(plan.next_offsets, cursor)
        return plan

    def _claim(
        self, checkpoint: Checkpoint, partitions: set[int], cursor: Cursor
    ) -> dict[int, int | None]:
        """Lock the partitions' checkpoint rows for this transaction and read them."""
        ordered = sorted(partitions)
        topic = self.table.topic
        cursor.execute(checkpoint.claim(len(ordered)), [v for p in ordered for v in (topic, p)])
        cursor.execute(checkpoint.read(len(ordered)), [topic, *ordered])
        return dict(cursor.fetchall())

    def _advance(self, next_offsets: Mapping[int, int], cursor: Cursor) -> None:
        for partition, offset in next_offsets.items():
            cursor.execute(Checkpoint.ADVANCE, (offset, self.table.topic, partition))

    async def _retry(self, work: Callable[[Cursor], T]) -> T:
        """Run `work` in a transaction until it commits: the agent blocks meanwhile, so its
        messages are neither acknowledged nor committed while the target is down."""
        delay = FIRST_BACKOFF
        while True:
            try:
                return await asyncio.to_thread(self._connection.transaction, work)
            except pymysql.MySQLError as exc:
                WRITE_ERRORS.labels(self.table.name, type(exc).__name__).inc()
                unavailable = isinstance(exc, pymysql.OperationalError | pymysql.InterfaceError)
                log.log(
                    logging.WARNING if unavailable else logging.ERROR,
                    "%s: %s (%s); retrying in %.1fs",
                    self.table.name,
                    "target unavailable" if unavailable else "write rejected",
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
