"""The Storage SCP alone against Orthanc: how much of an instance's cycle each part of it takes.

    .venv/bin/python bench/scp_alone.py [--rounds 3] [--corpus bench/output/corpus]

Starts dicomflow's stack (Kafka, PostgreSQL, Redis; no worker, no API: events wait in Kafka,
unread) and Orthanc, then, round after round, sends the 500-instance CT series on one storescu
association to each of four sides: the SCP storing nothing (`nothing`: pynetdicom's own cycle),
the SCP writing and fsyncing without publishing (`no-event`), the whole SCP (`whole`: each
event acknowledged by Kafka) and Orthanc. The SCPs are `dicomflow scp` with part of its path
replaced by a no-op (`scp_variant.py`), each started in turn on the same port. Each round sends
a series of its own (fresh UIDs: Orthanc skips instances it holds already), and the order of
the sides rotates from round to round. Prints, as medians over the rounds, instances/s, each
side's rate as a fraction of Orthanc's, and the CPU time per instance of the side's process.
Then opens ten associations to the whole SCP and to Orthanc and leaves them idle (as modalities
that keep theirs open do): prints the CPU each server spends per second on them.
Nothing is asserted on times.
"""

import argparse
import asyncio
import contextlib
import sys
import time
from dataclasses import replace
from pathlib import Path

import harness  # bench/ is on sys.path: these scripts run as files
import make_corpus
from harness import BenchError, Dicomflow, Orthanc, log
from make_corpus import CT500, Manifest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

SIDES = ("nothing", "no-event", "whole", "Orthanc")
IDLE_ASSOCIATIONS = 10
IDLE_SECONDS = 3.0


def start_scp(system: Dicomflow, variant: str) -> harness.Process:
    command = [harness.PYTHON, str(harness.BENCH / "scp_variant.py"), variant]
    log_file = system.run_dir / "logs" / f"scp-{variant}.log"
    process = harness.spawn(f"scp {variant}", command, system.env, log_file, harness.SOURCE)

    def ready() -> bool:
        process.check_alive()
        return harness.echo(system.ports.scp, harness.DICOMFLOW_AE)

    harness.wait_for(ready, 120, f"the {variant} SCP (log: {log_file})", 0.3)
    return process


def send(folder: Path, port: int, ae: str, pid: int, count: int) -> tuple[float, float]:
    """Instances/s (storescu start to the last response) and CPU ms per instance of `pid`."""
    before = harness.cpu_seconds({"side": pid})
    result = asyncio.run(harness.storescu(folder, port, ae))
    used = harness.cpu_used(before, harness.cpu_seconds({"side": pid}))["side"]
    if result.successes != count or result.failures:
        raise BenchError(f"{ae}: {result.successes} of {count} stored:\n{result.output[-2000:]}")
    return count / (result.last_response - result.started), used * 1000 / count


def measure(
    system: Dicomflow, orthanc: Orthanc, corpus: Path, rounds: list[Manifest]
) -> dict[str, list[tuple[float, float]]]:
    results: dict[str, list[tuple[float, float]]] = {side: [] for side in SIDES}
    for number, series in enumerate(rounds):
        folder = make_corpus.series_folder(corpus, series)
        order = SIDES[number % len(SIDES) :] + SIDES[: number % len(SIDES)]
        for side in order:
            if side == "Orthanc":
                pid = orthanc.cpu_roots()["Orthanc"]
                figures = send(
                    folder, orthanc.ports.orthanc_dicom, harness.ORTHANC_AE, pid, series.count
                )
            else:
                scp = start_scp(system, side)
                try:
                    figures = send(
                        folder, system.ports.scp, harness.DICOMFLOW_AE, scp.popen.pid, series.count
                    )
                finally:
                    scp.stop()
            log(f"round {number + 1}, {side}: {figures[0]:.1f}/s, {figures[1]:.2f} ms CPU")
            results[side].append(figures)
    return results


def idle_cpu(port: int, called_ae: str, pid: int) -> float:
    """CPU ms per second `pid` spends while IDLE_ASSOCIATIONS associations to it stay idle."""
    requestor = AE(ae_title=harness.CALLING_AE)
    requestor.add_requested_context(Verification)
    opened = [
        requestor.associate("127.0.0.1", port, ae_title=called_ae) for _ in range(IDLE_ASSOCIATIONS)
    ]
    try:
        if not all(assoc.is_established for assoc in opened):
            raise BenchError(f"{called_ae}: not every idle association was accepted")
        before = harness.cpu_seconds({"side": pid})
        started = time.monotonic()
        time.sleep(IDLE_SECONDS)  # the idle period measured
        used = harness.cpu_used(before, harness.cpu_seconds({"side": pid}))["side"]
        return used * 1000 / (time.monotonic() - started)
    finally:
        for assoc in opened:
            if assoc.is_established:
                assoc.release()


def measure_idle(system: Dicomflow, orthanc: Orthanc) -> dict[str, float]:
    scp = start_scp(system, "whole")
    try:
        dicomflow = idle_cpu(system.ports.scp, harness.DICOMFLOW_AE, scp.popen.pid)
    finally:
        scp.stop()
    pid = orthanc.cpu_roots()["Orthanc"]
    return {
        "whole": dicomflow,
        "Orthanc": idle_cpu(orthanc.ports.orthanc_dicom, harness.ORTHANC_AE, pid),
    }


def report_idle(idle: dict[str, float]) -> None:
    print(f"\n{IDLE_ASSOCIATIONS} idle associations: CPU ms per second of the server")
    for side, used in idle.items():
        print(f"{side:10}  {used:7.1f}")


def report(results: dict[str, list[tuple[float, float]]]) -> dict[str, dict[str, float]]:
    orthanc = harness.median([rate for rate, _ in results["Orthanc"]])
    print("\nmedians over the rounds; CPU = the side's process (SCP or Orthanc), per instance")
    print(f"{'side':10}  {'instances/s':>12}  {'of Orthanc':>10}  {'CPU ms':>7}")
    summary = {}
    for side, figures in results.items():
        rate = harness.median([r for r, _ in figures])
        cpu = harness.median([c for _, c in figures])
        print(f"{side:10}  {rate:12.1f}  {rate / orthanc:10.2f}  {cpu:7.2f}")
        summary[side] = {"per_s": rate, "of_orthanc": rate / orthanc, "cpu_ms": cpu}
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--corpus", type=Path, default=make_corpus.DEFAULT_FOLDER)
    args = parser.parse_args(argv)
    info = harness.begin("The Storage SCP alone: its parts against Orthanc", profile=False)
    if info is None:
        return 2
    log("corpus: generating what is missing")
    phantom = make_corpus.Phantom()
    rounds = [
        make_corpus.ensure_series(args.corpus, replace(CT500, variant=f"cstore{i}"), phantom)
        for i in range(1, args.rounds + 1)
    ]
    ports = harness.Ports.from_environment()

    def run(run_dir: Path) -> dict[str, object]:
        with contextlib.ExitStack() as stack:
            system = Dicomflow(ports, run_dir / "dicomflow")
            stack.callback(system.close)
            system.stack_up()
            orthanc = stack.enter_context(harness.orthanc_running(ports, run_dir))
            results = measure(system, orthanc, args.corpus, rounds)
            idle = measure_idle(system, orthanc)
        summary = report(results)
        report_idle(idle)
        return {"machine": info, "rounds": results, "summary": summary, "idle_cpu_ms_per_s": idle}

    return harness.run_and_write("scp-alone", run)


if __name__ == "__main__":
    sys.exit(main())
