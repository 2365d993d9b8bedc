"""A keyed, delayed work queue (the controller-runtime kind) for level-based reconciles.

- `add(key, after=s)` schedules a key; adding a key that is already waiting keeps the earlier
  time, so a burst of events becomes one pass.
- A key is handed to one worker at a time; added again while it is being processed, it waits
  until `done(key)` and then runs once more (the pass sees the newest state).
- `retry_delay(key)` grows exponentially per key (with jitter) until `forget(key)` (after a
  success, or a new spec).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import random
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["QueueClosed", "WorkQueue"]

K = TypeVar("K", bound=Hashable)


class QueueClosed(Exception):
    """`get()` on a queue that was shut down."""


class WorkQueue(Generic[K]):
    """Keys due at a time, each processed by one worker at a time."""

    def __init__(
        self,
        *,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        jitter: float = 0.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._due: dict[K, float] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._seq = itertools.count()
        self._processing: set[K] = set()
        self._parked: set[K] = set()
        self._failures: dict[K, int] = {}
        self._wakeup = asyncio.Event()
        self._closed = False
        self.base_delay, self.max_delay = base_delay, max_delay
        self._jitter, self._rand = jitter, rand

    def __len__(self) -> int:
        """Keys scheduled, now or later (not counting the ones being processed)."""
        return len(self._due)

    def due(self) -> int:
        """Keys that are due now and waiting for a worker (the backlog)."""
        now = self._now()
        return sum(1 for at in self._due.values() if at <= now)

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def add(self, key: K, *, after: float = 0.0) -> None:
        """Process `key` in `after` seconds (or sooner, if it is already due sooner)."""
        if self._closed:
            return
        at = self._now() + max(0.0, after)
        current = self._due.get(key)
        if current is not None and current <= at:
            return
        self._due[key] = at
        if key in self._processing:
            self._parked.add(key)
        else:
            heapq.heappush(self._heap, (at, next(self._seq), key))
        self._wakeup.set()

    def discard(self, key: K) -> None:
        """Drop a waiting key (a deleted object); a pass already running finishes."""
        self._due.pop(key, None)
        self._parked.discard(key)
        self._failures.pop(key, None)

    async def get(self) -> K:
        """The next due key, marked as being processed; waits until one is due."""
        while True:
            if self._closed:
                raise QueueClosed
            timeout: float | None = None
            while self._heap:
                at, _, key = self._heap[0]
                if self._due.get(key) != at or key in self._processing:
                    heapq.heappop(self._heap)  # stale entry, or parked until done()
                    if key in self._processing and self._due.get(key) is not None:
                        self._parked.add(key)
                    continue
                delay = at - self._now()
                if delay > 0:
                    timeout = delay
                    break
                heapq.heappop(self._heap)
                del self._due[key]
                self._processing.add(key)
                return key
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    def done(self, key: K) -> None:
        """The pass over `key` ended; if it was added meanwhile, it becomes due again."""
        self._processing.discard(key)
        if key in self._parked:
            self._parked.discard(key)
            at = self._due.get(key)
            if at is not None:
                heapq.heappush(self._heap, (at, next(self._seq), key))
        self._wakeup.set()

    def retry_delay(self, key: K) -> float:
        """The next backoff for `key`: base, 2×base, 4×base, … up to `max_delay`, each shortened
        by up to `jitter` (a fraction) at random so that objects failing together spread out."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = min(self.max_delay, self.base_delay * (2 ** min(failures, 62)))
        return float(delay * (1.0 - self._jitter * self._rand()))

    def failures(self, key: K) -> int:
        """Failed passes of `key` since its last success (or reset)."""
        return self._failures.get(key, 0)

    def forget(self, key: K) -> None:
        """Reset the backoff of `key` (its last pass succeeded)."""
        self._failures.pop(key, None)

    def shutdown(self) -> None:
        """Wake every waiting `get()` with `QueueClosed`; later `add()`s are ignored."""
        self._closed = True
        self._wakeup.set()
