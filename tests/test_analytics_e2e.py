"""The analytics sink end to end: storescu and DICOMweb requests -> Kafka -> the sink ->
MariaDB, the analyst queries on that load, MariaDB stopped and the sink killed in the middle
of a load.

The stack's MariaDB is shared by the whole test session, so the queries' aggregate figures
are compared as differences between a snapshot before the load and one after it, once the
sink has caught up (its lag metric is 0) and no series is receiving; per-study figures are
read from the rows of this test's studies.
"""

import datetime as dt
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from dicomflow.analytics.queries import query_names, run_query
from dicomflow.analytics.tables import SINK_TABLES
from dicomflow.core.settings import Settings
from dicomflow.stack.services import MariaDBService
from tests.dicom_factory import make_ct
from tests.services import RunningServices, storescu, wait_for
from tests.test_analytics_sink import count, fetch_all
from tests.test_streams_e2e import metadata_written

pytestmark = pytest.mark.e2e

PORT_OFFSET = int(os.environ.get("DICOMFLOW_TEST_PORT_OFFSET", "0"))
METRICS_PORT = 29114 + PORT_OFFSET
STUDIES, SERIES, INSTANCES = 3, 2, 20
MODALITIES = {1: "CT", 2: "CT", 3: "MR"}
CHANGE_INTERVAL = 10.0  # the INTERVAL in sql/analytics/series_changed_after_stable.sql
RETRIEVALS = {1: 3, 2: 2, 3: 1}  # metadata requests per study
METADATA_ENDPOINT = "/dicom-web/studies/{uid}/metadata"
Snapshot = dict[str, list[dict[str, Any]]]


@pytest.fixture(scope="module")
def sink(system: RunningServices) -> Iterator[RunningServices]:
    """The system with the analytics sink running against the stack's MariaDB."""
    system.env["DICOMFLOW_ANALYTICS_METRICS_PORT"] = str(METRICS_PORT)
    system.env["DICOMFLOW_ANALYTICS_BATCH_SECONDS"] = "0.2"
    system.start("analytics-sink")
    yield system
    system.stop("analytics-sink")


def instance_path(directory: Path, uid_root: str, study: int, series: int, number: int) -> Path:
    path = directory / f"{study}-{series}-{number}.dcm"
    make_ct(
        path,
        study_uid=f"{uid_root}.{study}",
        series_uid=f"{uid_root}.{study}.{series}",
        sop_uid=f"{uid_root}.{study}.{series}.{number}",
        instance_number=number,
        patient_id=f"P{uid_root[-8:]}-{study}",
        modality=MODALITIES[study],
    )
    return path


def make_load(directory: Path, uid_root: str) -> list[Path]:
    """3 studies x 2 series x 20 instances; study 3 is MR, the others CT."""
    return [
        instance_path(directory, uid_root, study, series, number)
        for study in range(1, STUDIES + 1)
        for series in range(1, SERIES + 1)
        for number in range(1, INSTANCES + 1)
    ]


def metrics() -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5).text
    return {
        name: float(value)
        for name, _, value in (line.rpartition(" ") for line in text.splitlines())
        if name.startswith("dicomflow_analytics_")
    }


def metric_sum(prefix: str) -> float:
    return sum(v for k, v in metrics().items() if k.startswith(prefix))


def caught_up(settings: Settings) -> bool:
    lags = {k: v for k, v in metrics().items() if k.startswith("dicomflow_analytics_lag{")}
    receiving = count(settings, "dicom_state_meta", "series_state <> %s", "stable")
    return len(lags) == len(SINK_TABLES) and not any(lags.values()) and receiving == 0


def snapshot(settings: Settings) -> Snapshot:
    """Every analyst query's rows, once the sink has written all that was published."""
    wait_for(lambda: caught_up(settings), 120, 0.5, "the sink to catch up")
    result = {}
    for name in query_names():
        columns, rows = run_query(settings, name)
        result[name] = [dict(zip(columns, row, strict=True)) for row in rows]
    return result


def change(
    before: Snapshot, after: Snapshot, query: str, key: dict[str, Any], column: str
) -> float:
    """How much `column` of the row matching `key` grew between the snapshots."""

    def value(rows: list[dict[str, Any]]) -> float:
        matching = [r for r in rows if all(r[k] == v for k, v in key.items())]
        assert len(matching) <= 1, matching
        return float(matching[0][column] or 0) if matching else 0.0

    return value(after[query]) - value(before[query])


def study_rows(snap: Snapshot, query: str, uid_root: str) -> list[dict[str, Any]]:
    return [r for r in snap[query] if r["study_uid"].startswith(f"{uid_root}.")]


def load_in_mariadb(settings: Settings, tenant: str, uid_root: str, instances: int) -> bool:
    like = f"{uid_root}.%"
    states = fetch_all(
        settings,
        "SELECT series_state, series_related_instances FROM dicom_state_meta"
        " WHERE tenant_id = %s AND study_uid LIKE %s",
        tenant,
        like,
    )
    where = "tenant_id = %s AND study_uid LIKE %s"
    return (
        len(states) == STUDIES * SERIES
        and {s for s, _ in states} == {"stable"}
        and sum(n for _, n in states) == instances
        and count(settings, "dicom_object_meta", where, tenant, like) == instances
        and count(settings, "dicom_image_meta", where, tenant, like) == instances
    )


def assert_each_instance_once(settings: Settings, tenant: str, uid_root: str, total: int) -> None:
    rows = fetch_all(
        settings,
        "SELECT COUNT(*), COUNT(DISTINCT trace_id), COUNT(DISTINCT sop_uid)"
        " FROM dicom_object_meta WHERE tenant_id = %s AND study_uid LIKE %s",
        tenant,
        f"{uid_root}.%",
    )
    assert rows == [(total, total, total)]
    images = fetch_all(
        settings,
        "SELECT COUNT(*), COUNT(DISTINCT sop_uid) FROM dicom_image_meta"
        " WHERE tenant_id = %s AND study_uid LIKE %s",
        tenant,
        f"{uid_root}.%",
    )
    assert images == [(total, total)]


def stored_bytes(system: RunningServices, uid_root: str, studies: Sequence[int]) -> int:
    files = [
        path
        for study in studies
        for path in (system.storage_root / "default").rglob(f"{uid_root}.{study}/*/*.dcm")
    ]
    return sum(path.stat().st_size for path in files)


def one_date(settings: Settings, sql: str, *args: object) -> dt.date:
    (row,) = fetch_all(settings, sql, *args)
    return row[0]


def test_load_and_requests_fill_every_table_and_answer_every_query(
    sink: RunningServices, stack: Settings, tmp_path: Path, uid_root: str
) -> None:
    before = snapshot(stack)
    result = storescu(sink.scp_port, make_load(tmp_path, uid_root))
    assert result.returncode == 0, result.stderr[-2000:]
    load_sent = time.monotonic()
    wait_for(
        lambda: load_in_mariadb(stack, "default", uid_root, 120), 90, 0.5, "the load in MariaDB"
    )
    wait_for(lambda: metadata_written(stack, uid_root), 60, 0.5, what="series metadata")

    accept = {"Accept": "application/dicom+json"}
    for study, times in RETRIEVALS.items():
        for _ in range(times):
            url = f"{sink.api_url}/dicom-web/studies/{uid_root}.{study}/metadata"
            assert httpx.get(url, headers=accept, timeout=30).status_code == 200
    search = httpx.get(
        f"{sink.api_url}/dicom-web/studies",
        params={"StudyInstanceUID": f"{uid_root}.1"},
        headers=accept,
        timeout=30,
    )
    assert search.status_code == 200 and len(search.json()) == 1

    # One more instance in a series that was stable: the series changed after stability.
    time.sleep(max(0.0, load_sent + CHANGE_INTERVAL + 0.5 - time.monotonic()))
    late = instance_path(tmp_path, uid_root, 1, 1, INSTANCES + 1)
    assert storescu(sink.scp_port, [late]).returncode == 0
    wait_for(lambda: load_in_mariadb(stack, "default", uid_root, 121), 60, 0.5, "the late instance")
    after = snapshot(stack)

    # Every table: exactly this load's rows.
    assert_each_instance_once(stack, "default", uid_root, 121)
    series = fetch_all(
        stack,
        "SELECT series_uid, series_related_instances, modality FROM dicom_state_meta"
        " WHERE tenant_id = 'default' AND study_uid LIKE %s ORDER BY series_uid",
        f"{uid_root}.%",
    )
    assert series == [
        (f"{uid_root}.{st}.{se}", 21 if (st, se) == (1, 1) else 20, MODALITIES[st])
        for st in range(1, STUDIES + 1)
        for se in range(1, SERIES + 1)
    ]
    requests = fetch_all(
        stack,
        "SELECT path, status FROM wado_access_log WHERE path LIKE %s OR query LIKE %s",
        f"%{uid_root}.%",
        f"%{uid_root}.%",
    )
    assert len(requests) == sum(RETRIEVALS.values()) + 1
    assert {status for _, status in requests} == {200}

    # instances_received: per day and modality.
    day = one_date(
        stack,
        "SELECT DISTINCT CAST(created_time AS DATE) FROM dicom_object_meta WHERE study_uid LIKE %s",
        f"{uid_root}.%",
    )
    ct = {"tenant_id": "default", "received_date": day, "modality": "CT"}
    mr = {**ct, "modality": "MR"}
    assert change(before, after, "instances_received", ct, "instances") == 81
    assert change(before, after, "instances_received", ct, "distinct_instances") == 81
    assert change(before, after, "instances_received", ct, "received_bytes") == stored_bytes(
        sink, uid_root, [1, 2]
    )
    assert change(before, after, "instances_received", mr, "instances") == 40
    assert change(before, after, "instances_received", mr, "received_bytes") == stored_bytes(
        sink, uid_root, [3]
    )

    # study_states: three more stable studies, none receiving.
    stable = {"tenant_id": "default", "study_state": "stable"}
    assert change(before, after, "study_states", stable, "studies") == 3
    assert change(before, after, "study_states", stable, "series") == 6
    assert change(before, after, "study_states", stable, "instances") == 121
    receiving = {"tenant_id": "default", "study_state": "receiving"}
    assert change(before, after, "study_states", receiving, "studies") == 0

    # series_changed_after_stable: the series that got the late instance.
    changed = study_rows(after, "series_changed_after_stable", uid_root)
    assert [
        (r["series_uid"], r["instances_when_stable"], r["instances_now"], r["times_changed"])
        for r in changed
    ] == [(f"{uid_root}.1.1", 20, 21, 1)]

    # busiest_endpoints and slowest_endpoints: the metadata requests and the search.
    request_day = one_date(
        stack,
        "SELECT DISTINCT CAST(log_time AS DATE) FROM wado_access_log WHERE path LIKE %s",
        f"%{uid_root}.%",
    )
    endpoint = {
        "received_date": request_day,
        "tenant_id": "default",
        "method": "GET",
        "endpoint": METADATA_ENDPOINT,
    }
    searches = {**endpoint, "endpoint": "/dicom-web/studies"}
    assert change(before, after, "busiest_endpoints", endpoint, "requests") == 6
    assert change(before, after, "busiest_endpoints", endpoint, "failed") == 0
    assert change(before, after, "busiest_endpoints", endpoint, "bytes_sent") > 0
    assert change(before, after, "busiest_endpoints", searches, "requests") == 1
    assert change(before, after, "slowest_endpoints", endpoint, "requests") == 6
    (slow,) = [r for r in after["slowest_endpoints"] if all(r[k] == v for k, v in endpoint.items())]
    assert 0 < slow["mean_ms"] <= slow["max_ms"]

    # top_retrieved_studies: this load's studies, most retrieved first.
    top = study_rows(after, "top_retrieved_studies", uid_root)
    assert [(r["study_uid"], r["retrievals"], r["study_description"]) for r in top] == [
        (f"{uid_root}.{study}", times, "Test study") for study, times in RETRIEVALS.items()
    ]
    assert all(r["bytes_sent"] > 0 for r in top)

    # Metrics: rows written per table, no lag.
    written = metrics()
    for table in SINK_TABLES:
        assert written[f'dicomflow_analytics_rows_written_total{{table="{table.name}"}}'] > 0


def test_mariadb_stopped_during_a_load_loses_and_duplicates_nothing(
    sink: RunningServices, stack: Settings, tmp_path: Path, uid_root: str
) -> None:
    paths = make_load(tmp_path, uid_root)
    half = len(paths) // 2
    like = f"{uid_root}.%"
    sender = threading.Thread(target=storescu, args=(sink.scp_port, paths[:half], "TENANT_B"))
    sender.start()
    wait_for(
        lambda: count(stack, "dicom_object_meta", "study_uid LIKE %s", like) >= 20,
        60,
        0.05,
        "the first rows in MariaDB",
    )
    mariadb = MariaDBService(stack)
    errors = metric_sum("dicomflow_analytics_write_errors_total")
    assert mariadb.stop()
    stopped = time.monotonic()
    try:
        sender.join()
        result = storescu(sink.scp_port, paths[half:], "TENANT_B")
        assert result.returncode == 0, result.stderr[-2000:]
        for study in range(1, STUDIES + 1):
            response = httpx.get(
                f"{sink.api_url}/tenants/tenant-b/dicom-web/studies",
                params={"StudyInstanceUID": f"{uid_root}.{study}"},
                timeout=30,
            )
            assert response.status_code == 200
        # Longer than DICOMFLOW_WORKER_STUCK_SECONDS: the watchdog re-reads meanwhile too.
        time.sleep(max(0.0, stopped + 15 - time.monotonic()))
        assert metric_sum("dicomflow_analytics_write_errors_total") > errors
    finally:
        mariadb.start()

    wait_for(lambda: load_in_mariadb(stack, "tenant-b", uid_root, 120), 120, 0.5, "the whole load")
    wait_for(lambda: caught_up(stack), 60, 0.5, "the sink to catch up")
    assert_each_instance_once(stack, "tenant-b", uid_root, 120)
    searches = count(
        stack, "wado_access_log", "tenant_id = %s AND query LIKE %s", "tenant-b", f"%{like}"
    )
    assert searches == STUDIES


def test_killed_sink_loses_and_duplicates_nothing(
    sink: RunningServices, stack: Settings, tmp_path: Path, uid_root: str
) -> None:
    paths = make_load(tmp_path, uid_root)
    half = len(paths) // 2
    sender = threading.Thread(target=storescu, args=(sink.scp_port, paths[:half]))
    sender.start()
    wait_for(
        lambda: count(stack, "dicom_object_meta", "study_uid LIKE %s", f"{uid_root}.%") >= 20,
        60,
        0.05,
        "the first rows in MariaDB",
    )
    sink.stop("analytics-sink", sig=signal.SIGKILL)
    sender.join()
    result = storescu(sink.scp_port, paths[half:])
    assert result.returncode == 0, result.stderr[-2000:]
    sink.start("analytics-sink")

    wait_for(lambda: load_in_mariadb(stack, "default", uid_root, 120), 120, 0.5, "the whole load")
    wait_for(lambda: caught_up(stack), 60, 0.5, "the sink to catch up")
    assert_each_instance_once(stack, "default", uid_root, 120)
