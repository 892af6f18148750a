"""`dicomflow analytics init`: the analytics tables on the target (every statement idempotent)."""

from pathlib import Path

from pymysql.cursors import Cursor

from dicomflow.analytics.db import Connection
from dicomflow.analytics.dialect import dialect
from dicomflow.analytics.sqlfile import statements
from dicomflow.core.settings import Settings


def apply_schema(settings: Settings) -> list[Path]:
    """Run the dialect's schema files (CREATE ... IF NOT EXISTS); return them."""
    target = dialect(settings.analytics_dialect)
    files = target.schema_files()

    def create(cursor: Cursor) -> None:
        for path in files:
            for statement in statements(path.read_text(encoding="utf-8")):
                cursor.execute(statement)

    connection = Connection(settings.mysql_url, target)
    try:
        connection.transaction(create)
    finally:
        connection.close()
    return files
