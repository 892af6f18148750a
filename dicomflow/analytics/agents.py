"""The sink agents: one per table, each writing its topic in batches bounded by rows and time.

`take_events` acknowledges a batch's messages only after the body of the loop finished, so
Kafka offsets are committed only after the target committed the batch.
"""

import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

import faust
from aiokafka.errors import KafkaError
from faust.types import TP, EventT

from dicomflow.analytics.dialect import dialect
from dicomflow.analytics.tables import SINK_TABLES
from dicomflow.analytics.writer import Row, TableWriter
from dicomflow.core.settings import Settings
from dicomflow.streams.watchdog import read_again_from

log = logging.getLogger(__name__)

Agent = Callable[[faust.StreamT], Coroutine[Any, Any, None]]


def add_agents(app: faust.App, settings: Settings) -> None:
    target = dialect(settings.analytics_dialect)
    for table in SINK_TABLES:
        topic = app.topic(table.topic, value_type=table.record)
        writer = TableWriter(table, target, settings.mysql_url)
        app.agent(topic, name=f"analytics.{table.name}")(_sink(app, writer, settings))


def _sink(app: faust.App, writer: TableWriter, settings: Settings) -> Agent:
    async def sink(stream: faust.StreamT) -> None:
        batches: AsyncIterator[Sequence[EventT]] = stream.take_events(
            settings.analytics_batch_rows, within=settings.analytics_batch_seconds
        )
        async for events in batches:
            rows = [
                Row(e.message.partition, e.message.offset, writer.table.values(e.value))
                for e in events
            ]
            gaps = await writer.write(rows)
            if gaps:
                await read_again(app, writer, gaps)

    return sink


async def read_again(app: faust.App, writer: TableWriter, gaps: dict[int, int]) -> None:
    """Read each gap's partition again from its first missing offset, with the consumer's flow
    stopped. Messages that retention deleted before they were written cannot come back: they
    are logged and skipped."""
    offsets: dict[TP, int] = {}
    try:
        for partition, offset in gaps.items():
            tp = TP(writer.table.topic, partition)
            earliest = (await app.consumer.earliest_offsets(tp))[tp]
            if earliest > offset:
                log.error("%s: offsets %d-%d were deleted unwritten", tp, offset, earliest - 1)
                await writer.skip_to(partition, earliest)
                offset = earliest
            log.warning("%s: offset %d was not delivered; reading again from it", tp, offset)
            offsets[tp] = offset
        await read_again_from(app.consumer, offsets)
    except KafkaError as exc:  # the watchdog reads again later
        log.warning("cannot read again from %s: %s", offsets or gaps, exc)
