"""The local stack: idempotent start, topics, migrations, and the Kafka client/broker pair."""

import asyncio
import subprocess
import sys

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from dicomflow.core.db import create_pool
from dicomflow.core.settings import Settings
from dicomflow.core.topics import TOPICS
from dicomflow.stack.manager import status
from dicomflow.stack.migrations import MIGRATIONS_DIR
from dicomflow.stack.services import kafka_cluster_id
from tests.kafka_helpers import create_topic
from tests.services import ROOT

PROBE_TOPIC = "dicomflow-protocol-probe"


def test_stack_up_twice_is_harmless(stack: Settings, base_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dicomflow", "stack", "up"],
        env=base_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "started: nothing (already running)"
    assert set(status(stack).values()) == {"running"}


def test_only_stack_down_takes_known_service_names(
    stack: Settings, base_env: dict[str, str]
) -> None:
    for args in (["up", "redis"], ["down", "redis", "nosuch"], ["status", "kafka"]):
        result = subprocess.run(
            [sys.executable, "-m", "dicomflow", "stack", *args],
            env=base_env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 2, args
        assert "service" in result.stderr and not result.stdout
    assert set(status(stack).values()) == {"running"}  # nothing was stopped


def test_kafka_cluster_ids_never_look_like_an_option() -> None:
    ids = [kafka_cluster_id() for _ in range(2000)]  # one in 64 random ids starts with "-"
    assert not any(i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids) and {len(i) for i in ids} == {22}


def test_external_services_are_not_started() -> None:
    settings = Settings(
        kafka_bootstrap="kafka.example:9092",
        postgres_dsn="postgresql://u@db.example/x",
        redis_url="redis://cache.example/0",
        mysql_dsn="mysql://u@olap.example/x",
    )
    assert status(settings) == {
        "postgres": "external",
        "redis": "external",
        "kafka": "external",
        "mariadb": "external",
    }


async def test_topics_exist_with_the_configured_partitions(stack: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_servers)
    await admin.start()
    try:
        described = await admin.describe_topics(list(TOPICS))
    finally:
        await admin.close()
    partitions = {t["topic"]: len(t["partitions"]) for t in described}
    assert partitions == dict.fromkeys(TOPICS, stack.topic_partitions)


async def test_every_migration_is_applied_once(stack: Settings) -> None:
    connection = await asyncpg.connect(stack.postgres_url)
    try:
        applied = [
            r["version"]
            for r in await connection.fetch(
                "SELECT version FROM schema_migrations ORDER BY version"
            )
        ]
    finally:
        await connection.close()
    assert applied == sorted(p.name for p in MIGRATIONS_DIR.glob("[0-9][0-9][0-9]_*.sql"))


async def test_lookup_pools_plan_each_statement_once(stack: Settings) -> None:
    """The API's lookups by key reuse one plan per statement; its searches are planned for
    their values (a generic plan can miss an index a pattern or range allows)."""
    lookups = await create_pool(stack, generic_plans=True)
    searches = await create_pool(stack)
    try:
        assert await lookups.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
        assert await searches.fetchval("SHOW plan_cache_mode") == "auto"
    finally:
        await lookups.close()
        await searches.close()


async def test_client_and_broker_speak_the_same_protocol(stack: Settings) -> None:
    """faust-streaming's aiokafka negotiates with the broker the stack runs: idempotent
    produce with acks=all, headers, and a read back from a committed group offset (on a
    topic of its own: the dicomflow topics carry only their records)."""
    await create_topic(stack, PROBE_TOPIC)
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.kafka_servers, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        sent = await producer.send_and_wait(
            PROBE_TOPIC, b'{"probe": true}', key=b"probe", headers=[("h", b"1")]
        )
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.kafka_servers,
        group_id="protocol-probe",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        tp = TopicPartition(PROBE_TOPIC, sent.partition)
        consumer.assign([tp])
        consumer.seek(tp, sent.offset)
        message = await asyncio.wait_for(consumer.getone(), 30)
        await consumer.commit({tp: message.offset + 1})
        committed = await consumer.committed(tp)
    finally:
        await consumer.stop()
    assert (message.key, message.value, message.headers) == (
        b"probe",
        b'{"probe": true}',
        (("h", b"1"),),
    )
    assert committed == sent.offset + 1
