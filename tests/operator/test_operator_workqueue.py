"""The reconcile queue: dedup, delays, one worker per key, re-runs, backoff, shutdown."""

from __future__ import annotations

import asyncio

import pytest

from cachefleet_operator.services.workqueue import QueueClosed, WorkQueue


async def next_key(queue: WorkQueue[str]) -> str:
    return await asyncio.wait_for(queue.get(), 2.0)


async def test_a_burst_of_adds_is_one_pass() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for _ in range(5):
        queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    assert {await next_key(queue), await next_key(queue)} == {"a", "b"}
    assert len(queue) == 0


async def test_a_delayed_key_waits_and_an_earlier_add_wins() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("late", after=30)
    assert (len(queue), queue.due()) == (1, 0)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(queue.get(), 0.1)
    queue.add("late", after=0)  # sooner than scheduled: now
    assert await next_key(queue) == "late"


async def test_a_key_in_progress_is_not_handed_out_twice_but_runs_again_after() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert await next_key(queue) == "a"
    queue.add("a")  # a change arrived during the pass
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(queue.get(), 0.1)
    queue.done("a")
    assert await next_key(queue) == "a"
    queue.done("a")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(queue.get(), 0.1)


async def test_waiting_workers_wake_for_new_keys() -> None:
    queue: WorkQueue[str] = WorkQueue()
    waiting = asyncio.create_task(queue.get())
    await asyncio.sleep(0.01)
    queue.add("x")
    assert await asyncio.wait_for(waiting, 1) == "x"


async def test_discard_drops_a_waiting_key() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("gone")
    queue.add("kept")
    queue.discard("gone")
    assert await next_key(queue) == "kept"
    assert len(queue) == 0


async def test_backoff_grows_to_the_cap_and_resets() -> None:
    queue: WorkQueue[str] = WorkQueue(base_delay=2.0, max_delay=10.0)
    assert [queue.retry_delay("a") for _ in range(5)] == [2.0, 4.0, 8.0, 10.0, 10.0]
    assert queue.retry_delay("b") == 2.0
    queue.forget("a")
    assert queue.retry_delay("a") == 2.0


async def test_jitter_shortens_each_delay_by_at_most_its_fraction() -> None:
    draws = iter([0.0, 1.0, 0.5])
    queue: WorkQueue[str] = WorkQueue(
        base_delay=10.0, max_delay=100.0, jitter=0.2, rand=lambda: next(draws)
    )
    assert [queue.retry_delay("a") for _ in range(3)] == [10.0, 16.0, 36.0]
    assert queue.failures("a") == 3
    queue.forget("a")
    assert queue.failures("a") == 0


async def test_shutdown_wakes_getters() -> None:
    queue: WorkQueue[str] = WorkQueue()
    waiting = asyncio.create_task(queue.get())
    await asyncio.sleep(0.01)
    queue.shutdown()
    with pytest.raises(QueueClosed):
        await asyncio.wait_for(waiting, 1)
    queue.add("ignored")
    assert len(queue) == 0
