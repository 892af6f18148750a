"""Bulk import, the access log and the metrics endpoints, against the running system."""

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from dicomflow.core.settings import Settings
from tests.dicom_factory import make_ct
from tests.kafka_helpers import read_topic
from tests.services import ROOT, RunningServices, storescu, wait_for

pytestmark = pytest.mark.e2e


def run_import(system: RunningServices, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dicomflow", "import", *args],
        env=system.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_import_stores_reports_duplicates_and_rejections(
    system: RunningServices, stack: Settings, tmp_path: Path, uid_root: str
) -> None:
    archive = tmp_path / "archive"
    (archive / "a" / "b").mkdir(parents=True)
    for i in range(10):
        make_ct(
            archive / "a" / f"{i}.dcm",
            study_uid=f"{uid_root}.1",
            series_uid=f"{uid_root}.2",
            sop_uid=f"{uid_root}.3.{i}",
            instance_number=i,
        )
    (archive / "a" / "b" / "copy.dcm").write_bytes((archive / "a" / "0.dcm").read_bytes())
    (archive / "garbage.bin").write_bytes(b"not dicom at all" * 20)
    make_ct(archive / "bad.dcm", study_uid="1.2..3", series_uid=f"{uid_root}.2")
    (archive / "DICOMDIR").write_bytes(b"\0" * 200)

    result = run_import(system, str(archive))
    assert result.returncode == 1, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert "stored:     10" in lines
    assert "duplicates: 1 (already stored with the same bytes)" in lines
    assert "rejected:   2" in lines
    assert any("not a DICOM Part-10 file" in line for line in lines)
    assert any("invalid_uid (0xC000)" in line for line in lines)
    stored = list((system.storage_root / "default").rglob(f"{uid_root}.3.*.dcm"))
    assert len(stored) == 10

    events = asyncio.run(
        read_topic(stack, "storage_queue", lambda v: v["study_uid"] == f"{uid_root}.1", 10)
    )
    assert len(events) == 10

    again = run_import(system, str(archive / "a"))
    assert again.returncode == 0, again.stdout
    assert "stored:     0" in again.stdout.splitlines()
    assert "duplicates: 11 (already stored with the same bytes)" in again.stdout.splitlines()


def test_every_request_is_on_the_access_log(system: RunningServices, stack: Settings) -> None:
    marker = uuid.uuid4().hex
    for path in ("/dicom-web/studies", "/tenants/tenant-b/dicom-web/studies", "/nowhere"):
        httpx.get(f"{system.api_url}{path}?marker={marker}", headers={"User-Agent": marker})
    records = asyncio.run(
        read_topic(stack, "access_log_queue", lambda v: v["user_agent"] == marker, 3)
    )
    by_path = {r[2]["path"]: r[2] for r in records}
    assert by_path.keys() == {
        "/dicom-web/studies",
        "/tenants/tenant-b/dicom-web/studies",
        "/nowhere",
    }
    assert by_path["/nowhere"]["status"] == 404
    assert by_path["/tenants/tenant-b/dicom-web/studies"]["tenant_id"] == "tenant-b"
    assert by_path["/dicom-web/studies"]["tenant_id"] == "default"
    assert all(r["query"] == f"marker={marker}" and r["duration_ms"] >= 0 for r in by_path.values())


def test_metrics_are_exposed(system: RunningServices, tmp_path: Path, uid_root: str) -> None:
    path = tmp_path / "m.dcm"
    make_ct(path, study_uid=f"{uid_root}.1", series_uid=f"{uid_root}.2")
    assert storescu(system.scp_port, [path]).returncode == 0
    scp = f"http://127.0.0.1:{system.env['DICOMFLOW_SCP_METRICS_PORT']}/metrics"
    text = wait_for(lambda: httpx.get(scp).text, 10, what="SCP metrics")
    received = [
        line
        for line in text.splitlines()
        if line.startswith('dicomflow_instances_received_total{tenant="default",via="dimse"}')
    ]
    assert received and float(received[0].split()[-1]) >= 1
    assert "dicomflow_outbox_depth 0.0" in text
    api = httpx.get(f"{system.api_url}/metrics/")
    assert api.status_code == 200
    assert "dicomflow_access_log_dropped_total" in api.text
    worker = f"http://127.0.0.1:{system.env['DICOMFLOW_WORKER_METRICS_PORT']}/metrics"
    assert "dicomflow_values_truncated_total" in httpx.get(worker).text


def thread_policies(pid: int) -> set[int]:
    """The scheduling policy of every thread of a process."""
    return {os.sched_getscheduler(int(task.name)) for task in Path(f"/proc/{pid}/task").iterdir()}


def test_the_worker_gives_way_to_the_foreground_services(system: RunningServices) -> None:
    """Every thread of the worker, also those started after it set its policy, is SCHED_IDLE;
    the SCP's and the API's are not."""
    assert thread_policies(system.processes["worker"].pid) == {os.SCHED_IDLE}
    for service in ("scp", "api"):
        assert thread_policies(system.processes[service].pid) == {os.SCHED_OTHER}, service
