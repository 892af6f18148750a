"""Series metadata: each instance's kept part joined, the file read where none is kept."""

from pathlib import Path

import orjson
import pydicom
import pytest

from dicomflow.core.series_metadata import (
    SeriesInstance,
    build_series_metadata,
    find_series_parts,
    instance_metadata,
    keep_instance_metadata,
    keep_series_parts,
    parse_series_parts,
    part_field,
    read_series_parts,
)
from dicomflow.core.storage import LocalStorage, SeriesLocation
from tests.dicom_factory import make_ct

STUDY, SERIES = "1.2.3", "1.2.3.4"
RECEIVED = "2026-11-26 01:02:03.000004"


def stored_series(root: Path, count: int) -> tuple[LocalStorage, list[SeriesInstance]]:
    storage = LocalStorage(root / "dicom")
    location = SeriesLocation("t", "20240102", STUDY, SERIES)
    rows = []
    for number in range(1, count + 1):
        sop = f"{SERIES}.{number}"
        make_ct(root / f"{number}.dcm", study_uid=STUDY, series_uid=SERIES, sop_uid=sop)
        key = location.instance_key(sop)
        storage.write_atomic(key, [(root / f"{number}.dcm").read_bytes()])
        rows.append(SeriesInstance(STUDY, SERIES, sop, key, RECEIVED))
    return storage, rows


def built_from_files(storage: LocalStorage, rows: list[SeriesInstance]) -> list:
    objects = []
    for study, series, sop, key, _ in rows:
        with storage.open(key) as fh:
            objects.append(
                orjson.loads(instance_metadata(pydicom.dcmread(fh), "t", study, series, sop))
            )
    return objects


def keep_parts(
    json_storage: LocalStorage, storage: LocalStorage, rows: list[SeriesInstance]
) -> None:
    """Keep each instance's part as the worker does."""
    for study, series, sop, key, received in rows:
        with storage.open(key) as fh:
            body = instance_metadata(pydicom.dcmread(fh), "t", study, series, sop)
        keep_instance_metadata(json_storage, key, part_field(sop, received), body)


def test_kept_parts_are_joined_and_equal_the_files(tmp_path: Path) -> None:
    storage, rows = stored_series(tmp_path, 3)
    json_storage = LocalStorage(tmp_path / "json")
    without_kept = build_series_metadata(storage, json_storage, "t", rows)
    keep_parts(json_storage, storage, rows)
    assert [p.name for p in (tmp_path / "json/t/20240102" / STUDY).iterdir()] == [
        f"{SERIES}.parts"
    ], "one file per series, beside its metadata"
    with_kept = build_series_metadata(storage, json_storage, "t", rows)
    assert with_kept == without_kept
    assert orjson.loads(with_kept) == built_from_files(storage, rows)
    assert orjson.loads(with_kept)[0]["7FE00010"]["BulkDataURI"].endswith(
        f"/instances/{SERIES}.1/bulkdata/7FE00010"
    )


def test_the_last_kept_part_of_the_instance_as_indexed_is_served(tmp_path: Path) -> None:
    storage, rows = stored_series(tmp_path, 2)
    json_storage = LocalStorage(tmp_path / "json")
    first, second = rows
    keep_instance_metadata(json_storage, first.key, part_field(first.sop_uid, RECEIVED), b"{}")
    keep_instance_metadata(
        json_storage, first.key, part_field(first.sop_uid, RECEIVED), b'{"kept":1}'
    )
    keep_instance_metadata(
        json_storage, second.key, part_field(second.sop_uid, "2026-11-26 01:02:03.000003"), b"{}"
    )  # an older copy's
    objects = orjson.loads(build_series_metadata(storage, json_storage, "t", rows))
    assert objects == [{"kept": 1}, built_from_files(storage, rows[1:])[0]]


def test_parts_are_served_unless_they_are_of_an_older_copy(tmp_path: Path) -> None:
    storage, rows = stored_series(tmp_path, 2)
    json_storage = LocalStorage(tmp_path / "json")
    first, second = rows
    parts = {
        part_field(first.sop_uid, first.received_time): b'{"part":1}',
        part_field(second.sop_uid, "2026-11-26 01:02:03.000003"): b'{"older":2}',
    }
    objects = orjson.loads(build_series_metadata(storage, json_storage, "t", rows, parts))
    assert objects == [{"part": 1}, built_from_files(storage, rows[1:])[0]]

    parts[part_field(second.sop_uid, second.received_time)] = b'{"part":2}'
    joined = build_series_metadata(storage, json_storage, "t", rows, parts)
    assert orjson.loads(joined) == [{"part": 1}, {"part": 2}]


def test_parts_cut_short_by_a_crash_are_made_from_the_files(tmp_path: Path) -> None:
    storage, rows = stored_series(tmp_path, 3)
    json_storage = LocalStorage(tmp_path / "json")
    keep_parts(json_storage, storage, rows[:1])
    parts_key = SeriesLocation.of_instance_key(rows[0].key).parts_key
    cut = f'{part_field(rows[1].sop_uid, RECEIVED).decode()}\t40\t{{"00080018": {{'.encode()
    json_storage.append(parts_key, cut)  # a crash stopped this append: no newline
    keep_instance_metadata(
        json_storage, rows[2].key, part_field(rows[2].sop_uid, RECEIVED), b'{"run":"together"}'
    )  # its record runs on from the cut one: neither is served
    assert set(read_series_parts(json_storage, rows[0].key)) == {
        part_field(rows[0].sop_uid, RECEIVED)
    }
    objects = orjson.loads(build_series_metadata(storage, json_storage, "t", rows))
    assert objects == built_from_files(storage, rows)


def test_the_parts_file_written_anew_holds_the_current_parts_only(tmp_path: Path) -> None:
    storage, rows = stored_series(tmp_path, 2)
    json_storage = LocalStorage(tmp_path / "json")
    older = part_field(rows[0].sop_uid, "2026-11-26 01:02:03.000003")
    keep_instance_metadata(json_storage, rows[0].key, older, b'{"older":1}')
    keep_parts(json_storage, storage, rows[1:])
    objects = [b'{"part":1}', b'{"part":2}']
    assert keep_series_parts(json_storage, rows, objects)
    assert read_series_parts(json_storage, rows[1].key) == {
        part_field(row.sop_uid, row.received_time): body
        for row, body in zip(rows, objects, strict=True)
    }
    assert not keep_series_parts(json_storage, rows, objects), "it holds them: not written"
    keep_instance_metadata(json_storage, rows[1].key, part_field(rows[1].sop_uid, RECEIVED), b"{}")
    assert keep_series_parts(json_storage, rows, objects), "a record more: written anew"
    assert not keep_series_parts(json_storage, rows, objects)


@pytest.mark.parametrize(
    ("data", "parts"),
    [
        (b"", {}),
        (b"a\t2\t{}", {}),  # not ended: being appended, or cut by a crash
        (b"a\t2\t{}\n", {b"a": b"{}"}),
        (b"\x00\x00\x00\nb\t2\t{}\n", {b"b": b"{}"}),  # zeros a crash left, then a record
        (b"a\t9\t{}\n", {}),  # shorter than its length
        (b'a\t9\t{"x":b\t2\t{}\n', {}),  # a cut record, the next one run on from it
        (b'a\t2\t{}\na\t4\t{""}\n', {b"a": b'{""}'}),  # the last record of a field wins
        (b"a\t2\t{}\na\t9\t{", {b"a": b"{}"}),  # ... the last whole one
        (b"xa\t2\t{}\n", {b"xa": b"{}"}),  # a field that ends like another
    ],
)
def test_parts_file_records(data: bytes, parts: dict[bytes, bytes]) -> None:
    assert parse_series_parts(data) == parts
    searched = {field: body for field, body in parts.items() if field in (b"a", b"b")}
    assert find_series_parts(data, [b"a", b"b"]) == searched
