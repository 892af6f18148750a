"""QIDO-RS (PS3.18 10.6) search parameters -> one parameterised SELECT on the PostgreSQL index.

Matching (PS3.4 C.2.2.2), as served here:

- Universal: an empty value or `*` matches everything; the attribute is returned.
- Lists: values of a repeated key and `\\`-separated values are alternatives (OR); UIDs may also
  be `,`-separated (PS3.18 uid-list-match). Multiple value matching (AND) is not supported.
- UIDs: exact. Text (LO, SH, CS, AS): exact and case-sensitive, or a wild card pattern
  (`*` any run, `?` one character) translated to LIKE with `%`, `_` and `\\` escaped.
- Person names: case-insensitive. A value without `=` matches a name when any of its
  component groups (alphabetic, ideographic, phonetic) matches the whole value; a value with
  `=` matches group by group (an empty query group matches any). Trailing `^` are ignored.
  With `fuzzymatching=true` each word of the value (split at spaces, `^`, `=`, `,`) must
  begin some name component, in any group.
- DA: `YYYYMMDD`, or a range `A-B`, `A-`, `-B` (inclusive). TM: `HH[MM[SS[.F]]]` or a range;
  a value covers its precision (`10` is 10:00:00 to 10:59:59.999999). When a date and its
  time (e.g. StudyDate and StudyTime) are both given with one value each, they are matched
  together as one date-time range (PS3.4 C.2.2.2.5, combined date time matching).
- IS/US: exact integers.
- A study is listed once, under its latest StudyDate among its series, and its patient and
  study attributes are read from its most recently updated series matching the query.

Every query is served by an index (sql/postgres/002_qido.sql): keys without one (`INDEXED`)
are only matched within a study (path) or together with an indexed key, so that no query
scans a whole tenant. Listing order: studies newest StudyDate first, then Study Instance UID;
series by study the same way, then SeriesNumber; instances by study, series, InstanceNumber.

An unknown parameter or attribute, an attribute that cannot be matched here (a count, a
sequence, one this index does not hold) and a malformed value are a QueryError (HTTP 400):
silently ignoring a misspelt key would widen the result. `includefield` of a known attribute
this index does not hold is ignored, as PS3.18 10.6.3.3 permits.
"""

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum, IntEnum
from functools import cached_property

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from dicomflow.core.identifiers import is_valid_uid

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
_DATE = re.compile(r"^[0-9]{8}$")
_TIME = re.compile(r"^([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(\.[0-9]{1,6})?)?)?$")
_UINT = re.compile(r"^[0-9]{1,10}$")
_PN_WORDS = re.compile(r"[\s^=,]+")


class QueryError(ValueError):
    """A search parameter that cannot be served (HTTP 400)."""


class Level(IntEnum):
    """Query levels, outermost first."""

    STUDY = 1
    SERIES = 2
    INSTANCE = 3


class Kind(Enum):
    """How an attribute is matched, or where a value comes from that cannot be matched."""

    UID = "uid"
    TEXT = "text"
    PN = "pn"
    DATE = "date"
    TIME = "time"
    NUMBER = "number"
    MODALITIES = "modalities"  # ModalitiesInStudy, matched on the Modality of any series
    RETURNED = "returned"  # a column returned but not matched (multi-valued in one string)
    COUNT = "count"  # computed from the index of the page's studies and series
    SYNTHETIC = "synthetic"  # filled in by the route (RetrieveURL, InstanceAvailability)


@dataclass(frozen=True)
class Attribute:
    """A QIDO attribute: its keyword, level, kind and where its value lives."""

    keyword: str
    level: Level
    kind: Kind
    column: str = ""

    @cached_property
    def tag(self) -> int:
        return int(tag_for_keyword(self.keyword) or 0)

    @cached_property
    def vr(self) -> str:
        return dictionary_VR(self.keyword)


def _attributes(level: Level, kind: Kind, *items: tuple[str, str]) -> list[Attribute]:
    return [Attribute(keyword, level, kind, column) for keyword, column in items]


_S, _SE, _I = Level.STUDY, Level.SERIES, Level.INSTANCE
ATTRIBUTES: dict[str, Attribute] = {
    a.keyword: a
    for a in [
        *_attributes(_S, Kind.UID, ("StudyInstanceUID", "study_uid")),
        *_attributes(
            _S,
            Kind.PN,
            ("PatientName", "patient_name"),
            ("ReferringPhysicianName", "referring_physician_name"),
        ),
        *_attributes(
            _S,
            Kind.TEXT,
            ("PatientID", "patient_id"),
            ("PatientSex", "patient_sex"),
            ("PatientAge", "patient_age"),
            ("AccessionNumber", "accession_number"),
            ("StudyID", "study_id"),
            ("StudyDescription", "study_description"),
        ),
        *_attributes(
            _S, Kind.DATE, ("StudyDate", "study_date"), ("PatientBirthDate", "patient_birth_date")
        ),
        *_attributes(_S, Kind.TIME, ("StudyTime", "study_time")),
        *_attributes(_S, Kind.MODALITIES, ("ModalitiesInStudy", "modality")),
        *_attributes(
            _S,
            Kind.COUNT,
            ("NumberOfStudyRelatedSeries", ""),
            ("NumberOfStudyRelatedInstances", ""),
        ),
        *_attributes(_S, Kind.SYNTHETIC, ("InstanceAvailability", ""), ("RetrieveURL", "")),
        *_attributes(_SE, Kind.UID, ("SeriesInstanceUID", "series_uid")),
        *_attributes(
            _SE,
            Kind.TEXT,
            ("Modality", "modality"),
            ("SeriesDescription", "series_description"),
            ("BodyPartExamined", "body_part_examined"),
            ("InstitutionName", "institution_name"),
            ("Manufacturer", "manufacturer"),
        ),
        *_attributes(_SE, Kind.NUMBER, ("SeriesNumber", "series_number")),
        *_attributes(_SE, Kind.DATE, ("SeriesDate", "series_date")),
        *_attributes(_SE, Kind.TIME, ("SeriesTime", "series_time")),
        *_attributes(_SE, Kind.COUNT, ("NumberOfSeriesRelatedInstances", "")),
        *_attributes(_I, Kind.UID, ("SOPInstanceUID", "sop_uid"), ("SOPClassUID", "sop_class_uid")),
        *_attributes(
            _I,
            Kind.NUMBER,
            ("InstanceNumber", "instance_number"),
            ("Rows", "rows"),
            ("Columns", "columns"),
            ("BitsAllocated", "bits_allocated"),
            ("BitsStored", "bits_stored"),
            ("SamplesPerPixel", "samples_per_pixel"),
            ("NumberOfFrames", "number_of_frames"),
        ),
        *_attributes(_I, Kind.TEXT, ("PhotometricInterpretation", "photometric_interpretation")),
        *_attributes(_I, Kind.DATE, ("ContentDate", "content_date")),
        *_attributes(_I, Kind.TIME, ("ContentTime", "content_time")),
        *_attributes(_I, Kind.RETURNED, ("ImageType", "image_type")),
    ]
}
# Keys served by an index of sql/postgres/002_qido.sql (directly, or through the series row).
# Others (StudyTime, SeriesNumber, InstanceNumber...) narrow a query that has one of these, a
# study in the path, or none at all (listing order, bounded by the limit), never alone: alone,
# a value that matches nothing would scan the whole tenant.
INDEXED = frozenset(
    {
        "StudyInstanceUID",
        "PatientName",
        "PatientID",
        "AccessionNumber",
        "ReferringPhysicianName",
        "StudyDescription",
        "StudyID",
        "StudyDate",
        "ModalitiesInStudy",
        "SeriesInstanceUID",
        "Modality",
        "SeriesDescription",
        "SOPInstanceUID",
        "SOPClassUID",
    }
)
# Values computed for the page's studies and series (CTEs study_stats and series_stats).
_COMPUTED = {
    "ModalitiesInStudy": "study_stats.modalities",
    "NumberOfStudyRelatedSeries": "study_stats.series",
    "NumberOfStudyRelatedInstances": "study_stats.instances",
    "NumberOfSeriesRelatedInstances": "series_stats.instances",
}
# The attribute whose time is matched together with a date (combined date time matching).
_DATE_OF_TIME = {"StudyTime": "StudyDate", "SeriesTime": "SeriesDate", "ContentTime": "ContentDate"}

# PS3.18 Tables 10.6.3-3, -4 and -5: returned for every match (the UIDs also build RetrieveURL).
_DEFAULTS: dict[Level, tuple[str, ...]] = {
    Level.STUDY: (
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "InstanceAvailability",
        "ModalitiesInStudy",
        "ReferringPhysicianName",
        "RetrieveURL",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyID",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    Level.SERIES: (
        "StudyInstanceUID",
        "Modality",
        "SeriesDescription",
        "SeriesInstanceUID",
        "SeriesNumber",
        "NumberOfSeriesRelatedInstances",
        "RetrieveURL",
    ),
    Level.INSTANCE: (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPClassUID",
        "SOPInstanceUID",
        "InstanceAvailability",
        "RetrieveURL",
        "InstanceNumber",
        "Rows",
        "Columns",
        "BitsAllocated",
        "NumberOfFrames",
    ),
}
_CONTROL = frozenset({"includefield", "fuzzymatching", "limit", "offset"})
_UNSUPPORTED_FLAGS = frozenset({"emptyvaluematching", "multiplevaluematching"})


@dataclass(frozen=True)
class Match:
    """One matching key with its alternatives (never empty: universal keys have no Match)."""

    attribute: Attribute
    values: tuple[str, ...]


@dataclass(frozen=True)
class QidoQuery:
    """A parsed search: level, path UIDs, matches, returned attributes and the page."""

    level: Level
    matches: tuple[Match, ...]
    attributes: tuple[Attribute, ...]
    limit: int
    offset: int = 0
    fuzzy: bool = False
    study_uid: str | None = None
    series_uid: str | None = None
    limited_by_server: bool = False  # the client gave no limit, or more than the maximum


def parse_query(
    pairs: Iterable[tuple[str, str]],
    level: Level,
    *,
    default_limit: int,
    max_limit: int,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> QidoQuery:
    """Decoded query-string pairs (repeated keys kept) -> a QidoQuery; QueryError if invalid."""
    values: dict[Attribute, list[str]] = {}
    included: set[Attribute] = set()
    include_all = False
    control: dict[str, str] = {}
    for name, value in pairs:
        if name == "includefield":
            for item in filter(None, (v.strip() for v in value.split(","))):
                if item == "all":
                    include_all = True
                elif attribute := _included(item, level):
                    included.add(attribute)
        elif name in _CONTROL:
            if name in control:
                raise QueryError(f"query parameter {name!r} is given more than once")
            control[name] = value
        elif name in _UNSUPPORTED_FLAGS:
            if value.strip().lower() != "false":
                raise QueryError(f"{name}={value!r} is not supported (only false)")
        else:
            values.setdefault(_matched(name, level), []).append(value)
    limit = _uint(control, "limit", minimum=1)
    matches = tuple(
        Match(attribute, alternatives)
        for attribute, raw in values.items()
        if (alternatives := _alternatives(attribute, raw))
    )
    for match in matches:
        _validate(match)
    if study_uid is None and matches and not any(m.attribute.keyword in INDEXED for m in matches):
        keys = ", ".join(m.attribute.keyword for m in matches)
        raise QueryError(
            f"{keys} can only be matched within a study or together with one of: "
            + ", ".join(sorted(INDEXED))
        )
    returned = {*_defaults(level, study_uid, series_uid), *values, *included}
    if include_all:
        returned.update(a for a in ATTRIBUTES.values() if a.level == level)
    return QidoQuery(
        level=level,
        matches=matches,
        attributes=tuple(sorted(returned, key=lambda a: a.tag)),
        limit=min(limit or default_limit, max_limit),
        offset=_uint(control, "offset", minimum=0) or 0,
        fuzzy=_boolean(control.get("fuzzymatching", "false")),
        study_uid=study_uid,
        series_uid=series_uid,
        limited_by_server=limit is None or limit > max_limit,
    )


def _resolve(name: str) -> str:
    """The keyword of an attribute given by keyword or 8-digit tag; QueryError when unknown."""
    if "." in name:
        raise QueryError(f"sequence matching ({name!r}) is not supported")
    if _TAG.match(name):
        keyword = keyword_for_tag(int(name, 16))
    else:
        keyword = name if tag_for_keyword(name) is not None else ""
    if not keyword:
        raise QueryError(f"unknown query parameter or attribute {name!r}")
    return keyword


def _matched(name: str, level: Level) -> Attribute:
    keyword = _resolve(name)
    attribute = ATTRIBUTES.get(keyword)
    if attribute is None or not _matchable(attribute):
        supported = ", ".join(
            a.keyword for a in ATTRIBUTES.values() if a.level <= level and _matchable(a)
        )
        raise QueryError(f"matching on {keyword} is not supported; supported keys: {supported}")
    if attribute.level > level:
        raise QueryError(f"{keyword} is a {attribute.level.name.lower()} attribute")
    return attribute


def _included(name: str, level: Level) -> Attribute | None:
    """An includefield attribute returned at `level`; None for one not held or too deep."""
    attribute = ATTRIBUTES.get(_resolve(name))
    return attribute if attribute is not None and attribute.level <= level else None


def _matchable(attribute: Attribute) -> bool:
    return attribute.kind not in (Kind.SYNTHETIC, Kind.COUNT, Kind.RETURNED)


def _defaults(level: Level, study_uid: str | None, series_uid: str | None) -> list[Attribute]:
    """PS3.18 10.6.3.3: upper levels' attributes come with all series or all instances."""
    levels = [level]
    if level is Level.SERIES and study_uid is None:
        levels.append(Level.STUDY)
    if level is Level.INSTANCE and series_uid is None:
        levels.append(Level.SERIES)
        if study_uid is None:
            levels.append(Level.STUDY)
    return [ATTRIBUTES[keyword] for lvl in levels for keyword in _DEFAULTS[lvl]]


def _alternatives(attribute: Attribute, raw: list[str]) -> tuple[str, ...]:
    """The values to match (OR); empty when universal (an empty value or `*`)."""
    separators = r"[\\,]" if attribute.kind is Kind.UID else r"\\"
    values = [v.strip() for value in raw for v in re.split(separators, value)]
    values = [v for v in values if v]
    return () if not values or "*" in values else tuple(dict.fromkeys(values))


def _validate(match: Match) -> None:
    """Reject values that can never be well-formed for the attribute's kind."""
    kind, keyword = match.attribute.kind, match.attribute.keyword
    for value in match.values:
        if kind is Kind.UID and not is_valid_uid(value):
            raise QueryError(f"{keyword}: {value!r} is not a UID")
        if kind is Kind.NUMBER:
            _integer(keyword, value)
        if kind is Kind.DATE:
            _range(keyword, value, _date)
        if kind is Kind.TIME:
            _range(keyword, value, _time_low)


def _uint(control: dict[str, str], name: str, minimum: int) -> int | None:
    text = control.get(name)
    if text is None:
        return None
    if not _UINT.match(text) or not minimum <= int(text) <= INT32_MAX:
        raise QueryError(f"{name} must be an integer from {minimum} to {INT32_MAX}, not {text!r}")
    return int(text)


def _boolean(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise QueryError(f"fuzzymatching must be true or false, not {text!r}")
    return text.lower() == "true"


def _integer(keyword: str, text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise QueryError(f"{keyword}: {text!r} is not an integer") from None
    if not INT32_MIN <= number <= INT32_MAX:
        raise QueryError(f"{keyword}: {text!r} is out of range")
    return number


def _date(keyword: str, text: str) -> dt.date:
    try:
        if not _DATE.match(text):
            raise ValueError(text)
        return dt.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        raise QueryError(f"{keyword}: {text!r} is not a date YYYYMMDD") from None


def _time_parts(keyword: str, text: str) -> re.Match[str]:
    found = _TIME.match(text.replace(":", ""))
    if not found or int(found[1]) > 23 or int(found[2] or 0) > 59 or int(found[3] or 0) > 60:
        raise QueryError(f"{keyword}: {text!r} is not a time HH[MM[SS[.FFFFFF]]]")
    return found


def _time_low(keyword: str, text: str) -> str:
    """The earliest instant of a TM value, as `HHMMSS.FFFFFF`."""
    hh, mm, ss, frac = _time_parts(keyword, text).groups()
    return f"{hh}{mm or '00'}{ss or '00'}.{(frac or '.')[1:].ljust(6, '0')}"


def _time_high(keyword: str, text: str) -> str:
    """The latest instant of a TM value at its precision, as `HHMMSS.FFFFFF`."""
    hh, mm, ss, frac = _time_parts(keyword, text).groups()
    return f"{hh}{mm or '59'}{ss or '59'}.{(frac or '.')[1:].ljust(6, '9')}"


def _range(
    keyword: str, text: str, parse: Callable[[str, str], object]
) -> tuple[str | None, str | None]:
    """`A`, `A-B`, `A-` or `-B` -> (low text, high text), either None when open."""
    low, dash, high = text.partition("-")
    if not dash:
        high = low
    if not low and not high:
        raise QueryError(f"{keyword}: {text!r} is not a range")
    if low:
        parse(keyword, low)
    if high:
        parse(keyword, high)
    return low or None, high or None


# --- SQL -------------------------------------------------------------------------------------


class _Args:
    """Positional arguments, each added once, named `$n`."""

    def __init__(self) -> None:
        self.values: list[object] = []

    def __call__(self, value: object) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


_NOT_COLUMNS = frozenset({Kind.SYNTHETIC, Kind.COUNT, Kind.MODALITIES})
_STATE_ORDER = "{p}.study_date DESC NULLS LAST, {p}.study_uid"
_ORDER: dict[Level, str] = {
    Level.STUDY: _STATE_ORDER,
    Level.SERIES: _STATE_ORDER + ", {p}.series_number NULLS LAST, {p}.series_uid",
    Level.INSTANCE: "{p}.study_uid, {p}.series_uid, {p}.instance_number NULLS LAST, {p}.sop_uid",
}
_SERIES_IN_STUDY_ORDER = "{p}.series_number NULLS LAST, {p}.series_uid"
_PAGE_KEYS: dict[Level, tuple[str, ...]] = {
    Level.STUDY: ("study_uid", "study_date"),
    Level.SERIES: ("study_uid", "series_uid", "study_date", "series_number"),
    Level.INSTANCE: ("study_uid", "series_uid", "instance_number", "sop_uid"),
}
# The study's listing date: the latest StudyDate of its series (a study is listed once). Written
# as `>=` (never `>` for its own study) so the planner estimates it as an ordinary inequality.
_LATEST_STUDY_DATE = (
    "coalesce(s.study_date, '-infinity') >= coalesce((SELECT max(d.study_date)"
    " FROM dicom_state_meta d WHERE d.tenant_id = s.tenant_id AND d.study_uid = s.study_uid),"
    " '-infinity')"
)
_STUDY_STATS = (
    "study_stats AS MATERIALIZED (SELECT k.study_uid, m.modalities, m.series, c.instances"
    " FROM (SELECT DISTINCT study_uid FROM page) k"
    " CROSS JOIN LATERAL (SELECT array_agg(DISTINCT x.modality)"
    " FILTER (WHERE x.modality IS NOT NULL) AS modalities, count(*) AS series"
    " FROM dicom_state_meta x WHERE x.tenant_id = $1 AND x.study_uid = k.study_uid) m"
    " CROSS JOIN LATERAL (SELECT count(*) AS instances FROM dicom_image_meta y"
    " WHERE y.tenant_id = $1 AND y.study_uid = k.study_uid) c)"
)
_SERIES_STATS = (
    "series_stats AS MATERIALIZED (SELECT k.study_uid, k.series_uid, c.instances"
    " FROM (SELECT DISTINCT study_uid, series_uid FROM page) k"
    " CROSS JOIN LATERAL (SELECT count(*) AS instances FROM dicom_image_meta y"
    " WHERE y.tenant_id = $1 AND y.study_uid = k.study_uid AND y.series_uid = k.series_uid) c)"
)


def build_select(query: QidoQuery, tenant: str) -> tuple[str, list[object]]:
    """One SELECT (asyncpg `$n` placeholders) returning `limit + 1` rows, one per match.

    Each returned attribute is a column named by its keyword; dates are `YYYYMMDD` text. The
    extra row tells whether more matches exist.
    """
    level = query.level
    args = _Args()
    args(tenant)
    table, alias = (
        ("dicom_image_meta", "i") if level is Level.INSTANCE else ("dicom_state_meta", "s")
    )
    where = [f"{alias}.tenant_id = $1"]
    if query.study_uid is not None:
        where.append(f"{alias}.study_uid = {args(query.study_uid)}")
    if query.series_uid is not None:
        where.append(f"{alias}.series_uid = {args(query.series_uid)}")
    where += _conditions(query, args)
    if level is Level.STUDY:
        where.append(_LATEST_STUDY_DATE)

    plain = [a for a in query.attributes if a.kind not in _NOT_COLUMNS]
    computed = [a for a in query.attributes if a.keyword in _COMPUTED]
    page_columns = [f"{alias}.{key} AS {key}" for key in _PAGE_KEYS[level]]
    page_columns += [f'{_output(a, level)} AS "{a.keyword}"' for a in plain]
    source = f"{table} {alias}"
    joined = [
        *plain,
        *(m.attribute for m in query.matches if m.attribute.kind is not Kind.MODALITIES),
    ]
    if any(_alias(a, level) == "s" for a in joined) and level is Level.INSTANCE:
        source += (
            " LEFT JOIN dicom_state_meta s ON s.tenant_id = i.tenant_id"
            " AND s.study_uid = i.study_uid AND s.series_uid = i.series_uid"
        )
    order = _order(query)
    if level is Level.STUDY:  # one row per study: its most recently updated matching series
        select, page_order = (
            "SELECT DISTINCT ON (s.study_date, s.study_uid)",
            order + ", {p}.updated_time DESC",
        )
    else:
        select, page_order = "SELECT", order
    ctes = [
        f"page AS ({select} {', '.join(page_columns)} FROM {source}"
        f" WHERE {' AND '.join(where)} ORDER BY {page_order.format(p=alias)}"
        f" LIMIT {args(query.limit + 1)} OFFSET {args(query.offset)})"
    ]
    joins = []
    sources = {_COMPUTED[a.keyword].partition(".")[0] for a in computed}
    if "study_stats" in sources:
        ctes.append(_STUDY_STATS)
        joins.append(" LEFT JOIN study_stats USING (study_uid)")
    if "series_stats" in sources:
        ctes.append(_SERIES_STATS)
        joins.append(" LEFT JOIN series_stats USING (study_uid, series_uid)")
    outer = [f'page."{a.keyword}"' for a in plain]
    outer += [f'{_COMPUTED[a.keyword]} AS "{a.keyword}"' for a in computed]
    sql = (
        f"WITH {', '.join(ctes)} SELECT {', '.join(outer)} FROM page{''.join(joins)}"
        f" ORDER BY {order.format(p='page')}"
    )
    return sql, args.values


def _order(query: QidoQuery) -> str:
    if query.level is Level.SERIES and query.study_uid is not None:
        return _SERIES_IN_STUDY_ORDER
    return _ORDER[query.level]


def _alias(attribute: Attribute, level: Level) -> str:
    """`i` (dicom_image_meta) for instance attributes and UIDs at instance level, else `s`."""
    if level is Level.INSTANCE and (
        attribute.level is Level.INSTANCE
        or attribute.keyword in ("StudyInstanceUID", "SeriesInstanceUID")
    ):
        return "i"
    return "s"


def _output(attribute: Attribute, level: Level) -> str:
    column = _column(attribute, level)
    if attribute.kind is Kind.DATE:
        return f"to_char({column}, 'YYYYMMDD')"
    if attribute.keyword == "PatientID":  # stored as '' when absent
        return f"NULLIF({column}, '')"
    return column


def _conditions(query: QidoQuery, args: _Args) -> list[str]:
    """One SQL condition per match; a date and its time with one value each are combined."""
    matches = {m.attribute.keyword: m for m in query.matches}
    combined = {
        time: date
        for time, date in _DATE_OF_TIME.items()
        if time in matches
        and date in matches
        and len(matches[time].values) == 1
        and len(matches[date].values) == 1
    }
    conditions = []
    for keyword, match in matches.items():
        if keyword in combined.values():
            continue
        if keyword in combined:
            conditions.append(_date_time(matches[combined[keyword]], match, query.level, args))
        else:
            conditions.append(_condition(match, _column(match.attribute, query.level), query, args))
    return conditions


def _column(attribute: Attribute, level: Level) -> str:
    return f"{_alias(attribute, level)}.{attribute.column}"


def _condition(match: Match, column: str, query: QidoQuery, args: _Args) -> str:
    kind, values, keyword = match.attribute.kind, match.values, match.attribute.keyword
    if kind is Kind.PN:
        return _any([_person_name(column, v, query.fuzzy, args) for v in values])
    if kind is Kind.DATE:
        return _any([_date_range(column, keyword, v, args) for v in values])
    if kind is Kind.TIME:
        return _any([_time_range(column, keyword, v, args) for v in values])
    if kind is Kind.NUMBER:
        return _equals(column, [_integer(keyword, v) for v in values], args)
    if kind is Kind.MODALITIES:  # any series of the study, whichever row lists the study
        study = f"{_alias(ATTRIBUTES['StudyInstanceUID'], query.level)}.study_uid"
        return (
            "EXISTS (SELECT 1 FROM dicom_state_meta m WHERE m.tenant_id = $1"
            f" AND m.study_uid = {study} AND {_text('m.modality', values, args)})"
        )
    if kind is Kind.UID:
        return _equals(column, list(values), args)
    return _text(column, values, args)


def _any(conditions: list[str]) -> str:
    return conditions[0] if len(conditions) == 1 else "(" + " OR ".join(conditions) + ")"


def _equals(column: str, values: list[object], args: _Args) -> str:
    if len(values) == 1:
        return f"{column} = {args(values[0])}"
    return f"{column} = ANY({args(values)})"


def _text(column: str, values: tuple[str, ...], args: _Args) -> str:
    """Exact values in one `= ANY`, wild card patterns as LIKE (case-sensitive)."""
    exact = [v for v in values if not _has_wildcard(v)]
    conditions = [_equals(column, list(exact), args)] if exact else []
    conditions += [f"{column} LIKE {args(like_pattern(v))}" for v in values if _has_wildcard(v)]
    return _any(conditions)


def _has_wildcard(value: str) -> bool:
    return "*" in value or "?" in value


def like_pattern(value: str) -> str:
    """A DICOM wild card value as a LIKE pattern (escape character `\\`)."""
    escaped = re.sub(r"([%_\\])", r"\\\1", value)
    return escaped.replace("*", "%").replace("?", "_")


def _regex_literal(text: str, any_run: str, one: str) -> str:
    """`text` as a PostgreSQL ARE: `*` and `?` become `any_run` and `one`, ASCII punctuation
    is escaped (a backslash before a letter would be an escape sequence)."""
    out = []
    for char in text:
        if char == "*":
            out.append(any_run)
        elif char == "?":
            out.append(one)
        elif char.isascii() and not char.isalnum():
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


def person_name_regex(value: str) -> str:
    """The case-insensitive regular expression of a non-fuzzy PN value (see the module doc)."""
    groups = [
        _regex_literal(g, "[^=]*", "[^=]") + r"\^*" if g else "[^=]*" for g in value.split("=")
    ]
    if len(groups) == 1:
        return f"(^|=){groups[0]}(=|$)"
    return "^" + "=".join(groups) + "(=.*)?$"


def fuzzy_name_regexes(value: str) -> list[str]:
    """One regular expression per word: the word begins a name component of any group."""
    words = [w for w in _PN_WORDS.split(value) if w.strip("*")]
    return [r"(^|[=^ ])" + _regex_literal(w, "[^=]*", "[^=]") for w in words]


def _person_name(column: str, value: str, fuzzy: bool, args: _Args) -> str:
    regexes = fuzzy_name_regexes(value) if fuzzy else [person_name_regex(value)]
    if not regexes:
        return "TRUE"
    conditions = [f"{column} ~* {args(regex)}" for regex in regexes]
    return conditions[0] if len(conditions) == 1 else "(" + " AND ".join(conditions) + ")"


def _date_range(column: str, keyword: str, value: str, args: _Args) -> str:
    low, high = _range(keyword, value, _date)
    if low == high:
        return f"{column} = {args(_date(keyword, low))}"
    conditions = []
    if low:
        conditions.append(f"{column} >= {args(_date(keyword, low))}")
    if high:
        conditions.append(f"{column} <= {args(_date(keyword, high))}")
    return conditions[0] if len(conditions) == 1 else f"({' AND '.join(conditions)})"


def _time_key(column: str) -> str:
    """SQL for a stored TM (any precision, old `HH:MM:SS` too) as comparable `HHMMSS.FFFFFF`."""
    bare = f"replace({column}, ':', '')"
    return (
        f"(rpad(split_part({bare}, '.', 1), 6, '0') || '.'"
        f" || rpad(split_part({bare}, '.', 2), 6, '0'))"
    )


def _time_range(column: str, keyword: str, value: str, args: _Args) -> str:
    low, high = _range(keyword, value, _time_low)
    key = _time_key(column)
    conditions = []
    if low:
        conditions.append(f"{key} >= {args(_time_low(keyword, low))}")
    if high:
        conditions.append(f"{key} <= {args(_time_high(keyword, high))}")
    return conditions[0] if len(conditions) == 1 else f"({' AND '.join(conditions)})"


def _date_time(date: Match, time: Match, level: Level, args: _Args) -> str:
    """Combined matching: the date range bounds the index scan, the date-time refines it."""
    date_keyword, time_keyword = date.attribute.keyword, time.attribute.keyword
    date_low, date_high = _range(date_keyword, date.values[0], _date)
    time_low, time_high = _range(time_keyword, time.values[0], _time_low)
    date_column = _column(date.attribute, level)
    key = f"(to_char({date_column}, 'YYYYMMDD') || {_time_key(_column(time.attribute, level))})"
    conditions = [_date_range(date_column, date_keyword, date.values[0], args)]
    if date_low:
        start = _time_low(time_keyword, time_low) if time_low else "000000.000000"
        conditions.append(f"{key} >= {args(date_low + start)}")
    if date_high:
        end = _time_high(time_keyword, time_high) if time_high else "235960.999999"
        conditions.append(f"{key} <= {args(date_high + end)}")
    return "(" + " AND ".join(conditions) + ")"
