"""The first end-to-end path: storescu -> SCP -> Kafka -> Faust -> PostgreSQL -> metadata."""

from pathlib import Path

import asyncpg
import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file

from dicomflow.core.settings import Settings
from tests.metadata_checks import assert_same_json, expected_json
from tests.services import RunningServices, async_wait_for, echoscu, storescu, wait_for

pytestmark = pytest.mark.e2e


def test_echo_succeeds(system: RunningServices) -> None:
    result = echoscu(system.scp_port)
    assert result.returncode == 0, result.stderr


def test_ready_names_every_component(system: RunningServices) -> None:
    response = httpx.get(f"{system.api_url}/health/ready")
    assert response.status_code == 200
    assert response.json()["components"] == {"postgresql": "up", "redis": "up", "kafka": "up"}


async def test_ct_instance_reaches_postgres_and_metadata(
    system: RunningServices, stack: Settings
) -> None:
    ct = Path(get_testdata_file("CT_small.dcm"))
    sent = pydicom.dcmread(ct)
    result = storescu(system.scp_port, [ct])
    assert result.returncode == 0, result.stderr

    stored = (
        system.storage_root
        / "default"
        / str(sent.StudyDate)
        / sent.StudyInstanceUID
        / sent.SeriesInstanceUID
        / f"{sent.SOPInstanceUID}.dcm"
    )
    assert stored.is_file()

    url = (
        f"{system.api_url}/dicom-web/studies/{sent.StudyInstanceUID}"
        f"/series/{sent.SeriesInstanceUID}/metadata"
    )

    def metadata() -> httpx.Response | None:
        response = httpx.get(url, headers={"Accept": "application/dicom+json"})
        return response if response.status_code == 200 else None

    response = wait_for(metadata, 30.0, what="series metadata")
    assert response.headers["content-type"] == "application/dicom+json"
    (instance,) = response.json()
    assert_same_json(instance, expected_json(stored))

    async def series_row() -> asyncpg.Record | None:
        connection = await asyncpg.connect(stack.postgres_url)
        try:
            return await connection.fetchrow(
                "SELECT patient_id, patient_name, modality, study_date FROM dicom_state_meta"
                " WHERE tenant_id = 'default' AND study_uid = $1 AND series_uid = $2",
                sent.StudyInstanceUID,
                sent.SeriesInstanceUID,
            )
        finally:
            await connection.close()

    row = await async_wait_for(series_row, 30.0, what="the series row")
    assert row["patient_id"] == sent.PatientID
    assert row["patient_name"] == str(sent.PatientName)
    assert row["modality"] == sent.Modality
    assert row["study_date"].strftime("%Y%m%d") == sent.StudyDate
