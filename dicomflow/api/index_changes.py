"""One PostgreSQL connection per API process listening to the index's change notifications.

Triggers (`sql/postgres/003_instance_changes.sql`, `004_series_changes.sql`) notify every change
of an instance row or of a series. What the API keeps in memory on the strength of those
notifications (`NotifiedCache`) must be forgotten whenever they may have been missed: when the
connection is lost, or goes silent (checked by a ping every `CHECK_SECONDS`), and when it
listens again.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

log = logging.getLogger(__name__)

INSTANCE_CHANNEL = "dicom_instance_changed"  # payload: tenant|study|series|sop
SERIES_CHANNEL = "dicom_series_changed"  # payload: tenant|study|series
LISTENER_NAME = "dicomflow-api-index-changes"  # its application_name in pg_stat_activity
CHECK_SECONDS = 2.0  # how often the listening connection is checked (or listening retried)
PING_TIMEOUT = 2.0

OnChange = Callable[[str], None]  # called with a notification's payload
OnLost = Callable[[], None]  # called when notifications may have been missed


class IndexChanges:
    """Delivers the notifications of the channels subscribed to, while it listens."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._channels: dict[str, list[OnChange]] = {}
        self._on_lost: list[OnLost] = []
        self._listener: asyncpg.Connection | None = None
        self._maintainer: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        return self._listener is not None and not self._listener.is_closed()

    def subscribe(self, channel: str, on_change: OnChange, on_lost: OnLost) -> None:
        """Call `on_change` for each notification on `channel` (after those subscribed before
        it); `on_lost` when some may have been missed. Only before `start`."""
        self._channels.setdefault(channel, []).append(on_change)
        self._on_lost.append(on_lost)

    async def start(self) -> None:
        """Listen now if PostgreSQL answers; check the connection (or retry) in the background.
        Nothing subscribed: nothing to listen to."""
        if not self._channels:
            return
        await self._listen()
        self._maintainer = asyncio.create_task(self._maintain())

    async def close(self) -> None:
        if self._maintainer is not None:
            self._maintainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintainer
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()

    async def _maintain(self) -> None:
        """Listen again after a loss; notice a connection that went silent (no notification
        could come through it) by asking it something."""
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            listener = self._listener
            if listener is None or listener.is_closed():
                await self._listen()
                continue
            try:
                await asyncio.wait_for(listener.execute("SELECT 1"), PING_TIMEOUT)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("index change notifications lost (%s); reading PostgreSQL", exc)
                self._on_terminated(listener)

    async def _listen(self) -> None:
        try:
            listener = await asyncpg.connect(
                self._dsn, server_settings={"application_name": LISTENER_NAME}
            )
            for channel, subscribers in self._channels.items():
                await listener.add_listener(channel, _payload_to(subscribers))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("cannot listen for index changes (%s); retrying", exc)
            return
        listener.add_termination_listener(self._on_terminated)
        self._lost()
        self._listener = listener

    def _on_terminated(self, listener: asyncpg.Connection) -> None:
        if listener is not self._listener:
            return
        self._listener = None
        self._lost()
        if not listener.is_closed():
            listener.terminate()

    def _lost(self) -> None:
        for on_lost in self._on_lost:
            on_lost()


def _payload_to(subscribers: list[OnChange]) -> Callable[[object, int, str, str], None]:
    """One asyncpg listener (connection, pid, channel, payload) handing the payload to each
    subscriber in turn."""

    def deliver(_connection: object, _pid: int, _channel: str, payload: str) -> None:
        for on_change in subscribers:
            on_change(payload)

    return deliver
