"""Hit rates from the cache nodes' counters: aggregation, a sliding window, coarse reports.

The nodes' `/v1/cache/stats` reports monotonic counters per cache namespace, for the node
itself and (when the nodes share Redis) for the whole fleet. The operator samples them on a
timer. Rates are computed from counter *increments* inside a window, so they describe recent
traffic rather than all time; a counter that goes down (a node restarted, a fleet hash was
purged) counts as a reset, as Prometheus' `increase()` treats it. What reaches the status is a
`HitRateReport` with fixed-precision strings, and it is rewritten only on a meaningful change.

Everything here is pure: time is passed in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cachefleet_contract.admin import Counters, StatsReport
from cachefleet_operator.domain.durations import format_duration

__all__ = [
    "FleetSample",
    "HitRateReport",
    "HitRateWindow",
    "WindowRates",
    "aggregate_stats",
    "build_report",
    "format_ratio",
    "meaningful_change",
    "should_publish",
]

#: Relative change of entries or savings that is worth a status write.
MIN_RELATIVE_CHANGE = 0.01


@dataclass(frozen=True)
class FleetSample:
    """One collection: counters per source, entries, and when it was taken."""

    at: datetime
    sources: Mapping[str, Counters]
    entries: int | None = None

    @property
    def totals(self) -> Counters:
        """Cumulative counters over every source (what the savings report)."""
        total = Counters()
        for counters in self.sources.values():
            total = total + counters
        return total


def aggregate_stats(
    responses: Sequence[StatsReport], namespaces: Iterable[str], at: datetime
) -> FleetSample:
    """Combine the `/v1/cache/stats` answers of a fleet's nodes for the cache's namespaces.

    Per namespace, the fleet counters (Redis-wide) are used when a node reports them, taken
    from the node that has counted the most (the nodes flush into Redis on their own
    schedules); otherwise each node's own counters are summed. Entries live in the shared
    store when the nodes use Redis (every node reports the same count: the largest is kept),
    else in each node's local store (summed).
    """
    sources: dict[str, Counters] = {}
    entries: int | None = None
    for namespace in sorted(set(namespaces)):
        present = [
            (response, item)
            for response in responses
            if (item := response.namespaces.get(namespace)) is not None
        ]
        fleet = [item.fleet for _, item in present if item.fleet is not None]
        if fleet:
            sources[f"fleet/{namespace}"] = max(fleet, key=lambda c: (c.requests, c.hits))
        else:
            for response, item in present:
                sources[f"node/{response.node_id}/{namespace}"] = item.node
        shared: list[int] = []
        local: list[int] = []
        for response, item in present:
            if item.entries is None:
                continue
            (shared if response.tiers.redis else local).append(item.entries)
        if shared or local:
            entries = (entries or 0) + (max(shared) if shared else 0) + sum(local)
    return FleetSample(at=at, sources=sources, entries=entries)


@dataclass(frozen=True)
class WindowRates:
    """Requests and hits counted inside the window, and the span the samples cover."""

    requests: int
    hits_exact: int
    hits_semantic: int
    span_seconds: float

    @property
    def overall(self) -> float | None:
        return (self.hits_exact + self.hits_semantic) / self.requests if self.requests else None

    @property
    def exact(self) -> float | None:
        return self.hits_exact / self.requests if self.requests else None

    @property
    def semantic(self) -> float | None:
        return self.hits_semantic / self.requests if self.requests else None


@dataclass
class HitRateWindow:
    """Counter increments of the last `window`, from successive samples of one cache."""

    window: timedelta
    _last: dict[str, Counters] = field(default_factory=dict)
    _increments: deque[tuple[datetime, Counters]] = field(default_factory=deque)
    _first_at: datetime | None = None

    def observe(self, sample: FleetSample) -> None:
        """Add a sample. The first one is the baseline: it contributes no increment."""
        increment = Counters()
        for source, counters in sample.sources.items():
            if source in self._last:
                increment = increment + counters.increment_since(self._last[source])
        # A source seen for the first time (a new node) is a baseline too.
        self._last = dict(sample.sources)
        if self._first_at is None:
            self._first_at = sample.at
        else:
            self._increments.append((sample.at, increment))
        self._expire(sample.at)

    def _expire(self, now: datetime) -> None:
        while self._increments and self._increments[0][0] <= now - self.window:
            self._increments.popleft()

    def rates(self, now: datetime) -> WindowRates:
        """Totals of the increments inside the window ending at `now`."""
        self._expire(now)
        total = Counters()
        for _, increment in self._increments:
            total = total + increment
        start = max(self._first_at or now, now - self.window)
        return WindowRates(
            requests=total.requests,
            hits_exact=total.hits_exact,
            hits_semantic=total.hits_semantic,
            span_seconds=max(0.0, (now - start).total_seconds()),
        )


def format_ratio(value: float) -> str:
    """`0.42`: two decimals, as status and `kubectl get` show rates."""
    return f"{min(max(value, 0.0), 1.0):.2f}"


@dataclass(frozen=True)
class HitRateReport:
    """What the status says about traffic; strings are already rounded for display."""

    observed_at: datetime
    window: str | None = None
    overall: str | None = None
    exact: str | None = None
    semantic: str | None = None
    rate: float | None = None
    entries: int | None = None
    tokens_saved: int | None = None
    dollars_saved: str | None = None


def build_report(rates: WindowRates, sample: FleetSample) -> HitRateReport:
    """The report of a sample: rates over the window (None without requests), totals."""
    totals = sample.totals
    has_counters = bool(sample.sources)
    overall = rates.overall
    return HitRateReport(
        observed_at=sample.at,
        window=format_duration(rates.span_seconds) if overall is not None else None,
        overall=format_ratio(overall) if overall is not None else None,
        exact=format_ratio(rates.exact) if rates.exact is not None else None,
        semantic=format_ratio(rates.semantic) if rates.semantic is not None else None,
        rate=overall,
        entries=sample.entries,
        tokens_saved=totals.tokens_saved if has_counters else None,
        dollars_saved=f"{totals.cost_saved_dollars:.2f}" if has_counters else None,
    )


def _relative_change(old: float | None, new: float | None) -> bool:
    if old is None or new is None:
        return old != new
    if old == 0:
        return new != 0
    return abs(new - old) / abs(old) >= MIN_RELATIVE_CHANGE - 1e-9


def meaningful_change(old: HitRateReport | None, new: HitRateReport) -> bool:
    """Whether `new` says something `old` did not: another rounded rate, the rate appearing or
    going away, or entries or savings moving by at least 1%."""
    if old is None:
        return True
    if (old.overall, old.exact, old.semantic) != (new.overall, new.exact, new.semantic):
        return True
    if _relative_change(old.entries, new.entries):
        return True
    if _relative_change(old.tokens_saved, new.tokens_saved):
        return True
    old_dollars = float(old.dollars_saved) if old.dollars_saved is not None else None
    new_dollars = float(new.dollars_saved) if new.dollars_saved is not None else None
    return _relative_change(old_dollars, new_dollars)


def should_publish(
    published: HitRateReport | None,
    candidate: HitRateReport,
    *,
    now: datetime,
    min_interval: timedelta,
) -> bool:
    """Publish (write to status) at most once per `min_interval`, and only a meaningful change.

    A window that has no requests yet keeps the last published report rather than blanking it.
    """
    if candidate.overall is None and published is not None and published.overall is not None:
        return False
    if published is not None and now - published.observed_at < min_interval:
        return False
    return meaningful_change(published, candidate)
