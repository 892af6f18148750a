"""C-STORE throughput: dicomflow against Orthanc from Debian, same corpus, same machine.

    .venv/bin/python bench/cstore.py [--reps 3] [--corpus bench/output/corpus] [--keep] [--profile]

Starts its own dicomflow stack (`.stack/bench`, ports of its own) with the SCP, worker and API
as processes, and Orthanc with a generated configuration; sends the 500-instance CT series
(~263 MB) to each with ONE `storescu` association (Explicit VR Little Endian proposed,
TCP_NODELAY=1); each repetition sends the same images under fresh UIDs (a new study), and
the order alternates between repetitions. Prints per repetition and as medians:

- C-STORE: storescu start to the last C-STORE response, in instances/s, for both sides;
- dicomflow indexed: storescu start until PostgreSQL `dicom_image_meta` holds every instance
  of the study (polled every 50 ms); Orthanc indexes before it answers, so its C-STORE
  figure is also its indexed figure;
- the ratios dicomflow/Orthanc (above 1: dicomflow is faster);
- CPU time per instance of every process involved (SCP, worker, API, Kafka, PostgreSQL,
  Redis; Orthanc), from /proc, and their CPU use with no traffic: on a shared machine this
  is steadier than wall time.

Between sends it waits until dicomflow has written the series metadata too (series stable
after DICOMFLOW_SERIES_STABLE_SECONDS=2), so no background work overlaps the next send.
Nothing is asserted on times. Everything started is stopped at the end, also on errors.
`--profile` samples the SCP and the worker with py-spy during repetition 1 (collapsed stacks
in bench/output/profile-cstore-*; that repetition's dicomflow figures are then distorted).
"""

import argparse
import asyncio
import contextlib
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import asyncpg
import harness  # bench/ is on sys.path: these scripts run as files
import make_corpus
from harness import BenchError, Dicomflow, Orthanc, log
from make_corpus import CT500, Manifest, SeriesSpec

IDLE_SECONDS = 10.0
WARMUP = SeriesSpec("ct20", 20, "BENCH-WARMUP", "Bench^Warm Up", variant="warmup")


@dataclass
class Send:
    """One series sent to one side."""

    cstore: float  # storescu start to the last C-STORE response, seconds
    wall: float  # storescu start to its exit
    indexed: float  # storescu start to every instance indexed (Orthanc: = cstore)
    cpu: dict[str, float]  # CPU seconds per process tree, storescu start to indexed
    metadata: float = 0.0  # dicomflow: storescu start to the series metadata written


@dataclass
class Rep:
    index: int
    order: str
    load_before: str
    dicomflow: Send | None = None
    orthanc: Send | None = None
    idle_cpu: dict[str, float] | None = None  # CPU seconds in IDLE_SECONDS with no traffic


def rate(count: int, seconds: float) -> str:
    return f"{seconds:6.2f} s {count / seconds:6.1f}/s"


async def send_to_dicomflow(
    system: Dicomflow,
    connection: asyncpg.Connection,
    corpus: Path,
    series: Manifest,
    profile: Path | None = None,
) -> Send:
    """C-STORE the series, wait until it is indexed and its metadata written.

    With `profile`, the SCP and the worker are sampled by py-spy until the metadata is written.
    """
    if profile is not None:
        pids = {name: system.pid(name) for name in ("scp", "worker")}
        with harness.profiled(pids, profile):
            return await send_to_dicomflow(system, connection, corpus, series)

    async def indexed() -> bool:
        return await harness.indexed_count(connection, series.study_uid) >= series.count

    async def precomputed() -> bool:
        return await harness.metadata_precomputed(connection, series.study_uid, series.series_uid)

    roots = system.cpu_roots()
    cpu_before = harness.cpu_seconds(roots)
    poll = asyncio.create_task(harness.wait_async(indexed, 900, "dicomflow to index the series"))
    try:
        result = await harness.storescu(
            make_corpus.series_folder(corpus, series), system.ports.scp, harness.DICOMFLOW_AE
        )
    except BaseException:
        poll.cancel()
        raise
    check(result, series, "dicomflow")
    indexed_at = await poll
    cpu = harness.cpu_used(cpu_before, harness.cpu_seconds(roots))
    metadata_at = await harness.wait_async(
        precomputed, 900, "dicomflow to write the series metadata", 0.2
    )
    syntaxes = await connection.fetch(
        "SELECT DISTINCT transfer_syntax_uid FROM dicom_image_meta WHERE study_uid = $1",
        series.study_uid,
    )
    if [r[0] for r in syntaxes] != ["1.2.840.10008.1.2.1"]:
        raise BenchError(f"dicomflow stored transfer syntaxes {syntaxes}, not Explicit VR LE")
    return Send(
        cstore=result.last_response - result.started,
        wall=result.wall_seconds,
        indexed=indexed_at - result.started,
        cpu=cpu,
        metadata=metadata_at - result.started,
    )


async def send_to_orthanc(orthanc: Orthanc, corpus: Path, series: Manifest) -> Send:
    roots = orthanc.cpu_roots()
    cpu_before = harness.cpu_seconds(roots)
    result = await harness.storescu(
        make_corpus.series_folder(corpus, series), orthanc.ports.orthanc_dicom, harness.ORTHANC_AE
    )
    cpu = harness.cpu_used(cpu_before, harness.cpu_seconds(roots))
    check(result, series, "Orthanc")
    stored = await asyncio.to_thread(orthanc.instances_in_study, series.study_uid)
    if stored != series.count:
        raise BenchError(f"Orthanc holds {stored} of {series.count} instances")
    cstore = result.last_response - result.started
    return Send(cstore=cstore, wall=result.wall_seconds, indexed=cstore, cpu=cpu)


def check(result: harness.StoreResult, series: Manifest, side: str) -> None:
    if result.successes != series.count or result.failures:
        raise BenchError(
            f"{side}: {result.successes} of {series.count} C-STOREs succeeded, "
            f"{result.failures} failed:\n{result.output[-2000:]}"
        )


async def measure(
    system: Dicomflow,
    orthanc: Orthanc,
    corpus: Path,
    warmup: Manifest,
    reps: list[Manifest],
    profile: Path | None,
) -> list[Rep]:
    connection = await asyncpg.connect(system.postgres_dsn)
    try:
        log(f"warm-up: {warmup.count} instances to each side (not measured)")
        await send_to_dicomflow(system, connection, corpus, warmup)
        await send_to_orthanc(orthanc, corpus, warmup)
        await asyncio.sleep(3)
        roots = {**system.cpu_roots(), **orthanc.cpu_roots()}
        before = harness.cpu_seconds(roots)
        await asyncio.sleep(IDLE_SECONDS)
        idle = harness.cpu_used(before, harness.cpu_seconds(roots))
        results = [Rep(0, "idle", harness.loadavg(), idle_cpu=idle)]
        for index, series in enumerate(reps, start=1):
            dicomflow_first = index % 2 == 1
            rep = Rep(
                index,
                "dicomflow first" if dicomflow_first else "Orthanc first",
                harness.loadavg(),
            )
            for side in ("dicomflow", "orthanc") if dicomflow_first else ("orthanc", "dicomflow"):
                await asyncio.sleep(2)
                log(f"rep {index}: {series.count} instances to {side} (study {series.study_uid})")
                if side == "dicomflow":
                    rep.dicomflow = await send_to_dicomflow(
                        system, connection, corpus, series, profile if index == 1 else None
                    )
                else:
                    rep.orthanc = await send_to_orthanc(orthanc, corpus, series)
            assert rep.dicomflow is not None and rep.orthanc is not None
            log(
                f"rep {index}: dicomflow C-STORE {rate(series.count, rep.dicomflow.cstore)}, "
                f"indexed {rate(series.count, rep.dicomflow.indexed)}; "
                f"Orthanc C-STORE {rate(series.count, rep.orthanc.cstore)}"
            )
            results.append(rep)
        return results
    finally:
        await connection.close()


def report(runs: list[Rep], count: int, megabytes: float, stable_seconds: float) -> dict:
    idle = next(r.idle_cpu for r in runs if r.idle_cpu is not None)
    reps = [r for r in runs if r.idle_cpu is None]
    sends = {
        "dicomflow": [r.dicomflow for r in reps if r.dicomflow],
        "Orthanc": [r.orthanc for r in reps if r.orthanc],
    }

    def med(side: str, name: str) -> float:
        return harness.median([getattr(s, name) for s in sends[side]])

    print()
    print(
        f"C-STORE of {count} CT instances ({megabytes:.0f} MB), one storescu association, "
        "Explicit VR Little Endian, TCP_NODELAY=1"
    )
    print("C-STORE = storescu start to the last C-STORE response; indexed = to the last")
    print("PostgreSQL row (Orthanc indexes before it answers: its C-STORE time is both)")
    print(
        f"{'rep':>6}  {'order':15}  {'load 1/5':9}  "
        f"{'dicomflow C-STORE':20}  {'dicomflow indexed':20}  {'Orthanc C-STORE':20}"
    )
    for r in reps:
        assert r.dicomflow is not None and r.orthanc is not None
        print(
            f"{r.index:>6}  {r.order:15}  {r.load_before:9}  "
            f"{rate(count, r.dicomflow.cstore):20}  {rate(count, r.dicomflow.indexed):20}  "
            f"{rate(count, r.orthanc.cstore):20}"
        )
    cstore, indexed = med("dicomflow", "cstore"), med("dicomflow", "indexed")
    orthanc = med("Orthanc", "cstore")
    print(
        f"{'median':>6}  {'':15}  {'':9}  {rate(count, cstore):20}  {rate(count, indexed):20}  "
        f"{rate(count, orthanc):20}"
    )
    print()
    print(f"dicomflow/Orthanc, C-STORE instances/s:               {orthanc / cstore:.2f}")
    print(f"dicomflow/Orthanc, received-and-indexed instances/s:  {orthanc / indexed:.2f}")
    print("(above 1: dicomflow is faster)")
    print(
        f"dicomflow series metadata written (series stable after {stable_seconds:g} s): "
        f"median {med('dicomflow', 'metadata'):.2f} s after storescu start"
    )

    print()
    print("CPU time per instance, storescu start to indexed (median ms; user + system, all")
    print("threads and child processes; steadier than wall time on a shared machine):")
    cpu: dict[str, dict[str, float]] = {}
    for side, side_sends in sends.items():
        names = list(side_sends[0].cpu)
        cpu[side] = {
            name: harness.median([s.cpu[name] for s in side_sends]) * 1000 / count for name in names
        }
        total = harness.median([sum(s.cpu.values()) for s in side_sends]) * 1000 / count
        parts = ", ".join(f"{name} {ms:.2f}" for name, ms in cpu[side].items())
        print(f"  {side:10} {total:6.2f} ms  ({parts})")
        cpu[side]["total"] = total
    idle_ms = {name: seconds * 1000 / IDLE_SECONDS for name, seconds in idle.items()}
    print(
        "  with no traffic (ms of CPU per second): "
        + ", ".join(f"{name} {ms:.1f}" for name, ms in idle_ms.items())
    )
    return {
        "count": count,
        "megabytes": megabytes,
        "reps": [asdict(r) for r in reps],
        "idle_cpu_ms_per_s": idle_ms,
        "median": {
            "dicomflow_cstore_s": cstore,
            "dicomflow_indexed_s": indexed,
            "orthanc_cstore_s": orthanc,
            "dicomflow_cstore_per_s": count / cstore,
            "dicomflow_indexed_per_s": count / indexed,
            "orthanc_cstore_per_s": count / orthanc,
            "ratio_cstore": orthanc / cstore,
            "ratio_indexed": orthanc / indexed,
            "cpu_ms_per_instance": cpu,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--corpus", type=Path, default=make_corpus.DEFAULT_FOLDER)
    parser.add_argument("--stable-seconds", type=float, default=2.0)
    parser.add_argument("--keep", action="store_true", help="keep the servers' stored files")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the dicomflow SCP and worker during repetition 1 (slows them down)",
    )
    args = parser.parse_args(argv)
    info = harness.begin("C-STORE benchmark: dicomflow vs Orthanc", args.profile)
    if info is None:
        return 2

    log("corpus: generating what is missing")
    phantom = make_corpus.Phantom()
    warmup = make_corpus.ensure_series(args.corpus, WARMUP, phantom)
    series = [
        make_corpus.ensure_series(args.corpus, replace(CT500, variant=f"cstore{i}"), phantom)
        for i in range(1, args.reps + 1)
    ]
    folder = make_corpus.series_folder(args.corpus, series[0])
    megabytes = sum(p.stat().st_size for p in folder.glob("*.dcm")) / 1e6

    ports = harness.Ports.from_environment()
    profile = None
    if args.profile:
        profile = harness.OUTPUT / f"profile-cstore-{time.strftime('%Y%m%d-%H%M%S')}"
        print(f"profiling repetition 1 into {profile}: its dicomflow figures are distorted")

    def run(run_dir: Path) -> dict[str, object]:
        with contextlib.ExitStack() as stack:
            system = stack.enter_context(
                harness.dicomflow_running(ports, run_dir, stable_seconds=args.stable_seconds)
            )
            orthanc = stack.enter_context(harness.orthanc_running(ports, run_dir))
            reps = asyncio.run(measure(system, orthanc, args.corpus, warmup, series, profile))
        print(f"\nload average at the end: {harness.loadavg()}")
        return {"machine": info, **report(reps, series[0].count, megabytes, args.stable_seconds)}

    return harness.run_and_write("cstore", run, args.keep)


if __name__ == "__main__":
    sys.exit(main())
