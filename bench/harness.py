"""What both benchmarks share: prerequisites, ports, dicomflow and Orthanc as processes, storescu.

Everything listens on 127.0.0.1 on ports of its own (BENCH_PORT_OFFSET moves them all), and
dicomflow runs on its own stack (`DICOMFLOW_STATE_DIR=.stack/bench`), so neither `make run`
nor test runs on the same machine are disturbed. Each server is stopped by whoever started
it, through a context manager, also when the benchmark fails.
"""

import asyncio
import contextlib
import ctypes
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
OUTPUT = BENCH / "output"
STATE_DIR = ROOT / ".stack" / "bench"
PYTHON = sys.executable
# The dicomflow source tree the servers run from: this working tree, or a snapshot of a commit
# (`git archive HEAD | tar -x -C /tmp/dicomflow-HEAD`) while the working tree is being edited.
SOURCE = Path(os.environ.get("BENCH_DICOMFLOW_SOURCE", ROOT)).resolve()

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
STORESCU = "/usr/bin/storescu"  # dcmtk's, not pynetdicom's of the same name in .venv/bin
ECHOSCU = "/usr/bin/echoscu"
INSTALL_HINT = "install them with: sudo bash bench/install.sh"

DICOMFLOW_AE = "DICOMFLOW"
ORTHANC_AE = "ORTHANC"
CALLING_AE = "BENCHSCU"
TENANT = "default"

T = TypeVar("T")


class BenchError(RuntimeError):
    """The benchmark cannot run (missing tool, busy port, a server that did not start)."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every `finally` stops what the benchmark started."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


# ---------------------------------------------------------------- prerequisites, machine


def check_prerequisites() -> None:
    missing = [
        f"{path} (Debian package {package})"
        for path, package in (
            (ORTHANC, "orthanc"),
            (DICOMWEB_PLUGIN, "orthanc-dicomweb"),
            (STORESCU, "dcmtk"),
            (ECHOSCU, "dcmtk"),
        )
        if not os.path.exists(path)
    ]
    if missing:
        raise BenchError("missing: " + "; ".join(missing) + f"\n{INSTALL_HINT}")


def _first_line(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except OSError as exc:
        return f"unavailable ({exc})"
    lines = [line.strip() for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    return lines[0] if lines else "?"


def _package_version(name: str) -> str:
    return _first_line(["dpkg-query", "-W", "-f=${Version}", name])


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kb / 1024 / 1024:.1f} GiB"
    debian = "?"
    with contextlib.suppress(OSError):
        debian = Path("/etc/debian_version").read_text().strip()
    if (SOURCE / ".git").exists():
        commit = _first_line(["git", "-C", str(SOURCE), "rev-parse", "--short", "HEAD"])
        dirty = _first_line(["git", "-C", str(SOURCE), "status", "--porcelain", "--", "dicomflow"])
        source = commit + (" + uncommitted changes in dicomflow/" if dirty != "?" else "")
    else:
        source = f"source tree {SOURCE}"
    return {
        "cpu": f"{os.cpu_count()} x {cpu}",
        "memory": memory,
        "os": f"Debian {debian}, Linux {platform.release()}",
        "python": platform.python_version(),
        "orthanc": f"{_package_version('orthanc')} (Debian), "
        f"dicomweb plugin {_package_version('orthanc-dicomweb')}",
        "dcmtk": _package_version("dcmtk"),
        "dicomflow": source,
    }


def loadavg() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f}/{five:.2f}"


def print_machine(info: dict[str, str]) -> None:
    for key, value in info.items():
        print(f"  {key:10} {value}")
    print(f"  {'load':10} {loadavg()} (1/5 min) at start; other processes share the machine")


# ---------------------------------------------------------------- ports


@dataclass(frozen=True)
class Ports:
    kafka: int
    kafka_controller: int
    postgres: int
    redis: int
    mariadb: int
    scp: int
    api: int
    scp_metrics: int
    worker_metrics: int
    orthanc_dicom: int
    orthanc_http: int

    @classmethod
    def from_environment(cls) -> "Ports":
        offset = int(os.environ.get("BENCH_PORT_OFFSET", "0"))
        return cls(
            kafka=39092 + offset,
            kafka_controller=39093 + offset,
            postgres=55329 + offset,
            redis=64799 + offset,
            mariadb=34069 + offset,
            scp=31112 + offset,
            api=38080 + offset,
            scp_metrics=39112 + offset,
            worker_metrics=39113 + offset,
            orthanc_dicom=34242 + offset,
            orthanc_http=38042 + offset,
        )


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def require_free(ports: dict[str, int]) -> None:
    busy = [f"{name} {port}" for name, port in ports.items() if port_open(port)]
    if busy:
        raise BenchError(
            "ports in use: " + ", ".join(busy) + " (another benchmark running? "
            "set BENCH_PORT_OFFSET to move every port)"
        )


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def echo(port: int, called_ae: str) -> bool:
    result = subprocess.run(
        [ECHOSCU, "-aet", CALLING_AE, "-aec", called_ae, "127.0.0.1", str(port)],
        capture_output=True,
        env={**os.environ, "TCP_NODELAY": "1"},
        check=False,
        timeout=30,
    )
    return result.returncode == 0


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# ---------------------------------------------------------------- processes


@dataclass
class Process:
    """A server we started: stopped with SIGTERM (then SIGKILL) by `stop`."""

    name: str
    popen: subprocess.Popen[bytes]
    log_file: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            tail = self.log_file.read_text(errors="replace")[-3000:]
            raise BenchError(f"{self.name} exited with {self.popen.returncode}:\n{tail}")

    def stop(self, timeout: float = 30) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def spawn(
    name: str, command: list[str], env: dict[str, str], log_file: Path, cwd: Path = ROOT
) -> Process:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        popen = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return Process(name, popen, log_file)


# ---------------------------------------------------------------- dicomflow


@dataclass
class Dicomflow:
    """dicomflow's own stack (`dicomflow stack up` in .stack/bench) and its three services."""

    ports: Ports
    run_dir: Path
    stable_seconds: float = 2.0
    processes: dict[str, Process] = field(default_factory=dict)
    stack_started: bool = False

    @property
    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("DICOMFLOW_")}
        p = self.ports
        return {
            **base,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(SOURCE), base.get("PYTHONPATH")])),
            "DICOMFLOW_STATE_DIR": str(STATE_DIR),
            "DICOMFLOW_KAFKA_PORT": str(p.kafka),
            "DICOMFLOW_KAFKA_CONTROLLER_PORT": str(p.kafka_controller),
            "DICOMFLOW_POSTGRES_PORT": str(p.postgres),
            "DICOMFLOW_REDIS_PORT": str(p.redis),
            "DICOMFLOW_MARIADB_PORT": str(p.mariadb),
            "DICOMFLOW_SCP_PORT": str(p.scp),
            "DICOMFLOW_API_PORT": str(p.api),
            "DICOMFLOW_SCP_METRICS_PORT": str(p.scp_metrics),
            "DICOMFLOW_WORKER_METRICS_PORT": str(p.worker_metrics),
            "DICOMFLOW_STORAGE_ROOT": str(self.run_dir / "dicom"),
            "DICOMFLOW_JSON_ROOT": str(self.run_dir / "json"),
            "DICOMFLOW_OUTBOX_PATH": str(self.run_dir / "outbox.db"),
            "DICOMFLOW_SERIES_STABLE_SECONDS": str(self.stable_seconds),
            "TCP_NODELAY": "1",
        }

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.api}"

    @property
    def postgres_dsn(self) -> str:
        return f"postgresql://dicomflow@127.0.0.1:{self.ports.postgres}/dicomflow"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.ports.redis}/0"

    def _dicomflow(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, "-m", "dicomflow", *args],
            env=self.env,
            cwd=SOURCE,
            capture_output=True,
            text=True,
            check=False,
        )

    def stack_up(self) -> None:
        """Start the bench stack from empty data, so no run sees an earlier run's instances."""
        status = self._dicomflow("stack", "status")
        if status.returncode != 0:
            raise BenchError(f"dicomflow stack status failed: {status.stderr.strip()}")
        if "running" in status.stdout:
            raise BenchError(
                "the bench stack (.stack/bench) is already running: another benchmark, or a "
                "run that was killed. If none is running, stop it with:\n"
                f"  DICOMFLOW_STATE_DIR={STATE_DIR} DICOMFLOW_POSTGRES_PORT={self.ports.postgres}"
                f" DICOMFLOW_REDIS_PORT={self.ports.redis} DICOMFLOW_KAFKA_PORT={self.ports.kafka}"
                f" DICOMFLOW_MARIADB_PORT={self.ports.mariadb} .venv/bin/dicomflow stack down"
            )
        require_free(
            {
                "kafka": self.ports.kafka,
                "kafka controller": self.ports.kafka_controller,
                "postgres": self.ports.postgres,
                "redis": self.ports.redis,
                "mariadb": self.ports.mariadb,
                "scp": self.ports.scp,
                "api": self.ports.api,
                "scp metrics": self.ports.scp_metrics,
                "worker metrics": self.ports.worker_metrics,
            }
        )
        shutil.rmtree(STATE_DIR / "services", ignore_errors=True)
        shutil.rmtree(STATE_DIR / "faust", ignore_errors=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log("dicomflow: stack up (PostgreSQL, Redis, Kafka, MariaDB) in .stack/bench")
        self.stack_started = True  # `stack down` stops whatever part of it did start
        result = self._dicomflow("stack", "up")
        if result.returncode != 0:
            raise BenchError(f"dicomflow stack up failed:\n{result.stdout}\n{result.stderr}")

    def stop_service(self, name: str) -> None:
        """Stop one server of the stack (e.g. redis); `start_stopped_services` restarts it."""
        result = self._dicomflow("stack", "down", name)
        if result.returncode != 0 or name not in result.stdout:
            raise BenchError(f"dicomflow stack down {name} failed:\n{result.stdout}{result.stderr}")

    def start_stopped_services(self) -> None:
        result = self._dicomflow("stack", "up")
        if result.returncode != 0:
            raise BenchError(f"dicomflow stack up failed:\n{result.stdout}\n{result.stderr}")

    def start(self, name: str, **overrides: str) -> None:
        """Start `dicomflow {scp|worker|api}` and wait until it is ready."""
        env = {**self.env, **{f"DICOMFLOW_{k.upper()}": v for k, v in overrides.items()}}
        command = [PYTHON, "-m", "dicomflow", name]
        process = spawn(name, command, env, self.run_dir / "logs" / f"{name}.log", SOURCE)
        self.processes[name] = process

        def ready() -> bool:
            process.check_alive()
            if name == "worker":
                return b"Worker ready" in process.log_file.read_bytes()
            if name == "scp":
                return echo(self.ports.scp, DICOMFLOW_AE)
            return http_ok(f"{self.api_url}/health/ready")

        wait_for(ready, 120, f"dicomflow {name} (log: {process.log_file})", 0.3)

    def start_services(self) -> None:
        for name in ("worker", "scp", "api"):
            self.start(name)
        log("dicomflow: worker, scp and api ready")

    def stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is not None:
            process.stop()

    def pid(self, name: str) -> int:
        return self.processes[name].popen.pid

    def cpu_roots(self) -> dict[str, int]:
        """The processes whose CPU time counts: the services and the stack's servers."""
        roots = {name: process.popen.pid for name, process in self.processes.items()}
        services = STATE_DIR / "services"
        for name, pid_file in (
            ("kafka", services / "kafka" / "kafka.pid"),
            ("postgres", services / "postgres" / "data" / "postmaster.pid"),
            ("redis", services / "redis" / "redis.pid"),
        ):
            with contextlib.suppress(OSError, ValueError, IndexError):
                roots[name] = int(pid_file.read_text().split()[0])
        return roots

    def close(self) -> None:
        for name in list(self.processes):
            self.stop(name)
        if self.stack_started:
            result = self._dicomflow("stack", "down")
            log(f"dicomflow: {result.stdout.strip() or result.stderr.strip()}")
            self.stack_started = False


@contextlib.contextmanager
def dicomflow_running(ports: Ports, run_dir: Path, **options: float) -> Iterator[Dicomflow]:
    system = Dicomflow(ports, run_dir / "dicomflow", **options)
    try:
        system.stack_up()
        system.start_services()
        yield system
    finally:
        system.close()


async def indexed_count(connection: asyncpg.Connection, study_uid: str) -> int:
    return await connection.fetchval(
        "SELECT count(*) FROM dicom_image_meta WHERE tenant_id = $1 AND study_uid = $2",
        TENANT,
        study_uid,
    )


async def metadata_precomputed(
    connection: asyncpg.Connection, study_uid: str, series_uid: str
) -> bool:
    """The API's own condition for serving the precomputed series metadata."""
    return bool(
        await connection.fetchval(
            "SELECT count(*) FROM dicom_json_meta j"
            " JOIN dicom_state_meta s USING (tenant_id, study_uid, series_uid)"
            " WHERE j.tenant_id = $1 AND j.study_uid = $2 AND j.series_uid = $3"
            " AND j.json_status = 'ok' AND s.series_state = 'stable'"
            " AND j.flag_time >= s.last_received_time",
            TENANT,
            study_uid,
            series_uid,
        )
    )


async def wait_async(
    condition: Callable[[], Awaitable[bool]], timeout: float, what: str, interval: float = 0.05
) -> float:
    """Poll an async condition; return the monotonic time it first held."""
    deadline = time.monotonic() + timeout
    while True:
        if await condition():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


# ---------------------------------------------------------------- Orthanc


@dataclass
class Orthanc:
    """Orthanc from Debian with a generated configuration; its store lives in `run_dir`."""

    ports: Ports
    run_dir: Path
    process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports.orthanc_http}"

    def config(self) -> dict[str, object]:
        return {
            "Name": "dicomflow-bench",
            "StorageDirectory": str(self.run_dir / "storage"),
            "IndexDirectory": str(self.run_dir / "index"),
            "StorageCompression": False,
            "SyncStorageArea": True,  # the 1.10 default, stated: fsync after each file write
            "MaximumPduLength": 16384,  # the default
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
            "HttpServerEnabled": True,
            "HttpPort": self.ports.orthanc_http,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": ORTHANC_AE,
            "DicomPort": self.ports.orthanc_dicom,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowEcho": True,
            "SaveJobs": False,
            "OverwriteInstances": True,  # as dicomflow: an instance sent again replaces its copy
        }

    def start(self) -> None:
        require_free(
            {"orthanc dicom": self.ports.orthanc_dicom, "orthanc http": self.ports.orthanc_http}
        )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config = self.run_dir / "config.json"
        config.write_text(json.dumps(self.config(), indent=2))
        env = {**os.environ, "TCP_NODELAY": "1"}
        log(f"Orthanc: starting with {config}")
        self.process = spawn("Orthanc", [ORTHANC, str(config)], env, self.run_dir / "orthanc.log")

        def ready() -> bool:
            assert self.process is not None
            self.process.check_alive()
            return http_ok(f"{self.url}/system") and echo(self.ports.orthanc_dicom, ORTHANC_AE)

        wait_for(ready, 60, f"Orthanc (log: {self.run_dir / 'orthanc.log'})", 0.3)
        log("Orthanc: ready")

    def cpu_roots(self) -> dict[str, int]:
        assert self.process is not None
        return {"Orthanc": self.process.popen.pid}

    def instances_in_study(self, study_uid: str) -> int:
        response = httpx.post(
            f"{self.url}/tools/find",
            json={"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}},
            timeout=60,
        )
        response.raise_for_status()
        return len(response.json())

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


@contextlib.contextmanager
def orthanc_running(ports: Ports, run_dir: Path) -> Iterator[Orthanc]:
    orthanc = Orthanc(ports, run_dir / "orthanc")
    try:
        orthanc.start()
        yield orthanc
    finally:
        orthanc.stop()


# ---------------------------------------------------------------- storescu


@dataclass(frozen=True)
class StoreResult:
    successes: int
    failures: int
    wall_seconds: float  # storescu start to exit (scans the folder, associates, sends, releases)
    started: float  # monotonic time storescu was started
    last_response: float  # monotonic time the last C-STORE response was logged
    output: str


def read_into_page_cache(path: Path) -> None:
    """Read `path` (a file, or a folder's `*.dcm`) once, untimed. The machine evicts corpus
    files from its page cache between runs: otherwise the side sent to first would wait for the
    disk to read storescu's input, and the second find it cached."""
    for file in [path] if path.is_file() else sorted(path.glob("*.dcm")):
        with open(file, "rb") as fh:
            while fh.read(1 << 20):
                pass


async def storescu(folder: Path, port: int, called_ae: str) -> StoreResult:
    """Send every `*.dcm` of `folder` (or the file `folder`) on ONE association, proposing
    Explicit VR Little Endian; the files are read into the page cache first (untimed).

    `-v` makes storescu log each C-STORE response as it arrives; each line is timestamped here.
    """
    command = [
        STORESCU,
        "-v",
        "-aet",
        CALLING_AE,
        "-aec",
        called_ae,
        "-xe",
        "+sd",
        "+sp",
        "*.dcm",
        "127.0.0.1",
        str(port),
        str(folder),
    ]
    await asyncio.to_thread(read_into_page_cache, folder)
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "TCP_NODELAY": "1"},
    )
    assert process.stdout is not None
    lines: list[str] = []
    successes = failures = 0
    last_response = started
    while raw := await process.stdout.readline():
        line = raw.decode(errors="replace").rstrip()
        lines.append(line)
        if "Received Store Response" in line:
            last_response = time.monotonic()
            if "(Success)" in line:
                successes += 1
            else:
                failures += 1
    await process.wait()
    ended = time.monotonic()
    if process.returncode != 0:
        tail = "\n".join(lines[-20:])
        raise BenchError(f"storescu to {called_ae} failed ({process.returncode}):\n{tail}")
    return StoreResult(
        successes, failures, ended - started, started, last_response, "\n".join(lines)
    )


# ---------------------------------------------------------------- CPU accounting

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds of the process and of its children it has reaped)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
        table[int(entry)] = (int(fields[1]), ticks / CLOCK_TICKS)
    return table


def cpu_seconds(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each named process tree (user + system, all threads).

    On a shared machine this is steadier than wall time: it does not grow when other
    processes take the cores.
    """
    table = _processes()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    totals = {}
    for name, root in roots.items():
        total, todo = 0.0, [root]
        while todo:
            pid = todo.pop()
            if pid in table:
                total += table[pid][1]
                todo.extend(children.get(pid, []))
        totals[name] = total
    return totals


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0.0) for name in after}


def wait_quiet(roots: dict[str, int], busy: float = 0.1, timeout: float = 180.0) -> float:
    """Wait until each process tree of `roots` uses less than `busy` of a core over a second,
    so that work a server does after loading (Orthanc's own, or an index catching up) does not
    fall into the first measurements; return the seconds waited."""
    started = time.monotonic()
    while True:
        before = cpu_seconds(roots)
        time.sleep(1.0)
        used = cpu_used(before, cpu_seconds(roots))
        if all(seconds < busy for seconds in used.values()):
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise BenchError(f"still busy after {timeout:.0f}s (CPU seconds per second): {used}")


# ---------------------------------------------------------------- profiling


def py_spy() -> str:
    """py-spy from the venv or PATH (profiling only: `.venv/bin/pip install py-spy`)."""
    candidate = Path(PYTHON).parent / "py-spy"
    found = str(candidate) if candidate.exists() else shutil.which("py-spy")
    if not found:
        raise BenchError("--profile needs py-spy: .venv/bin/pip install py-spy")
    return found


@contextlib.contextmanager
def profiled(pids: dict[str, int], folder: Path) -> Iterator[None]:
    """Sample each process with py-spy (idle threads included, per thread) while the block
    runs; writes `{name}.txt`, collapsed stacks that flamegraph.pl or speedscope read."""
    folder.mkdir(parents=True, exist_ok=True)
    command = [py_spy(), "record", "--nonblocking", "--idle", "--threads", "--rate", "200"]
    recorders = [
        subprocess.Popen(
            [*command, "--format", "raw", "--pid", str(pid), "--output", str(folder / f"{n}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n, pid in pids.items()
    ]
    time.sleep(1.0)  # py-spy attaches
    try:
        yield
    finally:
        for recorder in recorders:
            recorder.send_signal(signal.SIGINT)
        for recorder in recorders:
            try:
                recorder.wait(timeout=30)
            except subprocess.TimeoutExpired:
                recorder.kill()
                recorder.wait()


# ---------------------------------------------------------------- figures


def median(values: list[float]) -> float:
    return statistics.median(values)


def write_results(name: str, data: dict[str, object]) -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


def new_run_dir(name: str) -> Path:
    path = OUTPUT / f"run-{name}-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def run_and_write(name: str, run: Callable[[Path], dict[str, object]], keep: bool = False) -> int:
    """A benchmark's end: `run` in a fresh run folder, what it returns written as the results
    (`write_results`); the exit status, 1 when it failed (the reason printed). The folder is
    removed afterwards, unless `keep` or the run failed (its logs tell why)."""
    run_dir = new_run_dir(name)
    try:
        path = write_results(name, run(run_dir))
        print(f"\nresults: {path}")
    except BenchError as exc:
        print(f"benchmark failed: {exc}\nlogs and data kept in {run_dir}", file=sys.stderr)
        return 1
    if not keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0


def steady_client_heap() -> None:
    """Keep free memory at the top of this process's heap instead of giving it back at once.

    glibc gives the heap's top back to the kernel when over 128 kB are free there, and grows it
    again for the next buffer: depending on how the heap lies, httpx reading a 263 MB response
    then spends twice the time (200 against 100 ms, mostly page faults), in some processes and
    not others. The benchmark measures the servers, so its client keeps 64 MiB (`mallopt`).
    """
    libc = ctypes.CDLL(None)
    m_trim_threshold, m_top_pad = -1, -2
    libc.mallopt(m_top_pad, 64 << 20)
    libc.mallopt(m_trim_threshold, 128 << 20)


def begin(title: str, profile: bool) -> dict[str, str] | None:
    """Common start of a benchmark: SIGTERM handling, the client's heap, prerequisites, then
    the machine printed and returned; None when a prerequisite is missing (the reason is
    printed)."""
    stop_on_sigterm()
    steady_client_heap()
    try:
        check_prerequisites()
        if profile:
            py_spy()
    except BenchError as exc:
        print(exc, file=sys.stderr)
        return None
    info = machine()
    print(title)
    print_machine(info)
    return info
