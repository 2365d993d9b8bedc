"""One active operator: leader election on a Lease (`domain/leadership.py` decides).

`LeaderElection.acquire` returns once this process holds the Lease (standing by, and saying
so, until then); `hold` renews it every `retry_period_s` and returns when it could not renew
it for `renew_deadline_s` — leadership is lost, and the process must stop acting at once;
`release` gives the Lease up on a clean shutdown so a standby takes over without waiting for
it to expire.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from cachefleet_operator.adapters.kube import LEASES, ApiError, KubeClient
from cachefleet_operator.domain.leadership import (
    LeaseState,
    Move,
    lease_manifest,
    next_move,
    parse_lease,
)

__all__ = ["LeaderElection"]

log = structlog.get_logger("cachefleet.operator.leadership")


class LeaderElection:
    """This process's part in the election for one Lease."""

    def __init__(
        self,
        kube: KubeClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration_s: float,
        renew_deadline_s: float,
        retry_period_s: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._kube = kube
        self.namespace, self.name, self.identity = namespace, name, identity
        self._duration = max(1, round(lease_duration_s))
        self._renew_deadline = renew_deadline_s
        self._retry = retry_period_s
        self._clock = clock
        self.holder: str | None = None  # the last holder seen
        self.problem: str | None = None  # why the last attempt failed, for /readyz

    async def _try(self) -> bool:
        """One read-decide-write round; True when this process holds the Lease after it."""
        obj = await self._kube.get(LEASES, self.namespace, self.name)
        state = parse_lease(obj)
        now = self._clock()
        move = next_move(state, self.identity, now)
        self.holder = state.holder if state else None
        if move is Move.WAIT:
            return False
        body = lease_manifest(
            name=self.name,
            namespace=self.namespace,
            identity=self.identity,
            duration_s=self._duration,
            now=now,
            previous=state,
        )
        try:
            if move is Move.CREATE:
                await self._kube.create(LEASES, self.namespace, body)
            else:
                await self._kube.replace(LEASES, self.namespace, self.name, body)
        except ApiError as error:
            if error.status == 409:  # another process wrote it first: read it again
                return False
            raise
        if move is not Move.RENEW:
            log.info(
                "leading",
                lease=f"{self.namespace}/{self.name}",
                identity=self.identity,
                previous=self.holder,
            )
        self.holder = self.identity
        return True

    async def acquire(self) -> None:
        """Return once this process leads; stand by (and log who leads) until then."""
        announced: str | None = None
        while True:
            try:
                if await self._try():
                    self.problem = None
                    return
                self.problem = f"standing by: {self.holder or 'another operator'} leads"
                if self.holder != announced:
                    announced = self.holder
                    log.info(
                        "standing_by",
                        lease=f"{self.namespace}/{self.name}",
                        leader=self.holder,
                        identity=self.identity,
                    )
            except ApiError as error:
                self.problem = f"leader election on Lease {self.namespace}/{self.name}: {error}"
                log.warning(
                    "lease_unavailable", lease=f"{self.namespace}/{self.name}", error=str(error)
                )
            await asyncio.sleep(self._retry * (1 + 0.2 * random.random()))

    async def hold(self) -> None:
        """Renew until a renewal has failed for `renew_deadline_s`, then return (lost)."""
        last_renewed = time.monotonic()
        while True:
            await asyncio.sleep(self._retry)
            try:
                if await self._try():
                    last_renewed = time.monotonic()
                    continue
                log.error(
                    "leadership_lost", lease=f"{self.namespace}/{self.name}", leader=self.holder
                )
                return
            except ApiError as error:
                log.warning("lease_renewal_failed", error=str(error))
            if time.monotonic() - last_renewed > self._renew_deadline:
                log.error(
                    "leadership_lost",
                    lease=f"{self.namespace}/{self.name}",
                    reason=f"not renewed for {self._renew_deadline:.0f}s",
                )
                return

    async def release(self) -> None:
        """Give the Lease up (only if still ours) so a standby need not wait for it to expire."""
        try:
            state: LeaseState | None = parse_lease(
                await self._kube.get(LEASES, self.namespace, self.name)
            )
            if state is None or state.holder != self.identity:
                return
            body = lease_manifest(
                name=self.name,
                namespace=self.namespace,
                identity=self.identity,
                duration_s=self._duration,
                now=self._clock(),
                previous=state,
                release=True,
            )
            await self._kube.replace(LEASES, self.namespace, self.name, body)
            log.info("released", lease=f"{self.namespace}/{self.name}")
        except ApiError as error:
            log.warning("lease_release_failed", error=str(error))
