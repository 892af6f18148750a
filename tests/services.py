"""Running dicomflow's services as processes for end-to-end tests, and talking to them."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import httpx

ROOT = Path(__file__).resolve().parents[1]
# dcmtk's tools from Debian, by path: pynetdicom installs its own `storescu`/`echoscu` in the venv.
DCMTK_BIN = Path("/usr/bin")
T = TypeVar("T")


def wait_for(
    condition: Callable[[], T], timeout: float, interval: float = 0.1, what: str = ""
) -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


async def async_wait_for(
    condition: Callable[[], Awaitable[T]], timeout: float, interval: float = 0.1, what: str = ""
) -> T:
    """`wait_for` for a coroutine function, polled without blocking the event loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        await asyncio.sleep(interval)


@dataclass
class RunningServices:
    env: dict[str, str]
    run_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.env['DICOMFLOW_API_PORT']}"

    @property
    def scp_port(self) -> int:
        return int(self.env["DICOMFLOW_SCP_PORT"])

    @property
    def storage_root(self) -> Path:
        return Path(self.env["DICOMFLOW_STORAGE_ROOT"])

    def log(self, name: str) -> Path:
        return self.run_dir / f"{name}.log"

    def start(self, name: str) -> None:
        log_path = self.log(name)
        logged_before = log_path.stat().st_size if log_path.exists() else 0
        with open(log_path, "ab") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "dicomflow", name],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        waits = {
            "api": self._api_ready,
            "scp": self._scp_ready,
            "worker": partial(self._faust_worker_ready, "worker", logged_before),
            "analytics-sink": partial(self._faust_worker_ready, "analytics-sink", logged_before),
        }
        wait_for(waits[name], 90, 0.2, f"{name} to be ready (log: {self.log(name)})")

    def stop(self, name: str | None = None, sig: int = signal.SIGTERM) -> None:
        for process_name in [name] if name else list(self.processes):
            process = self.processes.pop(process_name)
            if process.poll() is None:
                process.send_signal(sig)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _api_ready(self) -> bool:
        self._check_alive("api")
        try:
            return httpx.get(f"{self.api_url}/health/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _scp_ready(self) -> bool:
        self._check_alive("scp")
        return echoscu(self.scp_port).returncode == 0

    def _faust_worker_ready(self, name: str, logged_before: int) -> bool:
        """Ready once this run of the worker has logged it (a restart appends to the log)."""
        self._check_alive(name)
        return b"Worker ready" in self.log(name).read_bytes()[logged_before:]

    def _check_alive(self, name: str) -> None:
        code = self.processes[name].poll()
        if code is not None:
            raise AssertionError(
                f"{name} exited with {code}:\n{self.log(name).read_text()[-3000:]}"
            )


def start_services(env: dict[str, str], run_dir: Path) -> RunningServices:
    """Start worker, SCP and API; if one fails, stop those already started, then fail."""
    services = RunningServices(env, run_dir)
    try:
        for name in ("worker", "scp", "api"):
            services.start(name)
    except BaseException:
        services.stop()
        raise
    return services


def rss_bytes(pid: int) -> int:
    """A process's resident memory, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def _dcmtk_env() -> dict[str, str]:
    return {**os.environ, "TCP_NODELAY": "1"}


def echoscu(port: int, called_ae: str = "DICOMFLOW") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DCMTK_BIN / "echoscu"), "-aec", called_ae, "127.0.0.1", str(port)],
        capture_output=True,
        text=True,
        env=_dcmtk_env(),
        check=False,
    )


SUCCESS = "Received Store Response (Success)"  # in the output of `storescu -v`


def storescu(
    port: int, files: Sequence[Path], called_ae: str = "DICOMFLOW", extra: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """Send `files` on one association; the `-v` output lists each response status."""
    return subprocess.run(
        [
            str(DCMTK_BIN / "storescu"),
            "-v",
            "-aec",
            called_ae,
            *extra,
            "127.0.0.1",
            str(port),
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        env=_dcmtk_env(),
        check=False,
        timeout=600,
    )
