"""The analytics sink's own Faust app: its own consumer group, apart from the indexing worker."""

import faust

from dicomflow.core.settings import Settings
from dicomflow.streams.transport import SkippingTopic, broker_url

APP_ID = "dicomflow-analytics"


def create_app(settings: Settings) -> faust.App:
    return faust.App(
        APP_ID,
        autodiscover=False,
        broker=broker_url(settings.kafka_servers),
        Topic=SkippingTopic,
        store="memory://",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_session_timeout=settings.worker_session_timeout,
        broker_heartbeat_interval=settings.worker_session_timeout / 4,
        web_enabled=False,
        datadir=str((settings.state_dir / "faust-analytics").resolve()),
    )
