"""The worker's Kafka consumer: batched fetches; commits never pass an unprocessed event."""

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import faust
import pytest
from faust.types import TP

from dicomflow.analytics.app import create_app as create_sink_app
from dicomflow.core.settings import Settings
from dicomflow.streams.app import configure
from dicomflow.streams.transport import (
    FETCH_MAX_WAIT_MS,
    FETCH_MIN_BYTES,
    BatchingConsumer,
    broker_url,
)

PARTITION = TP("storage_queue", 3)


@pytest.fixture
def consumer(tmp_path: Path) -> Iterator[BatchingConsumer]:
    """A fresh consumer of the transport, never started (no broker needed), at committed
    offset 30."""
    settings = Settings(state_dir=tmp_path)
    consumer = faust.App("commit-rules", broker=broker_url(settings.kafka_servers)).consumer
    assert isinstance(consumer, BatchingConsumer)
    consumer._committed_offset[PARTITION] = 30
    yield consumer


def acknowledge(consumer: BatchingConsumer, *offsets: int) -> None:
    for offset in offsets:
        consumer._acked[PARTITION].append(offset)
        consumer._acked_index[PARTITION].add(offset)


async def test_worker_and_sink_consumers_fetch_in_batches(tmp_path: Path) -> None:
    """Faust asks the broker to answer every fetch as soon as one message is there; the worker
    and the analytics sink replace that on the attribute aiokafka's fetcher is built from."""
    settings = Settings(state_dir=tmp_path)
    plain = faust.App("plain-fetch", broker=f"kafka://{settings.kafka_servers}")
    plain_consumer = plain.consumer._thread._create_worker_consumer(plain.transport)
    batched = [
        app.consumer._thread._create_worker_consumer(app.transport)
        for app in (configure(settings), create_sink_app(settings))
    ]
    fetch_settings = [
        (c._fetch_min_bytes, c._fetch_max_wait_ms) for c in [plain_consumer, *batched]
    ]
    for consumer in [plain_consumer, *batched]:
        await consumer.stop()
    assert fetch_settings == [(1, 1500), *[(FETCH_MIN_BYTES, FETCH_MAX_WAIT_MS)] * 2]


def test_no_commit_while_the_next_event_is_unprocessed(consumer: BatchingConsumer) -> None:
    """Faust alone would commit 33 here, skipping event 30 for good."""
    acknowledge(consumer, 31, 32)
    assert consumer._new_offset(PARTITION) is None
    acknowledge(consumer, 30)
    assert consumer._new_offset(PARTITION) == 33


def test_commit_stops_before_the_first_unprocessed_event(consumer: BatchingConsumer) -> None:
    acknowledge(consumer, 30, 31, 33)
    assert consumer._new_offset(PARTITION) == 32


def test_commit_from_offset_zero_waits_for_event_zero(consumer: BatchingConsumer) -> None:
    consumer._committed_offset[PARTITION] = 0
    acknowledge(consumer, 1)
    assert consumer._new_offset(PARTITION) is None


async def test_offsets_skipped_by_the_fetch_are_never_marked_done(
    consumer: BatchingConsumer,
) -> None:
    """Faust marks offsets between the last one read and a later one fetched as a gap to
    commit over; the agents read no compacted or transactional topic, so none is real."""
    await consumer._add_gap(PARTITION, 31, 40)
    acknowledge(consumer, 41)
    assert not consumer._gap[PARTITION]
    assert consumer._new_offset(PARTITION) is None


@dataclass(frozen=True)
class DeliveredMessage:
    tp: TP
    offset: int


def test_a_dropped_head_event_is_told_from_one_in_flight(consumer: BatchingConsumer) -> None:
    acknowledge(consumer, 31, 32)
    in_flight = DeliveredMessage(PARTITION, 30)
    consumer._unacked_messages.add(in_flight)
    assert consumer.partitions_with_a_dropped_event() == set()
    consumer._unacked_messages.discard(in_flight)
    assert consumer.partitions_with_a_dropped_event() == {PARTITION}
    acknowledge(consumer, 30)
    assert consumer.partitions_with_a_dropped_event() == set()


@pytest.mark.parametrize(("earliest", "deleted"), [(40, {PARTITION: (30, 40)}), (30, {}), (12, {})])
def test_offsets_deleted_by_retention_are_committed_over(
    consumer: BatchingConsumer, monkeypatch: pytest.MonkeyPatch, earliest: int, deleted: dict
) -> None:
    """The only real gap: events the broker deleted before they were processed."""
    commits = []

    async def earliest_offsets(*partitions: TP) -> dict[TP, int]:
        return dict.fromkeys(partitions, earliest)

    async def commit_offsets(offsets: dict[TP, int]) -> bool:
        commits.append(offsets)
        return True

    monkeypatch.setattr(consumer, "earliest_offsets", earliest_offsets)
    monkeypatch.setattr(consumer, "_commit_offsets", commit_offsets)
    partitions = [PARTITION, TP("never_read", 0)]
    assert asyncio.run(consumer.commit_past_deleted_events(partitions)) == deleted
    assert commits == ([{PARTITION: earliest}] if deleted else [])
