"""Single flight: concurrent identical misses on one node share one upstream call.

The first miss for an exact key leads: it calls the upstream and, when its answer is complete
(a whole completion, streamed or not), lands it. Identical requests that arrive meanwhile
follow: they wait for the landing and are answered from it (`hit-exact`, tier `inflight`),
without an upstream call of their own. A flight that lands nothing (an upstream error, a
broken stream, a timeout) lets every follower call the upstream itself, so coalescing never
turns a good answer into an error. Followers wait at most the upstream's own timeout.

Across the nodes of a fleet (`FleetLeases`), a node's leader first takes a Redis lease on the
exact key (SET NX PX, a random token). Holding it, it calls the upstream and releases the
lease once its answer is written back (or at once when it has nothing to store). Refused it,
it waits for the holder's answer to land in Redis and serves that, so its own followers share
it too. The lease is short (`LEASE_S`) and the holder renews it while its call runs, so a
holder that dies (kill -9, lost network) frees its waiters within seconds, not after the
upstream's timeout. If the holder lands nothing (the lease is gone and no entry came, or the
wait passed the longest a holder may legitimately take) or Redis fails, it calls the upstream
itself: a lease only ever saves calls.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio as aioredis

from cachefleet_contract import keyspace
from cachefleet_node.metrics import NodeMetrics
from cachefleet_node.resilience import TierGuard

__all__ = ["FleetLeases", "Flights", "Lease"]

Completion = dict[str, Any]
T = TypeVar("T")

#: Lifetime of a lease in Redis; its holder renews it every third of that while alive.
LEASE_S = 3.0
#: The longest a waiter's polls drift apart (they start at `poll_s` and double).
POLL_CEILING_S = 0.25

#: Deletes the lease only if it still holds the token it was taken with (not a later holder's).
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""

#: Extends the lease only while it still holds this holder's token.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


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


@dataclass(slots=True)
class Lease:
    """A lease this node holds on an exact key: its Redis key and token."""

    key: str
    token: str
    released: bool = False
    renewing: asyncio.Task[None] | None = None


class FleetLeases:
    """Single flight across nodes: one short Redis lease per exact key (keys in
    `cachefleet_contract.keyspace.lease_key`). Every call runs under the Redis deadline and
    the entry store's breaker; any failure means no lease, never an error."""

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        guard: TierGuard,
        metrics: NodeMetrics,
        *,
        deadline_s: float,
        hold_s: float,
        poll_s: float,
        lease_s: float = LEASE_S,
    ) -> None:
        """`hold_s`: the longest a holder may legitimately hold a key (upstream timeout plus
        write-back), the most a waiter waits; `lease_s`: the lease's lifetime between renewals."""
        self._redis = client
        self._prefix = prefix
        self._guard = guard
        self._metrics = metrics
        self._deadline_s = deadline_s
        self._hold_s = hold_s
        self._lease_s = lease_s
        self._poll_s = poll_s
        self._release_script = client.register_script(_RELEASE)
        self._renew_script = client.register_script(_RENEW)
        self._releasing: set[asyncio.Task[None]] = set()

    async def take(
        self,
        namespace: str,
        tenant: str,
        entry_id: str,
        landed: Callable[[], Awaitable[T | None]],
    ) -> tuple[Lease | None, T | None]:
        """Lead or wait for the fleet's flight of an exact key.

        (lease, None): this node holds the lease, calls the upstream and must `release` it;
        (None, answer): another node's answer landed (`landed()` found it); (None, None): call
        the upstream without a lease (Redis unavailable, or the holder landed nothing).
        """
        key = keyspace.lease_key(self._prefix, namespace, tenant, entry_id)
        token = secrets.token_hex(16)
        taken = await self._guard.call(
            "lease",
            self._redis.set(key, token, nx=True, px=self._lease_ms),
            self._deadline_s,
        )
        if taken.error:
            self._metrics.fleet_leases.labels("unavailable").inc()
            return None, None
        if taken.value:
            lease = Lease(key, token)
            answer = await landed()  # stored by a holder that released just before we asked
            if answer is not None:
                self.release(lease)
                self._metrics.fleet_leases.labels("landed").inc()
                return None, answer
            self._metrics.fleet_leases.labels("acquired").inc()
            lease.renewing = asyncio.create_task(self._renew(lease))
            return lease, None
        self._metrics.fleet_leases.labels("held").inc()
        return None, await self._wait(key, landed)

    async def _wait(self, key: str, landed: Callable[[], Awaitable[T | None]]) -> T | None:
        """The holder's answer once it lands; None when the lease ends without one (the holder
        released it or stopped renewing it), Redis fails, or `hold_s` has passed."""
        started = time.perf_counter()
        give_up = started + self._hold_s
        outcome = "timeout"
        answer: T | None = None
        poll_s = self._poll_s
        while time.perf_counter() < give_up:
            answer = await landed()
            if answer is not None:
                outcome = "landed"
                break
            alive = await self._guard.call("lease", self._redis.exists(key), self._deadline_s)
            if alive.error:
                outcome = "unavailable"
                break
            if not alive.value:  # released or expired: its answer landed just now, or never
                answer = await landed()
                outcome = "landed" if answer is not None else "abandoned"
                break
            await asyncio.sleep(min(poll_s, max(0.0, give_up - time.perf_counter())))
            # Backs off: a thousand waiters polling every `poll_s` would load Redis more than
            # the requests themselves; an answer is still seen within POLL_CEILING_S.
            poll_s = max(self._poll_s, min(poll_s * 2, POLL_CEILING_S))
        self._metrics.fleet_wait.labels(outcome).observe(time.perf_counter() - started)
        return answer

    def release(self, lease: Lease, after: asyncio.Future[Any] | None = None) -> None:
        """Give the lease back (once; later calls do nothing), when `after` (the write-back
        of the answer) is done, so that waiters find the answer before the lease is gone."""
        if lease.released:
            return
        lease.released = True
        if lease.renewing is not None and after is None:
            lease.renewing.cancel()
        task = asyncio.create_task(self._release(lease, after))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    @property
    def _lease_ms(self) -> int:
        return max(1, int(self._lease_s * 1000))

    async def _renew(self, lease: Lease) -> None:
        """Keep the lease alive while its holder works (until released, up to `hold_s`)."""
        until = time.perf_counter() + self._hold_s
        while time.perf_counter() < until:
            await asyncio.sleep(self._lease_s / 3)
            renewed = await self._guard.call(
                "lease",
                self._renew_script(keys=[lease.key], args=[lease.token, self._lease_ms]),
                self._deadline_s,
            )
            if renewed.error or not renewed.value:
                return  # lost it (expired or Redis failing): waiters fall back to their own call

    async def _release(self, lease: Lease, after: asyncio.Future[Any] | None) -> None:
        if after is not None:
            await asyncio.wait([after])
        if lease.renewing is not None:
            lease.renewing.cancel()
        await self._guard.call(
            "lease",
            self._release_script(keys=[lease.key], args=[lease.token]),
            self._deadline_s,
        )

    async def drain(self) -> None:
        """Wait for pending releases (shutdown)."""
        while self._releasing:
            await asyncio.gather(*list(self._releasing), return_exceptions=True)
