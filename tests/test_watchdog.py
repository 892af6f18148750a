"""The watchdog's answer to stuck partitions, on a recording consumer (no broker)."""

import asyncio

from faust.types import TP
from prometheus_client import REGISTRY

from dicomflow.streams.watchdog import read_stuck_again

DELETED, DROPPED = TP("storage_queue", 0), TP("dicom_image_queue", 1)


class RecordingConsumer:
    def __init__(self, deleted: dict[TP, tuple[int, int]]) -> None:
        self.deleted = deleted
        self.calls: list[str] = []

    async def commit_past_deleted_events(self, partitions: object) -> dict[TP, tuple[int, int]]:
        self.calls.append("commit past deleted")
        return self.deleted

    def stop_flow(self) -> None:
        self.calls.append("stop flow")

    async def perform_seek(self) -> None:
        self.calls.append("seek to committed")

    def resume_flow(self) -> None:
        self.calls.append("resume flow")


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_partitions_only_retention_emptied_are_committed_over_not_read_again() -> None:
    before = sample("dicomflow_events_deleted_unprocessed_total", topic=DELETED.topic)
    consumer = RecordingConsumer({DELETED: (30, 45)})
    asyncio.run(read_stuck_again(consumer, {DELETED: "dropped_event"}))  # type: ignore[arg-type]
    assert consumer.calls == ["commit past deleted"]
    after = sample("dicomflow_events_deleted_unprocessed_total", topic=DELETED.topic)
    assert after - before == 15


def test_any_other_stuck_partition_is_read_again_with_the_flow_stopped() -> None:
    labels = {"topic": DROPPED.topic, "reason": "dropped_event"}
    before = sample("dicomflow_partitions_read_again_total", **labels)
    consumer = RecordingConsumer({DELETED: (30, 45)})
    stuck = {DELETED: "stuck_commit", DROPPED: "dropped_event"}
    asyncio.run(read_stuck_again(consumer, stuck))  # type: ignore[arg-type]
    assert consumer.calls == [
        "commit past deleted",
        "stop flow",
        "seek to committed",
        "resume flow",
    ]
    assert sample("dicomflow_partitions_read_again_total", **labels) - before == 1
