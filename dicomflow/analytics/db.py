"""Connections to the analytics target with pymysql: opened on first use, dropped on errors."""

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import pymysql
from pymysql.cursors import Cursor

from dicomflow.analytics.dialect import Dialect

T = TypeVar("T")
CONNECT_TIMEOUT = 5
IO_TIMEOUT = 30
SCHEMES = ("mysql", "mariadb", "doris")


def connect_options(url: str) -> dict[str, Any]:
    """pymysql.connect arguments for `mysql://user:password@host:port/database`."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"not a MySQL-protocol URL ({'/'.join(SCHEMES)}): {url!r}")
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "database": unquote(parts.path.lstrip("/")) or None,
    }


class Connection:
    """One connection to the target, opened again after any failure.

    Used by one caller at a time (one per sink agent, run in a worker thread).
    """

    def __init__(self, url: str, dialect: Dialect) -> None:
        self._options = connect_options(url)
        self._dialect = dialect
        self._connection: pymysql.Connection | None = None

    def _open(self) -> pymysql.Connection:
        if self._connection is None:
            connection = pymysql.connect(
                **self._options,
                charset="utf8mb4",
                autocommit=self._dialect.autocommit,
                connect_timeout=CONNECT_TIMEOUT,
                read_timeout=IO_TIMEOUT,
                write_timeout=IO_TIMEOUT,
            )
            try:
                with connection.cursor() as cursor:
                    for statement in self._dialect.session_setup:
                        cursor.execute(statement)
            except pymysql.MySQLError:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def transaction(self, work: Callable[[Cursor], T]) -> T:
        """Run `work` and commit. On any error the connection is closed, which rolls back
        what `work` did, and the error is raised; the next call connects again."""
        try:
            connection = self._open()
            with connection.cursor() as cursor:
                result = work(cursor)
            connection.commit()
            return result
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(pymysql.MySQLError):
                self._connection.close()
            self._connection = None
