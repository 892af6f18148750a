"""The Doris side of the data contracts: `sql/doris/` against the records and real messages.

No service runs. The SQL is parsed (tests/doris_sql.py) and checked against the records in
dicomflow/tables/records.py; then messages are built by the functions the services use
(dicomflow/tables/extract.py) from real DICOM data sets, serialised with `record.dumps()`, and
every value is checked against the Doris column a routine load would load it into.
"""

import datetime as dt
import functools
import io
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from dicomflow.core import topics
from dicomflow.core.identifiers import is_valid_uid
from dicomflow.core.storage import SeriesLocation, study_date_folder
from dicomflow.tables.extract import (
    fit,
    image_record,
    now_text,
    read_header,
    state_record,
    storage_event,
)
from dicomflow.tables.records import (
    WIDTHS,
    AccessLogRecord,
    ImageRecord,
    StateRecord,
    StorageEvent,
)
from tests.doris_sql import Column, RoutineLoad, Table, read_routine_loads, read_tables

# pydicom warns about the malformed values some cases are made of; that is the point.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

DORIS = Path(__file__).resolve().parents[1] / "sql" / "doris"
TENANT = "tenant-a"


@dataclass(frozen=True)
class Contract:
    record: type
    topic: str
    table: str
    model: str
    keys: tuple[str, ...]


CONTRACTS = (
    Contract(
        StorageEvent,
        topics.LOG_QUEUE,
        "dicom_object_meta",
        "DUPLICATE",
        ("tenant_id", "study_uid", "series_uid", "sop_uid"),
    ),
    Contract(
        StateRecord,
        topics.DICOM_STATE_QUEUE,
        "dicom_state_meta",
        "UNIQUE",
        ("tenant_id", "study_uid", "series_uid"),
    ),
    Contract(
        ImageRecord,
        topics.DICOM_IMAGE_QUEUE,
        "dicom_image_meta",
        "UNIQUE",
        ("tenant_id", "study_uid", "series_uid", "sop_uid"),
    ),
    Contract(
        AccessLogRecord,
        topics.ACCESS_LOG_QUEUE,
        "wado_access_log",
        "DUPLICATE",
        ("tenant_id", "log_time"),
    ),
)
BY_RECORD = {c.record: c for c in CONTRACTS}
CONTRACT_IDS = [c.table for c in CONTRACTS]

# Columns whose values are ASCII by construction (validated UIDs and tenants, generated UUIDs
# and hashes, AE titles, the YYYYMMDD study date folder): their varchar may be WIDTHS bytes.
ASCII_COLUMNS = frozenset(
    {
        "trace_id",
        "tenant_id",
        "study_uid",
        "series_uid",
        "sop_uid",
        "study_uid_hash",
        "series_uid_hash",
        "sop_class_uid",
        "transfer_syntax_uid",
        "source_ae",
        "called_ae",
        "study_date_origin",
    }
)
INT_BITS = {"TINYINT": 8, "SMALLINT": 16, "INT": 32, "INTEGER": 32, "BIGINT": 64, "LARGEINT": 128}
DORIS_TYPES = {
    int: set(INT_BITS),
    float: {"DOUBLE"},
    str: {"VARCHAR", "DATE", "DATETIME"},
}
VARCHAR_MAX_BYTES = 65533
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
DATETIME_RE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.(\d{1,6}))?", re.ASCII)


def fields(record: type) -> list[str]:
    return list(record._options.fields)


def field_type(record: type, name: str) -> tuple[type, bool]:
    """A field's base type and whether it is Optional."""
    hint = record._options.fields[name]
    args = getattr(hint, "__args__", ())
    optional = type(None) in args
    base = next(a for a in args if a is not type(None)) if optional else hint
    return base, optional


@pytest.fixture(scope="module")
def tables() -> dict[str, Table]:
    return read_tables(DORIS / "tables.sql")


@pytest.fixture(scope="module")
def loads() -> dict[str, RoutineLoad]:
    return read_routine_loads(DORIS / "routine_loads.sql")


def load_for(loads: dict[str, RoutineLoad], topic: str) -> RoutineLoad:
    matching = [
        load for load in loads.values() if load.source_properties.get("kafka_topic") == topic
    ]
    assert len(matching) == 1, f"{len(matching)} routine loads read topic {topic}"
    return matching[0]


# ---------------------------------------------------------------------------------------------
# The SQL against the records


def test_every_table_and_routine_load_belongs_to_a_record(tables, loads):
    assert sorted(tables) == sorted(c.table for c in CONTRACTS)
    assert sorted(load.table for load in loads.values()) == sorted(c.table for c in CONTRACTS)


@pytest.mark.parametrize("contract", CONTRACTS, ids=CONTRACT_IDS)
def test_routine_load_reads_its_topic_into_its_table(contract, loads):
    load = load_for(loads, contract.topic)
    assert load.table == contract.table
    assert load.source == "KAFKA"
    assert load.source_properties.get("kafka_broker_list")
    assert load.source_properties.get("property.group.id")
    assert load.properties.get("format") == "json"
    assert load.properties.get("strip_outer_array") == "false"


@pytest.mark.parametrize("contract", CONTRACTS, ids=CONTRACT_IDS)
def test_routine_load_columns_are_the_record_fields_in_order(contract, loads):
    load = load_for(loads, contract.topic)
    assert load.columns == fields(contract.record)
    if "jsonpaths" in load.properties:
        assert json.loads(load.properties["jsonpaths"]) == [f"$.{c}" for c in load.columns]


@pytest.mark.parametrize("contract", CONTRACTS, ids=CONTRACT_IDS)
def test_table_has_exactly_the_record_fields(contract, tables):
    names = [c.name for c in tables[contract.table].columns]
    assert len(names) == len(set(names)), "a column is defined twice"
    assert sorted(names) == sorted(fields(contract.record))


@pytest.mark.parametrize("contract", CONTRACTS, ids=CONTRACT_IDS)
def test_not_null_exactly_where_the_field_is_not_optional(contract, tables):
    table = tables[contract.table]
    wrong = [c.name for c in table.columns if c.nullable != field_type(contract.record, c.name)[1]]
    assert wrong == [], f"nullability differs from the record for {wrong}"


@pytest.mark.parametrize("contract", CONTRACTS, ids=CONTRACT_IDS)
def test_column_types_fit_the_field_types(contract, tables):
    for column in tables[contract.table].columns:
        base, _ = field_type(contract.record, column.name)
        assert column.type in DORIS_TYPES[base], f"{column.name}: {base.__name__} -> {column.type}"
        if base is str:
            # Text with a width is VARCHAR; text without one is a date or a datetime.
            if column.name in WIDTHS:
                assert column.type == "VARCHAR", column.name
            elif column.name.endswith("_date"):
                assert column.type == "DATE", column.name
            else:
                assert (column.type, column.length) == ("DATETIME", 6), column.name


@pytest.mark.parametrize("contract", CONTRACTS, ids=CONTRACT_IDS)
def test_varchar_bytes_hold_the_record_width_in_utf8(contract, tables):
    for column in tables[contract.table].columns:
        if column.type != "VARCHAR":
            continue
        width = WIDTHS[column.name]
        needed = width if column.name in ASCII_COLUMNS else 4 * width
        assert column.length is not None, column.name
        assert needed <= column.length <= VARCHAR_MAX_BYTES, (
            f"{column.name}: varchar({column.length}), {width} characters need {needed} bytes"
        )


def test_every_width_is_a_varchar_column(tables):
    varchars = {c.name for t in tables.values() for c in t.columns if c.type == "VARCHAR"}
    assert sorted(set(WIDTHS) - varchars) == []


@pytest.mark.parametrize("contract", CONTRACTS, ids=CONTRACT_IDS)
def test_key_model_and_distribution(contract, tables):
    table = tables[contract.table]
    assert table.model == contract.model
    assert tuple(table.keys) == contract.keys
    assert [c.name for c in table.columns[: len(table.keys)]] == table.keys, (
        "key columns must come first, in key order"
    )
    assert all(not table.column(k).nullable for k in table.keys)
    assert table.distributed_by and set(table.distributed_by) <= set(fields(contract.record))
    if table.model == "UNIQUE":
        assert set(table.distributed_by) <= set(table.keys)
        sequence = table.properties.get("function_column.sequence_col")
        if sequence is not None:
            assert table.column(sequence).type in {"DATE", "DATETIME", *INT_BITS}
    assert table.buckets == "AUTO" or int(table.buckets) > 0
    assert int(table.properties.get("replication_num", "0")) >= 1


# ---------------------------------------------------------------------------------------------
# What a routine load does with one JSON value


def value_problem(column: Column, value: Any) -> str | None:
    """Why Doris would not load `value` into `column`, or None when it would."""
    if value is None:
        return None if column.nullable else "null in a NOT NULL column"
    if column.type in INT_BITS:
        bits = INT_BITS[column.type]
        if type(value) is not int:
            return "not a JSON integer"
        if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
            return f"outside the {column.type} range"
    elif column.type == "DOUBLE":
        if type(value) not in (int, float) or not math.isfinite(value):
            return "not a finite JSON number"
    elif column.type == "DATE":
        if not isinstance(value, str) or not DATE_RE.fullmatch(value):
            return "not YYYY-MM-DD"
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            return "not a valid date"
    elif column.type == "DATETIME":
        match = DATETIME_RE.fullmatch(value) if isinstance(value, str) else None
        if not match:
            return "not YYYY-MM-DD HH:MM:SS[.ffffff]"
        try:
            dt.datetime.strptime(value[:19], "%Y-%m-%d %H:%M:%S")
        except ValueError:
            return "not a valid datetime"
        if match.group(1) and len(match.group(1)) > (column.length or 0):
            return f"more fractional digits than DATETIME({column.length or 0})"
    elif column.type == "VARCHAR":
        if not isinstance(value, str):
            return "not a JSON string"
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            return "not encodable in UTF-8"
        if size > (column.length or 0):
            return f"{size} bytes in varchar({column.length})"
    else:
        return f"no check for the Doris type {column.type}"
    return None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_message(raw: bytes) -> dict[str, Any]:
    message = json.loads(raw, parse_constant=_reject_constant)
    assert isinstance(message, dict), "a message is one JSON object"
    return message


def load_problems(table: Table, message: dict[str, Any]) -> list[str]:
    problems = []
    for column in table.columns:
        if column.name not in message:
            problems.append(f"{column.name}: missing")
            continue
        problem = value_problem(column, message[column.name])
        if problem:
            problems.append(f"{column.name}={message[column.name]!r}: {problem}")
    return problems


NOT_NULL_INT = Column("n", "INT", None, False)
BAD_VALUES = [
    (NOT_NULL_INT, None),
    (NOT_NULL_INT, 2**31),
    (NOT_NULL_INT, -(2**31) - 1),
    (NOT_NULL_INT, 1.5),
    (NOT_NULL_INT, "1"),
    (NOT_NULL_INT, True),
    (Column("n", "BIGINT", None, True), 2**63),
    (Column("d", "DOUBLE", None, True), "1.0"),
    (Column("d", "DOUBLE", None, True), math.nan),
    (Column("d", "DATE", None, True), "20240102"),
    (Column("d", "DATE", None, True), "2024-02-30"),
    (Column("d", "DATE", None, True), "2024-01-02 00:00:00"),
    (Column("d", "DATE", None, True), "\uff12\uff10\uff12\uff14-01-02"),  # full-width digits
    (Column("t", "DATETIME", 6, True), "2024-01-02T03:04:05"),
    (Column("t", "DATETIME", 6, True), "2024-01-02 24:00:00"),
    (Column("t", "DATETIME", 6, True), "2024-01-02 03:04:05.1234567"),
    (Column("t", "DATETIME", 3, True), "2024-01-02 03:04:05.123456"),
    (Column("t", "DATETIME", 6, True), "2024-01-02 03:04:05+00:00"),
    (Column("v", "VARCHAR", 8, True), "2024010é"),
    (Column("v", "VARCHAR", 8, True), 20240102),
    (Column("v", "VARCHAR", 8, True), "\ud800"),
    (Column("x", "DECIMAL", 10, True), 1),
]
GOOD_VALUES = [
    (NOT_NULL_INT, 2**31 - 1),
    (NOT_NULL_INT, -(2**31)),
    (Column("n", "INT", None, True), None),
    (Column("d", "DOUBLE", None, False), -1024),
    (Column("d", "DOUBLE", None, False), 0.5),
    (Column("d", "DATE", None, False), "2024-02-29"),
    (Column("t", "DATETIME", 6, False), "2024-01-02 03:04:05"),
    (Column("t", "DATETIME", 6, False), "2024-01-02 03:04:05.123456"),
    (Column("v", "VARCHAR", 8, False), "山田"),
    (Column("v", "VARCHAR", 8, False), ""),
]


@pytest.mark.parametrize(("column", "value"), BAD_VALUES)
def test_value_check_rejects_what_doris_rejects(column, value):
    assert value_problem(column, value) is not None


@pytest.mark.parametrize(("column", "value"), GOOD_VALUES)
def test_value_check_accepts_what_doris_loads(column, value):
    assert value_problem(column, value) is None


def test_messages_with_nan_are_not_json():
    with pytest.raises(ValueError):
        parse_message(b'{"slice_thickness": NaN}')


# ---------------------------------------------------------------------------------------------
# Messages built from DICOM data sets


def dataset(charset: str | list[str] | None = "ISO_IR 192") -> Dataset:
    """A data set with just the identifying UIDs the store validates."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if charset is not None:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    return ds


CT_ATTRIBUTES: dict[str, Any] = {
    "PatientName": "Doe^Jane",
    "PatientID": "PID-1",
    "PatientBirthDate": "19700101",
    "PatientSex": "F",
    "PatientAge": "054Y",
    "StudyDate": "20240102",
    "StudyTime": "101010.123",
    "AccessionNumber": "ACC-1",
    "StudyID": "1",
    "StudyDescription": "CT chest",
    "ReferringPhysicianName": "Roe^Richard",
    "Modality": "CT",
    "SeriesNumber": 3,
    "SeriesDate": "20240102",
    "SeriesTime": "101500",
    "SeriesDescription": "Axial 1mm",
    "BodyPartExamined": "CHEST",
    "InstitutionName": "General Hospital",
    "Manufacturer": "ACME",
    "InstanceNumber": 7,
    "ContentDate": "20240102",
    "ContentTime": "101501.5",
    "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
    "ImageOrientationPatient": [1, 0, 0, 0, 1, 0],
    "ImagePositionPatient": [-125.5, -130.25, 42],
    "SliceThickness": 1,
    "SpacingBetweenSlices": 1,
    "SliceLocation": 42,
    "SamplesPerPixel": 1,
    "PhotometricInterpretation": "MONOCHROME2",
    "Rows": 512,
    "Columns": 512,
    "BitsAllocated": 16,
    "BitsStored": 12,
    "HighBit": 11,
    "PixelRepresentation": 0,
    "RescaleIntercept": -1024,
    "RescaleSlope": 1,
    "RescaleType": "HU",
    "WindowCenter": ["40", "400"],
    "WindowWidth": ["400", "2000"],
}


def ct(charset: str | list[str] | None = "ISO_IR 192", **overrides: Any) -> Dataset:
    """A typical CT header; `overrides` replace attributes (None leaves one out)."""
    ds = dataset(charset)
    for keyword, value in {**CT_ATTRIBUTES, **overrides}.items():
        if value is not None:
            setattr(ds, keyword, value)
    return ds


def raw_element(ds: Dataset, tag: int, vr: str, value: bytes) -> Dataset:
    """Put `value` in the file exactly as given, as a sender could."""
    ds[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)
    return ds


def part10(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


LONG = "\U00020000"  # a CJK Extension B ideograph: 4 bytes in UTF-8
# Values of VRs outside the character set (CS, AS, TM...) are read as Latin-1: 2 bytes each.
LATIN = "é"
JAPANESE = "Yamada^Tarou=山田^太郎=やまだ^たろう"

MADE_CASES: dict[str, Callable[[], Dataset]] = {
    "ascii_ct": lambda: ct(None),
    "utf8_japanese": lambda: ct(
        "ISO_IR 192",
        PatientName="山田^太郎",
        StudyDescription="胸部ＣＴ 単純",
        InstitutionName="東京第一病院",
        ReferringPhysicianName="佐藤^花子",
    ),
    "iso2022_ir87_ideographic": lambda: ct(["", "ISO 2022 IR 87"], PatientName=JAPANESE),
    "latin1_german": lambda: ct(
        "ISO_IR 100",
        PatientName="Müller^Jürgen",
        StudyDescription="Schädel nativ",
        InstitutionName="Universitätsklinikum Köln",
        Manufacturer="Gerätebau GmbH",
    ),
    "gb18030_chinese": lambda: ct(
        "GB18030",
        PatientName="Wang^XiaoDong=王^小东",
        StudyDescription="胸部平扫",
        InstitutionName="北京协和医院",
    ),
    "utf8_overlong": lambda: ct(
        "ISO_IR 192",
        PatientID=LONG * 100,
        PatientName=LONG * 400,
        PatientSex=LATIN * 20,
        PatientAge=LATIN * 10,
        AccessionNumber=LONG * 20,
        StudyID=LONG * 20,
        StudyTime=LATIN * 40,
        StudyDescription=LONG * 100,
        ReferringPhysicianName=LONG * 400,
        Modality=LATIN * 20,
        SeriesDescription=LONG * 100,
        BodyPartExamined=LATIN * 20,
        InstitutionName=LONG * 100,
        Manufacturer=LONG * 100,
        ImageType=[LATIN * 60] * 6,
        ImagePositionPatient=[-123456.789012] * 30,
        ImageOrientationPatient=[0.123456789012] * 30,
        PhotometricInterpretation=LATIN * 20,
        RescaleType=LONG * 20,
        WindowCenter=[-123456.789012] * 12,
        WindowWidth=[123456.7890123] * 12,
    ),
    "absent_optional_attributes": lambda: dataset(None),
    "empty_optional_attributes": lambda: ct(**{k: "" for k in CT_ATTRIBUTES}),
    "malformed_values": lambda: raw_element(
        raw_element(
            ct(
                StudyDate="2024.01.02",
                PatientBirthDate="19700230",
                ContentDate="garbage",
                SeriesDate="2024",
                NumberOfFrames="0",
            ),
            0x00180050,  # SliceThickness
            "DS",
            b"NaN ",
        ),
        0x00281052,  # RescaleIntercept
        "DS",
        b"1e400 ",
    ),
    "multiframe": lambda: ct(NumberOfFrames="250"),
    # Values a careless extractor would pass through:
    "integer_strings_out_of_int_range": lambda: ct(
        InstanceNumber="999999999999", SeriesNumber="-99999999999", NumberOfFrames="999999999999"
    ),
    "study_date_not_ascii": lambda: raw_element(ct(), 0x00080020, "DA", b"2024\xc3\xa9\xc3\xa9"),
}

PYDICOM_FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_RLE.dcm",
    "JPEG2000.dcm",
    "rtdose.dcm",
    "rtplan.dcm",
    "reportsi.dcm",
    "reportsi_with_empty_number_tags.dcm",
    "test-SR.dcm",
    "waveform_ecg.dcm",
    "liver_1frame.dcm",
    "SC_rgb_rle_2frame.dcm",
    "examples_ybr_color.dcm",
    "image_dfl.dcm",
]


def _identity_valid(path: str) -> bool:
    header = read_header(path)
    keywords = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
    return all(is_valid_uid(header.get(k)) for k in keywords)


# chrSQEncoding*.dcm carry no valid UIDs: the store rejects them, so they have no messages.
CHARSET_FILES = sorted(Path(p).name for p in get_charset_files("chr*.dcm") if _identity_valid(p))


def pydicom_file(name: str) -> bytes:
    path = get_testdata_file(name, download=False)
    if path is None:
        charset = get_charset_files(name)
        path = charset[0] if charset else None
    assert path is not None, f"{name} is not shipped with this pydicom"
    return Path(path).read_bytes()


CASES: dict[str, Callable[[], bytes]] = {
    **{name: (lambda build=build: part10(build())) for name, build in MADE_CASES.items()},
    **{name: functools.partial(pydicom_file, name) for name in PYDICOM_FILES + CHARSET_FILES},
}
DICOM_RECORDS = (StorageEvent, StateRecord, ImageRecord)


@functools.cache
def messages(case: str) -> dict[type, bytes]:
    """The messages the services would send for the instance of `case`, serialised."""
    data = CASES[case]()
    header = read_header(io.BytesIO(data))
    location = SeriesLocation(
        tenant=TENANT,
        study_date=study_date_folder(header.get("StudyDate")),
        study_uid=header.StudyInstanceUID,
        series_uid=header.SeriesInstanceUID,
    )
    event = storage_event(
        header,
        tenant=TENANT,
        file_path=location.instance_key(header.SOPInstanceUID),
        file_size=len(data),
        transfer_syntax_uid=str(header.file_meta.TransferSyntaxUID),
        node_id="node-1",
        trace_id="6f1c2a4e-8b0d-4f3a-9c5e-1d2b3a4c5d6e",
        source_ip="2001:db8::10",
        source_ae="MODALITY_AE_16CH",
        called_ae="DICOMFLOW",
    )
    state = state_record(
        header,
        event,
        series_related_instances=1,
        series_state="receiving",
        first_received_time=event.created_time,
        last_received_time=event.created_time,
    )
    image = image_record(header, event)
    return {StorageEvent: event.dumps(), StateRecord: state.dumps(), ImageRecord: image.dumps()}


def message(case: str, record: type) -> dict[str, Any]:
    return parse_message(messages(case)[record])


def _case_params() -> list[Any]:
    params = []
    for case in CASES:
        for record in DICOM_RECORDS:
            params.append(pytest.param(case, record, id=f"{case}-{BY_RECORD[record].table}"))
    return params


@pytest.mark.parametrize(("case", "record"), _case_params())
def test_message_loads_into_doris(case, record, tables):
    table = tables[BY_RECORD[record].table]
    assert load_problems(table, message(case, record)) == []


def access_log_records() -> dict[str, AccessLogRecord]:
    wide = "山" * 3000
    return {
        "full": AccessLogRecord(
            log_time=now_text(),
            tenant_id=TENANT,
            method="GET",
            path=fit("path", "/dicomweb/studies/1.2.3/series/" + wide),
            query=fit("query", "PatientName=" + wide),
            status=200,
            bytes_sent=5 * 2**40,
            duration_ms=12.345,
            client_address=fit("client_address", "2001:0db8:0000:0000:0000:ff00:0042:8329"),
            user_agent=fit("user_agent", "Mozilla/5.0 " + wide),
        ),
        "minimal": AccessLogRecord(
            log_time="2024-01-02 03:04:05",
            tenant_id=TENANT,
            method="DELETE",
            path="/",
            query=None,
            status=404,
            bytes_sent=0,
            duration_ms=0,
            client_address=None,
            user_agent=None,
        ),
    }


@pytest.mark.parametrize("name", ["full", "minimal"])
def test_access_log_message_loads_into_doris(name, tables):
    raw = access_log_records()[name].dumps()
    assert load_problems(tables["wado_access_log"], parse_message(raw)) == []


@pytest.mark.parametrize("contract", CONTRACTS, ids=CONTRACT_IDS)
def test_message_keys_are_exactly_the_routine_load_columns(contract, loads):
    if contract.record is AccessLogRecord:
        raw = access_log_records()["minimal"].dumps()
    else:
        raw = messages("ascii_ct")[contract.record]
    assert list(parse_message(raw)) == load_for(loads, contract.topic).columns


# ---------------------------------------------------------------------------------------------
# What the messages say, for the cases above


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("utf8_japanese", "山田^太郎"),
        ("iso2022_ir87_ideographic", JAPANESE),
        ("latin1_german", "Müller^Jürgen"),
        ("gb18030_chinese", "Wang^XiaoDong=王^小东"),
        ("chrH31.dcm", JAPANESE),
        ("chrX2.dcm", "Wang^XiaoDong=王^小东"),
    ],
)
def test_non_ascii_names_arrive_as_unicode(case, expected):
    assert message(case, StateRecord)["patient_name"] == expected


def test_overlong_text_is_cut_to_its_width_and_fills_its_varchar(tables):
    state = message("utf8_overlong", StateRecord)
    table = tables["dicom_state_meta"]
    for column in ("patient_name", "study_description", "referring_physician_name"):
        assert state[column] == LONG * WIDTHS[column]
        assert len(state[column].encode()) == table.column(column).length
    assert state["patient_id"] == LONG * WIDTHS["patient_id"]
    assert len(message("utf8_overlong", ImageRecord)["image_type"]) == WIDTHS["image_type"]


def test_absent_attributes_are_null_and_required_fields_are_not(tables):
    for record in DICOM_RECORDS:
        body = message("absent_optional_attributes", record)
        table = tables[BY_RECORD[record].table]
        for column in table.columns:
            if not field_type(record, column.name)[1]:
                assert body[column.name] is not None, column.name
    state = message("absent_optional_attributes", StateRecord)
    assert state["patient_id"] == ""
    assert state["patient_name"] is None
    assert state["study_date"] is None
    image = message("absent_optional_attributes", ImageRecord)
    assert image["number_of_frames"] == 1
    assert image["instance_number"] is None
    assert image["rows"] is None
    assert image["slice_thickness"] is None


def test_values_are_converted_to_their_column_types():
    state = message("ascii_ct", StateRecord)
    assert state["study_date"] == "2024-01-02"
    assert state["patient_birth_date"] == "1970-01-01"
    assert state["study_date_origin"] == "20240102"
    assert state["series_number"] == 3
    image = message("ascii_ct", ImageRecord)
    assert image["instance_number"] == 7
    assert image["rescale_intercept"] == -1024.0
    assert image["image_type"] == "ORIGINAL\\PRIMARY\\AXIAL"
    assert image["window_center"] == "40\\400"
    assert message("multiframe", ImageRecord)["number_of_frames"] == 250


def test_malformed_values_become_null():
    state = message("malformed_values", StateRecord)
    assert state["study_date"] is None
    assert state["patient_birth_date"] is None
    assert state["series_date"] is None
    image = message("malformed_values", ImageRecord)
    assert image["content_date"] is None
    assert image["slice_thickness"] is None
    assert image["rescale_intercept"] is None
    assert image["number_of_frames"] == 1
