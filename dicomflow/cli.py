"""The `dicomflow` command: one sub-command per service, plus the local stack."""

import argparse
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

from dicomflow.core.scheduling import schedule_as_background
from dicomflow.core.settings import Settings

SERVICES = ("scp", "worker", "api", "analytics-sink")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dicomflow", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    commands = parser.add_subparsers(dest="command", required=True)
    stack = commands.add_parser("stack", help="the local PostgreSQL, Redis, Kafka and MariaDB")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument(
        "names", nargs="*", help="down only: the services to stop (postgres, redis, kafka, mariadb)"
    )
    commands.add_parser("scp", help="run the Storage SCP")
    commands.add_parser("worker", help="run the Faust stream worker")
    commands.add_parser("api", help="run the DICOMweb API")
    commands.add_parser("analytics-sink", help="run the analytics sink (topics -> SQL tables)")
    _analytics_parser(commands)
    commands.add_parser("run", help="run the stack and every service in the foreground")
    importer = commands.add_parser("import", help="import DICOM files and folders")
    importer.add_argument("paths", nargs="+", type=Path, help="files or folders")
    importer.add_argument("--tenant", help="tenant to import into (default: the default tenant)")
    importer.add_argument("--workers", type=int, default=4, help="parallel files (default 4)")
    storage = commands.add_parser("storage", help="maintenance of the storage and JSON roots")
    storage.add_argument("action", choices=["sweep"], help="sweep: remove crash leftovers")
    storage.add_argument(
        "--older-than",
        type=float,
        default=3600.0,
        help="seconds a temporary file must be untouched to be removed (default 3600)",
    )
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = Settings()
    if args.command == "stack":
        return _stack(settings, args.action, args.names)
    if args.command == "scp":
        from dicomflow.ingest.server import serve

        serve(settings)
    elif args.command == "worker":
        from dicomflow.streams.main import run_worker

        schedule_as_background(settings)
        run_worker(settings, args.log_level)
    elif args.command == "api":
        from dicomflow.api.main import serve as serve_api

        serve_api(settings)
    elif args.command == "analytics-sink":
        from dicomflow.analytics.main import run_sink

        schedule_as_background(settings)
        run_sink(settings, args.log_level)
    elif args.command == "analytics":
        return _analytics(settings, args)
    elif args.command == "run":
        return _run_all(settings)
    elif args.command == "import":
        return _import(settings, args.paths, args.tenant, args.workers)
    elif args.command == "storage":
        return _sweep(settings, args.older_than)
    return 0


def _analytics_parser(commands: argparse._SubParsersAction) -> None:
    from dicomflow.analytics.queries import query_names

    analytics = commands.add_parser("analytics", help="the analytics tables and queries")
    actions = analytics.add_subparsers(dest="action", required=True)
    actions.add_parser("init", help="create the analytics tables (idempotent)")
    query = actions.add_parser("query", help="run one of the queries in sql/analytics/")
    query.add_argument("name", choices=query_names())


def _analytics(settings: Settings, args: argparse.Namespace) -> int:
    import pymysql

    from dicomflow.analytics.queries import description, format_table, run_query
    from dicomflow.analytics.schema import apply_schema

    try:
        if args.action == "init":
            for path in apply_schema(settings):
                print(f"applied {path.name}")
        else:
            table = format_table(*run_query(settings, args.name))
            print(description(args.name) + "\n\n" + table)
    except pymysql.MySQLError as exc:
        print(f"analytics target ({settings.analytics_dialect}): {exc}", file=sys.stderr)
        return 1
    return 0


def _import(settings: Settings, paths: list[Path], tenant: str | None, workers: int) -> int:
    from dicomflow.core.identifiers import validate_tenant
    from dicomflow.ingest.bulk_import import run_import

    summary = run_import(
        settings, paths, validate_tenant(tenant or settings.default_tenant), workers
    )
    print("\n".join(summary.lines()))
    return 0 if summary.total and not summary.rejected else 1


def _sweep(settings: Settings, older_than: float) -> int:
    """Remove the temporary files a crash left beside stored DICOM and JSON files."""
    from dicomflow.core.storage import LocalStorage

    for root in (settings.storage_dir, settings.json_dir):
        files, size = LocalStorage(root).remove_stale_temporary_files(older_than)
        print(f"{root}: removed {files} temporary files ({size} bytes)")
    return 0


def _stack(settings: Settings, action: str, names: list[str]) -> int:
    from dicomflow.stack import manager

    known = [service.name for service in manager.services(settings)]
    if names and action != "down":
        print(f"stack {action} takes no service names (only stack down does)", file=sys.stderr)
        return 2
    if unknown := sorted(set(names) - set(known)):
        print(f"unknown services {', '.join(unknown)}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    if action == "up":
        started = manager.up(settings)
        print("started: " + (", ".join(started) or "nothing (already running)"))
    elif action == "down":
        stopped = manager.down(settings, names or None)
        print("stopped: " + (", ".join(stopped) or "nothing"))
    else:
        for name, state in manager.status(settings).items():
            print(f"{name:10} {state}")
    return 0


def _run_all(settings: Settings) -> int:
    """Start the stack, then the services as child processes; Ctrl-C stops it all cleanly."""
    from dicomflow.stack import manager

    started = manager.up(settings)
    children = [subprocess.Popen([sys.executable, "-m", "dicomflow", name]) for name in SERVICES]
    stop = False

    def request_stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        while not stop and all(child.poll() is None for child in children):
            time.sleep(0.5)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
        manager.down(settings, started)
    return 0 if stop else 1
