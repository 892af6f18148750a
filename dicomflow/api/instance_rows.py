"""Instance rows kept in memory while PostgreSQL says they have not changed.

Every WADO-RS request about one instance (the instance, its frames, bulk data, rendered) starts
with its row: ~0.1 ms and the wake-up of a PostgreSQL backend. Rows are only inserted and
updated by the stream job; a trigger (`sql/postgres/003_instance_changes.sql`) notifies every
change, and one connection of this process listens. Rows are kept only while it listens: when
it is lost, everything kept is forgotten and rows are read from PostgreSQL until it listens
again. A row read while a change was notified is not kept (it may predate the change).
"""

import asyncio
import contextlib
import logging
from collections import OrderedDict

import asyncpg

from dicomflow.api import queries

log = logging.getLogger(__name__)

CHANNEL = "dicom_instance_changed"
LISTENER_NAME = "dicomflow-api-instance-rows"  # its application_name in pg_stat_activity
CHECK_SECONDS = 2.0  # how often the listening connection is checked (or listening retried)
PING_TIMEOUT = 2.0

InstanceKey = tuple[str, str, str, str]  # tenant, study, series, SOP instance UID


class InstanceRows:
    """The least recently used instance rows, at most `max_entries` (0: none kept)."""

    def __init__(self, pool: asyncpg.Pool, dsn: str, max_entries: int) -> None:
        self._pool = pool
        self._dsn = dsn
        self.max_entries = max_entries
        self._rows: OrderedDict[InstanceKey, asyncpg.Record] = OrderedDict()
        self._changes = 0  # notifications, losses and starts seen so far
        self._listener: asyncpg.Connection | None = None
        self._maintainer: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        return self._listener is not None and not self._listener.is_closed()

    def __len__(self) -> int:
        return len(self._rows)

    async def start(self) -> None:
        """Listen now if PostgreSQL answers; check the connection (or retry) in the background."""
        if self.max_entries <= 0:
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

    async def get(self, tenant: str, study: str, series: str, sop: str) -> asyncpg.Record | None:
        """The instance's row (`queries.instance`), or None when it is not indexed."""
        key = (tenant, study, series, sop)
        row = self._rows.get(key)
        if row is not None:
            self._rows.move_to_end(key)
            return row
        changes = self._changes
        row = await queries.instance(self._pool, *key)
        if row is not None and self.listening and changes == self._changes:
            self._rows[key] = row
            while len(self._rows) > self.max_entries:
                self._rows.popitem(last=False)
        return row

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
                log.warning("instance row notifications lost (%s); rows read from PostgreSQL", exc)
                self._on_terminated(listener)

    async def _listen(self) -> None:
        try:
            listener = await asyncpg.connect(
                self._dsn, server_settings={"application_name": LISTENER_NAME}
            )
            await listener.add_listener(CHANNEL, self._on_change)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("cannot listen for instance row changes (%s); retrying", exc)
            return
        listener.add_termination_listener(self._on_terminated)
        self._forget_all()
        self._listener = listener

    def _on_change(self, _: object, __: int, ___: str, payload: str) -> None:
        """`tenant|study|series|sop` changed; anything else (TRUNCATE's ''): every row may have."""
        key = tuple(payload.split("|"))
        if len(key) != 4:
            self._forget_all()
            return
        self._changes += 1
        self._rows.pop(key, None)

    def _on_terminated(self, listener: asyncpg.Connection) -> None:
        """A listening connection lost: forget every row (changes may have gone unnoticed)."""
        if listener is not self._listener:
            return
        self._listener = None
        self._forget_all()
        if not listener.is_closed():
            listener.terminate()

    def _forget_all(self) -> None:
        self._changes += 1
        self._rows.clear()
