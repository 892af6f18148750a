"""The storage-event publisher against the real broker: partitions, outbox failover and replay.

Events go to a topic of their own, laid out as `storage_queue`: the worker must not read them.
"""

import asyncio
import socket
from pathlib import Path

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from dicomflow.core.settings import Settings
from dicomflow.ingest.outbox import Outbox
from dicomflow.ingest.publisher import EventPublisher
from tests.kafka_helpers import create_topic, read_topic

TOPIC = "publisher_test"


@pytest.fixture(scope="module")
def topic(stack: Settings) -> str:
    asyncio.run(create_topic(stack, TOPIC))
    return TOPIC


def event(marker: str, number: int) -> bytes:
    return orjson.dumps({"trace_id": marker, "number": number})


def read_marked(stack: Settings, marker: str, expected: int) -> list[tuple[int, bytes, dict]]:
    return asyncio.run(read_topic(stack, TOPIC, lambda v: v.get("trace_id") == marker, expected))


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_key_lands_on_the_partition_faust_and_aiokafka_choose(
    stack: Settings, topic: str, tmp_path: Path, uid_root: str
) -> None:
    """The series-progress table is consistent only if every producer partitions alike."""
    publisher = EventPublisher(stack, tmp_path / "outbox.db")
    publisher.start()
    keys = [f"default|{uid_root}|{uid_root}.{n}".encode() for n in range(12)]
    try:
        for number, key in enumerate(keys):
            publisher.publish(topic, key, event(uid_root, number)).wait()
    finally:
        publisher.stop()

    found = read_marked(stack, uid_root, len(keys))
    partitions = list(range(stack.topic_partitions))
    expected = {key: DefaultPartitioner()(key, partitions, partitions) for key in keys}
    assert {key: partition for partition, key, _ in found} == expected
    assert len({partition for partition, _, _ in found}) > 1, "keys spread over partitions"


def test_an_outbox_left_by_a_previous_run_is_replayed_in_order_at_start(
    stack: Settings, topic: str, tmp_path: Path, uid_root: str
) -> None:
    path = tmp_path / "outbox.db"
    left = Outbox(path)
    key = f"default|{uid_root}|{uid_root}.1".encode()
    for number in range(5):
        left.append(topic, key, event(uid_root, number))
    left.close()

    publisher = EventPublisher(stack, path)
    publisher.start()
    try:
        found = read_marked(stack, uid_root, 5)
        publisher.publish(topic, key, event(uid_root, 5)).wait()
    finally:
        publisher.stop()

    assert [v["number"] for _, _, v in found] == [0, 1, 2, 3, 4]
    after = read_marked(stack, uid_root, 6)
    assert [v["number"] for _, _, v in after] == [0, 1, 2, 3, 4, 5], "once each, in order"
    assert Outbox(path).depth == 0


def test_unreachable_kafka_fails_over_to_the_outbox(tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{closed_port()}", publish_timeout_ms=1000)
    path = tmp_path / "outbox.db"
    publisher = EventPublisher(settings, path)
    publisher.start()
    try:
        for number in range(3):
            publisher.publish(TOPIC, b"k", event("a", number)).wait()
    finally:
        publisher.stop()

    outbox = Outbox(path)
    assert [orjson.loads(value)["number"] for *_, value in outbox.head(10)] == [0, 1, 2]
