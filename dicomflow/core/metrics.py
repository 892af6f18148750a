"""Prometheus metrics shared by every service; each process exposes its own registry."""

from prometheus_client import Counter, Gauge

INSTANCES_RECEIVED = Counter(
    "dicomflow_instances_received_total", "Instances stored and acknowledged", ["tenant", "via"]
)
BYTES_RECEIVED = Counter("dicomflow_bytes_received_total", "Bytes of stored instances", ["via"])
REJECTIONS = Counter("dicomflow_rejections_total", "Instances rejected", ["reason"])
OUTBOX_DEPTH = Gauge("dicomflow_outbox_depth", "Storage events waiting in the local outbox")
VALUES_TRUNCATED = Counter(
    "dicomflow_values_truncated_total", "Values cut to their column width", ["column"]
)
PARTITIONS_READ_AGAIN = Counter(
    "dicomflow_partitions_read_again_total",
    "Partitions a worker or sink read again from their committed offset",
    ["topic", "reason"],
)
EVENTS_DELETED_UNPROCESSED = Counter(
    "dicomflow_events_deleted_unprocessed_total",
    "Events Kafka's retention deleted before they were processed (committed over)",
    ["topic"],
)
EVENTS_UNDECODABLE = Counter(
    "dicomflow_events_undecodable_total",
    "Kafka messages skipped because they are not a record of their topic",
    ["topic"],
)
