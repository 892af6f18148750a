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
from tests.services import DCMTK_BIN, RunningServices, start_services

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "test-output"

# Several test runs can share a machine: each offset gets its own ports and state directory.
PORT_OFFSET = int(os.environ.get("DICOMFLOW_TEST_PORT_OFFSET", "0"))
TEST_STATE = ROOT / ".stack" / f"test{PORT_OFFSET or ''}"

TEST_ENV = {
    "DICOMFLOW_STATE_DIR": str(TEST_STATE),
    "DICOMFLOW_KAFKA_PORT": str(29092 + PORT_OFFSET),
    "DICOMFLOW_KAFKA_CONTROLLER_PORT": str(29093 + PORT_OFFSET),
    "DICOMFLOW_POSTGRES_PORT": str(54339 + PORT_OFFSET),
    "DICOMFLOW_REDIS_PORT": str(63809 + PORT_OFFSET),
    "DICOMFLOW_MARIADB_PORT": str(33079 + PORT_OFFSET),
    "DICOMFLOW_SCP_PORT": str(21112 + PORT_OFFSET),
    "DICOMFLOW_API_PORT": str(28080 + PORT_OFFSET),
    "DICOMFLOW_SCP_METRICS_PORT": str(29112 + PORT_OFFSET),
    "DICOMFLOW_WORKER_METRICS_PORT": str(29113 + PORT_OFFSET),
    "DICOMFLOW_SERIES_STABLE_SECONDS": "2",
    "DICOMFLOW_WORKER_STUCK_SECONDS": "10",
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
    """The local stack, started with `dicomflow stack up`; stops only what it started.

    A stack that is not running starts from empty data, so no run sees an earlier one's.
    """
    os.environ.update(TEST_ENV)
    status = _dicomflow("stack", "status", env=base_env)
    assert status.returncode == 0, status.stderr
    if "running" not in status.stdout:
        shutil.rmtree(TEST_STATE / "services", ignore_errors=True)
        shutil.rmtree(TEST_STATE / "faust", ignore_errors=True)
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


def pytest_configure(config: pytest.Config) -> None:
    """Temporary files per port offset: pytest's shared numbered directories are pruned by
    any other run on the machine, which would delete a running system's storage."""
    if config.option.basetemp is None:
        TEST_STATE.mkdir(parents=True, exist_ok=True)
        config.option.basetemp = str(TEST_STATE / "tmp")


def pytest_sessionstart(session: pytest.Session) -> None:
    for tool in ("storescu", "echoscu"):
        path = DCMTK_BIN / tool
        assert path.is_file(), f"{path} (dcmtk) is not installed: run `make setup`"
