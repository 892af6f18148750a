"""Concurrent callers of one key share one run; others run on their own."""

import asyncio

import pytest

from dicomflow.api.single_flight import SingleFlight


async def test_concurrent_callers_of_one_key_share_one_run() -> None:
    flight, runs, release = SingleFlight(), [], asyncio.Event()

    async def build() -> str:
        runs.append(1)
        await release.wait()
        return "body"

    waiters = [asyncio.create_task(flight.run("series", build)) for _ in range(5)]
    other = asyncio.create_task(flight.run("other series", build))
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiters, other) == ["body"] * 6
    assert len(runs) == 2
    assert flight.running == 0
    assert await flight.run("series", build) == "body"  # a later call runs again
    assert len(runs) == 3


async def test_every_waiter_gets_the_failure_and_the_key_is_free_again() -> None:
    flight, release = SingleFlight(), asyncio.Event()

    async def failing() -> str:
        await release.wait()
        raise OSError("disk gone")

    waiters = [asyncio.create_task(flight.run("series", failing)) for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)
    assert flight.running == 0


async def test_a_cancelled_waiter_does_not_cancel_the_run_others_wait_for() -> None:
    flight, release = SingleFlight(), asyncio.Event()

    async def build() -> str:
        await release.wait()
        return "body"

    leaving = asyncio.create_task(flight.run("series", build))
    staying = asyncio.create_task(flight.run("series", build))
    await asyncio.sleep(0)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    release.set()
    assert await staying == "body"
