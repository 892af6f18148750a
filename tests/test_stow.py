"""STOW-RS: parts spooled and stored one at a time (unit), then end to end with dicomweb-client
and httpx against the running services: statuses, failures, tenants, memory on a 1 GB body."""

import asyncio
import io
import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import orjson
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from fastapi import FastAPI
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from requests import HTTPError

from dicomflow.api.multipart import MultipartError, Part, iter_parts, multipart_stream
from dicomflow.api.routes import stow as stow_routes
from dicomflow.api.stow import StowTransaction
from dicomflow.core.settings import Settings
from dicomflow.core.storage import LocalStorage
from dicomflow.ingest.publisher import EventPublisher
from dicomflow.ingest.store import InstanceStore, Origin
from tests.dicom_factory import make_ct
from tests.kafka_helpers import read_topic
from tests.services import RunningServices, async_wait_for, rss_bytes, wait_for

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
BOUNDARY = "stow-test-boundary"
STOW_TYPE = f'multipart/related; type="{DICOM}"; boundary={BOUNDARY}'
QR_FIND = "1.2.840.10008.5.1.4.1.2.2.1"  # a SOP class that is not a storage SOP class
MB = 1 << 20
Json = dict[str, Any]


# --- helpers ---------------------------------------------------------------------------------


def ct(tmp_path: Path, uid_root: str, n: int, study: str = "1", **kwargs: Any) -> Dataset:
    """A synthetic CT (as read back from its file), instance `n` of series `.2` of study `study`."""
    path = tmp_path / f"{n}.dcm"
    make_ct(
        path,
        study_uid=f"{uid_root}.{study}",
        series_uid=f"{uid_root}.{study}.2",
        sop_uid=f"{uid_root}.{study}.3.{n}",
        instance_number=n,
        **kwargs,
    )
    return pydicom.dcmread(path)


def encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def stored_path(root: Path, tenant: str, ds: Dataset) -> Path:
    return (
        root
        / tenant
        / str(ds.StudyDate)
        / ds.StudyInstanceUID
        / ds.SeriesInstanceUID
        / f"{ds.SOPInstanceUID}.dcm"
    )


def body(*parts: bytes, content_type: str = DICOM) -> bytes:
    chunks = [f"--{BOUNDARY}\r\nContent-Type: {content_type}\r\n\r\n".encode() + p for p in parts]
    return b"\r\n".join(chunks) + f"\r\n--{BOUNDARY}--\r\n".encode()


def post(url: str, data: bytes, content_type: str = STOW_TYPE) -> httpx.Response:
    return httpx.post(url, content=data, headers={"Content-Type": content_type}, timeout=60)


def values(item: Json, keyword: str) -> list[Any]:
    return item.get(f"{tag_for_keyword(keyword):08X}", {}).get("Value", [])


def failures(reply: Json) -> list[tuple[str | None, int]]:
    """(ReferencedSOPInstanceUID or None, FailureReason) of each FailedSOPSequence item."""
    return [
        ((values(i, "ReferencedSOPInstanceUID") or [None])[0], values(i, "FailureReason")[0])
        for i in values(reply, "FailedSOPSequence")
    ]


def open_files(pid: int | str, directory: Path) -> list[str]:
    """Files that process `pid` holds open in `directory` (unnamed spool files included)."""
    targets = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            targets.append(os.readlink(fd))
        except FileNotFoundError:  # closed meanwhile
            continue
    return [target for target in targets if target.startswith(f"{directory.resolve()}/")]


def spool_fds(system: RunningServices) -> list[str]:
    """Spool files the API process holds open."""
    spool = Path(system.env["DICOMFLOW_STATE_DIR"]) / "spool"
    return open_files(system.processes["api"].pid, spool)


@pytest.fixture
def client(system: RunningServices) -> DICOMwebClient:
    return DICOMwebClient(url=f"{system.api_url}/dicom-web")


# --- StowTransaction without services ---------------------------------------------------------


class RecordingPublisher:
    """Keeps the events; each is durable at once."""

    def __init__(self) -> None:
        self.events: list[bytes] = []

    def publish(self, topic: str, key: bytes, value: bytes) -> "RecordingPublisher":
        self.events.append(value)
        return self

    def wait(self) -> None:
        pass


def local_store(
    tmp_path: Path, publisher: RecordingPublisher | None = None, **settings: Any
) -> tuple[Settings, InstanceStore]:
    """Settings on `tmp_path` (1 MB parts at most) and an InstanceStore without Kafka."""
    config = Settings(
        state_dir=tmp_path / "state",
        storage_root=tmp_path / "dicom",
        **{"stow_max_part_bytes": MB, **settings},
    )
    config.stow_spool_dir.mkdir(parents=True)
    events = cast(EventPublisher, publisher or RecordingPublisher())
    return config, InstanceStore(config, LocalStorage(config.storage_dir), events)


def transaction(
    tmp_path: Path, study_uid: str | None = None, publisher: RecordingPublisher | None = None
) -> StowTransaction:
    settings, store = local_store(tmp_path, publisher)
    return StowTransaction(store, Origin("default", via="stow"), settings, study_uid)


async def chunks(parts: list[Part], size: int = 7000) -> AsyncIterator[bytes]:
    """The multipart body of `parts` in small chunks, so that parts span many `feed`s."""
    async for block in multipart_stream(parts, BOUNDARY):
        for offset in range(0, len(block), size):
            yield block[offset : offset + size]


async def test_parts_are_spooled_then_stored_or_failed(tmp_path: Path, uid_root: str) -> None:
    ok = ct(tmp_path, uid_root, 1)
    headless = ct(tmp_path, uid_root, 2)  # written without preamble, as dicomweb-client does
    headless.preamble = None
    headless_bytes = io.BytesIO()
    pydicom.dcmwrite(headless_bytes, headless)
    assert headless_bytes.getvalue()[:2] == b"\x02\x00"
    other_study = ct(tmp_path, uid_root, 3, study="9")
    not_storage = ct(tmp_path, uid_root, 4)
    not_storage.SOPClassUID = not_storage.file_meta.MediaStorageSOPClassUID = QR_FIND
    big = ct(tmp_path, uid_root, 5, size=800)  # 1.28 MB of pixel data: over the 1 MB limit
    parts = [
        Part(DICOM, encode(ok)),
        Part(DICOM, headless_bytes.getvalue()),
        Part(DICOM, encode(other_study)),
        Part(DICOM, encode(not_storage)),
        Part(DICOM, encode(big)),
        Part("application/octet-stream", b"\0" * 1000),
        Part(DICOM, b"not DICOM at all" * 100),
    ]
    publisher = RecordingPublisher()
    stow = transaction(tmp_path, study_uid=f"{uid_root}.1", publisher=publisher)

    assert await iter_parts(chunks(parts), BOUNDARY, stow.open_part) == len(parts)

    outcomes = [(o.sop_instance_uid, o.failure) for o in stow.outcomes]
    assert outcomes == [
        (ok.SOPInstanceUID, None),
        (headless.SOPInstanceUID, None),
        (other_study.SOPInstanceUID, 0xA900),
        (not_storage.SOPInstanceUID, 0x0122),
        (None, 0xA700),
        (None, 0xC000),
        (None, 0xC000),
    ]
    root = tmp_path / "dicom"
    assert stored_path(root, "default", ok).read_bytes() == encode(ok)
    assert pydicom.dcmread(stored_path(root, "default", headless)).SOPInstanceUID == (
        headless.SOPInstanceUID
    )
    assert sorted(p.name for p in root.rglob("*") if p.is_file()) == sorted(
        f"{ds.SOPInstanceUID}.dcm" for ds in (ok, headless)
    )
    assert [orjson.loads(e)["sop_uid"] for e in publisher.events] == [
        ok.SOPInstanceUID,
        headless.SOPInstanceUID,
    ]
    assert list((tmp_path / "state" / "spool").iterdir()) == []
    assert open_files("self", tmp_path / "state" / "spool") == []


async def test_a_body_that_breaks_off_leaves_nothing(tmp_path: Path, uid_root: str) -> None:
    first, second = (encode(ct(tmp_path, uid_root, n)) for n in (1, 2))
    stow = transaction(tmp_path)
    whole = b"".join([block async for block in chunks([Part(DICOM, first), Part(DICOM, second)])])

    async def broken() -> AsyncIterator[bytes]:
        yield whole[: len(first) + 4000]

    with pytest.raises(MultipartError):
        await iter_parts(broken(), BOUNDARY, stow.open_part)
    assert [o.failure for o in stow.outcomes] == [None]
    assert len([p for p in (tmp_path / "dicom").rglob("*") if p.is_file()]) == 1
    assert open_files("self", tmp_path / "state" / "spool") == []


async def test_body_over_the_limit_gives_413_or_a_failed_item(
    tmp_path: Path, uid_root: str
) -> None:
    settings, store = local_store(tmp_path, stow_max_body_bytes=3 * MB, stow_max_part_bytes=8 * MB)
    app = FastAPI()
    app.state.api = SimpleNamespace(settings=settings, instances=store)
    app.include_router(stow_routes.router, prefix="/dicom-web")
    first, second, third = (encode(ct(tmp_path, uid_root, n, size=800)) for n in (1, 2, 3))
    headers = {"Content-Type": STOW_TYPE}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        declared = await http.post(
            "/dicom-web/studies", content=body(b"x" * 4 * MB), headers=headers
        )
        streamed = await http.post(
            "/dicom-web/studies",
            content=chunks([Part(DICOM, first + bytes(3 * MB))]),
            headers=headers,
        )
        cut_off = await http.post(
            "/dicom-web/studies",
            content=chunks([Part(DICOM, data) for data in (first, second, third)]),
            headers=headers,
        )
    assert declared.status_code == 413
    assert (streamed.status_code, streamed.json()["detail"]) == (
        413,
        f"the request body is larger than {3 * MB} bytes",
    )
    assert cut_off.status_code == 202
    reply = cut_off.json()
    assert len(values(reply, "ReferencedSOPSequence")) == 2
    assert failures(reply) == [(None, 0xA700)]
    assert open_files("self", settings.stow_spool_dir) == []


# --- end to end --------------------------------------------------------------------------------

e2e = pytest.mark.e2e
INVALID_UIDS_ON_PURPOSE = pytest.mark.filterwarnings("ignore:Invalid value for VR UI")


@e2e
def test_store_instances_stores_publishes_and_serves(
    system: RunningServices, stack: Settings, client: DICOMwebClient, tmp_path: Path, uid_root: str
) -> None:
    datasets = [ct(tmp_path, uid_root, n) for n in (1, 2)]

    reply = client.store_instances(datasets)

    assert "FailedSOPSequence" not in reply
    study_url = f"{system.api_url}/dicom-web/studies/{uid_root}.1"
    assert reply.RetrieveURL == study_url
    assert [
        (i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID, i.RetrieveURL)
        for i in reply.ReferencedSOPSequence
    ] == [
        (
            ds.SOPClassUID,
            ds.SOPInstanceUID,
            f"{study_url}/series/{uid_root}.1.2/instances/{ds.SOPInstanceUID}",
        )
        for ds in datasets
    ]
    for ds in datasets:
        assert stored_path(system.storage_root, "default", ds).read_bytes() == encode(ds)
    events = asyncio.run(
        read_topic(stack, "storage_queue", lambda v: v["study_uid"] == f"{uid_root}.1", 2)
    )
    assert sorted(v["sop_uid"] for _, _, v in events) == [ds.SOPInstanceUID for ds in datasets]
    assert {v["source_ip"] for _, _, v in events} == {"127.0.0.1"}
    found = wait_for(
        lambda: client.search_for_instances(study_instance_uid=f"{uid_root}.1"), 30, 0.2, "QIDO"
    )
    assert sorted(values(r, "SOPInstanceUID")[0] for r in found) == [
        ds.SOPInstanceUID for ds in datasets
    ]
    assert client.retrieve_instance(
        f"{uid_root}.1", f"{uid_root}.1.2", datasets[0].SOPInstanceUID
    ).PatientName == str(datasets[0].PatientName)


@e2e
def test_reply_is_dicom_json_with_exactly_that_content_type(
    system: RunningServices, tmp_path: Path, uid_root: str
) -> None:
    ds = ct(tmp_path, uid_root, 1)
    response = post(f"{system.api_url}/dicom-web/studies", body(encode(ds)))
    assert response.status_code == 200
    assert response.headers["content-type"] == DICOM_JSON
    reply = response.json()
    assert reply["00081190"]["vr"] == "UR"
    (item,) = values(reply, "ReferencedSOPSequence")
    assert values(item, "ReferencedSOPInstanceUID") == [ds.SOPInstanceUID]


@e2e
@INVALID_UIDS_ON_PURPOSE
def test_some_invalid_parts_give_202_and_only_valid_ones_are_stored(
    system: RunningServices, client: DICOMwebClient, tmp_path: Path, uid_root: str
) -> None:
    good = ct(tmp_path, uid_root, 1)
    bad_series = ct(tmp_path, uid_root, 2)
    bad_series.SeriesInstanceUID = "1.2/3"

    reply = client.store_instances([good, bad_series])  # 202: dicomweb-client returns the reply

    assert [i.ReferencedSOPInstanceUID for i in reply.ReferencedSOPSequence] == [
        good.SOPInstanceUID
    ]
    (failed,) = reply.FailedSOPSequence
    assert (failed.ReferencedSOPInstanceUID, failed.FailureReason) == (
        bad_series.SOPInstanceUID,
        0xC000,
    )
    assert stored_path(system.storage_root, "default", good).is_file()
    assert not list(system.storage_root.rglob(f"{bad_series.SOPInstanceUID}.dcm"))

    other = ct(tmp_path, uid_root, 3)
    response = post(f"{system.api_url}/dicom-web/studies", body(encode(other), b"\0garbage" * 50))
    assert response.status_code == 202
    assert failures(response.json()) == [(None, 0xC000)]
    assert stored_path(system.storage_root, "default", other).is_file()


@e2e
@INVALID_UIDS_ON_PURPOSE
def test_no_part_stored_gives_409(
    system: RunningServices, client: DICOMwebClient, tmp_path: Path, uid_root: str
) -> None:
    bad = ct(tmp_path, uid_root, 1)
    bad.SOPInstanceUID = bad.file_meta.MediaStorageSOPInstanceUID = "1.2.03"
    not_storage = ct(tmp_path, uid_root, 2)
    not_storage.SOPClassUID = not_storage.file_meta.MediaStorageSOPClassUID = QR_FIND

    with pytest.raises(HTTPError) as raised:
        client.store_instances([bad, not_storage])

    response = raised.value.response
    assert response.status_code == 409
    assert response.headers["content-type"] == DICOM_JSON
    assert failures(response.json()) == [(None, 0xC000), (not_storage.SOPInstanceUID, 0x0122)]
    assert values(response.json(), "RetrieveURL") == []
    assert not (system.storage_root / "default" / "20240102" / f"{uid_root}.1").exists()


@e2e
@pytest.mark.parametrize(
    ("content_type", "status", "reason"),
    [
        (f'multipart/related; type="application/dicom+json"; boundary={BOUNDARY}', 415, "+json"),
        (f"multipart/related; type=application/dicom+xml; boundary={BOUNDARY}", 415, "+xml"),
        ("application/dicom", 415, "multipart/related"),
        (f'multipart/related; type="{DICOM}"', 400, "boundary"),
    ],
)
def test_unsupported_requests(
    system: RunningServices,
    tmp_path: Path,
    uid_root: str,
    content_type: str,
    status: int,
    reason: str,
) -> None:
    ds = ct(tmp_path, uid_root, 1)
    response = post(f"{system.api_url}/dicom-web/studies", body(encode(ds)), content_type)
    assert response.status_code == status
    assert reason in response.json()["detail"]
    assert not stored_path(system.storage_root, "default", ds).exists()


@e2e
def test_malformed_or_empty_body_gives_400(system: RunningServices) -> None:
    url = f"{system.api_url}/dicom-web/studies"
    assert post(url, body(b"abc")[:-10]).status_code == 400
    assert post(url, f"--{BOUNDARY}--\r\n".encode()).status_code == 400


@e2e
def test_instances_of_another_study_fail_with_a900(
    system: RunningServices, client: DICOMwebClient, tmp_path: Path, uid_root: str
) -> None:
    mine = ct(tmp_path, uid_root, 1)
    other = ct(tmp_path, uid_root, 2, study="7")

    reply = client.store_instances([mine, other], study_instance_uid=f"{uid_root}.1")

    assert [i.ReferencedSOPInstanceUID for i in reply.ReferencedSOPSequence] == [
        mine.SOPInstanceUID
    ]
    assert [(i.ReferencedSOPInstanceUID, i.FailureReason) for i in reply.FailedSOPSequence] == [
        (other.SOPInstanceUID, 0xA900)
    ]
    assert not stored_path(system.storage_root, "default", other).exists()
    with pytest.raises(HTTPError) as raised:
        client.store_instances([other], study_instance_uid=f"{uid_root}.1")
    assert raised.value.response.status_code == 409


@e2e
def test_tenant_path_stores_under_that_tenant_only(
    system: RunningServices, client: DICOMwebClient, tmp_path: Path, uid_root: str
) -> None:
    ds = ct(tmp_path, uid_root, 1)
    tenant_b = DICOMwebClient(url=f"{system.api_url}/tenants/tenant-b/dicom-web")

    reply = tenant_b.store_instances([ds])

    assert reply.RetrieveURL == f"{system.api_url}/tenants/tenant-b/dicom-web/studies/{uid_root}.1"
    assert stored_path(system.storage_root, "tenant-b", ds).is_file()
    assert not stored_path(system.storage_root, "default", ds).exists()
    study = f"{uid_root}.1"
    wait_for(lambda: tenant_b.search_for_instances(study_instance_uid=study), 30, 0.2, "QIDO")
    assert client.search_for_instances(study_instance_uid=study) == []
    metadata = httpx.get(f"{system.api_url}/dicom-web/studies/{study}/metadata")
    assert metadata.status_code == 404


@e2e
def test_client_going_away_leaves_nothing(
    system: RunningServices, tmp_path: Path, uid_root: str
) -> None:
    ds = ct(tmp_path, uid_root, 1, size=1024)
    data = body(encode(ds))
    head = (
        f"POST /dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: {STOW_TYPE}\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode()
    port = int(system.env["DICOMFLOW_API_PORT"])
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(head + data[: len(data) // 2])
        wait_for(lambda: spool_fds(system), 10, 0.05, "the part to be spooled")

    wait_for(lambda: not spool_fds(system), 10, 0.05, "the spool file to be closed")
    assert not list(system.storage_root.rglob(f"{ds.SOPInstanceUID}.dcm"))
    assert httpx.get(f"{system.api_url}/health/live").status_code == 200


# --- memory ----------------------------------------------------------------------------------

BIG_COUNT = 200
BIG_SIZE = 1600  # 1600 x 1600 x 16 bits: 5.1 MB per instance, about 1 GB in all
SEND_CHUNK = MB


def big_parts(template: Dataset, uid_root: str, samples: list[int], pid: int) -> Iterator[Part]:
    """BIG_COUNT instances from one template with new UIDs, encoded one at a time; the API's RSS
    is sampled as each chunk is sent."""

    def chunks(n: int) -> Iterator[bytes]:
        template.SOPInstanceUID = template.file_meta.MediaStorageSOPInstanceUID = (
            f"{uid_root}.1.3.{n}"
        )
        template.InstanceNumber = n
        data = encode(template)
        for offset in range(0, len(data), SEND_CHUNK):
            samples.append(rss_bytes(pid))
            yield data[offset : offset + SEND_CHUNK]

    for n in range(1, BIG_COUNT + 1):
        yield Part(DICOM, chunks(n))


async def _count_is(url: str, expected: int) -> bool:
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    return response.status_code == 200 and len(response.json()) == expected


@e2e
async def test_a_1gb_body_and_its_1gb_series_are_streamed_in_bounded_memory(
    system: RunningServices, tmp_path: Path, uid_root: str
) -> None:
    template = ct(tmp_path, uid_root, 0, size=BIG_SIZE)
    pid = system.processes["api"].pid
    url = f"{system.api_url}/dicom-web/studies"
    samples: list[int] = []
    async with httpx.AsyncClient(timeout=300) as http:
        headers = {"Content-Type": STOW_TYPE}
        warm_up = await http.post(url, content=body(encode(template)), headers=headers)
        assert warm_up.status_code == 200
        baseline = rss_bytes(pid)
        response = await http.post(
            url,
            content=multipart_stream(big_parts(template, uid_root, samples, pid), BOUNDARY),
            headers=headers,
        )
    samples.append(rss_bytes(pid))

    assert response.status_code == 200, response.text
    assert len(values(response.json(), "ReferencedSOPSequence")) == BIG_COUNT
    series = system.storage_root / "default" / "20240102" / f"{uid_root}.1" / f"{uid_root}.1.2"
    assert len(list(series.glob(f"{uid_root}.1.3.*.dcm"))) == BIG_COUNT + 1  # with the warm-up
    growth = max(samples) - baseline
    print(f"API RSS: baseline {baseline / MB:.1f} MB, growth {growth / MB:.1f} MB")
    assert growth < 100 * MB
    assert spool_fds(system) == []

    instances = f"{url}/{uid_root}.1/series/{uid_root}.1.2/instances?limit=1000"
    await async_wait_for(
        lambda: _count_is(instances, BIG_COUNT + 1), 120, 0.5, what="the series indexed"
    )
    retrieve_samples, received = [rss_bytes(pid)], 0
    async with (
        httpx.AsyncClient(timeout=300) as http,
        http.stream(
            "GET",
            f"{url}/{uid_root}.1/series/{uid_root}.1.2",
            headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
        ) as retrieved,
    ):
        assert retrieved.status_code == 200
        async for chunk in retrieved.aiter_bytes(SEND_CHUNK):
            received += len(chunk)
            retrieve_samples.append(rss_bytes(pid))
    assert received > (BIG_COUNT + 1) * BIG_SIZE * BIG_SIZE * 2
    growth = max(retrieve_samples) - baseline
    print(f"API RSS while retrieving {received / MB:.0f} MB: growth {growth / MB:.1f} MB")
    assert growth < 100 * MB
