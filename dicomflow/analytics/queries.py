"""`dicomflow analytics query NAME`: one of the analyst queries in `sql/analytics/`, as a table.

Each file documents itself in its leading comment and holds one SELECT that runs unchanged
on Doris, MariaDB and MySQL.
"""

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from pymysql.cursors import Cursor

from dicomflow.analytics.db import Connection
from dicomflow.analytics.dialect import SQL_DIR, dialect
from dicomflow.analytics.sqlfile import leading_comment, statements
from dicomflow.core.settings import Settings

QUERIES_DIR = SQL_DIR / "analytics"
Result = tuple[list[str], list[tuple[Any, ...]]]


def query_names() -> list[str]:
    return sorted(path.stem for path in QUERIES_DIR.glob("*.sql"))


def query_file(name: str) -> Path:
    if name not in query_names():
        raise ValueError(f"no analytics query {name!r}; there are: {', '.join(query_names())}")
    return QUERIES_DIR / f"{name}.sql"


def description(name: str) -> str:
    return leading_comment(query_file(name).read_text(encoding="utf-8"))


def query_sql(name: str) -> str:
    (statement,) = statements(query_file(name).read_text(encoding="utf-8"))
    return statement


def run_query(settings: Settings, name: str) -> Result:
    """The column names and rows of query `name` on the analytics target."""
    sql = query_sql(name)

    def select(cursor: Cursor) -> Result:
        cursor.execute(sql)
        return [d[0] for d in cursor.description], list(cursor.fetchall())

    connection = Connection(settings.mysql_url, dialect(settings.analytics_dialect))
    try:
        return connection.transaction(select)
    finally:
        connection.close()


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _numeric(values: Sequence[Any]) -> bool:
    present = [v for v in values if v is not None]
    return bool(present) and all(isinstance(v, int | float | Decimal) for v in present)


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: a header, a rule, one line per row (numbers aligned right)."""
    cells = [[_text(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    right = [_numeric([row[i] for row in rows]) for i in range(len(columns))]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    body = [line(r) for r in cells]
    return "\n".join([line(list(columns)), rule, *body, f"({len(rows)} rows)"])
