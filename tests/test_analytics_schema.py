"""The analytics SQL without services: `sql/mysql/` against `sql/doris/`, the sink's columns
against both, the analyst queries' files, the dialects' statements, the batch planning."""

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from dicomflow.analytics.dialect import DIALECTS, DorisDialect, MariaDBDialect, MySQLDialect
from dicomflow.analytics.queries import format_table, query_names, query_sql
from dicomflow.analytics.sqlfile import leading_comment, statements
from dicomflow.analytics.tables import SINK_TABLES, SinkTable
from dicomflow.analytics.writer import Row, plan_batch
from dicomflow.core.settings import Settings
from dicomflow.tables.records import WIDTHS
from tests.doris_sql import _parenthesised, _split_top_level, read_routine_loads, read_tables

SQL = Path(__file__).resolve().parents[1] / "sql"
TABLE_IDS = [t.name for t in SINK_TABLES]

_MYSQL_COLUMN = re.compile(
    r"`(\w+)`\s+([A-Z]+)(?:\((\d+)\))?\s+(NOT NULL|NULL)(?:\s+DEFAULT\s+[\w()]+)?"
    r"(?:\s+ON UPDATE\s+[\w()]+)?",
)
_MYSQL_KEY = re.compile(r"(PRIMARY KEY|UNIQUE KEY `\w+`|KEY `\w+`)\s*\(([^)]*)\)")


@dataclass(frozen=True)
class MySQLColumn:
    name: str
    type: str
    length: int | None
    nullable: bool


@dataclass
class MySQLTable:
    name: str
    columns: list[MySQLColumn]
    primary_key: list[str] | None
    indexes: list[list[str]]
    options: str


def parse_mysql_table(statement: str) -> MySQLTable:
    """A CREATE TABLE of sql/mysql/: anything but columns and keys in the body raises."""
    head = re.match(r"CREATE TABLE IF NOT EXISTS (\w+)\s*", statement)
    assert head, f"not a CREATE TABLE IF NOT EXISTS: {statement[:60]!r}"
    body, end = _parenthesised(statement, head.end())
    columns, primary, indexes = [], None, []
    for item in _split_top_level(body):
        item = " ".join(item.split())
        if column := _MYSQL_COLUMN.fullmatch(item):
            name, type_name, length, nullability = column.groups()
            size = int(length) if length else None
            columns.append(MySQLColumn(name, type_name, size, nullability == "NULL"))
        elif key := _MYSQL_KEY.fullmatch(item):
            names = [n.strip().strip("`") for n in key.group(2).split(",")]
            if key.group(1) == "PRIMARY KEY":
                primary = names
            else:
                indexes.append(names)
        else:
            raise AssertionError(f"not understood in {head.group(1)}: {item!r}")
    return MySQLTable(head.group(1), columns, primary, indexes, statement[end:])


def mysql_tables(path: Path) -> dict[str, MySQLTable]:
    tables = [parse_mysql_table(s) for s in statements(path.read_text(encoding="utf-8"))]
    return {t.name: t for t in tables}


@pytest.fixture(scope="module")
def doris():
    return read_tables(SQL / "doris" / "tables.sql")


@pytest.fixture(scope="module")
def mysql() -> dict[str, MySQLTable]:
    return mysql_tables(SQL / "mysql" / "tables.sql")


# ---------------------------------------------------------------------------------------------
# sql/mysql against sql/doris


def test_same_tables_and_columns_in_the_same_order(doris, mysql):
    assert list(mysql) == list(doris)
    for name, table in doris.items():
        assert [c.name for c in mysql[name].columns] == [c.name for c in table.columns], name


def test_same_nullability_and_mapped_types(doris, mysql):
    for name, table in doris.items():
        for theirs, ours in zip(table.columns, mysql[name].columns, strict=True):
            assert ours.nullable == theirs.nullable, f"{name}.{ours.name}"
            if theirs.type == "VARCHAR":
                # Doris counts bytes, MySQL characters: the record's width in characters.
                assert (ours.type, ours.length) == ("VARCHAR", WIDTHS[ours.name]), ours.name
            else:
                assert (ours.type, ours.length) == (theirs.type, theirs.length), ours.name


def test_every_table_is_innodb_utf8mb4_binary(mysql):
    for table in mysql.values():
        assert "ENGINE = InnoDB" in table.options, table.name
        assert "CHARSET = utf8mb4 COLLATE = utf8mb4_bin" in table.options, table.name


def test_keys_match_the_doris_key_models(doris, mysql):
    for name, table in doris.items():
        ours = mysql[name]
        if table.model == "UNIQUE":
            assert ours.primary_key == table.keys, name
        else:
            # A DUPLICATE KEY is a sort key, not unique: a plain index on the same columns.
            assert table.keys in ours.indexes, name
    assert mysql["dicom_object_meta"].primary_key == ["trace_id"]
    assert mysql["wado_access_log"].primary_key is None


def test_the_checkpoint_is_apart_from_the_analytics_tables():
    checkpoint = mysql_tables(SQL / "mysql" / "sink_offsets.sql")
    assert list(checkpoint) == ["analytics_sink_offsets"]
    assert checkpoint["analytics_sink_offsets"].primary_key == ["topic", "partition_id"]
    assert [p.name for p in MariaDBDialect().schema_files()] == ["sink_offsets.sql", "tables.sql"]
    assert DorisDialect().schema_files() == [SQL / "doris" / "tables.sql"]


# ---------------------------------------------------------------------------------------------
# What the sink writes against the Doris contract


@pytest.mark.parametrize("table", SINK_TABLES, ids=TABLE_IDS)
def test_sink_writes_exactly_the_doris_columns(table: SinkTable, doris):
    assert sorted(table.columns) == sorted(c.name for c in doris[table.name].columns)


@pytest.mark.parametrize("table", SINK_TABLES, ids=TABLE_IDS)
def test_sink_reads_the_topic_of_the_routine_load(table: SinkTable):
    loads = read_routine_loads(SQL / "doris" / "routine_loads.sql")
    (load,) = [load for load in loads.values() if load.table == table.name]
    assert load.source_properties["kafka_topic"] == table.topic
    assert list(table.columns) == load.columns


@pytest.mark.parametrize("table", SINK_TABLES, ids=TABLE_IDS)
def test_sink_keys_follow_the_doris_key_model(table: SinkTable, doris):
    theirs = doris[table.name]
    if theirs.model == "UNIQUE":
        assert list(table.key) == theirs.keys
        assert table.latest_by == theirs.properties["function_column.sequence_col"]
    else:
        assert (table.key, table.latest_by) == ((), None)


# ---------------------------------------------------------------------------------------------
# The analyst queries


def test_the_issue_s_queries_exist():
    assert set(query_names()) == {
        "instances_received",
        "study_states",
        "series_changed_after_stable",
        "busiest_endpoints",
        "slowest_endpoints",
        "top_retrieved_studies",
    }


def test_change_query_uses_the_stability_window_of_the_worker():
    """The query repeats DICOMFLOW_SERIES_STABLE_SECONDS's default as a literal (its file runs
    unchanged in an analyst's SQL client); they must not drift apart."""
    (interval,) = re.findall(r"INTERVAL (\d+) SECOND", query_sql("series_changed_after_stable"))
    assert float(interval) == Settings.model_fields["series_stable_seconds"].default


@pytest.mark.parametrize("name", query_names())
def test_query_is_documented_and_one_portable_select(name: str, doris):
    text = (SQL / "analytics" / f"{name}.sql").read_text(encoding="utf-8")
    assert len(leading_comment(text).splitlines()) >= 3
    sql = query_sql(name)
    assert re.match(r"(SELECT|WITH)\b", sql)
    tables = set(re.findall(r"\b(?:FROM|JOIN)\s+(\w+)", sql))
    ctes = set(re.findall(r"(\w+) AS \(", sql))
    assert tables - ctes <= set(doris), "reads only the analytics tables"
    # Forms that one of Doris, MariaDB and MySQL lacks or reads differently (MariaDB's LAG
    # takes no default, Doris has no REGEXP_SUBSTR, MySQL no FILTER or ILIKE):
    for construct in ("LAG(", "LEAD(", "REGEXP_SUBSTR", "::", "FILTER (", "ILIKE"):
        assert construct not in sql.upper(), construct


# ---------------------------------------------------------------------------------------------
# The dialects


STATE = next(t for t in SINK_TABLES if t.name == "dicom_state_meta")
ACCESS = next(t for t in SINK_TABLES if t.name == "wado_access_log")


def test_doris_inserts_plainly():
    sql = DorisDialect().insert(STATE, 2)
    assert sql.startswith("INSERT INTO `dicom_state_meta` (`tenant_id`, `study_uid`")
    assert sql.count("(%s") == 2 and "DUPLICATE" not in sql
    assert DorisDialect().checkpoint is None and DorisDialect().autocommit


def test_mariadb_upserts_keep_the_newest_row_and_set_the_sequence_last():
    sql = MariaDBDialect().insert(STATE, 3)
    values, update = sql.split(" ON DUPLICATE KEY UPDATE ")
    assert values.count("(%s") == 3
    assignments = update.split(", `")
    assert assignments[-1] == ("updated_time` = GREATEST(`updated_time`, VALUES(`updated_time`))")
    assert (
        "`patient_name` = IF(VALUES(`updated_time`) >= `updated_time`, VALUES(`patient_name`)"
        in update
    )
    assert not any(f"`{k}` = " in update for k in STATE.key)


def test_mysql_names_the_inserted_row():
    sql = MySQLDialect().insert(STATE, 1)
    assert ") AS new ON DUPLICATE KEY UPDATE " in sql
    assert "IF(new.`updated_time` >= `updated_time`, new.`modality`, `modality`)" in sql
    assert "VALUES(`" not in sql.split(" ON DUPLICATE KEY UPDATE ")[1]


def test_append_tables_keep_an_existing_row():
    for target in (MariaDBDialect(), MySQLDialect()):
        assert target.insert(ACCESS, 1).endswith(" ON DUPLICATE KEY UPDATE `log_time` = `log_time`")
    assert set(DIALECTS) == {"mariadb", "mysql", "doris"}


# ---------------------------------------------------------------------------------------------
# Planning a batch against the checkpoint


def rows(*coordinates: tuple[int, int]) -> list[Row]:
    return [Row(p, o, (p, o)) for p, o in coordinates]


def offsets(plan_rows: list[Row]) -> list[tuple[int, int]]:
    return [(r.partition, r.offset) for r in plan_rows]


def test_a_first_batch_starts_where_reading_started():
    plan = plan_batch(rows((0, 7), (1, 3), (0, 8)), {})
    assert offsets(plan.rows) == [(0, 7), (0, 8), (1, 3)]
    assert plan.next_offsets == {0: 9, 1: 4} and plan.gaps == {}


def test_a_replayed_batch_writes_nothing_and_an_overlapping_one_only_the_new_rows():
    assert plan_batch(rows((0, 7), (0, 8)), {0: 9}).rows == []
    plan = plan_batch(rows((0, 8), (0, 9), (0, 9), (0, 10)), {0: 9})
    assert offsets(plan.rows) == [(0, 9), (0, 10)]
    assert plan.next_offsets == {0: 11}


def test_a_gap_stops_its_partition_only():
    plan = plan_batch(rows((0, 5), (0, 7), (0, 8), (1, 1)), {0: 5, 1: None})
    assert offsets(plan.rows) == [(0, 5), (1, 1)]
    assert plan.gaps == {0: 6}
    assert plan.next_offsets == {0: 6, 1: 2}
    assert plan_batch(rows((0, 9)), {0: 5}).next_offsets == {}


def test_format_table_aligns_numbers_right():
    text = format_table(["name", "n"], [("a", 5), ("long name", 123), (None, None)])
    assert text.splitlines() == [
        "name         n",
        "---------  ---",
        "a            5",
        "long name  123",
        "",
        "(3 rows)",
    ]
