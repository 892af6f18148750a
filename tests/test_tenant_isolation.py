"""Tenant isolation: the same UIDs in two tenants stay apart on every DICOMweb endpoint."""

from functools import partial
from pathlib import Path

import httpx
import pydicom
import pytest

from tests.dicom_factory import make_ct
from tests.part10 import dataset_bytes, dataset_bytes_of
from tests.services import RunningServices, storescu, wait_for

pytestmark = pytest.mark.e2e

JSON = "application/dicom+json"
NAMES = {"default": "Default^Only", "tenant-b": "TenantB^Only"}
AE_OF = {"default": "DICOMFLOW", "tenant-b": "TENANT_B"}


def bases(system: RunningServices) -> dict[str, list[tuple[str, dict[str, str]]]]:
    """Every way to reach each tenant: its path form and, for tenant-b, the X-Tenant header."""
    return {
        "default": [(f"{system.api_url}/dicom-web", {})],
        "tenant-b": [
            (f"{system.api_url}/tenants/tenant-b/dicom-web", {}),
            (f"{system.api_url}/dicom-web", {"X-Tenant": "tenant-b"}),
        ],
        "tenant-c": [(f"{system.api_url}/tenants/tenant-c/dicom-web", {})],
    }


@pytest.fixture
def same_uids_in_two_tenants(
    system: RunningServices, tmp_path: Path, uid_root: str
) -> dict[str, pydicom.Dataset]:
    sent = {}
    for number, tenant in enumerate(("default", "tenant-b"), start=1):
        path = tmp_path / f"{tenant}.dcm"
        make_ct(
            path,
            study_uid=f"{uid_root}.1",
            series_uid=f"{uid_root}.2",
            sop_uid=f"{uid_root}.3",
            patient_name=NAMES[tenant],
            instance_number=number,
        )
        assert storescu(system.scp_port, [path], called_ae=AE_OF[tenant]).returncode == 0
        sent[tenant] = pydicom.dcmread(path)
    for tenant in ("default", "tenant-b"):
        base, headers = bases(system)[tenant][0]
        wait_for(
            partial(indexed, base, headers, uid_root),
            30,
            0.2,
            what=f"{tenant}'s instance in every index",
        )
    return sent


def indexed(base: str, headers: dict[str, str], uid_root: str) -> bool:
    """The instance is in the series and study indexes as well as the instance index (the
    worker writes them from different topics, so they are not updated at the same moment)."""
    study, series = f"{uid_root}.1", f"{uid_root}.2"
    searches = [
        httpx.get(f"{base}/studies", params={"StudyInstanceUID": study}, headers=headers),
        httpx.get(f"{base}/studies/{study}/series", headers=headers),
        httpx.get(f"{base}/instances", params={"SOPInstanceUID": f"{uid_root}.3"}, headers=headers),
    ]
    metadata = httpx.get(f"{base}/studies/{study}/series/{series}/metadata", headers=headers)
    return metadata.status_code == 200 and all(
        r.status_code == 200 and len(r.json()) == 1 for r in searches
    )


def test_every_endpoint_answers_only_with_its_own_tenant(
    system: RunningServices, same_uids_in_two_tenants: dict[str, pydicom.Dataset], uid_root: str
) -> None:
    study, series, sop = f"{uid_root}.1", f"{uid_root}.2", f"{uid_root}.3"
    instance = f"/studies/{study}/series/{series}/instances/{sop}"
    for tenant, routes in bases(system).items():
        for base, headers in routes:
            get = partial(fetch, base, headers)
            sent = same_uids_in_two_tenants.get(tenant)
            qido = [
                get("/studies", StudyInstanceUID=study),
                get(f"/studies/{study}/series"),
                get(f"/studies/{study}/series/{series}/instances"),
                get("/instances", SOPInstanceUID=sop),
            ]
            metadata = [
                get(f"/studies/{study}/metadata"),
                get(f"/studies/{study}/series/{series}/metadata"),
                get(f"{instance}/metadata"),
            ]
            retrieve = get(
                instance, 'multipart/related; type="application/dicom"; transfer-syntax=*'
            )
            frame = get(
                f"{instance}/frames/1", 'multipart/related; type="application/octet-stream"'
            )
            rendered = get(f"{instance}/rendered", "image/png")
            if sent is None:
                assert all(r.status_code == 200 and r.json() == [] for r in qido), tenant
                assert all(r.status_code == 404 for r in [*metadata, retrieve, frame, rendered])
                continue
            for response in qido:
                (match,) = response.json()
                if "00100010" in match:
                    assert match["00100010"]["Value"][0]["Alphabetic"] == NAMES[tenant]
            for response in metadata:
                (item,) = response.json()
                assert item["00100010"]["Value"][0]["Alphabetic"] == NAMES[tenant]
            assert retrieve.status_code == 200
            assert dataset_bytes_of_part(retrieve) == stored_bytes(system, tenant, sent)
            assert frame.status_code == 200 and sent.PixelData in frame.content
            assert rendered.status_code == 200 and rendered.content.startswith(b"\x89PNG")


def fetch(
    base: str, headers: dict[str, str], path: str, accept: str = JSON, **params: str
) -> httpx.Response:
    return httpx.get(f"{base}{path}", params=params, headers={**headers, "Accept": accept})


def stored_bytes(system: RunningServices, tenant: str, ds: pydicom.Dataset) -> bytes:
    path = (
        system.storage_root
        / tenant
        / ds.StudyDate
        / ds.StudyInstanceUID
        / ds.SeriesInstanceUID
        / f"{ds.SOPInstanceUID}.dcm"
    )
    return dataset_bytes(path)


def dataset_bytes_of_part(response: httpx.Response) -> bytes:
    """The data set bytes of the one Part-10 file in a multipart/related answer."""
    start = response.content.index(b"DICM") - 128
    part = response.content[start:]
    return dataset_bytes_of(part[: part.rindex(b"\r\n--")])


def test_stow_to_one_tenant_never_overwrites_another(
    system: RunningServices,
    same_uids_in_two_tenants: dict[str, pydicom.Dataset],
    tmp_path: Path,
    uid_root: str,
) -> None:
    before = {t: stored_bytes(system, t, ds) for t, ds in same_uids_in_two_tenants.items()}
    path = tmp_path / "c.dcm"
    make_ct(
        path,
        study_uid=f"{uid_root}.1",
        series_uid=f"{uid_root}.2",
        sop_uid=f"{uid_root}.3",
        patient_name="TenantC^Only",
        instance_number=9,
    )
    boundary = "isolation"
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    response = httpx.post(
        f"{system.api_url}/tenants/tenant-c/dicom-web/studies",
        content=body,
        headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'
        },
    )
    assert response.status_code == 200, response.text
    after = {t: stored_bytes(system, t, ds) for t, ds in same_uids_in_two_tenants.items()}
    assert after == before
    assert (system.storage_root / "tenant-c").is_dir()
