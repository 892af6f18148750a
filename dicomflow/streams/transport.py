"""Faust's Kafka transport with a consumer that fetches in batches and never commits past an
event it has not processed.

Fetches: Faust 0.15 builds its consumer with `fetch_min_bytes=1` and offers no setting for
it: at ingest rates every fetch returns one message, and the broker and the worker spend
more time on fetch round trips than on the events. Here a fetch waits for `FETCH_MIN_BYTES`
or `FETCH_MAX_WAIT_MS`, whichever comes first: an idle worker asks four times a second (not
ten: each fetch lists every partition it reads), and a lone event waits at most that long
per hop.

Commits: Faust 0.15 can drop events it fetched while a rebalance, a table recovery or a
seek was under way, and its commit bookkeeping can then skip them for good: it commits over
one missing event at the head of a partition (it compares the next offset to read as if it
were the last one read), and it marks offsets it did not see as a gap to commit over (they
occur only in compacted or transactional topics, which the agents do not read). Here
neither happens: the commit stops before the first event not processed, and the watchdog
(`watchdog.py`) reads the partition again from there, as soon as it sees the event dropped
(`partitions_with_a_dropped_event`).

Undecodable messages: Faust acknowledges a message it cannot decode into its topic's record,
then throws the error into the agent, which crashes and restarts; the next seek delivers the
message again. `SkippingTopic` (each app's `Topic` class) logs and counts it instead, and
the agent goes on with the next event.

Registered under the `faust.transports` entry point as `kafka-batched`, the scheme of
`broker_url()`.
"""

import logging
from collections.abc import Iterable
from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

from dicomflow.core.metrics import EVENTS_UNDECODABLE

log = logging.getLogger(__name__)

SCHEME = "kafka-batched"
FETCH_MIN_BYTES = 64 * 1024
FETCH_MAX_WAIT_MS = 250


def broker_url(kafka_servers: str) -> str:
    """The Faust broker URL of a worker or sink reading `kafka_servers` with this transport."""
    return f"{SCHEME}://{kafka_servers}"


class BatchingConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads these when it starts its fetcher; Faust passes no other way in.
        consumer._fetch_min_bytes = FETCH_MIN_BYTES
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class BatchingConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> BatchingConsumerThread:
        return BatchingConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _new_offset(self, tp: TP) -> int | None:
        """The offset to commit for `tp`, or None while the event at the committed offset
        (the next one to process) has not been acknowledged."""
        if self._next_event_unacknowledged(tp):
            return None
        return super()._new_offset(tp)

    def partitions_with_a_dropped_event(self) -> set[TP]:
        """Partitions whose next event to commit is neither acknowledged nor being processed
        while later ones are acknowledged: Faust dropped it, and only a seek brings it back."""
        in_flight = {(message.tp, message.offset) for message in list(self._unacked_messages)}
        return {
            tp
            for tp in list(self._acked)
            if self._next_event_unacknowledged(tp)
            and (tp, self._committed_offset[tp]) not in in_flight
        }

    async def commit_past_deleted_events(
        self, partitions: Iterable[TP]
    ) -> dict[TP, tuple[int, int]]:
        """Commit, for each of `partitions` whose committed offset is below the first one the
        broker still holds (retention deleted events never processed), that first offset;
        return those partitions' (committed, first held) offsets. Faust commits over such
        offsets as a gap, which `_add_gap` no longer marks."""
        committed = {
            tp: offset
            for tp in partitions
            if (offset := self._committed_offset.get(tp)) is not None
        }
        if not committed:
            return {}
        earliest = await self.earliest_offsets(*committed)
        deleted = {
            tp: (committed[tp], offset)
            for tp, offset in earliest.items()
            if offset is not None and offset > committed[tp]
        }
        if deleted:
            await self._commit_offsets({tp: held for tp, (_, held) in deleted.items()})
        return deleted

    def _next_event_unacknowledged(self, tp: TP) -> bool:
        """Later events of `tp` are acknowledged, the one at the committed offset is not."""
        committed = self._committed_offset.get(tp)
        acked = self._acked.get(tp)
        return committed is not None and bool(acked) and min(acked) > committed

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Never mark offsets as done without processing them (see the module docstring)."""


class SkippingTopic(faust.Topic):
    """A topic whose undecodable messages are logged, counted and skipped (see above)."""

    async def on_key_decode_error(self, exc: Exception, message: Message) -> None:
        self._skip(exc, message)

    async def on_value_decode_error(self, exc: Exception, message: Message) -> None:
        self._skip(exc, message)

    @staticmethod
    def _skip(exc: Exception, message: Message) -> None:
        log.error(
            "%s offset %d: skipped, not a record of the topic: %s",
            message.tp,
            message.offset,
            exc,
        )
        EVENTS_UNDECODABLE.labels(message.tp.topic).inc()


class Transport(faust_aiokafka.Transport):
    Consumer = BatchingConsumer
