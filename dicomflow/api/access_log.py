"""Access log: one record per request on `access_log_queue`, never waiting for Kafka.

Records go into a bounded queue that a background task sends; when the queue is full or
Kafka is down, records are dropped and counted, and requests are never slowed down.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter

from dicomflow.core.identifiers import InvalidIdentifier, validate_tenant
from dicomflow.core.topics import ACCESS_LOG_QUEUE
from dicomflow.tables.extract import fit, now_text
from dicomflow.tables.records import AccessLogRecord

log = logging.getLogger(__name__)

ACCESS_LOG_DROPPED = Counter(
    "dicomflow_access_log_dropped_total", "Access log records not delivered to Kafka", ["reason"]
)
QUEUE_SIZE = 10_000
RECONNECT_SECONDS = 5.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AccessLogPublisher:
    """Sends access log records to Kafka from a queue, in the background."""

    def __init__(self, bootstrap_servers: str) -> None:
        self._servers = bootstrap_servers
        self._queue: asyncio.Queue[Callable[[], AccessLogRecord]] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def offer(self, build: Callable[[], AccessLogRecord]) -> None:
        """Queue a record, built only when it is sent (after the response, off its path)."""
        try:
            self._queue.put_nowait(build)
        except asyncio.QueueFull:
            ACCESS_LOG_DROPPED.labels("queue_full").inc()

    async def _run(self) -> None:
        while True:
            producer = AIOKafkaProducer(bootstrap_servers=self._servers, acks=1, linger_ms=50)
            try:
                await producer.start()
            except KafkaError as exc:
                await producer.stop()
                log.info("access log: Kafka unreachable (%s)", exc)
                await self._drop_queued("kafka_down", RECONNECT_SECONDS)
                continue
            try:
                await self._send_forever(producer)
            finally:
                await producer.stop()

    async def _send_forever(self, producer: AIOKafkaProducer) -> None:
        while True:
            record = (await self._queue.get())()
            try:
                await producer.send(
                    ACCESS_LOG_QUEUE, value=record.dumps(), key=record.tenant_id.encode()
                )
            except KafkaError:
                ACCESS_LOG_DROPPED.labels("kafka_down").inc()
                return

    async def _drop_queued(self, reason: str, seconds: float) -> None:
        """Wait `seconds`, counting and discarding what arrives meanwhile."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                await asyncio.wait_for(self._queue.get(), remaining)
            except TimeoutError:
                return
            ACCESS_LOG_DROPPED.labels(reason).inc()


class AccessLogMiddleware:
    """Pure ASGI middleware: measures each HTTP request and offers its record."""

    def __init__(
        self, app: ASGIApp, publisher: Callable[[], AccessLogPublisher | None], default_tenant: str
    ) -> None:
        self.app = app
        self.publisher = publisher
        self.default_tenant = default_tenant

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        outcome = {"status": 500, "bytes": 0}

        async def measuring_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                outcome["status"] = message["status"]
            elif message["type"] == "http.response.body":
                outcome["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, measuring_send)
        finally:
            publisher = self.publisher()
            if publisher is not None:
                seconds = time.perf_counter() - started
                publisher.offer(partial(self._record, scope, outcome, seconds, time.time()))

    def _record(
        self, scope: Scope, outcome: dict[str, int], seconds: float, finished: float
    ) -> AccessLogRecord:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        client = scope.get("client")
        return AccessLogRecord(
            log_time=now_text(finished),
            tenant_id=self._tenant(scope["path"], headers.get("x-tenant")),
            method=fit("method", scope["method"]) or "",
            path=fit("path", scope["path"]) or "/",
            query=fit("query", scope.get("query_string", b"").decode("latin-1")),
            status=outcome["status"],
            bytes_sent=outcome["bytes"],
            duration_ms=round(seconds * 1000, 3),
            client_address=fit("client_address", client[0] if client else None),
            user_agent=fit("user_agent", headers.get("user-agent")),
        )

    def _tenant(self, path: str, header: str | None) -> str:
        parts = path.split("/")
        candidate = parts[2] if len(parts) > 2 and parts[1] == "tenants" else header
        try:
            return validate_tenant(candidate) if candidate else self.default_tenant
        except InvalidIdentifier:
            return self.default_tenant
