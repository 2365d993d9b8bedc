"""Hit rates from node counters: aggregation, the window, rounding, when status moves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cachefleet_contract.admin import Counters, L1Usage, NamespaceCounts, StatsReport, TierFlags
from cachefleet_operator.domain.durations import format_duration, parse_duration
from cachefleet_operator.domain.hitrate import (
    FleetSample,
    HitRateReport,
    HitRateWindow,
    aggregate_stats,
    build_report,
    meaningful_change,
    should_publish,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
NS = "gpt-4o-mini-a1a7439fc3"


def counters(requests: int, exact: int = 0, semantic: int = 0, **extra: Any) -> Counters:
    """A node's counters of one namespace; the requests that were not hits missed."""
    return Counters(
        requests=requests,
        hits_exact=exact,
        hits_semantic=semantic,
        misses=requests - exact - semantic,
        prompt_tokens_saved=extra.get("prompt", 0),
        completion_tokens_saved=extra.get("completion", 0),
        cost_saved_dollars=extra.get("dollars", 0.0),
    )


def node_stats(
    node_id: str,
    node: Counters,
    *,
    fleet: Counters | None = None,
    entries: int | None = None,
    redis: bool = True,
    namespace: str = NS,
) -> StatsReport:
    """A `/v1/cache/stats` answer as the node builds it."""
    return StatsReport(
        node_id=node_id,
        uptime_s=10.0,
        active={"gpt-4o-mini": namespace},
        namespaces={namespace: NamespaceCounts(node=node, fleet=fleet, entries=entries)},
        l1=L1Usage(exact_entries=0, exact_bytes=0, semantic_entries=0),
        tiers=TierFlags(store="redis" if redis else "local", milvus_connected=True, redis=redis),
    )


def sample(at: datetime, **sources: Counters) -> FleetSample:
    return FleetSample(at=at, sources=sources)


# --- aggregation ----------------------------------------------------------------------------


def test_fleet_counters_win_over_the_sum_of_nodes_when_nodes_share_redis() -> None:
    fleet = counters(100, exact=30, semantic=10)
    stale_fleet = counters(90, exact=27, semantic=9)  # this node flushed earlier
    responses = [
        node_stats("a", counters(60, exact=20), fleet=fleet, entries=55),
        node_stats("b", counters(40, exact=10, semantic=10), fleet=stale_fleet, entries=55),
    ]
    result = aggregate_stats(responses, [NS], T0)
    assert result.sources == {f"fleet/{NS}": fleet}
    assert result.entries == 55  # one shared store: every node counts the same entries


def test_without_a_shared_store_the_nodes_are_summed() -> None:
    responses = [
        node_stats("a", counters(10, exact=5), entries=7, redis=False),
        node_stats("b", counters(20, semantic=4), entries=3, redis=False),
    ]
    result = aggregate_stats(responses, [NS], T0)
    assert result.totals == Counters(requests=30, hits_exact=5, hits_semantic=4, misses=21)
    assert set(result.sources) == {f"node/a/{NS}", f"node/b/{NS}"}
    assert result.entries == 10


def test_a_node_whose_fleet_read_failed_falls_back_to_node_counters() -> None:
    responses = [node_stats("a", counters(10, exact=5), fleet=None, entries=None)]
    result = aggregate_stats(responses, [NS], T0)
    assert result.sources == {f"node/a/{NS}": counters(10, exact=5)}
    assert result.entries is None


def test_only_the_caches_namespaces_count() -> None:
    responses = [node_stats("a", counters(10, exact=5), redis=False, namespace="other-ns")]
    result = aggregate_stats(responses, [NS], T0)
    assert result.sources == {}
    assert result.entries is None


def test_savings_are_cumulative_totals() -> None:
    fleet = counters(10, exact=5, prompt=100, completion=50, dollars=1.234)
    report = build_report(
        HitRateWindow(timedelta(minutes=15)).rates(T0),
        aggregate_stats([node_stats("a", counters(10), fleet=fleet, entries=4)], [NS], T0),
    )
    assert (report.tokens_saved, report.dollars_saved, report.entries) == (150, "1.23", 4)
    assert report.overall is None  # one sample is a baseline, not a rate


# --- the window -----------------------------------------------------------------------------


def test_rates_come_from_increments_after_the_baseline() -> None:
    window = HitRateWindow(timedelta(minutes=15))
    window.observe(sample(T0, fleet=Counters(requests=1000, hits_exact=900)))  # history
    window.observe(
        sample(
            T0 + timedelta(minutes=1),
            fleet=Counters(requests=1100, hits_exact=930, hits_semantic=12),
        )
    )
    rates = window.rates(T0 + timedelta(minutes=1))
    assert (rates.requests, rates.hits_exact, rates.hits_semantic) == (100, 30, 12)
    assert rates.overall == pytest.approx(0.42)
    assert rates.span_seconds == 60


def test_old_increments_leave_the_window() -> None:
    window = HitRateWindow(timedelta(minutes=15))
    window.observe(sample(T0, fleet=Counters()))
    window.observe(sample(T0 + timedelta(minutes=1), fleet=Counters(requests=100, hits_exact=100)))
    window.observe(sample(T0 + timedelta(minutes=10), fleet=Counters(requests=200, hits_exact=100)))
    assert window.rates(T0 + timedelta(minutes=10)).overall == pytest.approx(0.5)
    later = T0 + timedelta(minutes=16)  # the first increment (all hits) is older than 15m
    window.observe(sample(later, fleet=Counters(requests=200, hits_exact=100)))
    rates = window.rates(later)
    assert (rates.requests, rates.span_seconds) == (100, 900)
    assert rates.overall == 0.0


def test_a_counter_reset_counts_what_was_counted_since() -> None:
    window = HitRateWindow(timedelta(minutes=15))
    window.observe(sample(T0, a=Counters(requests=500, hits_exact=400)))
    # node a restarted: its counters start again from zero
    window.observe(sample(T0 + timedelta(minutes=1), a=Counters(requests=10, hits_exact=5)))
    rates = window.rates(T0 + timedelta(minutes=1))
    assert (rates.requests, rates.hits_exact) == (10, 5)


def test_a_new_node_is_a_baseline_too() -> None:
    window = HitRateWindow(timedelta(minutes=15))
    window.observe(sample(T0, a=Counters(requests=10)))
    window.observe(
        sample(
            T0 + timedelta(minutes=1),
            a=Counters(requests=20, hits_exact=10),
            b=Counters(requests=1000, hits_exact=1000),
        )
    )
    assert window.rates(T0 + timedelta(minutes=1)).overall == pytest.approx(1.0)
    assert window.rates(T0 + timedelta(minutes=1)).requests == 10


def test_no_traffic_means_no_rate() -> None:
    window = HitRateWindow(timedelta(minutes=15))
    window.observe(sample(T0, fleet=Counters(requests=5)))
    window.observe(sample(T0 + timedelta(minutes=1), fleet=Counters(requests=5)))
    assert window.rates(T0 + timedelta(minutes=1)).overall is None


# --- reports and when they are written ------------------------------------------------------


def report(overall: str | None = "0.42", *, at: datetime = T0, **fields: Any) -> HitRateReport:
    return HitRateReport(observed_at=at, overall=overall, **fields)


def test_rates_are_two_decimal_strings_and_the_window_is_the_span_covered() -> None:
    window = HitRateWindow(timedelta(minutes=15))
    window.observe(sample(T0, fleet=Counters()))
    now = T0 + timedelta(minutes=2)
    window.observe(sample(now, fleet=Counters(requests=3, hits_exact=1, hits_semantic=1)))
    built = build_report(window.rates(now), sample(now, fleet=Counters(requests=3)))
    assert (built.overall, built.exact, built.semantic, built.window) == (
        "0.67",
        "0.33",
        "0.33",
        "2m",
    )


def test_meaningful_changes() -> None:
    base = report("0.42", entries=1000, tokens_saved=5000, dollars_saved="10.00")
    assert meaningful_change(None, base)
    assert not meaningful_change(
        base, report("0.42", entries=1005, tokens_saved=5010, dollars_saved="10.05")
    )
    assert meaningful_change(
        base, report("0.43", entries=1000, tokens_saved=5000, dollars_saved="10.00")
    )
    assert meaningful_change(
        base, report("0.42", entries=1010, tokens_saved=5000, dollars_saved="10.00")
    )
    assert meaningful_change(
        base, report("0.42", entries=1000, tokens_saved=5050, dollars_saved="10.00")
    )
    assert meaningful_change(
        base, report("0.42", entries=1000, tokens_saved=5000, dollars_saved="10.10")
    )
    assert meaningful_change(report(entries=0), report(entries=1))


def test_publishing_is_rate_limited_and_keeps_the_last_rate_over_silence() -> None:
    minute = timedelta(minutes=1)
    published = report("0.42", at=T0)
    assert should_publish(None, published, now=T0, min_interval=minute)
    soon = report("0.50", at=T0 + timedelta(seconds=30))
    assert not should_publish(published, soon, now=soon.observed_at, min_interval=minute)
    later = report("0.50", at=T0 + minute)
    assert should_publish(published, later, now=later.observed_at, min_interval=minute)
    same = report("0.42", at=T0 + 2 * minute)
    assert not should_publish(published, same, now=same.observed_at, min_interval=minute)
    silent = report(None, at=T0 + 5 * minute)
    assert not should_publish(published, silent, now=silent.observed_at, min_interval=minute)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15m", 900), ("1h30m", 5400), ("90s", 90), ("250ms", 0.25), ("60", 60), (2.5, 2.5)],
)
def test_durations_parse(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "15 m", "m15", "1d", "-5", "15mx"])
def test_bad_durations_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_durations_format() -> None:
    assert [format_duration(s) for s in (900, 5400, 45, 0.2, 3661)] == [
        "15m",
        "1h30m",
        "45s",
        "0s",
        "1h1m1s",
    ]
