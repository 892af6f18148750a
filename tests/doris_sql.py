"""A small reader of the Doris SQL in `sql/doris/`, for the contract tests.

It understands the subset of Doris 2.x DDL that dicomflow writes: `CREATE TABLE` (columns with
type, length and nullability; the key model; the distribution; properties) and `CREATE ROUTINE
LOAD` (target table, COLUMNS list, job properties, Kafka properties). Anything else in a column
list or a COLUMNS list raises, so a construct the tests do not understand is never ignored.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

_IDENT = r"`?([A-Za-z_][A-Za-z0-9_]*)`?"
_QUALIFIED = r"((?:`?[A-Za-z_][A-Za-z0-9_]*`?\.)?`?[A-Za-z_][A-Za-z0-9_]*`?)"
_STRING = r"(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')"
_COLUMN = re.compile(
    rf"^{_IDENT}\s+([A-Za-z]+)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?(.*)$", re.DOTALL
)
_COLUMN_OPTION = re.compile(
    rf"\s*(?:(NOT\s+NULL)|(NULL)|(DEFAULT\s+(?:{_STRING}|[^\s,]+))|(COMMENT\s+{_STRING}))",
    re.IGNORECASE,
)


class DorisSqlError(ValueError):
    """SQL that this reader does not understand."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # upper case: VARCHAR, INT, BIGINT, DOUBLE, DATE, DATETIME...
    length: int | None  # VARCHAR: bytes; DATETIME: fractional digits; else None
    nullable: bool


@dataclass
class Table:
    name: str
    columns: list[Column]
    model: str  # DUPLICATE, UNIQUE or AGGREGATE
    keys: list[str]
    distributed_by: list[str]
    buckets: str
    properties: dict[str, str] = field(default_factory=dict)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


@dataclass
class RoutineLoad:
    name: str
    table: str
    columns: list[str]
    properties: dict[str, str]
    source: str
    source_properties: dict[str, str]


def _unquote(text: str) -> str:
    """A Doris string literal's value."""
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def _name(text: str) -> str:
    """An identifier without backquotes or database qualifier."""
    return text.replace("`", "").split(".")[-1]


def statements(sql: str) -> list[str]:
    """The statements of a script, without comments, split at semicolons outside quotes."""
    result: list[str] = []
    current: list[str] = []
    i = 0
    quote: str | None = None
    while i < len(sql):
        char = sql[i]
        if quote:
            current.append(char)
            if char == "\\" and quote != "`" and i + 1 < len(sql):
                current.append(sql[i + 1])
                i += 1
            elif char == quote:
                quote = None
        elif char in "'\"`":
            quote = char
            current.append(char)
        elif sql.startswith("--", i) or char == "#":
            end = sql.find("\n", i)
            i = len(sql) if end < 0 else end
            continue
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            if end < 0:
                raise DorisSqlError("unterminated /* comment")
            i = end + 2
            continue
        elif char == ";":
            result.append("".join(current).strip())
            current = []
        else:
            current.append(char)
        i += 1
    if quote:
        raise DorisSqlError(f"unterminated {quote} quote")
    tail = "".join(current).strip()
    if tail:
        result.append(tail)
    return [s for s in result if s]


def _parenthesised(text: str, start: int) -> tuple[str, int]:
    """The text inside the parenthesis opening at `start`, and the index after it closes."""
    if text[start] != "(":
        raise DorisSqlError(f"expected '(' at {text[start : start + 20]!r}")
    depth = 0
    quote: str | None = None
    i = start
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\" and quote != "`":
                i += 1
            elif char == quote:
                quote = None
        elif char in "'\"`":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
        i += 1
    raise DorisSqlError("unbalanced parenthesis")


def _split_top_level(text: str) -> list[str]:
    """Comma-separated items, not splitting inside parentheses or quotes."""
    items: list[str] = []
    depth = 0
    quote: str | None = None
    current: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\" and quote != "`" and i + 1 < len(text):
                current.append(char)
                i += 1
                char = text[i]
            elif char == quote:
                quote = None
        elif char in "'\"`":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            items.append("".join(current).strip())
            current = []
            i += 1
            continue
        current.append(char)
        i += 1
    items.append("".join(current).strip())
    return [item for item in items if item]


def _properties(body: str) -> dict[str, str]:
    properties: dict[str, str] = {}
    for item in _split_top_level(body):
        match = re.fullmatch(rf"{_STRING}\s*=\s*{_STRING}", item, re.DOTALL)
        if not match:
            raise DorisSqlError(f"not a property: {item!r}")
        key = _unquote(match.group(1))
        if key in properties:
            raise DorisSqlError(f"property {key!r} set twice")
        properties[key] = _unquote(match.group(2))
    return properties


def _clause(text: str, keyword: str) -> str | None:
    """The parenthesised body after `keyword` (a regex), or None when absent."""
    match = re.search(rf"\b{keyword}\s*\(", text, re.IGNORECASE)
    if not match:
        return None
    body, _ = _parenthesised(text, match.end() - 1)
    return body


def _identifiers(body: str) -> list[str]:
    names = []
    for item in _split_top_level(body):
        match = re.fullmatch(_IDENT, item)
        if not match:
            raise DorisSqlError(f"not a plain column name: {item!r}")
        names.append(match.group(1))
    return names


def _column(definition: str) -> Column:
    match = _COLUMN.match(definition)
    if not match:
        raise DorisSqlError(f"not a column definition: {definition!r}")
    name, type_name, length, scale, rest = match.groups()
    nullable = True
    rest = rest.strip()
    position = 0
    while position < len(rest):
        option = _COLUMN_OPTION.match(rest, position)
        if not option or not re.match(r"\s|$", rest[option.end() : option.end() + 1]):
            raise DorisSqlError(f"unknown column option in {definition!r}: {rest[position:]!r}")
        if option.group(1):
            nullable = False
        position = option.end()
    if scale is not None:
        raise DorisSqlError(f"unexpected scale in {definition!r}")
    return Column(name, type_name.upper(), None if length is None else int(length), nullable)


def parse_table(statement: str) -> Table:
    head = re.match(
        rf"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?{_QUALIFIED}\s*", statement, re.IGNORECASE
    )
    if not head:
        raise DorisSqlError(f"not a CREATE TABLE: {statement[:60]!r}")
    body, end = _parenthesised(statement, head.end())
    columns = [_column(item) for item in _split_top_level(body)]
    tail = statement[end:]
    key = re.search(r"\b(DUPLICATE|UNIQUE|AGGREGATE)\s+KEY\s*\(([^)]*)\)", tail, re.IGNORECASE)
    distribution = re.search(
        r"\bDISTRIBUTED\s+BY\s+HASH\s*\(([^)]*)\)\s+BUCKETS\s+(\d+|AUTO)\b", tail, re.IGNORECASE
    )
    if not key or not distribution:
        raise DorisSqlError(f"table {head.group(1)} needs a KEY and DISTRIBUTED BY HASH clause")
    properties = _clause(tail, "PROPERTIES")
    return Table(
        name=_name(head.group(1)),
        columns=columns,
        model=key.group(1).upper(),
        keys=_identifiers(key.group(2)),
        distributed_by=_identifiers(distribution.group(1)),
        buckets=distribution.group(2).upper(),
        properties=_properties(properties) if properties is not None else {},
    )


def parse_routine_load(statement: str) -> RoutineLoad:
    head = re.match(
        rf"CREATE\s+ROUTINE\s+LOAD\s+{_QUALIFIED}\s+ON\s+{_QUALIFIED}\s*",
        statement,
        re.IGNORECASE,
    )
    if not head:
        raise DorisSqlError(f"not a CREATE ROUTINE LOAD ... ON table: {statement[:60]!r}")
    source = re.search(r"\bFROM\s+([A-Za-z]+)\s*\(", statement, re.IGNORECASE)
    if not source:
        raise DorisSqlError(f"routine load {head.group(1)} has no FROM source (...)")
    job_part = statement[: source.start()]
    source_body, _ = _parenthesised(statement, source.end() - 1)
    columns = _clause(job_part, r"COLUMNS")
    properties = _clause(job_part, "PROPERTIES")
    return RoutineLoad(
        name=_name(head.group(1)),
        table=_name(head.group(2)),
        columns=_identifiers(columns) if columns is not None else [],
        properties=_properties(properties) if properties is not None else {},
        source=source.group(1).upper(),
        source_properties=_properties(source_body),
    )


def read_tables(path: Path) -> dict[str, Table]:
    tables: dict[str, Table] = {}
    for statement in statements(path.read_text(encoding="utf-8")):
        if re.match(r"CREATE\s+TABLE\b", statement, re.IGNORECASE):
            table = parse_table(statement)
            if table.name in tables:
                raise DorisSqlError(f"table {table.name} created twice")
            tables[table.name] = table
    return tables


def read_routine_loads(path: Path) -> dict[str, RoutineLoad]:
    loads: dict[str, RoutineLoad] = {}
    for statement in statements(path.read_text(encoding="utf-8")):
        if re.match(r"CREATE\s+ROUTINE\s+LOAD\b", statement, re.IGNORECASE):
            load = parse_routine_load(statement)
            if load.name in loads:
                raise DorisSqlError(f"routine load {load.name} created twice")
            loads[load.name] = load
    return loads
