"""A durable local queue of storage events that Kafka has not acknowledged yet.

SQLite in WAL mode with synchronous=FULL: every append is on disk before it returns.
"""

import sqlite3
from pathlib import Path

from dicomflow.core.metrics import OUTBOX_DEPTH


class Outbox:
    """Storage events in arrival order; the publisher uses it under its lock only."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS events ("
            " seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,"
            " key BLOB NOT NULL, value BLOB NOT NULL)"
        )
        self.depth = self._db.execute("SELECT count(*) FROM events").fetchone()[0]
        OUTBOX_DEPTH.set(self.depth)

    def append(self, topic: str, key: bytes, value: bytes) -> None:
        self._db.execute(
            "INSERT INTO events (topic, key, value) VALUES (?, ?, ?)", (topic, key, value)
        )
        self.depth += 1
        OUTBOX_DEPTH.set(self.depth)

    def head(self, limit: int) -> list[tuple[int, str, bytes, bytes]]:
        return self._db.execute(
            "SELECT seq, topic, key, value FROM events ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()

    def remove_through(self, seq: int) -> None:
        """Remove every event up to and including `seq` (they were acknowledged in order)."""
        removed = self._db.execute("DELETE FROM events WHERE seq <= ?", (seq,)).rowcount
        self.depth -= removed
        OUTBOX_DEPTH.set(self.depth)

    def close(self) -> None:
        self._db.close()
