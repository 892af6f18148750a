"""Test fixtures: the real local stack (started by the project's own command) and the services.

Tests run against their own stack (ports and state directory apart from `make run`'s), so a
running development system is never disturbed. Nothing here skips: a missing service fails.
"""

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicomflow.core.settings import Settings
from tests.services import RunningServices, start_services

ROOT = Path(__file__).resolve().parents[1]
TEST_STATE = ROOT / ".stack" / "test"
OUTPUT = ROOT / "test-output"

TEST_ENV = {
    "DICOMFLOW_STATE_DIR": str(TEST_STATE),
    "DICOMFLOW_KAFKA_PORT": "29092",
    "DICOMFLOW_KAFKA_CONTROLLER_PORT": "29093",
    "DICOMFLOW_POSTGRES_PORT": "54339",
    "DICOMFLOW_REDIS_PORT": "63809",
    "DICOMFLOW_MARIADB_PORT": "33079",
    "DICOMFLOW_SCP_PORT": "21112",
    "DICOMFLOW_API_PORT": "28080",
    "DICOMFLOW_SERIES_STABLE_SECONDS": "2",
    "TCP_NODELAY": "1",
}


def _dicomflow(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dicomflow", *args],
        env=env,
        text=True,
        capture_output=True,
        check=False,
        cwd=ROOT,
    )


@pytest.fixture(scope="session")
def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMFLOW_")}
    return {**env, **TEST_ENV}


@pytest.fixture(scope="session")
def stack(base_env: dict[str, str]) -> Iterator[Settings]:
    """The local stack, started with `dicomflow stack up`; stops only what it started."""
    os.environ.update(TEST_ENV)
    result = _dicomflow("stack", "up", env=base_env)
    assert result.returncode == 0, f"stack up failed:\n{result.stdout}\n{result.stderr}"
    started = result.stdout.strip().removeprefix("started: ")
    yield Settings()
    if "already running" not in started:
        _dicomflow("stack", "down", env=base_env)


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT.mkdir(exist_ok=True)
    return OUTPUT


@pytest.fixture(scope="session")
def system(
    stack: Settings, base_env: dict[str, str], tmp_path_factory
) -> Iterator[RunningServices]:
    """SCP, worker and API as processes, on a storage root of their own."""
    run_dir = tmp_path_factory.mktemp("system")
    env = {
        **base_env,
        "DICOMFLOW_STORAGE_ROOT": str(run_dir / "dicom"),
        "DICOMFLOW_JSON_ROOT": str(run_dir / "json"),
        "DICOMFLOW_OUTBOX_PATH": str(run_dir / "outbox.db"),
        "DICOMFLOW_AE_TENANTS": '{"TENANT_B": "tenant-b"}',
    }
    services = start_services(env, run_dir)
    yield services
    services.stop()


@pytest.fixture
def uid_root() -> str:
    """A UID prefix unique to one test, so tests never see each other's instances."""
    return f"2.25.{uuid.uuid4().int}"[:40]


def pytest_sessionstart(session: pytest.Session) -> None:
    for tool in ("storescu", "echoscu"):
        assert shutil.which(tool), f"{tool} (dcmtk) is not installed: run `make setup`"
