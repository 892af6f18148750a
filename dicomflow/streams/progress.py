"""Series progress: the Faust tables and the rules that update them.

Both tables are updated only by agents reading topics keyed `tenant|study|series`, so each
series lives on one partition and its changelog, and a restart recovers it from Kafka.
"""

import time
import weakref
from collections.abc import MutableMapping

import faust
from faust import streams as faust_streams
from faust.types import EventT

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


def make_current(event: EventT) -> None:
    """Make `event` the current event of this task, whose partition a table update's
    changelog record goes to. Faust sets it in the task that fills the batch, not in this
    one, and has no public setter; the stream's own attribute is that task's to set."""
    faust_streams._current_event.set(weakref.ref(event))


class BatchProgress:
    """The progress of the series of a batch of events, and the instances first seen in it,
    written to the tables once at the end of the batch (each series' progress once, not once
    per instance; nothing of the batch is recorded if it is cut short, so that its events,
    delivered again, count as they did the first time)."""

    def __init__(
        self,
        seen: MutableMapping[str, str | None],
        progress: MutableMapping[str, SeriesProgress | None],
    ) -> None:
        self._seen_table, self._progress_table = seen, progress
        self._progress: dict[str, tuple[SeriesProgress, EventT]] = {}
        self._seen: dict[str, tuple[str, EventT]] = {}

    def record(self, event: EventT) -> tuple[SeriesProgress, bool]:
        """The progress of the event's series with it, and whether to announce that now."""
        key, storage_event = event.key, event.value
        seen_key = instance_key(storage_event)
        is_new = seen_key not in self._seen and self._seen_table.get(seen_key) is None
        if is_new:
            self._seen[seen_key] = (storage_event.created_time, event)
        kept = self._progress.get(key)
        before = kept[0] if kept is not None else self._progress_table.get(key)
        progress, announce = record_instance(before, storage_event, is_new)
        self._progress[key] = (progress, event)
        return progress, announce

    def write(self) -> None:
        """Record the batch in the tables, each update as of the event it came from (its
        changelog partition)."""
        for seen_key, (created_time, event) in self._seen.items():
            make_current(event)
            self._seen_table[seen_key] = created_time
        for key, (progress, event) in self._progress.items():
            make_current(event)
            self._progress_table[key] = progress
