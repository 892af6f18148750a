"""The fan-out gives way to a burst of C-STOREs: indexing waits while storage events arrive.

On a machine the SCP shares with the worker, indexing during a burst slows every C-STORE down
(even at SCHED_IDLE: the cores share caches and memory bandwidth), while instances indexed a
second later lose nothing. So a batch of storage events waits while the storage topic keeps
growing, until it has been quiet for `QUIET_SECONDS` or the batch's oldest event has waited
`max_seconds`; batches whose events already waited that long (a burst longer than that) are
indexed at once, so indexing never falls further behind than one such wait.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import EventT

log = logging.getLogger(__name__)

QUIET_SECONDS = 0.03  # no new storage event for this long: the burst is over
ASK_TIMEOUT = 1.0  # s: a Kafka that does not answer ends the wait


class TopicEnd:
    """The sum of a topic's end offsets, asked of Kafka on a connection of its own: the worker's
    Faust consumer answers such a question only between two fetches (up to half a second)."""

    def __init__(self, servers: str, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
        self._topic = topic
        self._started = False
        self._partitions: list[TopicPartition] | None = None

    async def __call__(self) -> int:
        if not self._started:
            await self._consumer.start()
            self._started = True
        if self._partitions is None:
            first = [TopicPartition(self._topic, 0)]
            await self._consumer.end_offsets(first)  # loads the topic's metadata: its partitions
            ids = self._consumer.partitions_for_topic(self._topic)
            self._partitions = (
                [TopicPartition(self._topic, i) for i in sorted(ids)] if ids else first
            )
        return sum((await self._consumer.end_offsets(self._partitions)).values())

    async def close(self) -> None:
        if self._started:
            await self._consumer.stop()


async def give_way_to_ingest(
    events: Sequence[EventT],
    topic_end: Callable[[], Awaitable[int]],
    max_seconds: float,
    clock: Callable[[], float] = time.time,
) -> None:
    """Wait while `topic_end()` grows, at most until the oldest of `events` (by its Kafka
    timestamp) is `max_seconds` old; at once when Kafka cannot say."""
    if max_seconds <= 0 or not events:
        return
    oldest = min(event.message.timestamp for event in events)
    if clock() - oldest >= max_seconds:
        return
    try:
        end = await asyncio.wait_for(topic_end(), ASK_TIMEOUT)
        while True:
            await asyncio.sleep(min(QUIET_SECONDS, max(0.0, oldest + max_seconds - clock())))
            end, before = await asyncio.wait_for(topic_end(), ASK_TIMEOUT), end
            if end == before or clock() - oldest >= max_seconds:
                return
    except Exception as exc:  # never holds indexing up
        log.info("not waiting for the storage topic to be quiet: %s", exc)
