"""`dicomflow worker`: binds the resources, loads the agents and runs the Faust worker."""

import importlib

from faust import Worker
from prometheus_client import start_http_server

from dicomflow.core.settings import Settings
from dicomflow.streams import resources, watchdog
from dicomflow.streams.app import configure

AGENT_MODULES = (
    "dicomflow.streams.fanout",
    "dicomflow.streams.stability",
    "dicomflow.streams.indexers",
    "dicomflow.streams.metadata",
)


def run_worker(settings: Settings, log_level: str = "info") -> None:
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port, addr=settings.api_host)
    resources.bind(settings)
    app = configure(settings)
    for module in AGENT_MODULES:
        importlib.import_module(module)
    watchdog.watch(app, settings)
    Worker(app, loglevel=log_level.lower()).execute_from_commandline()
