"""Series metadata: each instance's kept DICOM JSON joined, the file read where none is kept."""

from pathlib import Path

import orjson
import pydicom
import pytest

from dicomflow.core.identifiers import InvalidIdentifier
from dicomflow.core.series_metadata import (
    SeriesInstance,
    build_series_metadata,
    instance_metadata,
    instance_metadata_key,
    join_parts,
    keep_instance_metadata,
    part_field,
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


def test_kept_metadata_is_joined_and_equals_the_files(tmp_path: Path) -> None:
    storage, rows = stored_series(tmp_path, 3)
    json_storage = LocalStorage(tmp_path / "json")
    without_kept = build_series_metadata(storage, json_storage, "t", rows)
    for study, series, sop, key, _ in rows:
        with storage.open(key) as fh:
            body = instance_metadata(pydicom.dcmread(fh), "t", study, series, sop)
        keep_instance_metadata(json_storage, key, body)
    assert (tmp_path / "json/t/20240102" / STUDY / SERIES / f"{SERIES}.1.json").is_file()
    with_kept = build_series_metadata(storage, json_storage, "t", rows)
    assert with_kept == without_kept
    assert orjson.loads(with_kept) == built_from_files(storage, rows)
    assert orjson.loads(with_kept)[0]["7FE00010"]["BulkDataURI"].endswith(
        f"/instances/{SERIES}.1/bulkdata/7FE00010"
    )


def test_kept_metadata_is_what_is_served(tmp_path: Path) -> None:
    storage, rows = stored_series(tmp_path, 2)
    json_storage = LocalStorage(tmp_path / "json")
    keep_instance_metadata(json_storage, rows[1].key, b'{"kept":true}')
    objects = orjson.loads(build_series_metadata(storage, json_storage, "t", rows))
    assert objects[1] == {"kept": True}
    assert objects[0] == built_from_files(storage, rows[:1])[0]


def test_parts_are_served_unless_they_are_of_an_older_copy(tmp_path: Path) -> None:
    storage, rows = stored_series(tmp_path, 2)
    json_storage = LocalStorage(tmp_path / "json")
    first, second = rows
    parts = {
        part_field(first.sop_uid, first.received_time): b'{"part":1}',
        part_field(second.sop_uid, "2026-11-26 01:02:03.000003"): b'{"older":2}',
    }
    assert join_parts(rows, parts) is None
    objects = orjson.loads(build_series_metadata(storage, json_storage, "t", rows, parts))
    assert objects == [{"part": 1}, built_from_files(storage, rows[1:])[0]]

    parts[part_field(second.sop_uid, second.received_time)] = b'{"part":2}'
    joined = join_parts(rows, parts)
    assert joined == build_series_metadata(storage, json_storage, "t", rows, parts)
    assert orjson.loads(joined) == [{"part": 1}, {"part": 2}]


def test_missing_or_cut_metadata_is_built_from_the_file(tmp_path: Path) -> None:
    storage, rows = stored_series(tmp_path, 2)
    json_storage = LocalStorage(tmp_path / "json")
    keep_instance_metadata(json_storage, rows[0].key, b"")  # as a crash may leave it
    keep_instance_metadata(json_storage, rows[1].key, b'{"00080018": {"vr"')
    objects = orjson.loads(build_series_metadata(storage, json_storage, "t", rows))
    assert objects == built_from_files(storage, rows)
    json_storage.delete(instance_metadata_key(rows[0].key))
    assert orjson.loads(build_series_metadata(storage, json_storage, "t", rows)) == objects


def test_kept_metadata_lies_beside_its_series_under_the_json_root() -> None:
    key = SeriesLocation("t", "20240102", STUDY, SERIES).instance_key(f"{SERIES}.7")

    assert instance_metadata_key(key) == f"t/20240102/{STUDY}/{SERIES}/{SERIES}.7.json"
    with pytest.raises(InvalidIdentifier):
        instance_metadata_key(f"t/20240102/{STUDY}/{SERIES}.json")
