"""Reading what the services published, straight from Kafka."""

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.errors import TopicAlreadyExistsError

from dicomflow.core.settings import Settings


async def read_topic(
    settings: Settings,
    topic: str,
    keep: Callable[[dict[str, Any]], bool],
    expected: int,
    timeout: float = 30.0,
) -> list[tuple[int, bytes, dict[str, Any]]]:
    """Every message of `topic` that `keep` accepts, as (partition, key, value), in offset order
    per partition; waits until at least `expected` are there or `timeout` passes, then drains."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found: list[tuple[int, bytes, dict[str, Any]]] = []
        deadline = time.monotonic() + timeout
        quiet_until = None
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            for tp, messages in batches.items():
                for message in messages:
                    value = orjson.loads(message.value)
                    if keep(value):
                        found.append((tp.partition, message.key, value))
            if len(found) >= expected:
                # drain a little longer so that duplicates, if any, are seen too
                quiet_until = quiet_until or time.monotonic() + 2.0
                if time.monotonic() > quiet_until:
                    break
            await asyncio.sleep(0)
        return found
    finally:
        await consumer.stop()


async def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """The next offset to be written, per partition of `topic`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_servers)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        return {
            tp.partition: offset for tp, offset in (await consumer.end_offsets(partitions)).items()
        }
    finally:
        await consumer.stop()


async def delete_records_before(
    settings: Settings, topic: str, partition: int, offset: int
) -> None:
    """Delete the records of `topic`'s `partition` before `offset`, as retention would."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_servers)
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(topic, partition): RecordsToDelete(offset)})
    finally:
        await admin.close()


async def create_topic(settings: Settings, topic: str) -> None:
    """Create `topic` with the stack's partition count, unless it exists."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_servers)
    await admin.start()
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics([NewTopic(topic, settings.topic_partitions, 1)])
    finally:
        await admin.close()
