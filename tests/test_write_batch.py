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


class FlakyTier:
    """A tier whose first `failures` sends raise `error`."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error = failures, error
        self.sends: list[list[int]] = []
        self.written: list[int] = []

    async def send(self, items: list[int]) -> None:
        self.sends.append(list(items))
        if len(self.sends) <= self.failures:
            raise self.error
        self.written.extend(items)

    def batcher(self, max_items: int, retry_for_s: float) -> WriteBatcher[int]:
        """A batcher writing into this tier that retries `ConnectionError`s."""
        return WriteBatcher[int](
            "test", self.send, max_items=max_items, max_queued=8, retry_for_s=retry_for_s,
            retryable=lambda exc: isinstance(exc, ConnectionError),
        )  # fmt: skip


async def test_a_batch_failed_by_an_unavailable_tier_is_sent_again_before_later_writes() -> None:
    tier = FlakyTier(2, ConnectionError("tier restarting"))
    batcher = tier.batcher(max_items=2, retry_for_s=30)
    with pytest.raises(ConnectionError):  # told at once: not confirmed
        await asyncio.wait_for(batcher.write([1, 2]), 5)
    later = asyncio.ensure_future(batcher.write([3]))
    await asyncio.wait_for(later, 10)  # written once the retried batch went through
    assert tier.written == [1, 2, 3]
    assert tier.sends[:2] == [[1, 2], [1, 2]]
    assert (batcher.retried, batcher.abandoned) == (4, 0)


async def test_a_refused_batch_or_one_failing_too_long_is_abandoned() -> None:
    refused = FlakyTier(1, ValueError("bad item"))
    batcher = refused.batcher(max_items=4, retry_for_s=30)
    with pytest.raises(ValueError):
        await asyncio.wait_for(batcher.write([1]), 5)
    await asyncio.wait_for(batcher.write([2]), 5)
    assert refused.written == [2]
    assert (batcher.retried, batcher.abandoned) == (0, 1)

    down = FlakyTier(1_000, ConnectionError("down"))
    batcher = down.batcher(max_items=4, retry_for_s=0.5)
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(batcher.write([1]), 5)
    await asyncio.wait_for(batcher.drain(10), 15)  # gives up after retry_for_s
    assert batcher.abandoned == 1
    assert len(down.sends) >= 2
    assert down.written == []


async def test_discard_drops_queued_and_retried_items_and_answers_their_callers() -> None:
    tier = SlowTier()
    batcher = WriteBatcher[int]("test", tier.send, max_items=8, max_queued=16)
    in_flight = asyncio.ensure_future(batcher.write([0]))
    await asyncio.wait_for(tier.started.wait(), 5)
    doomed = asyncio.ensure_future(batcher.write([10, 12]))
    mixed = asyncio.ensure_future(batcher.write([11, 14, 3]))
    await asyncio.sleep(0)
    assert batcher.discard(lambda item: item >= 10) == 4
    await asyncio.wait_for(doomed, 5)  # superseded: answered without a write
    assert not mixed.done()
    tier.gate.set()
    await asyncio.wait_for(asyncio.gather(in_flight, mixed), 5)
    assert tier.written == [0, 3]


async def test_enqueued_writes_are_sent_without_a_waiting_caller_and_bounded() -> None:
    tier = FlakyTier(1, ConnectionError("down"))
    batcher = tier.batcher(max_items=4, retry_for_s=30)
    assert batcher.enqueue([1, 2, 3, 4, 5, 6, 7, 8])
    assert not batcher.enqueue([9])  # the bound holds for queued writes nobody waits for
    assert batcher.refused == 1
    await asyncio.wait_for(batcher.drain(10), 15)
    assert tier.written == [1, 2, 3, 4, 5, 6, 7, 8]  # the failed batch was sent again
    assert batcher.retried == 8  # one call goes whole, even past `max_items`
