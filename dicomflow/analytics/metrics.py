"""Prometheus metrics of the analytics sink: rows written per table, lag per topic."""

import logging
from collections.abc import Collection

import faust
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge

from dicomflow.streams.watchdog import committed_offsets

log = logging.getLogger(__name__)

LAG_INTERVAL = 5.0

ROWS_WRITTEN = Counter(
    "dicomflow_analytics_rows_written_total", "Rows the analytics sink wrote", ["table"]
)
ROWS_SKIPPED = Counter(
    "dicomflow_analytics_rows_skipped_total",
    "Messages not written: already in the table (a replay), or after a gap (read again)",
    ["table"],
)
WRITE_ERRORS = Counter(
    "dicomflow_analytics_write_errors_total",
    "Batch writes that failed and were retried",
    ["table", "error"],
)
LAG = Gauge(
    "dicomflow_analytics_lag",
    "Messages of the partitions this sink reads that it has not committed yet",
    ["topic"],
)


def watch_lag(app: faust.App, topics: Collection[str], kafka_servers: str) -> None:
    """Add to `app` the timer that sets `LAG`: end offset - committed offset, per topic."""

    async def measure_lag() -> None:
        assigned = [tp for tp in app.consumer.assignment() if tp.topic in topics]
        lag = dict.fromkeys(topics, 0)
        if assigned:
            try:
                ends = await app.consumer.highwaters(*assigned)
                starts = await app.consumer.earliest_offsets(*assigned)
                committed = await committed_offsets(app.conf.id, kafka_servers)
            except KafkaError as exc:
                log.warning("cannot measure the lag: %s", exc)
                return
            for tp in assigned:
                position = max(committed.get(tp, -1), starts[tp])
                lag[tp.topic] += max(0, ends[tp] - position)
        for topic, value in lag.items():
            LAG.labels(topic).set(value)

    app.timer(LAG_INTERVAL)(measure_lag)
