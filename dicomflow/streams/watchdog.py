"""Re-reads a partition whose committed offset is stuck behind unprocessed messages.

Hand-written because Faust 0.15 can drop events it fetched while a rebalance or a table
recovery was under way without acknowledging them: the committed offset then stays before
them and they are processed only after the next restart. When a partition's committed offset
has not moved for `worker_stuck_seconds` while messages wait, the worker seeks back to it;
the events after it are processed again, which the idempotent writers absorb.
"""

import logging
import time
from collections.abc import Collection

import faust
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from faust.types import TP

from dicomflow.core.settings import Settings

log = logging.getLogger(__name__)

CHECK_INTERVAL = 5.0


async def committed_offsets(app: faust.App, kafka_servers: str) -> dict[TP, int]:
    """The offsets `app`'s consumer group has committed."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(app.conf.id)
    finally:
        await admin.close()
    return {TP(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}


def watch(app: faust.App, topics: Collection[str], settings: Settings) -> None:
    """Add to `app` the timer that reads again its stuck partitions of `topics`."""
    unchanged_since: dict[TP, tuple[int, float]] = {}

    async def reread_stuck_partitions() -> None:
        try:
            committed = await committed_offsets(app, settings.kafka_servers)
        except KafkaError as exc:
            log.warning("cannot read the committed offsets: %s", exc)
            return
        now = time.monotonic()
        for tp in app.consumer.assignment():
            offset = committed.get(tp)
            end = app.consumer.highwater(tp)
            if tp.topic not in topics or offset is None or end is None or end <= offset:
                unchanged_since.pop(tp, None)
                continue
            previous = unchanged_since.get(tp)
            if previous is None or previous[0] != offset:
                unchanged_since[tp] = (offset, now)
            elif now - previous[1] >= settings.worker_stuck_seconds:
                log.warning(
                    "%s: committed offset %d stuck for %.0fs below %d; reading again",
                    tp,
                    offset,
                    now - previous[1],
                    end,
                )
                await app.consumer.seek(tp, offset)
                unchanged_since[tp] = (offset, now)

    app.timer(CHECK_INTERVAL)(reread_stuck_partitions)
