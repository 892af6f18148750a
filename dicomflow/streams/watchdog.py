"""Re-reads partitions whose committed offset is stuck behind unprocessed messages.

Hand-written because Faust 0.15 can drop events it fetched while a rebalance or a table
recovery was under way (on every restart) without acknowledging them: the committed offset
then stays before them (`transport.py` sees to that) and they would be processed only after
the next restart. When the consumer sees such an event dropped, or a partition's committed
offset has not moved for `worker_stuck_seconds` while messages wait, the worker stops its
flow, moves every partition back to its committed offset on the consumer's own thread
(Faust's `perform_seek`, what it does after a rebalance), and resumes; the events after
those offsets are processed again, which the idempotent writers absorb. Offsets the broker no
longer holds (retention) are committed over instead, with an error.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping

import faust
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from faust.types import TP, ConsumerT

from dicomflow.core.metrics import EVENTS_DELETED_UNPROCESSED, PARTITIONS_READ_AGAIN
from dicomflow.core.settings import Settings

log = logging.getLogger(__name__)

CHECK_INTERVAL = 5.0
DROPPED_CHECK_INTERVAL = 1.0


async def committed_offsets(group: str, kafka_servers: str) -> dict[TP, int]:
    """The offsets consumer group `group` (a Faust app's id) has committed."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {TP(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}


@contextlib.asynccontextmanager
async def flow_stopped(consumer: ConsumerT) -> AsyncIterator[None]:
    """The consumer delivers nothing inside: a seek from the event loop while a fetched batch
    is being delivered races the consumer's own bookkeeping (the batch's next event moves the
    read position past the offsets sought, and the events read again are dropped as read)."""
    consumer.stop_flow()
    try:
        yield
    finally:
        consumer.resume_flow()


async def read_again_from_committed(consumer: ConsumerT) -> None:
    """Move every assigned partition back to its committed offset, on the consumer's thread."""
    async with flow_stopped(consumer):
        await consumer.perform_seek()


async def read_again_from(consumer: ConsumerT, offsets: Mapping[TP, int]) -> None:
    """Move each partition of `offsets` back to its offset, on the consumer's thread."""
    async with flow_stopped(consumer):
        await consumer.seek_wait(offsets)


async def read_stuck_again(consumer: ConsumerT, stuck: Mapping[TP, str]) -> None:
    """Commit over what retention deleted of the `stuck` partitions (partition -> reason);
    read every partition again from its committed offset if any other is stuck."""
    deleted = await consumer.commit_past_deleted_events(stuck)
    for tp, (first, held) in deleted.items():
        log.error("%s: events %d-%d were deleted by retention unprocessed", tp, first, held - 1)
        EVENTS_DELETED_UNPROCESSED.labels(tp.topic).inc(held - first)
    if stuck.keys() - deleted.keys():
        log.warning("reading every partition again from its committed offset")
        for tp, reason in stuck.items():
            PARTITIONS_READ_AGAIN.labels(tp.topic, reason).inc()
        await read_again_from_committed(consumer)


def watch(app: faust.App, settings: Settings) -> None:
    """Add to `app` the timers that read again its stuck partitions (every topic whose
    events it acknowledges: not the tables' changelogs).

    Stuck: an event the consumer dropped at the head of the partition, seen at two checks in a
    row a second apart (the consumer can tell, `transport.py`; after a restart this is what
    holds indexing up), or a committed offset that has not moved for `worker_stuck_seconds`
    while messages wait (whatever the cause; checked every `CHECK_INTERVAL`, as it asks the
    broker). One re-read at a time.
    """
    unchanged_since: dict[TP, tuple[int, float]] = {}
    dropped_before: set[TP] = set()
    one_at_a_time = asyncio.Lock()

    async def read_again(stuck: Mapping[TP, str]) -> None:
        async with one_at_a_time:
            try:
                await read_stuck_again(app.consumer, stuck)
            except (KafkaError, TimeoutError) as exc:  # e.g. a rebalance: the next check retries
                log.warning("cannot read the stuck partitions again: %s", exc)
            dropped_before.clear()

    async def reread_partitions_with_a_dropped_event() -> None:
        dropped = app.consumer.partitions_with_a_dropped_event()
        stuck = {tp: "dropped_event" for tp in dropped & dropped_before}
        dropped_before.clear()
        dropped_before.update(dropped)
        for tp in stuck:
            log.warning("%s: an event was dropped before it was processed", tp)
        if stuck:
            await read_again(stuck)

    async def reread_partitions_with_a_stuck_commit() -> None:
        try:
            committed = await committed_offsets(app.conf.id, settings.kafka_servers)
        except KafkaError as exc:
            log.warning("cannot read the committed offsets: %s", exc)
            return
        now = time.monotonic()
        stuck: dict[TP, str] = {}  # partition -> why it is read again
        for tp in app.consumer.assignment():
            offset = committed.get(tp)
            end = app.consumer.highwater(tp)
            acknowledged = app.topics.acks_enabled_for(tp.topic)
            if not acknowledged or offset is None or end is None or end <= offset:
                unchanged_since.pop(tp, None)
                continue
            previous = unchanged_since.get(tp)
            if previous is None or previous[0] != offset:
                unchanged_since[tp] = (offset, now)
            elif now - previous[1] >= settings.worker_stuck_seconds:
                log.warning(
                    "%s: committed offset %d stuck for %.0fs below %d",
                    tp,
                    offset,
                    now - previous[1],
                    end,
                )
                unchanged_since[tp] = (offset, now)
                stuck[tp] = "stuck_commit"
        if stuck:
            await read_again(stuck)

    app.timer(DROPPED_CHECK_INTERVAL)(reread_partitions_with_a_dropped_event)
    app.timer(CHECK_INTERVAL)(reread_partitions_with_a_stuck_commit)
