"""Single flight: concurrent identical misses on one node share one upstream call.

The first miss for an exact key leads: it calls the upstream and, when its answer is complete
(a whole completion, streamed or not), lands it. Identical requests that arrive meanwhile
follow: they wait for the landing and are answered from it (`hit-exact`, tier `inflight`),
without an upstream call of their own. A flight that lands nothing (an upstream error, a
broken stream, a timeout) lets every follower call the upstream itself, so coalescing never
turns a good answer into an error. Followers wait at most the upstream's own timeout.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["Flights"]

Completion = dict[str, Any]


class Flights:
    """The flights in the air on this node, by exact key."""

    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Future[Completion | None]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def take(self, key: str) -> asyncio.Future[Completion | None] | None:
        """None: the caller leads and must `land` the key; else the leader's landing to
        wait for."""
        existing = self._flights.get(key)
        if existing is not None and not existing.done():
            return existing
        self._flights[key] = asyncio.get_running_loop().create_future()
        return None

    def land(self, key: str, completion: Completion | None) -> None:
        """The leader's outcome (None: nothing to share); idempotent."""
        flight = self._flights.pop(key, None)
        if flight is not None and not flight.done():
            flight.set_result(completion)

    @staticmethod
    async def wait(
        flight: asyncio.Future[Completion | None], timeout_s: float
    ) -> Completion | None:
        """The leader's completion, or None if it landed nothing or took too long."""
        try:
            return await asyncio.wait_for(asyncio.shield(flight), timeout_s)
        except TimeoutError:
            return None
