"""Series stability: a timer finds quiet series; the agent on their partition marks them stable."""

import asyncio
import logging
import time

from dicomflow.core.index import count_series_instances
from dicomflow.streams.app import app
from dicomflow.streams.fanout import load_header
from dicomflow.streams.progress import SeriesProgress, is_quiet, mark_stable, series_progress
from dicomflow.streams.resources import resources
from dicomflow.streams.state import send_state
from dicomflow.streams.topics import SeriesSignal, series_check_topic, series_stable_topic

log = logging.getLogger(__name__)

CHECK_INTERVAL = 1.0
MAX_DEFERRALS = 10
_requested: dict[str, float] = {}
_deferrals: dict[str, int] = {}


@app.timer(CHECK_INTERVAL)
async def find_quiet_series() -> None:
    """Ask the owning partition to re-check every series that looks quiet (once per interval)."""
    stable_seconds = resources().settings.series_stable_seconds
    now = time.time()
    for key, progress in list(series_progress.items()):
        if progress is None or not is_quiet(progress, stable_seconds, now):
            continue
        if now - _requested.get(key, 0.0) < max(stable_seconds, CHECK_INTERVAL * 5):
            continue
        _requested[key] = now
        await series_check_topic.send(key=key, value=SeriesSignal(series_key=key))


async def indexed_instances(progress: SeriesProgress) -> int:
    """The series' instance count in PostgreSQL: exact, whatever a crash did to the tables.

    The tables count distinct instances as they arrive; PostgreSQL rows are keyed by
    identity, so once the indexer has caught up their count is the truth.
    """
    event = progress.last_event
    return await count_series_instances(
        await resources().pool(), event.tenant_id, event.study_uid, event.series_uid
    )


@app.agent(series_check_topic)
async def mark_quiet_series_stable(stream):  # type: ignore[no-untyped-def]
    async for key, _signal in stream.items():
        _requested.pop(key, None)
        progress = series_progress.get(key)
        if progress is None or not is_quiet(progress, resources().settings.series_stable_seconds):
            continue
        indexed = await indexed_instances(progress)
        if indexed < progress.instances and _deferrals.get(key, 0) < MAX_DEFERRALS:
            _deferrals[key] = _deferrals.get(key, 0) + 1
            continue  # the instance index is catching up: the timer asks again
        _deferrals.pop(key, None)
        progress = mark_stable(progress.derive(instances=indexed))
        series_progress[key] = progress
        try:
            header = await asyncio.to_thread(load_header, progress.last_event.file_path)
        except (OSError, ValueError) as exc:
            log.error("cannot read %s: %s", progress.last_event.file_path, exc)
            continue
        await send_state(key, header, progress)
        await series_stable_topic.send(
            key=key, value=SeriesSignal(series_key=key, expected_instances=progress.instances)
        )
