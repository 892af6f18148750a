"""Series progress: the Faust tables and the rules that update them.

Both tables are updated only by agents reading topics keyed `tenant|study|series`, so each
series lives on one partition and its changelog, and a restart recovers it from Kafka.
"""

import time

import faust

from dicomflow.streams.app import app
from dicomflow.tables.records import StorageEvent

RECEIVING = "receiving"
STABLE = "stable"


class SeriesProgress(faust.Record, serializer="json"):
    instances: int
    first_received_time: str
    last_received_time: str
    last_activity: float
    state: str
    last_event: StorageEvent


series_progress = app.Table("series_progress", default=None, value_type=SeriesProgress)
instances_seen = app.Table("instances_seen", default=None, value_type=str)


def instance_key(event: StorageEvent) -> str:
    return f"{event.tenant_id}|{event.study_uid}|{event.series_uid}|{event.sop_uid}"


def record_instance(
    progress: SeriesProgress | None, event: StorageEvent, is_new: bool
) -> tuple[SeriesProgress, bool]:
    """The series' progress after `event`, and whether it should be announced now.

    A series is announced when first seen and when it changes after being stable; a
    re-sent instance or a redelivered event (`is_new` false) is never counted twice.
    """
    now = time.time()
    if progress is None:
        return SeriesProgress(
            instances=1,
            first_received_time=event.created_time,
            last_received_time=event.created_time,
            last_activity=now,
            state=RECEIVING,
            last_event=event,
        ), True
    was_stable = progress.state == STABLE
    return SeriesProgress(
        instances=progress.instances + (1 if is_new else 0),
        first_received_time=progress.first_received_time,
        last_received_time=max(progress.last_received_time, event.created_time),
        last_activity=now,
        state=RECEIVING,
        last_event=event,
    ), was_stable


def is_quiet(progress: SeriesProgress, stable_seconds: float, now: float | None = None) -> bool:
    """True when a receiving series has had no new instance for `stable_seconds`."""
    now = time.time() if now is None else now
    return progress.state == RECEIVING and now - progress.last_activity >= stable_seconds


def mark_stable(progress: SeriesProgress) -> SeriesProgress:
    return progress.derive(state=STABLE)
