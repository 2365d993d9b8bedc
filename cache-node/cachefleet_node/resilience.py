"""Deadlines and circuit breakers around tier calls: the fail-open machinery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog

from cachefleet_node.metrics import NodeMetrics

__all__ = ["Breaker", "TierGuard", "TierResult"]

T = TypeVar("T")
log = structlog.get_logger(__name__)


class Breaker:
    """Opens after `failures` consecutive failures; lets one probe through after `cooldown_s`."""

    def __init__(self, failures: int, cooldown_s: float) -> None:
        self.failures = failures
        self.cooldown_s = cooldown_s
        self._consecutive = 0
        self._open_until = 0.0
        self.opens = 0  # times it opened (or re-opened after a failed probe)

    @property
    def is_open(self) -> bool:
        """True while calls should be skipped."""
        return time.monotonic() < self._open_until

    def record(self, ok: bool) -> None:
        """Feed the outcome of a call."""
        if ok:
            self._consecutive = 0
            self._open_until = 0.0
            return
        self._consecutive += 1
        if self._consecutive >= self.failures:
            self.opens += 1
            self._open_until = time.monotonic() + self.cooldown_s


@dataclass(frozen=True, slots=True)
class TierResult(Generic[T]):
    """Outcome of a guarded call: a value, or the reason there is none."""

    value: T | None
    error: str | None  # e.g. "redis-timeout", "milvus-error", "embedder-unavailable"

    @property
    def ok(self) -> bool:
        """Whether the call succeeded."""
        return self.error is None


class TierGuard:
    """Runs one tier's calls under a deadline and a breaker; never raises."""

    def __init__(self, tier: str, breaker: Breaker, metrics: NodeMetrics) -> None:
        self.tier = tier
        self.breaker = breaker
        self._metrics = metrics

    async def call(
        self,
        operation: str,
        awaitable: Awaitable[T],
        deadline_s: float | None,
        *,
        timeouts: tuple[type[BaseException], ...] = (),
        busy: tuple[type[BaseException], ...] = (),
    ) -> TierResult[T]:
        """Await with a deadline; failures are counted, logged at debug and turned into reasons.

        `deadline_s=None` leaves the deadlines to the callee, which raises one of `timeouts`
        past them (a failure, like a deadline here, unless the exception's `tier_failure` is
        False: already counted). One of `busy` means the tier shed the call under load: reason
        `<tier>-busy`, and the breaker does not count it.
        """
        if self.breaker.is_open:
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            self._metrics.tier_errors.labels(self.tier, "breaker-open").inc()
            return TierResult(None, f"{self.tier}-unavailable")
        started = time.perf_counter()
        try:
            if deadline_s is None:
                value = await awaitable
            else:
                value = await asyncio.wait_for(awaitable, timeout=deadline_s)
        except asyncio.CancelledError:
            raise
        except busy:
            return TierResult(None, f"{self.tier}-busy")
        except TimeoutError:
            return self._timed_out(True)
        except Exception as exc:
            if isinstance(exc, timeouts):
                return self._timed_out(getattr(exc, "tier_failure", True))
            self.breaker.record(False)
            self._metrics.tier_errors.labels(self.tier, "error").inc()
            log.debug("tier_error", tier=self.tier, operation=operation, error=type(exc).__name__)
            return TierResult(None, f"{self.tier}-error")
        self.breaker.record(True)
        self._metrics.tier_latency.labels(self.tier, operation).observe(
            time.perf_counter() - started
        )
        return TierResult(value, None)

    def _timed_out(self, tier_failure: bool) -> TierResult[T]:
        if tier_failure:
            self.breaker.record(False)
        self._metrics.tier_errors.labels(self.tier, "timeout").inc()
        return TierResult(None, f"{self.tier}-timeout")
