"""Unit tests of the shared pieces: identifiers, the storage interface, hashes, progress."""

import os
import time
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataelem import DataElement

from dicomflow.cli import main
from dicomflow.core import cache
from dicomflow.core.dicom_json import BULK_DATA_THRESHOLD, value_json
from dicomflow.core.hashing import uid_hash
from dicomflow.core.identifiers import (
    InvalidIdentifier,
    is_valid_uid,
    validate_ae_title,
    validate_tenant,
)
from dicomflow.core.storage import (
    FileIdentity,
    LocalStorage,
    SeriesLocation,
    read_at_most,
    study_date_folder,
)
from dicomflow.streams.progress import (
    RECEIVING,
    STABLE,
    is_quiet,
    mark_stable,
    record_instance,
)
from dicomflow.streams.series_parts import SeriesParts
from dicomflow.tables.records import StorageEvent


@pytest.mark.parametrize(
    "uid", ["1", "0", "1.2.840.10008.5.1.4.1.1.2", "2.25." + "1" * 59, "1.0.2"]
)
def test_valid_uids(uid: str) -> None:
    assert is_valid_uid(uid)


@pytest.mark.parametrize(
    "uid",
    [
        "",
        "1..2",
        ".1",
        "1.",
        "1.02",
        "01",
        "1.2/3",
        "../../x",
        "1.2.a",
        "1 2",
        "1." + "2" * 63,
        None,
        12,
    ],
)
def test_invalid_uids(uid: object) -> None:
    assert not is_valid_uid(uid)


@pytest.mark.parametrize("tenant", ["", "A", "-x", "a/b", "..", "a" * 33, "é"])
def test_invalid_tenants(tenant: str) -> None:
    with pytest.raises(InvalidIdentifier):
        validate_tenant(tenant)


def test_ae_titles_are_stripped_and_checked() -> None:
    assert validate_ae_title(" DICOMFLOW ") == "DICOMFLOW"
    for bad in ("", "A" * 17, "A\\B"):
        with pytest.raises(InvalidIdentifier):
            validate_ae_title(bad)


def test_uid_hash_is_stable_20_digits() -> None:
    assert uid_hash("1.2.3") == uid_hash("1.2.3")
    assert uid_hash("1.2.3") != uid_hash("1.2.4")
    assert len(uid_hash("1.2.3")) == 20 and uid_hash("1.2.3").isdigit()


def test_study_date_folder_fallback() -> None:
    assert study_date_folder("20240102") == "20240102"
    for value in (None, "", "2024", "2024-01-02", "../../x"):
        assert study_date_folder(value) == "00000000"


@pytest.mark.parametrize(
    ("tenant", "date", "study", "series"),
    [
        ("../x", "20240102", "1.2", "1.3"),
        ("t", "../../..", "1.2", "1.3"),
        ("t", "20240102", "../../x", "1.3"),
        ("t", "20240102", "1.2", "1.2/3"),
    ],
)
def test_series_location_rejects_path_escapes(
    tenant: str, date: str, study: str, series: str
) -> None:
    with pytest.raises(InvalidIdentifier):
        SeriesLocation(tenant, date, study, series)


def test_instance_key_rejects_bad_sop_uid() -> None:
    location = SeriesLocation("t", "20240102", "1.2", "1.3")
    assert location.instance_key("1.4") == "t/20240102/1.2/1.3/1.4.dcm"
    with pytest.raises(InvalidIdentifier):
        location.instance_key("../../../etc/passwd")


def test_storage_never_leaves_its_root(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "root")
    for key in ("../escape.dcm", "/etc/passwd", "a/../../escape.dcm", ""):
        with pytest.raises(InvalidIdentifier):
            storage.write_atomic(key, [b"x"])
    assert not (tmp_path / "escape.dcm").exists()


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    key = SeriesLocation("t", "20240102", "1.2", "1.3").instance_key("1.4")
    assert storage.write_atomic(key, [b"first"]) == 5
    assert storage.write_atomic(key, [b"sec", b"ond!"]) == 7
    assert storage.read_bytes(key) == b"second!"
    assert storage.has_identical(key, b"second!")
    assert not storage.has_identical(key, b"second?")
    assert [p.name for p in (tmp_path / "t/20240102/1.2/1.3").iterdir()] == ["1.4.dcm"]


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    key = "t/20240102/1.2/1.3/1.4.dcm"

    def chunks():  # type: ignore[no-untyped-def]
        yield b"partial"
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        storage.write_atomic(key, chunks())
    assert os.listdir(tmp_path / "t/20240102/1.2/1.3") == []


def _event(sop: str, created: str = "2024-01-02 03:04:05.000000") -> StorageEvent:
    return StorageEvent(
        trace_id="t",
        worker_node_id="n",
        tenant_id="t",
        patient_id="",
        study_uid="1.2",
        series_uid="1.3",
        sop_uid=sop,
        study_uid_hash="0" * 20,
        series_uid_hash="0" * 20,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        file_size=1,
        file_path="k",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        number_of_frames=1,
        accession_number=None,
        study_date=None,
        source_ip=None,
        source_ae=None,
        called_ae=None,
        created_time=created,
    )


def test_progress_counts_distinct_instances_and_announces_changes() -> None:
    progress, announce = record_instance(None, _event("1"), is_new=True)
    assert (progress.instances, progress.state, announce) == (1, RECEIVING, True)
    progress, announce = record_instance(progress, _event("2"), is_new=True)
    assert (progress.instances, announce) == (2, False)
    progress, announce = record_instance(progress, _event("2"), is_new=False)
    assert (progress.instances, announce) == (2, False)
    stable = mark_stable(progress)
    assert stable.state == STABLE
    changed, announce = record_instance(stable, _event("3"), is_new=True)
    assert (changed.instances, changed.state, announce) == (3, RECEIVING, True)


def test_quiet_only_after_the_stable_delay() -> None:
    progress, _ = record_instance(None, _event("1"), is_new=True)
    assert not is_quiet(progress, 10.0, now=progress.last_activity + 9.9)
    assert is_quiet(progress, 10.0, now=progress.last_activity + 10.0)
    assert not is_quiet(mark_stable(progress), 10.0, now=time.time() + 100)


@pytest.mark.parametrize(("start", "size"), [(0, 10), (0, 1 << 20), (95, 10), (100, 10), (0, 0)])
def test_read_at_most_reads_what_read_would(tmp_path: Path, start: int, size: int) -> None:
    path = tmp_path / "data"
    path.write_bytes(bytes(range(100)))
    with open(path, "rb") as fh:
        fh.seek(start)
        data = read_at_most(fh, size)
        position = fh.tell()
    assert data == bytes(range(100))[start : start + size]
    assert position == start + len(data)


def test_read_if_cached_reads_small_cached_files_only(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    data = os.urandom(300_000)
    storage.write_atomic("a/x.dcm", [data])

    assert bytes(storage.read_if_cached("a/x.dcm", len(data))) == data
    assert storage.read_if_cached("a/x.dcm", len(data) - 1) is None
    with pytest.raises(FileNotFoundError):
        storage.read_if_cached("a/missing.dcm", len(data))


def test_read_if_cached_never_waits_for_the_disk(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.write_atomic("a/x.dcm", [os.urandom(300_000)])  # durable: its pages are clean
    with storage.open("a/x.dcm") as fh:
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)

    assert storage.read_if_cached("a/x.dcm", 1 << 20) is None


def test_read_spans_if_cached_reads_only_the_file_it_was_given(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    data = os.urandom(300_000)
    storage.write_atomic("a/x.dcm", [data])
    with storage.open("a/x.dcm") as fh:
        identity = FileIdentity.of(fh.fileno())
    spans = [(100_000, 5), (0, 10), (299_990, 10)]

    read = storage.read_spans_if_cached("a/x.dcm", identity, spans)
    assert [bytes(b) for b in read or []] == [data[o : o + n] for o, n in spans]
    assert storage.read_spans_if_cached("a/x.dcm", identity, [(299_995, 10)]) is None  # past EOF

    storage.write_atomic("a/x.dcm", [os.urandom(300_000)])  # same size, replaced
    assert storage.read_spans_if_cached("a/x.dcm", identity, spans) is None
    assert storage.read_spans_if_cached("a/missing.dcm", identity, spans) is None


def test_read_head_if_cached_names_the_file_it_read(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    data = os.urandom(300_000)
    storage.write_atomic("a/x.dcm", [data])
    cached = storage.read_head_if_cached("a/x.dcm", 1000)
    assert cached is not None
    identity, head = cached
    assert bytes(head) == data[:1000]
    assert storage.read_spans_if_cached("a/x.dcm", identity, [(5, 5)]) is not None
    assert storage.read_head_if_cached("a/missing.dcm", 1000) is None
    with storage.open("a/x.dcm") as fh:
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    assert storage.read_head_if_cached("a/x.dcm", 1000) is None


def test_sweep_removes_only_stale_temporary_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = LocalStorage(tmp_path / "dicom")
    storage.write_atomic("t/20240101/1.2/1.2.3/1.2.3.4.dcm", [b"stored"])
    series = tmp_path / "dicom" / "t" / "20240101" / "1.2" / "1.2.3"
    stale = series / f".1.2.3.5.dcm.{'a' * 32}.tmp"
    in_progress = series / f".1.2.3.6.dcm.{'b' * 32}.tmp"
    not_ours = [series / ".keep", series / "notes.tmp", series / f".x.{'c' * 31}.tmp"]
    for path in [stale, in_progress, *not_ours]:
        path.write_bytes(b"12345")
    an_hour_ago = time.time() - 3600
    for path in [stale, *not_ours]:
        os.utime(path, (an_hour_ago, an_hour_ago))
    json_root = tmp_path / "json"
    stale_json = json_root / "t" / f".1.2.3.json.{'d' * 32}.tmp"
    stale_json.parent.mkdir(parents=True)
    stale_json.write_bytes(b"{}")
    os.utime(stale_json, (an_hour_ago, an_hour_ago))
    monkeypatch.setenv("DICOMFLOW_STORAGE_ROOT", str(tmp_path / "dicom"))
    monkeypatch.setenv("DICOMFLOW_JSON_ROOT", str(json_root))

    assert main(["storage", "sweep", "--older-than", "600"]) == 0

    remaining = sorted(p.name for p in (tmp_path / "dicom").rglob("*") if p.is_file())
    expected = ["1.2.3.4.dcm", in_progress.name, *(p.name for p in not_ours)]
    assert remaining == sorted(expected)
    assert not stale_json.exists()
    assert capsys.readouterr().out.splitlines() == [
        f"{tmp_path / 'dicom'}: removed 1 temporary files (5 bytes)",
        f"{json_root}: removed 1 temporary files (2 bytes)",
    ]


@pytest.mark.parametrize(
    ("vr", "value"),
    [
        ("UI", "1.2.840.10008.1.2.1"),
        ("LO", "ID-1"),
        ("LO", ""),
        ("LO", None),
        ("CS", "ORIGINAL\\PRIMARY\\AXIAL"),
        ("CS", ["CT", "MR"]),
        ("CS", "CT\\"),
        ("SH", "Ünïcödé"),
        ("DA", "20240115"),
        ("TM", "101500.123"),
        ("AS", "045Y"),
        ("IS", 7),
        ("IS", "12"),
        ("US", 512),
        ("DS", "1.5\\2"),
        ("UR", "http://host/dicom-web/studies/1.2\\3"),
        ("PN", "Doe^John"),
        ("PN", "Yamada^Tarou=山田^太郎=やまだ^たろう"),
        ("PN", "Doe^John="),
        ("PN", "Doe^John\\Roe^Jane"),
        ("PN", "=山田^太郎"),
        ("PN", "A==B"),
        ("PN", "Doe^John=^="),
        ("LT", "a\\b"),
    ],
)
def test_value_json_is_what_pydicom_makes_of_the_element(vr: str, value: object) -> None:
    element = DataElement(0x00100010, vr, value)
    assert value_json(vr, value) == element.to_json_dict(None, BULK_DATA_THRESHOLD)  # type: ignore[arg-type]


class CountedRedis:
    """A Redis nobody listens on, counting the pipelines asked of it."""

    def __init__(self) -> None:
        self.unreachable = cache.connect("redis://127.0.0.1:1/0")
        self.pipelines = 0

    def pipeline(self, **options: Any) -> Any:
        self.pipelines += 1
        return self.unreachable.pipeline(**options)


async def test_series_parts_leave_a_failing_redis_alone_for_a_while() -> None:
    redis = CountedRedis()
    now = [1000.0]
    parts = SeriesParts(clock=lambda: now[0])

    for sop in ("1", "2"):  # the first fails: the indexing goes on
        await parts.keep(redis, [(_event(sop), b"{}")])  # type: ignore[arg-type]
    assert redis.pipelines == 1
    now[0] += SeriesParts.PAUSE_SECONDS
    await parts.keep(redis, [(_event("3"), b"{}")])  # type: ignore[arg-type]
    assert redis.pipelines == 2
    await redis.unreachable.aclose()
