"""The fan-out gives way to a burst of C-STOREs: it waits while the storage topic grows."""

import asyncio
import itertools
from types import SimpleNamespace

from aiokafka import AIOKafkaProducer

from dicomflow.core.settings import Settings
from dicomflow.streams.ingest_yield import TopicEnd, give_way_to_ingest
from tests.kafka_helpers import create_topic

END_PROBE_TOPIC = "dicomflow-topic-end-probe"


def events(*timestamps: float) -> list[SimpleNamespace]:
    return [SimpleNamespace(message=SimpleNamespace(timestamp=t)) for t in timestamps]


class Ends:
    """A topic's end as asked: growing for the first `growing` questions, then still."""

    def __init__(self, growing: int | None) -> None:
        self.growing = growing
        self.asked = 0

    async def __call__(self) -> int:
        self.asked += 1
        if self.growing is None or self.asked <= self.growing:
            return self.asked
        return self.growing


def ticking(start: float, step: float):  # type: ignore[no-untyped-def]
    """A clock that moves `step` seconds each time it is read."""
    moments = itertools.count()
    return lambda: start + step * next(moments)


async def test_a_batch_waits_while_the_topic_grows_and_goes_once_it_is_quiet() -> None:
    ends = Ends(growing=4)
    await asyncio.wait_for(give_way_to_ingest(events(100.0), ends, 2.0, ticking(100.0, 0.01)), 5)
    assert ends.asked == 5  # four answers that grew, then one the same as the last


async def test_a_batch_waits_no_longer_than_its_oldest_event_allows() -> None:
    ends = Ends(growing=None)  # a burst that never ends
    clock = ticking(100.0, 0.1)
    await asyncio.wait_for(give_way_to_ingest(events(100.5, 100.0), ends, 1.0, clock), 5)
    assert 2 <= ends.asked <= 10  # stopped by the oldest event's age, not by a quiet topic


async def test_a_batch_does_not_wait_when_off_when_old_or_when_kafka_cannot_say() -> None:
    ends = Ends(growing=None)
    await give_way_to_ingest(events(100.0), ends, 0.0, ticking(100.0, 0.01))
    await give_way_to_ingest(events(100.0), ends, 2.0, ticking(103.0, 0.01))
    assert ends.asked == 0  # off, then an event that had waited long enough

    async def unreachable() -> int:
        raise ConnectionError("no broker")

    await asyncio.wait_for(
        give_way_to_ingest(events(100.0), unreachable, 2.0, ticking(100.0, 0.01)), 5
    )


async def test_a_topic_end_counts_the_records_of_every_partition(stack: Settings) -> None:
    await create_topic(stack, END_PROBE_TOPIC)
    end = TopicEnd(stack.kafka_servers, END_PROBE_TOPIC)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_servers, acks="all")
    await producer.start()
    try:
        before = await end()
        for partition in (0, 1, 2, 2):
            await producer.send_and_wait(END_PROBE_TOPIC, b"x", partition=partition)
        assert await end() == before + 4
    finally:
        await producer.stop()
        await end.close()
