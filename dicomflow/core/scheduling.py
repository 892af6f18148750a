"""CPU scheduling of the background consumers (the worker, the analytics sink)."""

import os

from dicomflow.core.settings import Settings


def schedule_as_background(settings: Settings) -> None:
    """With `background_scheduling=idle`, this thread and the threads it starts afterwards give
    way to any other thread of the machine (Linux SCHED_IDLE: the lowest share of the CPU, and
    preempted as soon as another thread wakes; lowering one's own priority needs no privilege).
    Call it before the process starts its threads."""
    if settings.background_scheduling == "idle" and hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
