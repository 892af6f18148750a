"""DICOMweb latency: dicomflow against Orthanc + its DICOMweb plugin, same data, same machine.

    .venv/bin/python bench/dicomweb.py [--reps 30] [--heavy-reps 10] [--series-reps 10] [--keep]

Starts its own dicomflow stack and services and its own Orthanc (as bench/cstore.py does),
loads both with the same two series of the corpus (500 CT instances in study 1, 50 in study
2) over C-STORE, then times requests with httpx on loopback: one keep-alive connection per
server, one warm-up request per server, then N timed requests per server in blocks of 5, the
servers taking turns block by block; the median is reported.

- series metadata, 50 and 500 instances (`Accept: application/dicom+json`). dicomflow has
  five paths, each measured on its own (`PATHS`): while the series is not stable, built on
  demand after a change (cold: one instance sent again over C-STORE and indexed before each
  request, to Orthanc as well, which replaces its copy), asked again (again), and after a change
  with Redis stopped (fallback); once the series is stable, precomputed and in Redis (warm) or
  read from the precomputed file;
- QIDO-RS studies by PatientID;
- one instance (`multipart/related; type="application/dicom"; transfer-syntax=*`);
- frame 1 of one instance (`multipart/related; type="application/octet-stream";
  transfer-syntax=*`, as OHIF asks), the same frame again and again; and frame 1 of a
  different instance each time (each request the first for its file, as a viewer loading a
  series makes them);
- the whole 500-instance series (~263 MB, `multipart/related; type="application/dicom"` as
  dicomweb-client's retrieve_series asks), streamed and discarded.

Every operation runs twice: with the headers dicomweb-client 0.61.2 sends (through requests:
`Accept-Encoding: gzip, deflate`; Orthanc then gzips DICOM payloads too), and with
`Accept-Encoding: identity`. Times include reading (and decompressing) the whole body, as a
client does. Nothing is asserted on times; every response is checked once for content.
"""

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import asyncpg
import harness  # bench/ is on sys.path: these scripts run as files
import httpx
import make_corpus
import orjson
import redis
from harness import BenchError, Dicomflow, Orthanc, log
from make_corpus import CT50, CT500, Manifest

from dicomflow.core.cache import series_metadata_key

GZIP = "gzip, deflate"  # what requests (so dicomweb-client) sends by default
IDENTITY = "identity"
ENCODINGS = {"gzip": GZIP, "identity": IDENTITY}
DICOM_JSON = "application/dicom+json"
QIDO_ACCEPT = "application/dicom+json, application/json"  # dicomweb-client search_for_*
INSTANCE_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'  # OHIF
SERIES_ACCEPT = 'multipart/related; type="application/dicom"'  # dicomweb-client retrieve_series
BLOCK = 5  # consecutive requests to one server before the other takes its turn
NEVER_STABLE = 86400.0  # phase 1: the worker indexes but never marks the series stable

COLD = "cold"  # not stable yet, after a change: the new version, the new instance's JSON
AGAIN = "again"  # not stable yet, nothing changed: from memory
FALLBACK = "fallback"  # as cold, Redis stopped: the new instance's JSON from the parts file
WARM = "warm"  # precomputed and in Redis: what viewers get once the series is stable
FILE = "file"  # precomputed file, its Redis entry removed before each request
PATHS = {
    COLD: "dicomflow cold = series not stable yet, after a change (one of its instances sent"
    " again over C-STORE and indexed before each request, on Orthanc too): its new version read"
    " from PostgreSQL on the notification, the new copy's JSON from Redis, the others' from"
    " memory",
    AGAIN: "dicomflow again = series not stable yet, asked again: from memory at its version",
    FALLBACK: "dicomflow fallback = as cold, with Redis stopped: the new copy's JSON read from"
    " the series' parts file",
    WARM: "dicomflow warm = precomputed when the series became stable, served from Redis",
    FILE: "dicomflow file = precomputed file, Redis entry removed before each request",
}
AFTER_A_CHANGE = {COLD, FALLBACK}  # Orthanc too gets the change before each request
NOTIFIED = 0.001  # s: a notification reaches the API in under 0.4 ms (bench/README.md)


@dataclass
class Timing:
    """Latencies of one operation on one server, in milliseconds."""

    samples: list[float] = field(default_factory=list)
    first_ms: float = 0.0  # the warm-up request, not in the median
    wire_bytes: int = 0  # of the last response, as sent (compressed or not)
    body_bytes: int = 0  # of the last response, decoded

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


@dataclass
class Row:
    operation: str
    encoding: str
    dicomflow_path: str
    dicomflow: Timing
    orthanc: Timing


class Checker:
    """Content checks, run on the warm-up response only."""

    @staticmethod
    def json_array(length: int) -> Callable[[bytes, httpx.Response], None]:
        def check(body: bytes, response: httpx.Response) -> None:
            items = orjson.loads(body)
            if not isinstance(items, list) or len(items) != length:
                count = len(items) if isinstance(items, list) else type(items).__name__
                raise BenchError(f"{response.url}: expected {length} objects, got {count}")

        return check

    @staticmethod
    def multipart(parts: int) -> Callable[[bytes, httpx.Response], None]:
        def check(body: bytes, response: httpx.Response) -> None:
            found = count_parts(body, boundary_of(response))
            if found != parts:
                raise BenchError(f"{response.url}: expected {parts} parts, got {found}")

        return check


def boundary_of(response: httpx.Response) -> bytes:
    content_type = response.headers.get("content-type", "")
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.lower() == "boundary":
            return b"--" + value.strip('"').encode()
    raise BenchError(f"{response.url}: no multipart boundary in {content_type!r}")


def count_parts(body: bytes, delimiter: bytes) -> int:
    """Parts in a multipart body: delimiter lines minus the closing one."""
    return body.count(b"\r\n" + delimiter) + body.startswith(delimiter) - 1


@dataclass(frozen=True)
class Request:
    path: str
    accept: str
    encoding: str
    stream: bool = False
    timed_paths: tuple[str, ...] = ()  # when set, the timed requests' paths in turn

    def path_of(self, rep: int | None) -> str:
        """The path of timed request `rep` (None: the warm-up)."""
        if rep is None or not self.timed_paths:
            return self.path
        return self.timed_paths[rep % len(self.timed_paths)]


class Client:
    """Sequential timed GETs against one server over one keep-alive connection."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = httpx.Client(timeout=600, headers={"User-Agent": "dicomflow-bench"})

    def close(self) -> None:
        self.http.close()

    def timed(
        self, request: Request, keep_body: bool, rep: int | None = None
    ) -> tuple[float, int, int, bytes, httpx.Response]:
        """One request: milliseconds, bytes on the wire, decoded bytes, kept body, response."""
        headers = {"Accept": request.accept, "Accept-Encoding": request.encoding}
        path = request.path_of(rep)
        started = time.perf_counter()
        wire, body, response, kept = self._request(path, headers, request.stream, keep_body)
        return (time.perf_counter() - started) * 1000, wire, body, kept, response

    def _request(
        self, path: str, headers: dict[str, str], stream: bool, keep_body: bool
    ) -> tuple[int, int, httpx.Response, bytes]:
        url = self.base + path
        if not stream:
            response = self.http.get(url, headers=headers)
            _raise_for_status(response)
            return response.num_bytes_downloaded, len(response.content), response, response.content
        with self.http.stream("GET", url, headers=headers) as response:
            _raise_for_status(response)
            kept = bytearray()
            body = 0
            for chunk in response.iter_bytes():
                body += len(chunk)
                if keep_body:
                    kept += chunk
            return response.num_bytes_downloaded, body, response, bytes(kept)


def measure(
    client: Client,
    request: Request,
    timing: Timing,
    warm_up: bool,
    check: Callable[[bytes, httpx.Response], None] | None,
    before: Callable[[], None] | None,
) -> None:
    if before is not None:
        before()
    rep = None if warm_up else len(timing.samples)
    elapsed, wire, body, kept, response = client.timed(request, warm_up and check is not None, rep)
    if warm_up:
        timing.first_ms = elapsed
        if check is not None:
            check(kept, response)
    else:
        timing.samples.append(elapsed)
    timing.wire_bytes, timing.body_bytes = wire, body


def alternating(
    sides: list[tuple[Client, Request, Callable[[], None] | None]],
    reps: int,
    check: Callable[[bytes, httpx.Response], None] | None,
) -> list[Timing]:
    """One warm-up request per side, then `reps` timed ones per side in blocks of BLOCK, the
    sides taking turns block by block (the one that starts alternating), so that a slow or fast
    moment of the shared machine hits every side alike."""
    timings = [Timing() for _ in sides]
    for side, (client, request, before) in enumerate(sides):
        measure(client, request, timings[side], True, check, before)
    order = list(range(len(sides)))
    for start in range(0, reps, BLOCK):
        for side in order:
            client, request, before = sides[side]
            for _ in range(min(BLOCK, reps - start)):
                measure(client, request, timings[side], False, check, before)
        order.reverse()
    return timings


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code != 200:
        response.read()
        raise BenchError(f"GET {response.url}: {response.status_code} {response.text[:300]}")


class SeriesChanges:
    """Changes a series as a modality does, on either server: one of its instances is sent
    again over C-STORE (a new copy, which replaces the stored one on both: Orthanc runs with
    `OverwriteInstances`), then 1 ms passes before the request, as for a viewer polling a
    series being received.

    dicomflow: waits until the copy is indexed (PostgreSQL notifies the API then). Orthanc
    stores a copy before it answers the C-STORE; that its attachment is new is checked before
    the next change, so that no request of the checker's reaches Orthanc just before a timed one.
    """

    def __init__(self, system: Dicomflow, orthanc: Orthanc, corpus: Path) -> None:
        self._system = system
        self._orthanc = orthanc
        self._corpus = corpus
        self._sent = {"dicomflow": 0, "Orthanc": 0}
        self._orthanc_pending: tuple[str, str] | None = None  # SOP UID, its attachment before
        self._orthanc_http = httpx.Client(base_url=orthanc.url, timeout=60)
        self._loop = asyncio.new_event_loop()
        self._connection = self._loop.run_until_complete(asyncpg.connect(system.postgres_dsn))

    def _next(self, side: str, m: Manifest) -> tuple[str, Path]:
        index = self._sent[side] % m.count
        self._sent[side] += 1
        folder = make_corpus.series_folder(self._corpus, m)
        return m.sop_uids[index], folder / f"{index + 1:04d}.dcm"

    def dicomflow(self, m: Manifest) -> None:
        sop_uid, path = self._next("dicomflow", m)
        before = self._loop.run_until_complete(self._received(m, sop_uid))
        self._store(path, self._system.ports.scp, harness.DICOMFLOW_AE)

        async def indexed() -> bool:
            return await self._received(m, sop_uid) != before

        self._loop.run_until_complete(
            harness.wait_async(indexed, 60, f"dicomflow to index {path} again", 0.002)
        )
        time.sleep(NOTIFIED)

    def orthanc(self, m: Manifest) -> None:
        self._check_orthanc_replaced()
        sop_uid, path = self._next("Orthanc", m)
        attachment = self._orthanc_attachment(sop_uid)
        self._store(path, self._orthanc.ports.orthanc_dicom, harness.ORTHANC_AE)
        self._orthanc_pending = (sop_uid, attachment)
        time.sleep(NOTIFIED)

    def _orthanc_attachment(self, sop_uid: str) -> str:
        """The identifier of the file Orthanc holds for an instance."""
        found = self._orthanc_http.post("/tools/lookup", content=sop_uid)
        found.raise_for_status()
        (instance,) = [item["ID"] for item in found.json() if item["Type"] == "Instance"]
        info = self._orthanc_http.get(f"/instances/{instance}/attachments/dicom/info")
        info.raise_for_status()
        return str(info.json()["Uuid"])

    def _check_orthanc_replaced(self) -> None:
        if self._orthanc_pending is None:
            return
        sop_uid, before = self._orthanc_pending
        self._orthanc_pending = None
        if self._orthanc_attachment(sop_uid) == before:
            raise BenchError(f"Orthanc kept its file of {sop_uid}: the copy sent again was ignored")

    def _store(self, path: Path, port: int, called_ae: str) -> None:
        result = self._loop.run_until_complete(harness.storescu(path, port, called_ae))
        if result.successes != 1:
            raise BenchError(f"sending {path} again failed:\n{result.output}")

    async def _received(self, m: Manifest, sop_uid: str) -> object:
        """When dicomflow indexed its copy of an instance."""
        return await self._connection.fetchval(
            "SELECT received_time FROM dicom_image_meta WHERE tenant_id = $1"
            " AND study_uid = $2 AND series_uid = $3 AND sop_uid = $4",
            harness.TENANT,
            m.study_uid,
            m.series_uid,
            sop_uid,
        )

    def close(self) -> None:
        try:
            self._check_orthanc_replaced()
        finally:
            self._orthanc_http.close()
            self._loop.run_until_complete(self._connection.close())
            self._loop.close()


# ---------------------------------------------------------------- loading


async def load(system: Dicomflow, orthanc: Orthanc, corpus: Path, series: list[Manifest]) -> None:
    connection = await asyncpg.connect(system.postgres_dsn)
    try:
        for manifest in series:
            folder = make_corpus.series_folder(corpus, manifest)
            for port, ae, side in (
                (system.ports.scp, harness.DICOMFLOW_AE, "dicomflow"),
                (orthanc.ports.orthanc_dicom, harness.ORTHANC_AE, "Orthanc"),
            ):
                log(f"loading {manifest.count} instances into {side}")
                result = await harness.storescu(folder, port, ae)
                if result.successes != manifest.count:
                    raise BenchError(f"{side}: {result.successes} of {manifest.count} stored")

            async def indexed(manifest: Manifest = manifest) -> bool:
                count = await harness.indexed_count(connection, manifest.study_uid)
                return count >= manifest.count

            await harness.wait_async(indexed, 600, "dicomflow to index the series")
            stored = await asyncio.to_thread(orthanc.instances_in_study, manifest.study_uid)
            if stored != manifest.count:
                raise BenchError(f"Orthanc holds {stored} of {manifest.count} instances")
    finally:
        await connection.close()


def quiet(system: Dicomflow, orthanc: Orthanc) -> None:
    """Let both sides finish their background work before the next measurements."""
    waited = harness.wait_quiet({**system.cpu_roots(), **orthanc.cpu_roots()})
    log(f"both sides quiet after {waited:.1f} s")


async def wait_precomputed(system: Dicomflow, series: list[Manifest]) -> None:
    connection = await asyncpg.connect(system.postgres_dsn)
    try:
        for manifest in series:

            async def ready(manifest: Manifest = manifest) -> bool:
                return await harness.metadata_precomputed(
                    connection, manifest.study_uid, manifest.series_uid
                )

            await harness.wait_async(ready, 600, "dicomflow's precomputed series metadata", 0.2)
    finally:
        await connection.close()


# ---------------------------------------------------------------- measuring


Before = Callable[[Manifest], None] | None  # what happens to a series before each request


@dataclass
class Bench:
    system: Dicomflow
    orthanc_server: Orthanc
    dicomflow: Client
    orthanc: Client
    reps: int
    heavy_reps: int
    series_reps: int
    corpus: Path
    rows: list[Row] = field(default_factory=list)

    def metadata_path(self, m: Manifest) -> str:
        return f"/studies/{m.study_uid}/series/{m.series_uid}/metadata"

    def metadata_reps(self, m: Manifest) -> int:
        return self.heavy_reps if m.count > 100 else self.reps

    def on_demand_metadata(self, series: list[Manifest]) -> list[Row]:
        """Phase 1 (series not stable): after a change (on both servers) and asked again; then
        after a change with Redis stopped."""
        changes = SeriesChanges(self.system, self.orthanc_server, self.corpus)
        try:
            changed = (changes.dicomflow, changes.orthanc)
            rows = self._metadata(series, [(COLD, *changed), (AGAIN, None, None)])
            log("dicomflow: stopping Redis")
            self.system.stop_service("redis")
            try:
                rows += self._metadata(series, [(FALLBACK, *changed)])
            finally:
                log("dicomflow: starting Redis again")
                self.system.start_stopped_services()
            return rows
        finally:
            changes.close()

    def precomputed_metadata(self, series: list[Manifest]) -> list[Row]:
        """Phase 2 (series stable, metadata written): the file, then the Redis entry."""
        cache = redis.Redis.from_url(self.system.redis_url)
        try:

            def uncached(m: Manifest) -> None:
                cache.delete(series_metadata_key(harness.TENANT, m.study_uid, m.series_uid))

            return self._metadata(series, [(FILE, uncached, None), (WARM, None, None)])
        finally:
            cache.close()

    def _metadata(
        self, series: list[Manifest], paths: list[tuple[str, Before, Before]]
    ) -> list[Row]:
        """Each dicomflow path, series and encoding, alternating with Orthanc, each server with
        the path's action for it before each request (its warm-up request included)."""
        rows = []
        for path, ours_before, theirs_before in paths:
            for m in series:
                for name, encoding in ENCODINGS.items():
                    operation = f"series metadata, {m.count} inst."
                    log(f"{operation}, {name}: dicomflow {path}")
                    request = Request(self.metadata_path(m), DICOM_JSON, encoding)
                    ours, theirs = alternating(
                        [
                            (self.dicomflow, request, ours_before and partial(ours_before, m)),
                            (self.orthanc, request, theirs_before and partial(theirs_before, m)),
                        ],
                        self.metadata_reps(m),
                        Checker.json_array(m.count),
                    )
                    rows.append(Row(operation, name, path, ours, theirs))
        return rows

    def both(
        self,
        operation: str,
        encoding_name: str,
        path: str,
        accept: str,
        reps: int,
        check: Callable[[bytes, httpx.Response], None],
        stream: bool = False,
    ) -> Row:
        log(f"{operation}, {encoding_name}: dicomflow and Orthanc, alternating")
        request = Request(path, accept, ENCODINGS[encoding_name], stream)
        ours, theirs = alternating(
            [(self.dicomflow, request, None), (self.orthanc, request, None)], reps, check
        )
        return Row(operation, encoding_name, "", ours, theirs)

    def first_frames(self, ct500: Manifest) -> Row:
        """Frame 1 of a different instance each time, as a viewer loads a series after its
        metadata (asked for by the rows before): every request is the first for its file on
        both servers (its frame layout not remembered, the file in the page cache)."""
        operation = "first frame of each instance"
        log(f"{operation}: dicomflow and Orthanc, alternating")
        series = f"/studies/{ct500.study_uid}/series/{ct500.series_uid}"
        paths = tuple(f"{series}/instances/{sop}/frames/1" for sop in ct500.sop_uids)
        if len(paths) < self.reps + 1:
            raise BenchError(f"{operation}: {len(paths)} instances for {self.reps} requests")
        request = Request(paths[-1], FRAME_ACCEPT, IDENTITY, timed_paths=paths[: self.reps])
        ours, theirs = alternating(
            [(self.dicomflow, request, None), (self.orthanc, request, None)],
            self.reps,
            Checker.multipart(1),
        )
        return Row(operation, "identity", "", ours, theirs)

    def the_rest(self, ct500: Manifest) -> list[Row]:
        rows = []
        qido = f"/studies?PatientID={ct500.patient_id}"
        instance = (
            f"/studies/{ct500.study_uid}/series/{ct500.series_uid}"
            f"/instances/{ct500.sop_uids[len(ct500.sop_uids) // 2]}"
        )
        series = f"/studies/{ct500.study_uid}/series/{ct500.series_uid}"
        for name in ENCODINGS:
            rows.append(
                self.both(
                    "QIDO-RS studies?PatientID=",
                    name,
                    qido,
                    QIDO_ACCEPT,
                    self.reps,
                    Checker.json_array(1),
                )
            )
        for name in ENCODINGS:
            rows.append(
                self.both(
                    "retrieve one instance",
                    name,
                    instance,
                    INSTANCE_ACCEPT,
                    self.reps,
                    Checker.multipart(1),
                )
            )
        for name in ENCODINGS:
            rows.append(
                self.both(
                    "retrieve one frame",
                    name,
                    instance + "/frames/1",
                    FRAME_ACCEPT,
                    self.reps,
                    Checker.multipart(1),
                )
            )
        rows.append(self.first_frames(ct500))
        for name in ENCODINGS:
            rows.append(
                self.both(
                    f"retrieve series, {ct500.count} inst.",
                    name,
                    series,
                    SERIES_ACCEPT,
                    self.series_reps,
                    Checker.multipart(ct500.count),
                    stream=True,
                )
            )
        return rows


# ---------------------------------------------------------------- report


def orthanc_case(row: Row) -> tuple[str, str, bool]:
    """Rows whose Orthanc figures are comparable: the same operation and encoding, and Orthanc
    asked after a change of the series or not."""
    return row.operation, row.encoding, row.dicomflow_path in AFTER_A_CHANGE


def print_table(rows: list[Row], encoding: str, title: str) -> None:
    """One line per row; the speed-up is against Orthanc's fastest median for the same case
    (`orthanc_case`; its metadata is measured in both phases, 15 ms in one and 35 ms in the
    other in some runs: a scheduling effect, see README), so no row gains from Orthanc's slow
    moments."""
    best: dict[tuple[str, str, bool], float] = {}
    for row in rows:
        key = orthanc_case(row)
        best[key] = min(best.get(key, row.orthanc.median), row.orthanc.median)
    print()
    print(title)
    print(
        f"{'operation':40} {'dicomflow ms':>12} {'Orthanc ms':>11} {'best':>6} {'speed-up':>9} "
        f"{'bytes sent dicomflow / Orthanc':>31}"
    )
    for row in rows:
        if row.encoding != encoding:
            continue
        orthanc = best[orthanc_case(row)]
        wire = f"{_size(row.dicomflow.wire_bytes)} / {_size(row.orthanc.wire_bytes)}"
        name = f"{row.operation} ({row.dicomflow_path})" if row.dicomflow_path else row.operation
        print(
            f"{name:40} {row.dicomflow.median:12.1f} {row.orthanc.median:11.1f} {orthanc:6.1f} "
            f"{orthanc / row.dicomflow.median:8.2f}x {wire:>31}"
        )


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=30, help="timed requests, light operations")
    parser.add_argument("--heavy-reps", type=int, default=10, help="500-instance metadata")
    parser.add_argument("--series-reps", type=int, default=10, help="whole-series retrieve")
    parser.add_argument("--corpus", type=Path, default=make_corpus.DEFAULT_FOLDER)
    parser.add_argument("--keep", action="store_true", help="keep the servers' stored files")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the dicomflow API while it is measured (slows it down)",
    )
    args = parser.parse_args(argv)
    info = harness.begin("DICOMweb benchmark: dicomflow vs Orthanc + DICOMweb plugin", args.profile)
    if info is None:
        return 2
    log("corpus: generating what is missing")
    phantom = make_corpus.Phantom()
    ct500 = make_corpus.ensure_series(args.corpus, CT500, phantom)
    ct50 = make_corpus.ensure_series(args.corpus, CT50, phantom)

    ports = harness.Ports.from_environment()

    def run(run_dir: Path) -> dict[str, object]:
        with contextlib.ExitStack() as stack:
            system = stack.enter_context(
                harness.dicomflow_running(ports, run_dir, stable_seconds=NEVER_STABLE)
            )
            orthanc = stack.enter_context(harness.orthanc_running(ports, run_dir))
            asyncio.run(load(system, orthanc, args.corpus, [ct500, ct50]))
            quiet(system, orthanc)
            ours = Client(system.api_url + "/dicom-web")
            stack.callback(ours.close)
            theirs = Client(orthanc.url + "/dicom-web")
            stack.callback(theirs.close)
            bench = Bench(
                system,
                orthanc,
                ours,
                theirs,
                args.reps,
                args.heavy_reps,
                args.series_reps,
                args.corpus,
            )
            if args.profile:
                profile = harness.OUTPUT / f"profile-dicomweb-{time.strftime('%Y%m%d-%H%M%S')}"
                print(f"profiling the API into {profile}: its figures are distorted")
                stack.enter_context(harness.profiled({"api": system.pid("api")}, profile))
            rows = bench.on_demand_metadata([ct50, ct500])
            log("dicomflow: restarting the worker with DICOMFLOW_SERIES_STABLE_SECONDS=2")
            system.stop("worker")
            system.start("worker", series_stable_seconds="2")
            asyncio.run(wait_precomputed(system, [ct50, ct500]))
            quiet(system, orthanc)
            rows += bench.precomputed_metadata([ct50, ct500])
            rows += bench.the_rest(ct500)
        rows.sort(key=lambda r: _order(r.operation))
        print(f"\nload average at the end: {harness.loadavg()}")
        print(
            f"\nmedian of N sequential requests after one warm-up; N = {args.reps} "
            f"(50-instance metadata, QIDO, one instance, frames), {args.heavy_reps} (500-instance "
            f"metadata), {args.series_reps} (series retrieve); Orthanc ms = measured alongside the "
            "row, best = Orthanc's fastest median for that operation in the run (among the rows "
            "where it too was asked after a change, for cold and fallback); speed-up = best "
            "/ dicomflow (above 1: dicomflow is faster)"
        )
        for legend in PATHS.values():
            print(legend)
        print_table(
            rows,
            "gzip",
            "Headers as dicomweb-client 0.61.2 sends them: Accept-Encoding: gzip, deflate",
        )
        print_table(rows, "identity", "Accept-Encoding: identity")
        return {
            "machine": info,
            "reps": {"light": args.reps, "heavy": args.heavy_reps, "series": args.series_reps},
            "rows": [
                {
                    "operation": r.operation,
                    "encoding": r.encoding,
                    "dicomflow_path": r.dicomflow_path,
                    "dicomflow": vars(r.dicomflow),
                    "orthanc": vars(r.orthanc),
                }
                for r in rows
            ],
        }

    return harness.run_and_write("dicomweb", run, args.keep)


def _order(operation: str) -> int:
    for index, prefix in enumerate(
        (
            "series metadata, 50 ",
            "series metadata, 500 ",
            "QIDO",
            "retrieve one instance",
            "retrieve one frame",
            "first frame",
            "retrieve series",
        )
    ):
        if operation.startswith(prefix):
            return index
    return 99


if __name__ == "__main__":
    sys.exit(main())
