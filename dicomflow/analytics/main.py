"""`dicomflow analytics-sink`: the analytics app's agents and timers, then its Faust worker."""

from faust import Worker
from prometheus_client import start_http_server

from dicomflow.analytics.agents import add_agents
from dicomflow.analytics.app import create_app
from dicomflow.analytics.metrics import watch_lag
from dicomflow.analytics.tables import SINK_TABLES
from dicomflow.core.settings import Settings
from dicomflow.streams import watchdog


def run_sink(settings: Settings, log_level: str = "info") -> None:
    if settings.analytics_metrics_port:
        start_http_server(settings.analytics_metrics_port, addr=settings.api_host)
    app = create_app(settings)
    topics = {table.topic for table in SINK_TABLES}
    add_agents(app, settings)
    watch_lag(app, topics, settings.kafka_servers)
    watchdog.watch(app, settings)
    Worker(app, loglevel=log_level.lower()).execute_from_commandline()
