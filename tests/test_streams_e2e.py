"""The stream jobs end to end: counts, series metadata, a killed worker, character sets, a copy
replaced before the worker read it."""

import asyncio
import signal
import threading
import time
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from faust.types import TP

from dicomflow.api import queries
from dicomflow.core.cache import series_metadata_key, series_parts_key
from dicomflow.core.series_metadata import read_series_parts
from dicomflow.core.settings import Settings
from dicomflow.core.storage import LocalStorage
from dicomflow.core.topics import LOG_QUEUE, STORAGE_QUEUE
from dicomflow.streams.app import app
from dicomflow.streams.watchdog import committed_offsets
from tests.dicom_factory import make_ct
from tests.kafka_helpers import delete_records_before, end_offsets, read_topic
from tests.metadata_checks import assert_same_json, expected_json
from tests.services import SUCCESS, RunningServices, storescu, wait_for

pytestmark = pytest.mark.e2e

STUDIES, SERIES, INSTANCES = 3, 2, 20


def make_load(directory: Path, uid_root: str) -> list[Path]:
    """3 studies x 2 series x 20 instances under `uid_root`."""
    paths = []
    for study in range(1, STUDIES + 1):
        for series in range(1, SERIES + 1):
            for number in range(1, INSTANCES + 1):
                path = directory / f"{study}-{series}-{number}.dcm"
                make_ct(
                    path,
                    study_uid=f"{uid_root}.{study}",
                    series_uid=f"{uid_root}.{study}.{series}",
                    sop_uid=f"{uid_root}.{study}.{series}.{number}",
                    instance_number=number,
                    patient_id=f"P{uid_root[-8:]}-{study}",
                )
                paths.append(path)
    return paths


async def fetch(settings: Settings, query: str, *args: object) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(settings.postgres_url)
    try:
        return await connection.fetch(query, *args)
    finally:
        await connection.close()


def series_rows(settings: Settings, uid_root: str) -> list[asyncpg.Record]:
    return asyncio.run(
        fetch(
            settings,
            "SELECT series_uid, series_related_instances, series_state FROM dicom_state_meta"
            " WHERE tenant_id = 'default' AND study_uid LIKE $1 ORDER BY series_uid",
            f"{uid_root}.%",
        )
    )


def instance_count(settings: Settings, uid_root: str) -> int:
    rows = asyncio.run(
        fetch(
            settings,
            "SELECT count(*) AS n FROM dicom_image_meta"
            " WHERE tenant_id = 'default' AND study_uid LIKE $1",
            f"{uid_root}.%",
        )
    )
    return rows[0]["n"]


def all_stable(settings: Settings, uid_root: str) -> list[asyncpg.Record] | None:
    rows = series_rows(settings, uid_root)
    done = len(rows) == STUDIES * SERIES and all(
        r["series_state"] == "stable" and r["series_related_instances"] == INSTANCES for r in rows
    )
    return rows if done else None


def metadata_written(settings: Settings, uid_root: str) -> list[asyncpg.Record] | None:
    rows = asyncio.run(
        fetch(
            settings,
            "SELECT series_uid, json_status FROM dicom_json_meta"
            " WHERE tenant_id = 'default' AND study_uid LIKE $1",
            f"{uid_root}.%",
        )
    )
    return rows if len(rows) == STUDIES * SERIES else None


def test_load_gives_exact_counts_and_series_metadata(
    system: RunningServices, stack: Settings, tmp_path: Path, uid_root: str
) -> None:
    paths = make_load(tmp_path, uid_root)
    result = storescu(system.scp_port, paths)
    assert result.returncode == 0, result.stderr[-2000:]

    rows = wait_for(lambda: all_stable(stack, uid_root), 60, 0.5, what="6 stable series")
    assert len(rows) == 6
    assert instance_count(stack, uid_root) == 120

    json_rows = wait_for(lambda: metadata_written(stack, uid_root), 60, 0.5, what="metadata")
    assert {r["json_status"] for r in json_rows} == {"ok"}
    json_root = Path(system.env["DICOMFLOW_JSON_ROOT"])
    json_storage = LocalStorage(json_root)
    json_files = sorted(json_root.glob(f"default/*/*/{uid_root}.*.json"))
    assert len(json_files) == 6
    for json_file in json_files:
        series_uid = json_file.stem
        instances = orjson.loads(json_file.read_bytes())
        assert len(instances) == INSTANCES
        by_sop = {i["00080018"]["Value"][0]: i for i in instances}
        stored = sorted((system.storage_root / "default").rglob(f"{series_uid}/*.dcm"))
        assert len(stored) == INSTANCES
        for path in stored:
            assert_same_json(by_sop[path.stem], expected_json(path))
        parts = read_series_parts(json_storage, str(stored[0].relative_to(system.storage_root)))
        kept = {field.split(b" ")[0].decode(): orjson.loads(body) for field, body in parts.items()}
        assert kept == by_sop, "the parts file beside the series holds each instance's part"

    for topic in ("dicom_image_queue", "log_queue"):
        messages = asyncio.run(
            read_topic(stack, topic, lambda v: v["study_uid"].startswith(f"{uid_root}."), 120)
        )
        assert len(messages) == 120, topic
        assert len({m[2]["sop_uid"] for m in messages}) == 120, topic

    # A series' progress is recorded on the changelog partition of its storage events: the
    # worker that is given that partition restores it.
    events = asyncio.run(
        read_topic(stack, STORAGE_QUEUE, lambda v: v["study_uid"].startswith(f"{uid_root}."), 120)
    )
    partition_of_series = {event["series_uid"]: partition for partition, _, event in events}
    progress = asyncio.run(
        read_topic(
            stack,
            f"{app.conf.id}-series_progress-changelog",
            lambda v: v["last_event"]["study_uid"].startswith(f"{uid_root}."),
            120,
        )
    )
    assert len(progress) >= 120
    for partition, _, change in progress:
        assert partition == partition_of_series[change["last_event"]["series_uid"]]


def test_killed_worker_loses_and_duplicates_nothing(
    system: RunningServices, stack: Settings, tmp_path: Path, uid_root: str
) -> None:
    paths = make_load(tmp_path, uid_root)
    sender = threading.Thread(target=storescu, args=(system.scp_port, paths))
    sender.start()
    wait_for(lambda: instance_count(stack, uid_root) >= 30, 60, 0.05, what="a third indexed")
    system.stop("worker", sig=signal.SIGKILL)
    sender.join()
    system.start("worker")

    rows = wait_for(lambda: all_stable(stack, uid_root), 120, 0.5, what="6 stable series")
    assert [r["series_related_instances"] for r in rows] == [INSTANCES] * 6
    assert instance_count(stack, uid_root) == 120
    wait_for(lambda: metadata_written(stack, uid_root), 60, 0.5, what="metadata")


def test_events_deleted_by_retention_do_not_block_their_partition(
    system: RunningServices, stack: Settings, tmp_path: Path, uid_root: str
) -> None:
    """Retention deleted events the worker never processed (it was down): it commits past
    them and goes on with the partition instead of waiting for them for ever."""

    def caught_up() -> bool:
        ends = asyncio.run(end_offsets(stack, STORAGE_QUEUE))
        committed = asyncio.run(committed_offsets(app.conf.id, stack.kafka_servers))
        return all(
            committed.get(TP(STORAGE_QUEUE, partition), 0) == end for partition, end in ends.items()
        )

    paths = make_load(tmp_path, uid_root)[:INSTANCES]  # one series: one partition
    assert storescu(system.scp_port, paths[:1]).returncode == 0
    wait_for(caught_up, 60, 0.5, what="the worker to commit the first instance")
    system.stop("worker")
    before = asyncio.run(end_offsets(stack, STORAGE_QUEUE))
    assert storescu(system.scp_port, paths[1:]).returncode == 0
    after = asyncio.run(end_offsets(stack, STORAGE_QUEUE))
    (partition,) = [p for p in after if after[p] != before[p]]
    kept = 5
    asyncio.run(delete_records_before(stack, STORAGE_QUEUE, partition, after[partition] - kept))
    system.start("worker")

    wait_for(caught_up, 90, 0.5, what="the partition committed past the deleted events")
    wait_for(lambda: instance_count(stack, uid_root) >= 1 + kept, 30, 0.2, what="the kept ones")
    assert instance_count(stack, uid_root) == 1 + kept
    metrics_url = f"http://127.0.0.1:{system.env['DICOMFLOW_WORKER_METRICS_PORT']}/metrics"
    deleted = INSTANCES - 1 - kept
    sample = f'dicomflow_events_deleted_unprocessed_total{{topic="{STORAGE_QUEUE}"}} {deleted}.0'
    wait_for(lambda: sample in httpx.get(metrics_url).text, 10, 0.2, what="the metric")


@pytest.mark.parametrize(
    ("character_set", "name", "encoded_by"),
    [
        ("ISO_IR 192", "山田^太郎=山田^太郎=やまだ^たろう", "utf-8"),
        ("\\ISO 2022 IR 87", "Yamada^Tarou=山田^太郎=やまだ^たろう", "iso2022_jp"),
        ("ISO_IR 100", "Müller^Jürgen", "latin_1"),
        ("GB18030", "王^小东", "gb18030"),
        ("\\ISO 2022 IR 149", "Hong^Gildong=洪^吉洞=홍^길동", "iso2022_kr"),
    ],
)
def test_non_ascii_names_reach_postgres_and_kafka(
    system: RunningServices,
    stack: Settings,
    tmp_path: Path,
    uid_root: str,
    character_set: str,
    name: str,
    encoded_by: str,
) -> None:
    path = tmp_path / "name.dcm"
    make_ct(
        path,
        study_uid=f"{uid_root}.1",
        series_uid=f"{uid_root}.2",
        patient_name=name,
        character_set=character_set,
    )
    raw = path.read_bytes()
    assert name.encode(encoded_by, errors="ignore")[:4] in raw or character_set != "ISO_IR 100"
    assert storescu(system.scp_port, [path]).returncode == 0

    def stored_name() -> str | None:
        rows = asyncio.run(
            fetch(
                stack,
                "SELECT patient_name FROM dicom_state_meta WHERE study_uid = $1",
                f"{uid_root}.1",
            )
        )
        return rows[0]["patient_name"] if rows else None

    assert wait_for(stored_name, 30, 0.2, what="the series row") == name
    messages = asyncio.run(
        read_topic(stack, "dicom_state_queue", lambda v: v["study_uid"] == f"{uid_root}.1", 1)
    )
    assert {m[2]["patient_name"] for m in messages} == {name}


def test_series_is_in_postgres_within_two_seconds_of_the_ack(
    system: RunningServices, stack: Settings, tmp_path: Path, uid_root: str
) -> None:
    path = tmp_path / "first.dcm"
    make_ct(path, study_uid=f"{uid_root}.1", series_uid=f"{uid_root}.1.1")
    assert storescu(system.scp_port, [path]).returncode == 0  # returns once acknowledged
    rows = wait_for(lambda: series_rows(stack, uid_root), 2.0, 0.05, what="the series row")
    assert [(r["series_related_instances"], r["series_state"]) for r in rows] == [(1, "receiving")]


def test_cached_metadata_of_a_stable_series_is_dropped_when_it_changes(
    system: RunningServices, stack: Settings, tmp_path: Path, uid_root: str
) -> None:
    url = f"{system.api_url}/dicom-web/studies/{uid_root}.1/series/{uid_root}.1.1/metadata"

    def send(number: int) -> None:
        path = tmp_path / f"{number}.dcm"
        make_ct(
            path,
            study_uid=f"{uid_root}.1",
            series_uid=f"{uid_root}.1.1",
            sop_uid=f"{uid_root}.1.1.{number}",
            instance_number=number,
        )
        assert storescu(system.scp_port, [path]).returncode == 0

    def instances_served(expected: int) -> bool:
        response = httpx.get(url)
        return response.status_code == 200 and len(response.json()) == expected

    send(1)
    wait_for(lambda: metadata_rows(stack, uid_root) == ["ok"], 60, 0.2, what="metadata")
    assert instances_served(1)  # served from the precomputed file, now cached in Redis
    send(2)
    wait_for(
        lambda: (
            [
                (r["series_related_instances"], r["series_state"])
                for r in series_rows(stack, uid_root)
            ]
            == [(2, "receiving")]
            and instance_count(stack, uid_root) == 2
        ),
        10,
        0.05,
        what="the change indexed",
    )
    assert instances_served(2), "the cached metadata of the changed series was served"


def series_files(tmp_path: Path, study: str, series: str, count: int) -> list[Path]:
    """`count` CT files of one series, numbered from 1 (SOP UIDs `{series}.{number}`)."""
    paths = []
    for number in range(1, count + 1):
        paths.append(tmp_path / f"{number}.dcm")
        make_ct(
            paths[-1],
            study_uid=study,
            series_uid=series,
            sop_uid=f"{series}.{number}",
            instance_number=number,
        )
    return paths


def test_metadata_is_built_again_when_its_precomputed_file_is_lost(
    system: RunningServices, stack: Settings, tmp_path: Path, uid_root: str
) -> None:
    study, series = f"{uid_root}.1", f"{uid_root}.1.1"
    paths = series_files(tmp_path, study, series, 2)
    assert storescu(system.scp_port, paths).returncode == 0
    wait_for(lambda: metadata_rows(stack, uid_root) == ["ok"], 60, 0.2, what="metadata")
    [precomputed] = Path(system.env["DICOMFLOW_JSON_ROOT"]).rglob(f"{series}.json")
    precomputed.unlink()
    asyncio.run(forget_cached(stack, series_metadata_key("default", study, series)))

    response = httpx.get(f"{system.api_url}/dicom-web/studies/{study}/series/{series}/metadata")

    assert response.status_code == 200
    served = [item["00080018"]["Value"][0] for item in response.json()]
    assert served == [f"{series}.1", f"{series}.2"]


def test_each_instance_json_is_in_redis_until_its_series_is_stable(
    system: RunningServices, stack: Settings, tmp_path: Path, uid_root: str
) -> None:
    """The worker keeps each instance's DICOM JSON in its series' parts, under the time of its
    storage event as PostgreSQL holds it (what the API looks the parts up by), and drops them
    once the series' metadata is precomputed."""
    study, series = f"{uid_root}.1", f"{uid_root}.1.1"
    parts_key = series_parts_key("default", study, series)
    paths = series_files(tmp_path, study, series, 2)

    async def parts_changes_while_stored() -> list[str]:
        """What happened to the parts key (Redis keyspace notifications), in order."""
        cache = aioredis.from_url(stack.redis_location)
        await cache.config_set("notify-keyspace-events", "Kgh")
        changes = cache.pubsub()
        await changes.subscribe(f"__keyspace@0__:{parts_key}")
        try:
            sent = await asyncio.to_thread(storescu, system.scp_port, paths)
            assert sent.returncode == 0, sent.stdout + sent.stderr
            seen: list[str] = []
            deadline = time.monotonic() + 60
            while "del" not in seen:  # until the series' metadata is precomputed
                assert time.monotonic() < deadline, f"the parts were not dropped: {seen}"
                message = await changes.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    seen.append(message["data"].decode())
            assert await cache.exists(parts_key) == 0
            return seen
        finally:
            await changes.aclose()
            await cache.config_set("notify-keyspace-events", "")
            await cache.aclose()

    *kept, dropped = asyncio.run(parts_changes_while_stored())
    assert dropped == "del"
    assert kept in (["hset", "expire"], ["hset", "expire"] * 2)  # per batch of events
    # The outcome row is written after the parts are dropped.
    wait_for(lambda: metadata_rows(stack, uid_root) == ["ok"], 30, 0.1, what="the outcome row")

    events = asyncio.run(read_topic(stack, STORAGE_QUEUE, lambda v: v["series_uid"] == series, 2))
    event_times = {event["sop_uid"]: event["created_time"] for _, _, event in events}

    async def indexed_times() -> dict[str, str]:
        pool = await asyncpg.create_pool(stack.postgres_url, min_size=1, max_size=1)
        try:
            source = await queries.series_to_build(pool, "default", study, series)
        finally:
            await pool.close()
        assert source is not None
        return {row.sop_uid: row.received_time for row in source.instances}

    assert asyncio.run(indexed_times()) == event_times


def test_an_event_that_is_not_a_storage_event_is_skipped(
    system: RunningServices, stack: Settings, tmp_path: Path, uid_root: str
) -> None:
    """It is counted and logged, and the events after it on its partition are processed."""
    study, series = f"{uid_root}.1", f"{uid_root}.1.1"
    # Valid JSON with the identifying keys other tests filter on, but not a StorageEvent.
    broken = {"trace_id": uid_root, "study_uid": study, "series_uid": series, "sop_uid": study}
    logged_before = system.log("worker").stat().st_size
    asyncio.run(produce(stack, STORAGE_QUEUE, f"default|{study}|{series}", broken))
    path = tmp_path / "1.dcm"
    make_ct(path, study_uid=study, series_uid=series, sop_uid=f"{series}.1")

    assert storescu(system.scp_port, [path]).returncode == 0

    wait_for(lambda: instance_count(stack, uid_root) == 1, 30, 0.1, what="the instance indexed")
    metrics = httpx.get(f"http://127.0.0.1:{system.env['DICOMFLOW_WORKER_METRICS_PORT']}/metrics")
    skipped = [
        float(line.split()[-1])
        for line in metrics.text.splitlines()
        if line.startswith('dicomflow_events_undecodable_total{topic="storage_queue"}')
    ]
    assert skipped and skipped[0] >= 1
    logged = system.log("worker").read_bytes()[logged_before:]
    assert b"skipped, not a record of the topic" in logged
    assert b"Crashed" not in logged, "the agent went on with the next event"


async def produce(settings: Settings, topic: str, key: str, value: dict) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, orjson.dumps(value), key=key.encode())
    finally:
        await producer.stop()


async def forget_cached(settings: Settings, key: str) -> None:
    cache = aioredis.from_url(settings.redis_location)
    try:
        assert await cache.delete(key) == 1
    finally:
        await cache.aclose()


def metadata_rows(settings: Settings, uid_root: str) -> list[str]:
    rows = asyncio.run(
        fetch(
            settings,
            "SELECT json_status FROM dicom_json_meta"
            " WHERE tenant_id = 'default' AND study_uid = $1",
            f"{uid_root}.1",
        )
    )
    return [r["json_status"] for r in rows]


def test_a_copy_replaced_before_the_worker_read_it_is_logged_and_the_later_one_indexed(
    system: RunningServices, stack: Settings, tmp_path: Path, uid_root: str
) -> None:
    sop_uid = f"{uid_root}.1.1.1"
    first, later = tmp_path / "first.dcm", tmp_path / "later.dcm"
    for path, patient_id in ((first, "P1"), (later, "P1-with-a-longer-id")):
        make_ct(
            path,
            study_uid=f"{uid_root}.1",
            series_uid=f"{uid_root}.1.1",
            sop_uid=sop_uid,
            patient_id=patient_id,
        )
    system.stop("worker")  # both copies stored before the worker reads the first one's event
    try:
        for path in (first, later):
            result = storescu(system.scp_port, [path])
            assert SUCCESS in result.stdout + result.stderr
    finally:
        system.start("worker")

    logged = asyncio.run(read_topic(stack, LOG_QUEUE, lambda v: v.get("sop_uid") == sop_uid, 2))
    receipts = {value["trace_id"]: value for _, _, value in logged}  # at least once each
    earlier_event, later_event = receipts.values()
    assert earlier_event["file_size"] != later_event["file_size"]

    def indexed_size() -> int | None:
        rows = asyncio.run(
            fetch(stack, "SELECT file_size FROM dicom_image_meta WHERE sop_uid = $1", sop_uid)
        )
        return rows[0]["file_size"] if rows else None

    assert wait_for(indexed_size, 60, 0.1, "the later copy indexed") == later_event["file_size"]
