"""Coalesced writes: the items of concurrent callers go to a tier as one batch.

A node under miss load writes many entries back at once; one round trip (and, in Python
clients, one request's worth of encoding) per entry made the write path the bottleneck.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog

__all__ = ["RETRY_PAUSE_S", "RETRY_WRITES_FOR_S", "WriteBatcher", "WriteQueueFull"]

T = TypeVar("T")
log = structlog.get_logger(__name__)

RETRY_PAUSE_S = (0.1, 2.0)  # first and longest pause before a failed batch is sent again
#: How long the stores send a failed write again (a Redis or Milvus restart, failover or
#: pause): the answer was paid for, and another node can serve it only from the shared tier.
RETRY_WRITES_FOR_S = 60.0


class WriteQueueFull(ConnectionError):
    """A write was refused at once: the tier is so slow that `max_queued` items already wait
    (callers that stopped waiting leave theirs queued). Not a failure of the tier: the
    caller skips it, as it would a tier that is down."""


@dataclass(slots=True)
class _Queued(Generic[T]):
    items: list[T]
    done: asyncio.Future[None]
    failed_at: float | None = None  # monotonic time of the first failed send (a retry)


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark an unawaited write's outcome as read (no "exception never retrieved")."""
    if not future.cancelled():
        future.exception()


class WriteBatcher(Generic[T]):
    """Queues the items of concurrent `write` calls; one flusher sends what is queued
    through `send` as one batch, one batch at a time, so writes land in call order.

    A batch takes whole calls, oldest first, up to `max_items` (a larger call goes alone).
    Batches form while the previous one is in flight: no timer delays a lone write. Each
    caller waits for the batch carrying its items and gets that batch's error; a caller that
    stops waiting (its deadline) leaves its items queued, and they are still written. At most
    `max_queued` items wait (memory stays bounded while the tier is slow): a write past that
    raises `WriteQueueFull` at once.

    A batch that fails with an error `retryable` accepts (the tier stopped, hung or dropped
    the connection) is sent again, before anything queued after it, with pauses from
    `RETRY_PAUSE_S`, until `retry_for_s` has passed since its first failure; its callers get
    the first error at once (not confirmed in time), and the items land when the tier is
    back. `send` must therefore be idempotent. Other errors fail the batch for good.
    """

    def __init__(
        self,
        tier: str,
        send: Callable[[list[T]], Awaitable[None]],
        max_items: int,
        max_queued: int,
        *,
        retry_for_s: float = 0.0,
        retryable: Callable[[BaseException], bool] = lambda exc: False,
    ) -> None:
        self.tier = tier
        self._send = send
        self._max_items = max_items
        self._max_queued = max_queued
        self._retry_for_s = retry_for_s
        self._retryable = retryable
        self._queued: deque[_Queued[T]] = deque()
        self._queued_items = 0  # items in `_queued`
        self._in_flight: list[_Queued[T]] = []  # the batch being sent
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0  # batches sent (each one `send`)
        self.items = 0  # items those batches carried
        self.refused = 0  # items refused with `WriteQueueFull`
        self.retried = 0  # items sent again after their batch failed
        self.abandoned = 0  # items of failed batches not sent again (not retryable, too long)

    def enqueue(self, items: list[T]) -> bool:
        """Queue `items` without waiting for them (a tier known to be down: they are sent,
        and retried, like any queued write); False, and nothing queued, if the queue is full."""
        if not items:
            return True
        if self._queued_items + len(items) > self._max_queued:
            self.refused += len(items)
            return False
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        done.add_done_callback(_retrieve)  # nobody awaits it: its error is only counted
        self._queued.append(_Queued(items, done))
        self._queued_items += len(items)
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        return True

    async def write(self, items: list[T]) -> None:
        """Queue `items` and wait until the batch carrying them is written (or raise its
        error)."""
        if not items:
            return
        if self._queued_items + len(items) > self._max_queued:
            self.refused += len(items)
            raise WriteQueueFull(f"{self._queued_items} {self.tier} writes already queued")
        loop = asyncio.get_running_loop()
        queued = _Queued(items, loop.create_future())
        self._queued.append(queued)
        self._queued_items += len(items)
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        await queued.done

    async def _flush(self) -> None:
        pause = RETRY_PAUSE_S[0]
        try:
            while self._queued:
                await asyncio.sleep(0)  # writes issued in this turn of the loop join in
                batch, taken = self._in_flight, 0
                batch.clear()
                while self._queued and (
                    not batch or taken + len(self._queued[0].items) <= self._max_items
                ):
                    batch.append(self._queued.popleft())
                    taken += len(batch[-1].items)
                self._queued_items -= taken
                retrying = False
                try:
                    await self._send([item for queued in batch for item in queued.items])
                except Exception as exc:
                    for queued in batch:
                        if not queued.done.done():
                            queued.done.set_exception(exc)
                    retrying = self._requeue(batch, exc)
                else:
                    for queued in batch:
                        if not queued.done.done():
                            queued.done.set_result(None)
                self.batches += 1
                self.items += taken
                batch.clear()
                if retrying:
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, RETRY_PAUSE_S[1])
                else:
                    pause = RETRY_PAUSE_S[0]
        finally:  # cancelled (`drain` gave up): fail the writes not confirmed
            self._drop_unwritten()

    def _requeue(self, batch: list[_Queued[T]], exc: Exception) -> bool:
        """Put a failed batch back at the head of the queue when its error is retryable and
        its first failure is recent enough (True); else count and log its items as lost."""
        now = time.monotonic()
        batch = [queued for queued in batch if queued.items]  # `discard` may have emptied some
        first = min((q.failed_at for q in batch if q.failed_at is not None), default=now)
        items = sum(len(queued.items) for queued in batch)
        if not items:
            return False
        if not self._retryable(exc) or now - first > self._retry_for_s:
            self.abandoned += items
            log.warning(
                "writes_abandoned",
                tier=self.tier,
                items=items,
                failing_for_s=round(now - first, 1),
                error=f"{type(exc).__name__}: {exc}"[:300],
            )
            return False
        if first == now:
            log.info("writes_retrying", tier=self.tier, items=items, error=type(exc).__name__)
        for queued in reversed(batch):
            queued.failed_at = first
            self._queued.appendleft(queued)
        self._queued_items += items
        self.retried += items
        return True

    def discard(self, unwanted: Callable[[T], bool]) -> int:
        """Drop the queued items `unwanted` accepts (an invalidation must not be undone by a
        write still waiting, or retried, behind it); return how many. A caller whose items
        are all dropped is answered as written: its write was superseded. Items of the batch
        in flight are not sent again should it fail."""
        for queued in self._in_flight:
            queued.items = [item for item in queued.items if not unwanted(item)]
        dropped = 0
        for queued in list(self._queued):
            keep = [item for item in queued.items if not unwanted(item)]
            dropped += len(queued.items) - len(keep)
            queued.items = keep
            if not keep:
                self._queued.remove(queued)
                if not queued.done.done():
                    queued.done.set_result(None)
        self._queued_items -= dropped
        return dropped

    def _drop_unwritten(self) -> None:
        """Fail (and log) the writes in flight and queued; nothing if all were confirmed."""
        unconfirmed = [queued for queued in self._in_flight if not queued.done.done()]
        left = list(self._queued)
        self._in_flight.clear()
        self._queued.clear()
        self._queued_items = 0
        if unconfirmed or left:
            log.warning(
                "writes_dropped",
                tier=self.tier,
                items=sum(len(queued.items) for queued in left),
                items_in_flight=sum(len(queued.items) for queued in unconfirmed),
            )
        for queued in [*unconfirmed, *left]:
            if not queued.done.done():  # a caller that stopped waiting cancelled its future
                queued.done.set_exception(ConnectionError(f"{self.tier} writer closed"))

    async def drain(self, timeout_s: float) -> None:
        """Write everything queued; past `timeout_s`, fail (and log) what is left.

        Never waits longer than `timeout_s`: a flusher stuck in a client call that does not
        end on cancellation is cancelled and left behind, its callers failed here."""
        flusher = self._flusher
        if flusher is None or flusher.done():
            return
        await asyncio.wait({flusher}, timeout=timeout_s)
        if not flusher.done():
            flusher.cancel()
            self._flusher = None
            self._drop_unwritten()
