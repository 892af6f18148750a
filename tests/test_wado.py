"""WADO-RS retrieval end to end: storescu -> SCP -> index -> dicomweb-client and httpx."""

import asyncio
import io
from collections.abc import Callable, Coroutine, Sequence
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import TypeVar

import asyncpg
import httpx
import numpy as np
import orjson
import pydicom
import pytest
import redis.asyncio as aioredis
import requests
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import ExplicitVRLittleEndian

from dicomflow.api import metadata, queries
from dicomflow.api.drafts import Drafts
from dicomflow.api.index_changes import SERIES_CHANNEL, IndexChanges
from dicomflow.api.metadata import (
    build_drafts_on_change,
    draft_series_metadata,
    series_metadata,
)
from dicomflow.api.multipart import MultipartReader, PartStart, parse_content_type
from dicomflow.api.notified_cache import NotifiedCache
from dicomflow.api.single_flight import SingleFlight
from dicomflow.core.cache import series_parts_key
from dicomflow.core.db import create_pool
from dicomflow.core.series_metadata import (
    instance_objects,
    part_field,
    parts_file_key,
    series_parts_in,
)
from dicomflow.core.settings import Settings
from dicomflow.core.storage import LocalStorage, study_date_folder
from tests.dicom_factory import make_cine, make_ct
from tests.metadata_checks import assert_same_json, expected_json
from tests.page_cache import evict, resident
from tests.services import RunningServices, async_wait_for, rss_bytes, storescu, wait_for

pytestmark = pytest.mark.e2e
T = TypeVar("T")

RLE = "1.2.840.10008.1.2.5"
# storescu proposes uncompressed syntaxes only, unless told which compressed one to add.
STORESCU_PROPOSE = {
    RLE: "-xr",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
}


def client(system: RunningServices, tenant: str | None = None) -> DICOMwebClient:
    base = f"/tenants/{tenant}/dicom-web" if tenant else "/dicom-web"
    return DICOMwebClient(url=f"{system.api_url}{base}")


def instance_url(system: RunningServices, ds: Dataset, tenant: str | None = None) -> str:
    base = f"/tenants/{tenant}/dicom-web" if tenant else "/dicom-web"
    return (
        f"{system.api_url}{base}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )


def store(
    system: RunningServices, paths: Sequence[Path], called_ae: str = "DICOMFLOW"
) -> list[Dataset]:
    """Send `paths` in their own syntaxes, wait until each is indexed; the data sets as sent."""
    sent = [pydicom.dcmread(path) for path in paths]
    syntaxes = {ds.file_meta.TransferSyntaxUID for ds in sent}
    propose = [STORESCU_PROPOSE[s] for s in syntaxes if s in STORESCU_PROPOSE]
    result = storescu(system.scp_port, paths, called_ae, extra=["-R", *propose])
    assert result.returncode == 0, result.stdout + result.stderr
    tenant = "tenant-b" if called_ae == "TENANT_B" else None
    for ds in sent:
        url = instance_url(system, ds, tenant) + "/metadata"
        wait_for(lambda url=url: httpx.get(url).status_code == 200, 30, 0.1, f"indexing {url}")
    return sent


def cts(tmp_path: Path, uid_root: str, count: int, series: int = 1, size: int = 64) -> list[Path]:
    """`count` CT instances in one study, spread over `series` series."""
    paths = []
    for n in range(1, count + 1):
        path = tmp_path / f"ct{n}.dcm"
        make_ct(
            path,
            study_uid=uid_root,
            series_uid=f"{uid_root}.{n % series + 1}",
            sop_uid=f"{uid_root}.9.{n}",
            instance_number=n,
            size=size,
        )
        paths.append(path)
    return paths


def shipped(name: str, tmp_path: Path, uid_root: str) -> Path:
    """A pydicom test file under this test's UIDs (pixel data kept as stored)."""
    source = get_testdata_file(name, download=False)
    assert source, f"{name} is not shipped with pydicom"
    ds = pydicom.dcmread(source)
    ds.StudyInstanceUID = uid_root
    ds.SeriesInstanceUID = f"{uid_root}.1"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{uid_root}.2"
    path = tmp_path / name
    ds.save_as(path, enforce_file_format=True)
    return path


def stored_path(system: RunningServices, ds: Dataset, tenant: str = "default") -> Path:
    folder = study_date_folder(ds.get("StudyDate"))
    series = f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}"
    return system.storage_root / tenant / folder / series / f"{ds.SOPInstanceUID}.dcm"


def by_sop(datasets: Sequence[Dataset]) -> dict[str, Dataset]:
    return {ds.SOPInstanceUID: ds for ds in datasets}


# --- instances -------------------------------------------------------------------------------


def test_study_series_and_instance_equal_what_was_sent(
    system: RunningServices, tmp_path: Path, uid_root: str
) -> None:
    sent = by_sop(store(system, cts(tmp_path, uid_root, 4, series=2)))
    dicomweb = client(system)

    study = by_sop(dicomweb.retrieve_study(uid_root))
    assert study.keys() == sent.keys()
    for sop, ds in study.items():
        assert ds == sent[sop] and ds.PixelData == sent[sop].PixelData
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian

    series_uid = f"{uid_root}.1"
    series = by_sop(dicomweb.retrieve_series(uid_root, series_uid))
    assert series.keys() == {s for s, ds in sent.items() if ds.SeriesInstanceUID == series_uid}

    one = next(iter(sent.values()))
    got = dicomweb.retrieve_instance(uid_root, one.SeriesInstanceUID, one.SOPInstanceUID)
    assert got == one and got.PixelData == one.PixelData


def test_series_and_study_metadata_equal_the_stored_files(
    system: RunningServices, stack: Settings, tmp_path: Path, uid_root: str
) -> None:
    """dicomweb-client's metadata retrievals, while the series are not stable yet (built on
    demand) and once their metadata is precomputed."""
    sent = store(system, cts(tmp_path, uid_root, 4, series=2))
    stored = {ds.SOPInstanceUID: expected_json(stored_path(system, ds)) for ds in sent}
    in_series = {ds.SOPInstanceUID for ds in sent if ds.SeriesInstanceUID == f"{uid_root}.1"}
    dicomweb = client(system)

    def assert_metadata(objects: list[dict], sops: set[str]) -> None:
        by_uid = {obj["00080018"]["Value"][0]: obj for obj in objects}
        assert by_uid.keys() == sops
        for sop, obj in by_uid.items():
            assert_same_json(obj, stored[sop])

    for _ in ("not stable yet", "precomputed"):
        assert_metadata(dicomweb.retrieve_series_metadata(uid_root, f"{uid_root}.1"), in_series)
        assert_metadata(dicomweb.retrieve_study_metadata(uid_root), set(stored))
        wait_for(lambda: precomputed_series(stack, uid_root) == 2, 60, 0.2, "metadata precomputed")


def precomputed_series(settings: Settings, study_uid: str) -> int:
    async def count() -> int:
        connection = await asyncpg.connect(settings.postgres_url)
        try:
            return await connection.fetchval(
                "SELECT count(*) FROM dicom_json_meta WHERE tenant_id = 'default'"
                " AND study_uid = $1 AND json_status = 'ok'",
                study_uid,
            )
        finally:
            await connection.close()

    return asyncio.run(count())


def test_instances_not_in_the_page_cache_are_read_from_disk_alike(
    system: RunningServices, tmp_path: Path, uid_root: str
) -> None:
    """The API reads a file in its event loop only when the page cache holds all of it."""
    sent = by_sop(store(system, cts(tmp_path, uid_root, 3)))
    for ds in sent.values():
        evict(stored_path(system, ds))

    one = next(iter(sent.values()))
    got = client(system).retrieve_instance(uid_root, one.SeriesInstanceUID, one.SOPInstanceUID)
    series = by_sop(client(system).retrieve_series(uid_root, f"{uid_root}.1"))

    assert got == one and got.PixelData == one.PixelData
    assert series.keys() == sent.keys()
    assert all(ds.PixelData == sent[sop].PixelData for sop, ds in series.items())


def test_a_series_metadata_request_reads_the_series_files_ahead(
    system: RunningServices, stack: Settings, tmp_path: Path, uid_root: str
) -> None:
    """A viewer asks for every instance's frames after a series' metadata: answering it starts
    reading the series' files into the page cache."""
    sent = store(system, cts(tmp_path, uid_root, 3, size=256))
    wait_for(lambda: precomputed_series(stack, uid_root), 60, 0.2, "metadata precomputed")
    files = [stored_path(system, ds) for ds in sent]
    for path in files:
        evict(path)
    assert not any(resident(path) for path in files)

    metadata = client(system).retrieve_series_metadata(uid_root, f"{uid_root}.1")

    assert len(metadata) == len(sent)
    wait_for(lambda: all(resident(path) for path in files), 10, 0.02, "the series' files cached")


def test_dicom_responses_are_multipart_and_never_gzipped(
    system: RunningServices, tmp_path: Path, uid_root: str
) -> None:
    (ds,) = store(system, cts(tmp_path, uid_root, 1))
    response = httpx.get(
        instance_url(system, ds),
        headers={
            "Accept": 'multipart/related; type="application/dicom"',
            "Accept-Encoding": "gzip",
        },
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(
        'multipart/related; type="application/dicom"; boundary='
    )
    assert "content-encoding" not in response.headers
    assert f"transfer-syntax={ExplicitVRLittleEndian}".encode() in response.content[:300]


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("MR_small_RLE.dcm", RLE),
        ("JPEG2000.dcm", "1.2.840.10008.1.2.4.91"),
        ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80"),
        ("SC_rgb_jpeg_gdcm.dcm", "1.2.840.10008.1.2.4.70"),
        ("MR_small_implicit.dcm", "1.2.840.10008.1.2"),
    ],
)
def test_compressed_instances_are_transcoded_by_default_and_kept_with_star(
    system: RunningServices, tmp_path: Path, uid_root: str, name: str, stored: str
) -> None:
    (sent,) = store(system, [shipped(name, tmp_path, uid_root)])
    dicomweb = client(system)
    (default,) = dicomweb.retrieve_series(uid_root, sent.SeriesInstanceUID)
    assert default.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert default.SOPInstanceUID == sent.SOPInstanceUID
    assert np.array_equal(default.pixel_array, sent.pixel_array)

    as_stored = dicomweb.retrieve_instance(uid_root, sent.SeriesInstanceUID, sent.SOPInstanceUID)
    expected = ExplicitVRLittleEndian if stored == "1.2.840.10008.1.2" else stored
    assert as_stored.file_meta.TransferSyntaxUID == expected  # Implicit VR is not for the web
    assert as_stored == pydicom.dcmread(stored_path(system, sent))  # dcmtk drops padding
    assert as_stored.PixelData == sent.PixelData


def test_a_resent_instance_is_retrieved_as_it_is_stored_now(
    system: RunningServices, tmp_path: Path, uid_root: str
) -> None:
    """Re-sent in another transfer syntax: once indexed, the instance's part names that syntax,
    not the one of the row the API kept in memory before (PostgreSQL notifies the change)."""
    (sent,) = store(system, [shipped("SC_rgb_rle_2frame.dcm", tmp_path, uid_root)])
    url = instance_url(system, sent)
    accept = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}

    def part_syntax() -> str:
        response = httpx.get(url, headers=accept)
        assert response.status_code == 200
        boundary = parse_content_type(response.headers["content-type"])[1]["boundary"]
        events = MultipartReader(boundary).feed(response.content)
        (start,) = (event for event in events if isinstance(event, PartStart))
        return parse_content_type(start.headers["content-type"])[1]["transfer-syntax"]

    assert [part_syntax(), part_syntax()] == [RLE, RLE]

    sent.decompress(generate_instance_uid=False)
    decompressed = tmp_path / "decompressed.dcm"
    sent.save_as(decompressed, enforce_file_format=True)
    store(system, [decompressed])
    wait_for(lambda: part_syntax() == ExplicitVRLittleEndian, 30, 0.1, "the syntax re-sent")
    as_stored = client(system).retrieve_instance(
        uid_root, sent.SeriesInstanceUID, sent.SOPInstanceUID
    )
    assert np.array_equal(as_stored.pixel_array, sent.pixel_array)


def test_undecodable_instances_are_sent_as_stored_or_refused(
    system: RunningServices, tmp_path: Path, uid_root: str
) -> None:
    (sent,) = store(system, [shipped("JPEG-lossy.dcm", tmp_path, uid_root)])  # 12-bit JPEG
    (got,) = client(system).retrieve_series(uid_root, sent.SeriesInstanceUID)
    assert got.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.51"  # lossy: stored is ok
    assert got.PixelData == sent.PixelData
    response = httpx.get(
        instance_url(system, sent),
        headers={"Accept": f'multipart/related; type="application/dicom"; '
                 f"transfer-syntax={ExplicitVRLittleEndian}"},
    )  # fmt: skip
    assert response.status_code == 406
    assert "cannot decode" in response.text


# --- frames and bulk data --------------------------------------------------------------------


def multiframe(
    tmp_path: Path, uid_root: str, frames: int = 5, size: int = 32, first_value: int = 0
) -> Path:
    path = tmp_path / f"mf{first_value}.dcm"
    ds = make_ct(path, study_uid=uid_root, series_uid=f"{uid_root}.1", sop_uid=f"{uid_root}.2")
    values = np.arange(frames * size * size).reshape(frames, size, size) * 7 + first_value
    arr = (values % 4096).astype("<u2")
    ds.Rows = ds.Columns = size
    ds.NumberOfFrames = frames
    ds.PixelData = arr.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_frames_of_an_uncompressed_instance(
    system: RunningServices, tmp_path: Path, uid_root: str
) -> None:
    (sent,) = store(system, [multiframe(tmp_path, uid_root)])
    frames = client(system).retrieve_instance_frames(
        uid_root, sent.SeriesInstanceUID, sent.SOPInstanceUID, frame_numbers=[1, 3]
    )
    assert frames == [sent.pixel_array[0].tobytes(), sent.pixel_array[2].tobytes()]

    for frame_list, status in (("6", 404), ("0", 400), ("1,x", 400)):
        response = httpx.get(f"{instance_url(system, sent)}/frames/{frame_list}")
        assert response.status_code == status, frame_list


def test_frames_follow_a_replaced_instance(
    system: RunningServices, tmp_path: Path, uid_root: str
) -> None:
    """Frames come from the file stored now, never from the remembered layout of the file it
    replaced (same UIDs, so the same storage key; larger frames, and more of them)."""
    (first,) = store(system, [multiframe(tmp_path, uid_root, frames=3, size=64)])
    dicomweb = client(system)
    uids = (uid_root, first.SeriesInstanceUID, first.SOPInstanceUID)
    for _ in range(3):  # the first locates the frames in the file, the others remember it
        frames = dicomweb.retrieve_instance_frames(*uids, frame_numbers=[2, 3])
        assert frames == [first.pixel_array[1].tobytes(), first.pixel_array[2].tobytes()]

    replacement = multiframe(tmp_path, uid_root, frames=5, size=96, first_value=1)
    (second,) = store(system, [replacement])
    assert dicomweb.retrieve_instance_frames(*uids, frame_numbers=[2]) == [
        second.pixel_array[1].tobytes()
    ]
    frames = dicomweb.retrieve_instance_frames(*uids, frame_numbers=[5, 1])
    assert frames == [second.pixel_array[4].tobytes(), second.pixel_array[0].tobytes()]
    response = httpx.get(f"{instance_url(system, second)}/frames/6")
    assert response.status_code == 404


def test_frames_of_a_compressed_instance(
    system: RunningServices, tmp_path: Path, uid_root: str
) -> None:
    (sent,) = store(system, [shipped("SC_rgb_rle_2frame.dcm", tmp_path, uid_root)])
    dicomweb = client(system)
    uids = (uid_root, sent.SeriesInstanceUID, sent.SOPInstanceUID)
    stored = dicomweb.retrieve_instance_frames(*uids, frame_numbers=[2, 1])
    expected = list(generate_frames(sent.PixelData, number_of_frames=2))
    assert stored == [expected[1], expected[0]]

    decoded = dicomweb.retrieve_instance_frames(
        *uids, frame_numbers=[2], media_types=("application/octet-stream",)
    )
    assert decoded == [sent.pixel_array[1].tobytes()]

    response = httpx.get(f"{instance_url(system, sent)}/frames/1")
    assert response.headers["content-type"].startswith('multipart/related; type="image/dicom-rle"')


def test_frames_of_a_large_compressed_cine(
    system: RunningServices, tmp_path: Path, uid_root: str
) -> None:
    """Over 1 MiB of encapsulated frames: each frame's fragments are remembered after the first
    request and read alone; a replaced file is read afresh."""
    uids = {"study_uid": uid_root, "series_uid": f"{uid_root}.1", "sop_uid": f"{uid_root}.2"}
    first = make_cine(tmp_path / "c1.dcm", **uids, frame_size=400_000, frames=3)
    store(system, [tmp_path / "c1.dcm"])
    dicomweb = client(system)
    for _ in range(3):  # the first reads the file with pydicom, the others its fragments
        frames = dicomweb.retrieve_instance_frames(*uids.values(), frame_numbers=[3, 1])
        assert frames == [first[2], first[0]]

    second = make_cine(tmp_path / "c2.dcm", **uids, frame_size=300_000, frames=4, seed=8)
    store(system, [tmp_path / "c2.dcm"])
    for _ in range(2):
        frames = dicomweb.retrieve_instance_frames(*uids.values(), frame_numbers=[4, 2])
        assert frames == [second[3], second[1]]


def test_bulk_data_uris_of_the_metadata_resolve(
    system: RunningServices, tmp_path: Path, uid_root: str
) -> None:
    rle = shipped("SC_rgb_rle_2frame.dcm", tmp_path, uid_root + ".5")
    sent = store(system, [multiframe(tmp_path, uid_root), rle])
    dicomweb = client(system)
    for ds in sent:
        metadata = dicomweb.retrieve_instance_metadata(
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
        )
        uri = metadata["7FE00010"]["BulkDataURI"]
        assert uri.startswith(f"{system.api_url}/tenants/default/dicom-web/studies/")
        values = dicomweb.retrieve_bulkdata(uri)
        if ds.file_meta.TransferSyntaxUID == RLE:
            assert values == list(generate_frames(ds.PixelData, number_of_frames=2))
        else:
            assert values == [ds.PixelData]
    response = httpx.get(f"{instance_url(system, sent[0])}/bulkdata/00100010")
    assert response.status_code == 404


def test_metadata_is_gzipped_when_accepted_and_follows_a_changed_series(
    system: RunningServices, tmp_path: Path, uid_root: str
) -> None:
    paths = cts(tmp_path, uid_root, 3)
    store(system, paths[:2])
    url = f"{system.api_url}/dicom-web/studies/{uid_root}/series/{uid_root}.1/metadata"

    def get(encoding: str) -> httpx.Response:
        headers = {"Accept": "application/dicom+json", "Accept-Encoding": encoding}
        response = httpx.get(url, headers=headers)
        assert response.status_code == 200
        assert response.headers["vary"] == "Accept-Encoding"  # once, whoever compresses
        return response

    plain, zipped = get("identity"), get("gzip, deflate")
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.content == plain.content  # httpx decompresses
    assert zipped.num_bytes_downloaded < len(plain.content) / 3
    assert get("gzip").content == plain.content

    store(system, paths[2:])
    changed = get("gzip")
    assert changed.headers["content-encoding"] == "gzip"
    assert len(changed.json()) == 3
    assert changed.content == get("identity").content


DRAFT_TEST_DB = 9


def draft_state(
    system: RunningServices, pool: asyncpg.Pool, redis: aioredis.Redis
) -> SimpleNamespace:
    """What series metadata uses of the API's state, on the running system's stores (series
    sources read from PostgreSQL each time)."""
    background: set[asyncio.Future[None]] = set()

    def in_background(work: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(work)
        background.add(task)
        task.add_done_callback(background.discard)

    return SimpleNamespace(
        pool=pool,
        redis=redis,
        storage=LocalStorage(system.storage_root),
        json_storage=LocalStorage(Path(system.env["DICOMFLOW_JSON_ROOT"])),
        draft_builds=SingleFlight(),
        drafts=Drafts(64 * 2**20),
        in_background=in_background,
        series_sources=NotifiedCache(
            IndexChanges(""), SERIES_CHANNEL, partial(queries.metadata_source, pool), 0
        ),
    )


async def test_metadata_of_a_series_not_stable_yet_is_built_once_per_version(
    system: RunningServices,
    stack: Settings,
    tmp_path: Path,
    uid_root: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    paths = cts(tmp_path, uid_root, 3)
    store(system, paths[:2])
    series_folder = stored_path(system, pydicom.dcmread(paths[0])).parent
    pool = await create_pool(stack)
    # A database of its own: the worker drops the parts once the series is stable (2 s here).
    cache = aioredis.Redis(host="127.0.0.1", port=stack.redis_port, db=DRAFT_TEST_DB)
    state = draft_state(system, pool, cache)
    series = ("default", uid_root, f"{uid_root}.1")
    builds: list[int] = []
    asked: list[list[bytes]] = []  # the parts asked of Redis, by read

    def counted(build: Callable[..., T]) -> Callable[..., T]:
        def counting(*args: object) -> T:
            builds.append(1)
            return build(*args)

        return counting

    # A build reads the parts file in the event loop, or in a thread with the DICOM files.
    monkeypatch.setattr(metadata, "series_parts_in", counted(series_parts_in))
    monkeypatch.setattr(metadata, "instance_objects", counted(instance_objects))
    hmget = cache.hmget

    async def asking(key: str, fields: list[bytes]) -> list[bytes | None]:
        asked.append(fields)
        return await hmget(key, fields)

    monkeypatch.setattr(cache, "hmget", asking)
    parts_key = series_parts_key(*series)

    async def parts_put_back(count: int) -> None:
        async def held() -> bool:
            return await cache.hlen(parts_key) == count

        await async_wait_for(held, 10, 0.01, f"{count} parts put back")

    async def draft(*of: str) -> bytes | None:
        source = await queries.series_to_build(pool, *of)
        return await draft_series_metadata(state, *of, source)

    try:
        first = await draft(*series)
        assert first is not None and len(orjson.loads(first)) == 2
        assert (len(builds), [len(fields) for fields in asked]) == (1, [2])
        hidden = series_folder.rename(series_folder.with_name("hidden"))
        try:  # the same version again: from memory, neither Redis nor the files are read
            assert await draft(*series) == first
        finally:
            hidden.rename(series_folder)
        assert (len(builds), len(asked)) == (1, 1)
        store(system, paths[2:])
        changed = await draft(*series)
        assert changed is not None and len(orjson.loads(changed)) == 3
        assert orjson.loads(changed)[:2] == orjson.loads(first)
        source = await queries.series_to_build(pool, *series)
        new_part = part_field(source.instances[2].sop_uid, source.instances[2].received_time)
        assert (len(builds), asked[1]) == (2, [new_part])  # the others from memory
        await parts_put_back(3)  # what the builds read from the parts file
        await cache.delete(parts_key)
        state.drafts = Drafts(64 * 2**20)  # as in another API process
        together = [draft_series_metadata(state, *series, source) for _ in range(4)]
        assert await asyncio.gather(*together) == [changed] * 4
        assert (len(builds), len(asked)) == (3, 3)  # one per version, one for the four at once
        await parts_put_back(3)
        state.drafts = Drafts(64 * 2**20)
        assert await draft_series_metadata(state, *series, source) == changed
        assert len(builds) == 3  # joined from the parts put back
        assert await draft("default", uid_root, f"{uid_root}.9") is None
    finally:
        await cache.delete(parts_key)
        await cache.aclose()
        await pool.close()


async def test_a_changed_series_whose_metadata_was_asked_for_is_built_again_at_once(
    system: RunningServices, stack: Settings, tmp_path: Path, uid_root: str
) -> None:
    """A viewer polling a series being received finds each new version in memory: the API
    builds it when PostgreSQL notifies the change, if it built the series' metadata before."""
    paths = cts(tmp_path, uid_root, 3)
    store(system, paths[:2])
    pool = await create_pool(stack)
    cache = aioredis.Redis(host="127.0.0.1", port=stack.redis_port)
    state = draft_state(system, pool, cache)
    state.index_changes = IndexChanges(stack.postgres_url)
    state.series_sources = NotifiedCache(
        state.index_changes,
        SERIES_CHANNEL,
        partial(queries.metadata_source, pool),
        100,
        read_again=True,
    )
    build_drafts_on_change(state)  # type: ignore[arg-type]
    await state.index_changes.start()
    series = ("default", uid_root, f"{uid_root}.1")
    other = ("default", uid_root, f"{uid_root}.2")
    try:
        source = await queries.series_to_build(pool, *series)
        first = await draft_series_metadata(state, *series, source)
        assert first is not None and len(orjson.loads(first)) == 2
        store(system, paths[2:])

        async def new_version_built() -> bool:
            draft = state.drafts.get(series)
            return draft is not None and len(orjson.loads(draft.body)) == 3

        await async_wait_for(new_version_built, 10, 0.01, "the new version built")
        source = await queries.series_to_build(pool, *series)
        assert source is not None and state.drafts.get(series).version == source.version
        other_path = tmp_path / "other.dcm"
        make_ct(other_path, study_uid=uid_root, series_uid=other[2], sop_uid=f"{uid_root}.9.9")
        store(system, [other_path])

        async def other_indexed() -> bool:
            return await queries.series_to_build(pool, *other) is not None

        await async_wait_for(other_indexed, 10, 0.01, "the other series indexed")
        assert other not in state.drafts  # never asked for: not built
    finally:
        await state.index_changes.close()
        await cache.aclose()
        await pool.close()


async def test_metadata_of_a_series_not_stable_yet_is_joined_from_its_parts(
    system: RunningServices, stack: Settings, tmp_path: Path, uid_root: str
) -> None:
    """A build takes an instance's JSON from the series' parts in Redis when the part is of the
    instance as indexed now, else from the series' parts file, else from its DICOM file."""
    sent = store(system, cts(tmp_path, uid_root, 2))
    pool = await create_pool(stack)
    cache = aioredis.Redis(host="127.0.0.1", port=stack.redis_port, db=DRAFT_TEST_DB)
    state = draft_state(system, pool, cache)
    series = ("default", uid_root, f"{uid_root}.1")
    parts_key = series_parts_key(*series)

    async def built() -> list[dict]:
        source = await queries.series_to_build(pool, *series)
        state.drafts = Drafts(64 * 2**20)  # built again, not kept in memory
        body = await draft_series_metadata(state, *series, source)
        assert body is not None
        return orjson.loads(body)

    try:
        source = await queries.series_to_build(pool, *series)
        assert source is not None
        first, second = source.instances
        older = part_field(second.sop_uid, "2000-01-01 00:00:00.000000")
        await cache.hset(
            parts_key,
            mapping={part_field(first.sop_uid, first.received_time): b'{"part":1}', older: b"{}"},
        )
        one_part, from_file = await built()
        assert one_part == {"part": 1}
        assert_same_json(from_file, expected_json(stored_path(system, sent[1])))
        current = part_field(second.sop_uid, second.received_time)

        async def put_back() -> bool:  # what the build read from the file
            return await cache.hget(parts_key, current) is not None

        await async_wait_for(put_back, 10, 0.01, "the second part put back")
        assert orjson.loads(await cache.hget(parts_key, current)) == from_file

        await cache.hset(parts_key, current, b'{"part":2}')
        assert await built() == [{"part": 1}, {"part": 2}]

        await cache.delete(parts_key)
        (Path(system.env["DICOMFLOW_JSON_ROOT"]) / parts_file_key(first.key)).unlink()
        for made, ds in zip(await built(), sent, strict=True):  # from the DICOM files
            assert_same_json(made, expected_json(stored_path(system, ds)))
    finally:
        await cache.delete(parts_key)
        await cache.aclose()
        await pool.close()


async def test_metadata_is_built_from_the_files_when_redis_is_down(
    system: RunningServices, stack: Settings, tmp_path: Path, uid_root: str
) -> None:
    store(system, cts(tmp_path, uid_root, 2))
    pool = await create_pool(stack)
    nowhere = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    state = draft_state(system, pool, nowhere)
    try:
        series = ("default", uid_root, f"{uid_root}.1")
        for _ in range(2):
            body = await series_metadata(state, *series)  # type: ignore[arg-type]
            assert body is not None and len(orjson.loads(body)) == 2
    finally:
        await nowhere.aclose()
        await pool.close()


# --- rendered --------------------------------------------------------------------------------


def test_rendered_and_thumbnails(system: RunningServices, tmp_path: Path, uid_root: str) -> None:
    sent = store(system, cts(tmp_path, uid_root, 3, size=96))
    dicomweb = client(system)
    ds = sent[0]
    jpeg = dicomweb.retrieve_instance_rendered(
        uid_root, ds.SeriesInstanceUID, ds.SOPInstanceUID, params={"viewport": "48,24"}
    )
    image = Image.open(io.BytesIO(jpeg))
    assert (image.format, image.size) == ("JPEG", (24, 24))

    png = dicomweb.retrieve_instance_rendered(
        uid_root, ds.SeriesInstanceUID, ds.SOPInstanceUID, media_types=("image/png",)
    )
    image = Image.open(io.BytesIO(png))
    assert (image.format, image.size) == ("PNG", (96, 96))

    series = f"{system.api_url}/dicom-web/studies/{uid_root}/series/{ds.SeriesInstanceUID}"
    for url in (
        f"{system.api_url}/dicom-web/studies/{uid_root}/thumbnail",
        f"{series}/thumbnail",
        f"{instance_url(system, ds)}/thumbnail",
        f"{instance_url(system, ds)}/frames/1/thumbnail",
    ):
        response = httpx.get(url)
        assert response.status_code == 200, url
        assert response.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(response.content)).size == (128, 128)

    rendered = httpx.get(f"{series}/rendered", params={"window": "40,400,linear", "quality": "50"})
    assert rendered.status_code == 200
    for params in ({"window": "40"}, {"viewport": "0,0"}, {"quality": "0"}):
        assert httpx.get(f"{series}/rendered", params=params).status_code == 400
    assert httpx.get(f"{series}/rendered", headers={"Accept": "image/gif"}).status_code == 406


# --- errors and tenants ----------------------------------------------------------------------


def test_unknown_uids_are_404_and_malformed_uids_400(
    system: RunningServices, uid_root: str
) -> None:
    with pytest.raises(requests.HTTPError) as error:
        client(system).retrieve_instance(uid_root, f"{uid_root}.1", f"{uid_root}.2")
    assert error.value.response.status_code == 404
    base = f"{system.api_url}/dicom-web/studies"
    assert httpx.get(f"{base}/{uid_root}").status_code == 404
    assert httpx.get(f"{base}/{uid_root}/series/{uid_root}.1/rendered").status_code == 404
    for path in ("1.2.abc", f"{uid_root}/series/01.2", f"{uid_root}/series/1.2/instances/x"):
        assert httpx.get(f"{base}/{path}").status_code == 400, path


def test_an_instance_is_retrievable_only_through_its_tenant(
    system: RunningServices, tmp_path: Path, uid_root: str
) -> None:
    (sent,) = store(system, cts(tmp_path, uid_root, 1), called_ae="TENANT_B")
    uids = (uid_root, sent.SeriesInstanceUID, sent.SOPInstanceUID)
    with pytest.raises(requests.HTTPError) as error:
        client(system).retrieve_instance(*uids)
    assert error.value.response.status_code == 404
    for suffix in ("/frames/1", "/rendered", "/bulkdata/7FE00010"):
        assert httpx.get(instance_url(system, sent) + suffix).status_code == 404, suffix
    assert client(system, "tenant-b").retrieve_instance(*uids) == sent


# --- streaming -------------------------------------------------------------------------------


def test_a_large_series_is_streamed_in_bounded_memory(
    system: RunningServices, tmp_path: Path, uid_root: str
) -> None:
    paths = cts(tmp_path, uid_root, 100, size=1024)  # 100 x 2 MB
    store(system, paths)
    pid = system.processes["api"].pid
    baseline = peak = rss_bytes(pid)
    received = 0
    url = f"{system.api_url}/dicom-web/studies/{uid_root}/series/{uid_root}.1"
    with httpx.stream("GET", url, timeout=60) as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            received += len(chunk)
            peak = max(peak, rss_bytes(pid))
    assert received > sum(path.stat().st_size for path in paths)
    assert peak - baseline < 100 * 1024 * 1024, f"API RSS grew by {(peak - baseline) >> 20} MB"
