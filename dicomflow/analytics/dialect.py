"""The one place that knows how each analytics target is written: `mariadb`, `mysql`, `doris`.

- MariaDB / MySQL: one transaction per batch writes the rows and advances the offsets
  checkpoint (`analytics_sink_offsets`), so a replayed batch is recognised and skipped: exactly
  once for every table. Keyed tables are upserts that keep the row with the greatest
  `latest_by` (like a Doris sequence column), so a late older message never wins.
- Doris: plain `INSERT INTO`; UNIQUE KEY tables (merge-on-write, sequence column) absorb
  replays by themselves, DUPLICATE KEY tables get at-least-once rows: a Doris transaction
  takes no SELECT and writes INSERT ... VALUES into one table only, so there is no
  checkpoint. On Doris the routine loads in `sql/doris/routine_loads.sql` are the
  exactly-once path; the sink is for sites whose Doris cannot reach Kafka.
"""

from abc import ABC, abstractmethod
from pathlib import Path

from dicomflow.analytics.tables import SinkTable

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
CHECKPOINT_TABLE = "analytics_sink_offsets"
STRICT_SQL_MODE = (
    "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,"
    "NO_ENGINE_SUBSTITUTION"
)


def quote(name: str) -> str:
    return f"`{name}`"


def _rows(placeholders: str, count: int) -> str:
    return ", ".join([placeholders] * count)


class Checkpoint:
    """Statements on the offsets checkpoint: the next offset to write per topic partition."""

    @staticmethod
    def claim(partitions: int) -> str:
        """Create missing rows and lock all of them until the transaction ends.

        Parameters: (topic, partition) per partition, partitions in ascending order (one
        lock order for every writer, so two sinks during a rebalance never deadlock).
        """
        return (
            f"INSERT INTO {CHECKPOINT_TABLE} (topic, partition_id, next_offset)"
            f" VALUES {_rows('(%s, %s, NULL)', partitions)}"
            " ON DUPLICATE KEY UPDATE next_offset = next_offset"
        )

    @staticmethod
    def read(partitions: int) -> str:
        """The claimed rows, as committed last (parameters: topic, then the partitions)."""
        return (
            f"SELECT partition_id, next_offset FROM {CHECKPOINT_TABLE}"
            f" WHERE topic = %s AND partition_id IN ({_rows('%s', partitions)}) FOR UPDATE"
        )

    ADVANCE = (
        f"UPDATE {CHECKPOINT_TABLE} SET next_offset = %s WHERE topic = %s AND partition_id = %s"
    )


class Dialect(ABC):
    name: str
    checkpoint: Checkpoint | None
    autocommit: bool
    session_setup: tuple[str, ...] = ()

    @abstractmethod
    def schema_files(self) -> list[Path]:
        """The DDL that `dicomflow analytics init` applies, in order."""

    def insert(self, table: SinkTable, rows: int) -> str:
        """One statement writing `rows` rows of `table` (parameters: the values row by row)."""
        columns = ", ".join(quote(c) for c in table.columns)
        row = "(" + ", ".join(["%s"] * len(table.columns)) + ")"
        return (
            f"INSERT INTO {quote(table.name)} ({columns}) VALUES {_rows(row, rows)}"
            f"{self.on_duplicate(table)}"
        )

    @abstractmethod
    def on_duplicate(self, table: SinkTable) -> str:
        """What the statement does when a row's key exists already."""


class DorisDialect(Dialect):
    name = "doris"
    checkpoint = None
    autocommit = True

    def schema_files(self) -> list[Path]:
        return [SQL_DIR / "doris" / "tables.sql"]

    def on_duplicate(self, table: SinkTable) -> str:
        return ""  # UNIQUE KEY tables merge on write, keeping the greatest sequence column


class MariaDBDialect(Dialect):
    name = "mariadb"
    checkpoint = Checkpoint()
    autocommit = False
    session_setup = (
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        f"SET SESSION sql_mode = '{STRICT_SQL_MODE}'",
        "SET SESSION time_zone = '+00:00'",
    )
    row_alias = ""

    def schema_files(self) -> list[Path]:
        return sorted((SQL_DIR / "mysql").glob("*.sql"))

    def inserted(self, column: str) -> str:
        """The value the statement tried to insert into `column`."""
        return f"VALUES({quote(column)})"

    def on_duplicate(self, table: SinkTable) -> str:
        if table.latest_by is None:
            # Rows are never updated: a row whose unique key exists (a redelivered
            # storage event, same trace_id) stays as it is.
            first = quote(table.columns[0])
            return f" ON DUPLICATE KEY UPDATE {first} = {first}"
        latest = quote(table.latest_by)
        newer = f"{self.inserted(table.latest_by)} >= {latest}"
        updates = [
            f"{quote(c)} = IF({newer}, {self.inserted(c)}, {quote(c)})"
            for c in table.columns
            if c not in table.key and c != table.latest_by
        ]
        # Assignments run left to right and see earlier ones: the sequence column goes last.
        updates.append(f"{latest} = GREATEST({latest}, {self.inserted(table.latest_by)})")
        return f"{self.row_alias} ON DUPLICATE KEY UPDATE {', '.join(updates)}"


class MySQLDialect(MariaDBDialect):
    """MySQL 8.0.19+: the inserted row is named by an alias (VALUES() is deprecated there)."""

    name = "mysql"
    row_alias = " AS new"

    def inserted(self, column: str) -> str:
        return f"new.{quote(column)}"


DIALECTS: dict[str, Dialect] = {
    d.name: d for d in (MariaDBDialect(), MySQLDialect(), DorisDialect())
}


def dialect(name: str) -> Dialect:
    return DIALECTS[name]
