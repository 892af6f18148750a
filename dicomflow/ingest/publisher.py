"""One long-lived Kafka producer (acks=all) behind a durable outbox.

Handlers run in pynetdicom's association threads; publishing runs on one asyncio loop in
its own thread, so ordering decisions (outbox or Kafka) never race.
"""

import asyncio
import contextlib
import logging
import threading
from concurrent.futures import Future
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from dicomflow.core.settings import Settings
from dicomflow.ingest.outbox import Outbox

log = logging.getLogger(__name__)

REPLAY_BATCH = 500
RETRY_SECONDS = 1.0


class PublishFailed(Exception):
    """Neither Kafka nor the outbox accepted the event."""


class EventPublisher:
    """`publish()` returns once the event is acknowledged by Kafka or stored in the outbox."""

    def __init__(self, settings: Settings, outbox_path: Path | None = None) -> None:
        """`outbox_path`: each process that publishes has its own outbox (and replayer)."""
        self._settings = settings
        self._outbox_path = outbox_path or settings.outbox_file
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="publisher", daemon=True
        )
        self._producer: AIOKafkaProducer | None = None
        self._outbox: Outbox | None = None
        self._replayer: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self) -> None:
        self._thread.start()
        self._call(self._start())

    def stop(self) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def publish(self, topic: str, key: bytes, value: bytes) -> None:
        """Block until the event is durable in Kafka or in the outbox; else raise PublishFailed."""
        self._call(self._publish(topic, key, value))

    def _call(self, coro) -> None:  # type: ignore[no-untyped-def]
        future: Future[None] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        future.result()

    async def _start(self) -> None:
        self._outbox = Outbox(self._outbox_path)
        await self._connect()
        self._replayer = asyncio.create_task(self._replay_forever())

    async def _connect(self) -> bool:
        if self._producer is not None:
            return True
        producer = AIOKafkaProducer(
            bootstrap_servers=self._settings.kafka_servers,
            acks="all",
            # Not idempotent: aiokafka never expires an idempotent producer's batches, so a
            # send to an unreachable broker would never fail over to the outbox. One batch in
            # flight per partition keeps the order; consumers are idempotent.
            enable_idempotence=False,
            linger_ms=0,  # each C-STORE waits for its own event: nothing to batch with
            request_timeout_ms=self._settings.publish_timeout_ms,
            client_id=f"dicomflow-scp-{self._settings.node_id}",
        )
        try:
            await producer.start()
        except KafkaError as exc:
            log.warning("Kafka unreachable (%s); storage events go to the outbox", exc)
            await producer.stop()
            return False
        self._producer = producer
        return True

    async def _stop(self) -> None:
        self._stopping.set()
        if self._replayer:
            await self._replayer
        if self._producer:
            await self._producer.stop()
        if self._outbox:
            self._outbox.close()

    async def _publish(self, topic: str, key: bytes, value: bytes) -> None:
        assert self._outbox is not None
        if self._producer is not None and self._outbox.depth == 0:
            try:
                await self._producer.send_and_wait(topic, value=value, key=key)
                return
            except KafkaError as exc:
                log.warning("Kafka did not acknowledge an event (%s); using the outbox", exc)
        try:
            self._outbox.append(topic, key, value)
        except Exception as exc:
            raise PublishFailed(f"outbox write failed: {exc}") from exc

    async def _replay_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                if await self._connect():
                    await self._replay()
            except KafkaError as exc:
                log.warning("outbox replay interrupted: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), RETRY_SECONDS)

    async def _replay(self) -> None:
        """Send the outbox in order; remove each prefix Kafka acknowledged."""
        assert self._outbox is not None and self._producer is not None
        while rows := self._outbox.head(REPLAY_BATCH):
            futures = [
                await self._producer.send(topic, value=value, key=key)
                for _, topic, key, value in rows
            ]
            acknowledged = None
            try:
                for (seq, *_), future in zip(rows, futures, strict=True):
                    await future
                    acknowledged = seq
            finally:
                if acknowledged is not None:
                    self._outbox.remove_through(acknowledged)
            log.info("replayed %d events from the outbox", len(rows))
