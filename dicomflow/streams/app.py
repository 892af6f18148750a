"""The one Faust app; its agents, tables and timers live in their own modules."""

import faust

from dicomflow.core.settings import Settings
from dicomflow.streams.transport import SkippingTopic, broker_url

app = faust.App("dicomflow", autodiscover=False)


def configure(settings: Settings) -> faust.App:
    """Configure the app from the settings; called once, before the worker starts."""
    app.config_from_object(
        {
            "broker": broker_url(settings.kafka_servers),
            "Topic": SkippingTopic,
            "store": settings.table_store,
            "topic_partitions": settings.topic_partitions,
            "topic_replication_factor": 1,
            "table_standby_replicas": 0,
            "producer_acks": -1,
            "producer_linger": 0.005,  # batches the five messages each instance fans out to
            "consumer_auto_offset_reset": "earliest",
            "broker_commit_interval": 1.0,
            "broker_session_timeout": settings.worker_session_timeout,
            "broker_heartbeat_interval": settings.worker_session_timeout / 4,
            "web_enabled": False,
            "datadir": str((settings.state_dir / "faust").resolve()),
        },
        force=True,
    )
    return app
