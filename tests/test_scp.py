"""The Storage SCP against dcmtk's echoscu/storescu (and pynetdicom where dcmtk cannot)."""

import asyncio
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    MRImageStorage,
    RLELossless,
)
from pynetdicom import AE, AllStoragePresentationContexts
from pynetdicom import _config as pynetdicom_config
from pynetdicom.sop_class import CTImageStorage

from dicomflow.core.identifiers import is_valid_uid
from dicomflow.core.settings import Settings
from dicomflow.core.storage import study_date_folder
from dicomflow.stack.services import KafkaService
from tests.dicom_factory import make_ct
from tests.kafka_helpers import read_topic
from tests.part10 import dataset_bytes
from tests.services import SUCCESS, RunningServices, echoscu, storescu, wait_for

pytestmark = pytest.mark.e2e

STORAGE_CLASSES = {context.abstract_syntax for context in AllStoragePresentationContexts}
# storescu flags that propose a file's own transfer syntax first, so dcmtk sends it as stored.
DCMTK_PROPOSALS = {
    ImplicitVRLittleEndian: ["-xi"],
    ExplicitVRLittleEndian: ["-xe"],
    DeflatedExplicitVRLittleEndian: ["-xd"],
    JPEGBaseline8Bit: ["-xy"],
    JPEGExtended12Bit: ["-xx"],
    JPEGLosslessSV1: ["-xs"],
    JPEG2000Lossless: ["-xv"],
    JPEG2000: ["-xw"],
    JPEGLSLossless: ["-xt"],
    JPEGLSNearLossless: ["-xu"],
    RLELossless: ["-xr"],
}
PYDICOM_TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _is_storage_instance(path: Path) -> pydicom.Dataset | None:
    """The header of a Part-10 file that a modality could send, else None."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(path)
    except Exception:
        return None
    if any("but found" in str(w.message) for w in caught):
        return None  # a VR encoding other than its transfer syntax's: no SCU can send it as is
    if "TransferSyntaxUID" not in ds.file_meta or ds.get("SOPClassUID") not in STORAGE_CLASSES:
        return None
    return ds


def _valid(path: Path, ds: pydicom.Dataset) -> bool:
    """Valid identifying UIDs that match the file meta (what an SCU sends in the request),
    and no element cut short (read in full, values included)."""
    uids_valid = all(
        is_valid_uid(ds.get(k)) for k in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
    )
    full = pydicom.dcmread(path)
    _, last = max(full.items(), key=lambda item: item[0])
    truncated = (
        isinstance(last, RawDataElement)
        and last.length != 0xFFFFFFFF
        and len(last.value or b"") < last.length
    )
    matches_meta = (
        ds.file_meta.get("MediaStorageSOPClassUID") == ds.SOPClassUID
        and ds.file_meta.get("MediaStorageSOPInstanceUID") == ds.SOPInstanceUID
    )
    return uids_valid and matches_meta and not truncated


def _stored_path(root: Path, tenant: str, ds: pydicom.Dataset) -> Path:
    return (
        root
        / tenant
        / study_date_folder(ds.get("StudyDate"))
        / ds.StudyInstanceUID
        / ds.SeriesInstanceUID
        / f"{ds.SOPInstanceUID}.dcm"
    )


def _all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def _comparable(ds: pydicom.Dataset) -> pydicom.Dataset:
    """The data set less group lengths and trailing padding, which senders may change."""
    for tag in [e.tag for e in ds if e.tag.element == 0 or e.tag == 0xFFFCFFFC]:
        del ds[tag]
    return ds


def _send_with_pynetdicom(port: int, path: Path, sop_class: str) -> pydicom.Dataset:
    """Send a file's data set bytes unchanged, in the file's own transfer syntax."""
    pynetdicom_config.STORE_SEND_CHUNKED_DATASET = True
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(sop_class, [ds.file_meta.TransferSyntaxUID])
    assoc = ae.associate("127.0.0.1", port, ae_title="DICOMFLOW")
    assert assoc.is_established
    try:
        return assoc.send_c_store(path)
    finally:
        assoc.release()


def test_echo(system: RunningServices) -> None:
    assert echoscu(system.scp_port).returncode == 0


def test_unknown_called_ae_is_rejected(system: RunningServices) -> None:
    result = echoscu(system.scp_port, called_ae="NOBODY")
    assert result.returncode != 0
    assert "Called AE Title Not Recognized" in (result.stdout + result.stderr)


def test_called_ae_selects_tenant(system: RunningServices, tmp_path: Path, uid_root: str) -> None:
    ds = make_ct(tmp_path / "b.dcm", study_uid=f"{uid_root}.1", series_uid=f"{uid_root}.2")
    result = storescu(system.scp_port, [tmp_path / "b.dcm"], called_ae="TENANT_B")
    assert SUCCESS in result.stdout + result.stderr
    assert _stored_path(system.storage_root, "tenant-b", ds).is_file()
    assert not _stored_path(system.storage_root, "default", ds).exists()


def test_pydicom_test_files_stored_byte_for_byte(system: RunningServices, stack: Settings) -> None:
    valid, invalid = [], []
    for path in sorted(PYDICOM_TEST_FILES.glob("*.dcm")):
        ds = _is_storage_instance(path)
        if ds is not None:
            (valid if _valid(path, ds) else invalid).append((path, ds))
    assert len(valid) >= 40, "pydicom's shipped test files should give many storage instances"

    unsendable_by_dcmtk, repaired_by_dcmtk = [], []
    for path, ds in valid:
        stored = _stored_path(system.storage_root, "default", ds)
        syntax = ds.file_meta.TransferSyntaxUID
        result = storescu(system.scp_port, [path], extra=DCMTK_PROPOSALS.get(syntax, []))
        log = result.stdout + result.stderr
        if "Received Store Response" not in log:
            unsendable_by_dcmtk.append(path.name)
        elif "W: Dcm" in log:
            # dcmtk repaired a malformed element on reading (e.g. odd length): it sent that
            assert SUCCESS in log, f"{path.name}: {log[-800:]}"
            repaired_by_dcmtk.append(path.name)
        else:
            assert SUCCESS in log, f"{path.name}: {log[-800:]}"
            # dcmtk may re-encode what it sends (sequence lengths, group lengths, padding)
            assert _comparable(pydicom.dcmread(stored)) == _comparable(ds), path.name
        # pynetdicom sends the file's bytes as they are: they must be stored unchanged
        assert _send_with_pynetdicom(system.scp_port, path, ds.SOPClassUID).Status == 0x0000
        assert dataset_bytes(stored) == dataset_bytes(path), path.name
        assert pydicom.dcmread(stored).file_meta.TransferSyntaxUID == syntax
    compared_after_dcmtk = len(valid) - len(unsendable_by_dcmtk) - len(repaired_by_dcmtk)
    assert compared_after_dcmtk >= 40, (unsendable_by_dcmtk, repaired_by_dcmtk)

    assert invalid, "pydicom ships a truncated file (MR_truncated.dcm)"
    for path, header in invalid:
        before = _all_files(system.storage_root)
        sop_class = header.file_meta.MediaStorageSOPClassUID
        assert _send_with_pynetdicom(system.scp_port, path, sop_class).Status in (0xA900, 0xC000)
        assert _all_files(system.storage_root) == before, path.name

    sop_uids = {str(ds.SOPInstanceUID) for _, ds in valid}
    events = asyncio.run(
        read_topic(stack, "storage_queue", lambda v: v["sop_uid"] in sop_uids, len(sop_uids))
    )
    assert {v["sop_uid"] for _, _, v in events} == sop_uids


@pytest.mark.parametrize(
    ("study", "series", "sop", "comment"),
    [
        ("../../x", "1.2.3", None, "Study Instance UID is not a valid DICOM UID: '../../x'"),
        ("1.2.3", "1.2/3", None, "Series Instance UID is not a valid DICOM UID: '1.2/3'"),
        ("1.2.3", "1.2.3.4", "1.2/../3", "SOP Instance UID is not a valid DICOM UID"),
        ("1.2.3", "1..2", None, "Series Instance UID is not a valid DICOM UID: '1..2'"),
        ("1.2.3", "1.02", None, "Series Instance UID is not a valid DICOM UID: '1.02'"),
        ("1.2.3", "1." + "2" * 70, None, "Series Instance UID is not a valid DICOM UID"),
    ],
)
def test_invalid_uids_rejected_and_nothing_escapes(
    system: RunningServices, tmp_path: Path, study: str, series: str, sop: str | None, comment: str
) -> None:
    path = tmp_path / "bad.dcm"
    make_ct(path, study_uid=study, series_uid=series, sop_uid=sop)
    before = _files_the_scp_could_write(system)
    result = storescu(system.scp_port, [path], extra=["-d"])
    log = result.stdout + result.stderr
    assert "0xc000: Error: Cannot understand" in log
    assert comment in log
    assert _files_the_scp_could_write(system) == before
    assert not (system.run_dir.parent / "x").exists()
    assert not (system.storage_root / "x").exists()


def _files_the_scp_could_write(system: RunningServices) -> set[Path]:
    """Every file of the running system except logs, the outbox and the metadata the worker
    writes for earlier instances (which change on their own)."""
    json_root = Path(system.env["DICOMFLOW_JSON_ROOT"])
    return {
        p
        for p in _all_files(system.run_dir)
        if p.suffix != ".log" and not p.name.startswith("outbox") and json_root not in p.parents
    }


def test_missing_series_uid_rejected(
    system: RunningServices, tmp_path: Path, uid_root: str
) -> None:
    path = tmp_path / "noseries.dcm"
    ds = make_ct(path, study_uid=f"{uid_root}.1", series_uid=f"{uid_root}.2")
    del ds.SeriesInstanceUID
    ds.save_as(path, enforce_file_format=True)
    before = _all_files(system.storage_root)
    result = storescu(system.scp_port, [path], extra=["-d"])
    log = result.stdout + result.stderr
    assert "0xc000: Error: Cannot understand" in log
    assert "Series Instance UID is not a valid DICOM UID: None" in log
    assert _all_files(system.storage_root) == before


def test_dataset_not_matching_sop_class_gets_a900(
    system: RunningServices, tmp_path: Path, uid_root: str
) -> None:
    """The file meta says CT (the context), the data set says MR: dcmtk cannot send this."""
    path = tmp_path / "mismatch.dcm"
    ds = make_ct(path, study_uid=f"{uid_root}.1", series_uid=f"{uid_root}.2")
    ds.SOPClassUID = MRImageStorage
    ds.preamble = b"\x00" * 128
    ds.save_as(path)  # as is: the file meta keeps CT
    assert pydicom.dcmread(path).file_meta.MediaStorageSOPClassUID == CTImageStorage
    status = _send_with_pynetdicom(system.scp_port, path, CTImageStorage)
    assert status.Status == 0xA900
    assert "does not match" in status.ErrorComment
    assert not _stored_path(system.storage_root, "default", ds).exists()


def test_four_concurrent_associations_lose_nothing(
    system: RunningServices, stack: Settings, tmp_path: Path, uid_root: str
) -> None:
    paths = []
    for i in range(200):
        series = f"{uid_root}.{i % 8 + 1}"
        path = tmp_path / f"{i}.dcm"
        make_ct(
            path,
            study_uid=f"{uid_root}.0",
            series_uid=series,
            sop_uid=f"{uid_root}.9.{i}",
            instance_number=i,
        )
        paths.append(path)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda chunk: storescu(system.scp_port, chunk), _chunks(paths, 4)))
    for result in results:
        assert result.stdout.count(SUCCESS) + result.stderr.count(SUCCESS) == 50
    stored = list((system.storage_root / "default" / "20240102" / f"{uid_root}.0").rglob("*.dcm"))
    assert len(stored) == 200
    events = asyncio.run(
        read_topic(stack, "storage_queue", lambda v: v["study_uid"] == f"{uid_root}.0", 200)
    )
    assert sorted(v["sop_uid"] for _, _, v in events) == sorted(
        f"{uid_root}.9.{i}" for i in range(200)
    )


def _chunks(items: list[Path], n: int) -> list[list[Path]]:
    size = len(items) // n
    return [items[i * size : (i + 1) * size] for i in range(n)]


def test_kafka_outage_goes_through_the_outbox(
    system: RunningServices, stack: Settings, tmp_path: Path, uid_root: str
) -> None:
    kafka = KafkaService(stack)
    paths = []
    for series in (1, 2):
        for i in range(10):
            path = tmp_path / f"{series}-{i}.dcm"
            make_ct(
                path,
                study_uid=f"{uid_root}.0",
                series_uid=f"{uid_root}.{series}",
                sop_uid=f"{uid_root}.{series}.{i}",
                instance_number=i,
            )
            paths.append(path)
    assert kafka.stop()
    try:
        ready = wait_for(
            lambda: (
                (r := httpx.get(f"{system.api_url}/health/ready", timeout=10)).status_code == 503
                and r
            ),
            30,
            what="readiness to report Kafka down",
        )
        assert ready.json()["failing"] == ["kafka"]
        result = storescu(system.scp_port, paths)
        assert (result.stdout + result.stderr).count(SUCCESS) == 20
        outbox = Path(system.env["DICOMFLOW_OUTBOX_PATH"])
        assert outbox.exists()
    finally:
        assert kafka.start()
    events = asyncio.run(
        read_topic(
            stack,
            "storage_queue",
            lambda v: v["study_uid"] == f"{uid_root}.0",
            20,
            timeout=60,
        )
    )
    assert len(events) == 20, "every event exactly once"
    for series in (1, 2):
        in_series = [
            v["sop_uid"] for _, _, v in events if v["series_uid"] == f"{uid_root}.{series}"
        ]
        assert in_series == [f"{uid_root}.{series}.{i}" for i in range(10)], "in order per series"
        partitions = {p for p, _, v in events if v["series_uid"] == f"{uid_root}.{series}"}
        assert len(partitions) == 1
    wait_for(
        lambda: httpx.get(f"{system.api_url}/health/ready", timeout=10).status_code == 200,
        60,
        what="readiness after Kafka is back",
    )


def test_unwritable_storage_root_gets_a700(
    system: RunningServices, tmp_path: Path, uid_root: str
) -> None:
    not_a_directory = tmp_path / "root-is-a-file"
    not_a_directory.write_text("x")
    env = {
        **system.env,
        "DICOMFLOW_STORAGE_ROOT": str(not_a_directory),
        "DICOMFLOW_OUTBOX_PATH": str(tmp_path / "outbox.db"),
        "DICOMFLOW_SCP_PORT": str(system.scp_port + 7),
        "DICOMFLOW_SCP_METRICS_PORT": "0",
    }
    broken = RunningServices(env, tmp_path)
    broken.start("scp")
    try:
        path = tmp_path / "a.dcm"
        make_ct(path, study_uid=f"{uid_root}.1", series_uid=f"{uid_root}.2")
        result = storescu(broken.scp_port, [path], extra=["-d"])
    finally:
        broken.stop()
    log = result.stdout + result.stderr
    assert "DIMSE Status                  : 0xa700" in log, log
    assert "cannot write the file" in log
    assert not_a_directory.read_text() == "x"
    assert not any(p.name.endswith(".tmp") for p in tmp_path.rglob("*"))


def test_no_temporary_files_left(system: RunningServices) -> None:
    assert not [p for p in system.storage_root.rglob("*.tmp")]
