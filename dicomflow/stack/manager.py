"""`dicomflow stack up|down|status`: the local services, the topics, the migrations and the
local analytics tables."""

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from dicomflow.analytics.schema import apply_schema
from dicomflow.core.settings import Settings
from dicomflow.core.topics import TOPICS
from dicomflow.stack.migrations import apply_migrations
from dicomflow.stack.process import StackError
from dicomflow.stack.services import (
    KafkaService,
    LocalService,
    MariaDBService,
    PostgresService,
    RedisService,
)

log = logging.getLogger(__name__)


def services(settings: Settings) -> list[LocalService]:
    return [
        PostgresService(settings),
        RedisService(settings),
        KafkaService(settings),
        MariaDBService(settings),
    ]


def up(settings: Settings) -> list[str]:
    """Start what is not running, create topics, apply migrations, create the analytics tables
    in the local MariaDB; return what this call started."""
    started = []
    for service in services(settings):
        if service.start():
            started.append(service.name)
            log.info("started %s on 127.0.0.1:%d", service.name, service.port)
        if not service.external and isinstance(service, PostgresService | MariaDBService):
            service.create_database()
    asyncio.run(create_topics(settings))
    asyncio.run(apply_migrations(settings.postgres_url))
    if settings.mysql_dsn is None:  # an external target gets `dicomflow analytics init`
        apply_schema(settings)
    return started


def down(settings: Settings, names: list[str] | None = None) -> list[str]:
    """Stop the services this stack started (all of them, or only `names`)."""
    stopped = []
    for service in reversed(services(settings)):
        if (names is None or service.name in names) and service.stop():
            stopped.append(service.name)
    return stopped


def status(settings: Settings) -> dict[str, str]:
    return {
        s.name: "external" if s.external else ("running" if s.running() else "stopped")
        for s in services(settings)
    }


async def create_topics(settings: Settings) -> None:
    """Create the dicomflow topics that do not exist yet (harmless when they do)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_servers, request_timeout_ms=30000)
    for attempt in range(60):
        try:
            await admin.start()
            break
        except KafkaError:
            if attempt == 59:
                raise StackError(f"Kafka at {settings.kafka_servers} is unreachable") from None
            await asyncio.sleep(1)
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, settings.topic_partitions, 1) for name in TOPICS if name not in existing
        ]
        if missing:
            await admin.create_topics(missing)
    finally:
        await admin.close()
