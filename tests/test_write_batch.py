"""WriteBatcher: what waits for a slow tier stays bounded, and nothing queued is lost."""

from __future__ import annotations

import asyncio

import pytest

from cachefleet_node.tiers.write_batch import WriteBatcher, WriteQueueFull


class SlowTier:
    """A tier whose writes finish only when the test opens the gate."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.written: list[int] = []
        self.started = asyncio.Event()

    async def send(self, items: list[int]) -> None:
        self.started.set()
        await self.gate.wait()
        self.written.extend(items)


async def test_writes_past_the_queue_bound_are_refused_at_once_and_the_queue_is_written() -> None:
    tier = SlowTier()
    batcher = WriteBatcher[int]("test", tier.send, max_items=4, max_queued=8)
    in_flight = asyncio.ensure_future(batcher.write([0]))
    await asyncio.wait_for(tier.started.wait(), 5)  # the first batch holds the tier
    waiting = [asyncio.ensure_future(batcher.write([i])) for i in range(1, 9)]
    await asyncio.sleep(0)
    with pytest.raises(WriteQueueFull):
        await asyncio.wait_for(batcher.write([99]), 5)  # refused without waiting for the gate
    assert batcher.refused == 1
    # callers that give up leave their items queued: they still count against the bound
    for task in waiting[:4]:
        task.cancel()
    with pytest.raises(WriteQueueFull):
        await asyncio.wait_for(batcher.write([100]), 5)
    tier.gate.set()
    await asyncio.wait_for(asyncio.gather(in_flight, *waiting[4:]), 5)
    await asyncio.wait_for(batcher.drain(5), 10)
    assert sorted(tier.written) == list(range(9))  # given-up writes written too
    await asyncio.wait_for(batcher.write([200]), 5)  # room again once the queue is written
    assert tier.written[-1] == 200


async def test_one_call_larger_than_the_bound_is_refused() -> None:
    tier = SlowTier()
    tier.gate.set()
    batcher = WriteBatcher[int]("test", tier.send, max_items=4, max_queued=8)
    with pytest.raises(WriteQueueFull):
        await batcher.write(list(range(9)))
    await asyncio.wait_for(batcher.write(list(range(8))), 5)
    assert tier.written == list(range(8))


async def test_drain_gives_up_on_a_send_that_ignores_cancellation() -> None:
    """A client call stuck past its cancellation must not hold a node's shutdown."""
    release = asyncio.Event()
    started = asyncio.Event()

    async def stuck_send(items: list[int]) -> None:
        started.set()
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:  # a client that retries through cancellation
                continue

    batcher = WriteBatcher[int]("test", stuck_send, max_items=4, max_queued=8)
    in_flight = asyncio.ensure_future(batcher.write([1]))
    await asyncio.wait_for(started.wait(), 5)
    queued = asyncio.ensure_future(batcher.write([2]))
    await asyncio.sleep(0)
    await asyncio.wait_for(batcher.drain(0.2), 10)  # returns although the send never ends
    for caller in (in_flight, queued):
        with pytest.raises(ConnectionError, match="test writer closed"):
            await asyncio.wait_for(caller, 5)
    release.set()  # let the abandoned flusher end before the loop closes
    await asyncio.sleep(0.05)
