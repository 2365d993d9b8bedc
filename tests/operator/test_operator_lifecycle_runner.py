"""The lifecycle runner (services/lifecycle/) against an in-memory fleet: coherent switch with
verification, warm-up, purge with `retired_only`, re-embedding, and crash safety (the operator
dies after any node call and a new one resumes from the status it had written)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from operator_testdata import cache, model_version

from cachefleet_contract.admin import (
    ActiveNamespaces,
    EmbeddingSpace,
    EmbeddingSpaces,
    InvalidatedCounts,
    InvalidateRequest,
    InvalidateResult,
    NamespacesReport,
    ReembedRequest,
    ReembedResult,
    WarmRequest,
    WarmResult,
)
from cachefleet_operator.adapters.metrics import OperatorMetrics
from cachefleet_operator.adapters.nodes import NodeError
from cachefleet_operator.api.v1alpha1 import ModelVersion, SemanticCache
from cachefleet_operator.api.v1alpha1.semanticcache import SemanticCacheStatus
from cachefleet_operator.domain.lifecycle.state import Lifecycle
from cachefleet_operator.domain.naming import cache_namespace
from cachefleet_operator.services.context import ServiceContext
from cachefleet_operator.services.lifecycle import LifecycleRunner
from cachefleet_operator.services.lifecycle.purge import PurgeStep
from cachefleet_operator.services.lifecycle.step import FleetPass, LifecycleStep
from cachefleet_operator.services.nodeaccess import AdminKey
from cachefleet_operator.settings import OperatorConfig

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
OTHER = "cachefleet-test/minilm-copy"
URLS = ["http://node-a", "http://node-b"]


class Crash(Exception):
    """The operator process dies here."""


@dataclass
class Fleet:
    """Two nodes sharing Redis and Milvus, reduced to what the lifecycle routes touch."""

    active: dict[str, str]
    entries: dict[str, int]
    space: str = "minilm_384"
    next_space: str | None = None
    reembedded: dict[str, int] = field(default_factory=dict)
    lagging: set[str] = field(default_factory=set)  # nodes that miss the pub/sub
    node_view: dict[str, dict[str, str]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    crash_after: int | None = None
    purges_fail: bool = False  # no node answers a purge
    warmed_positions: set[int] = field(default_factory=set)

    @property
    def warmed(self) -> int:
        return len(self.warmed_positions)

    def view(self, url: str) -> dict[str, str]:
        return self.node_view.setdefault(url, dict(self.active))

    def mutated(self, what: str) -> None:
        self.calls.append(what)
        if self.crash_after is not None and len(self.calls) == self.crash_after:
            raise Crash(what)


class FakeNodes:
    """The node client's surface, answering with the contract's models."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    async def namespaces(self, url: str, *, api_key: str | None = None) -> NamespacesReport:
        f = self.fleet
        return NamespacesReport(
            active=dict(f.view(url)),
            embedding=EmbeddingSpaces(
                active=EmbeddingSpace(model_id="?", space=f.space),
                next=EmbeddingSpace(model_id=OTHER, space=f.next_space) if f.next_space else None,
            ),
            entries=dict(f.entries),
        )

    async def switch_namespace(
        self, url: str, name: str, namespace: str, *, api_key: str | None = None
    ) -> ActiveNamespaces:
        f = self.fleet
        if name not in f.active:
            raise NodeError("unknown name", status=404)
        f.active[name] = namespace
        for node in URLS:  # the bus reaches every node but the lagging ones
            if node == url or node not in f.lagging:
                f.view(node)[name] = namespace
        f.mutated(f"switch {name}={namespace}")
        return ActiveNamespaces(active=dict(f.view(url)))

    async def invalidate(self, url: str, request: InvalidateRequest, **kw: Any) -> InvalidateResult:
        f = self.fleet
        namespace = request.namespace
        assert namespace is not None
        if f.purges_fail:
            raise NodeError("connection refused")
        if request.retired_only and namespace in f.view(url).values():
            raise NodeError("namespace_active", status=409, code="namespace_active")
        removed = f.entries.pop(namespace, 0)
        f.mutated(f"purge {namespace}")
        counts = InvalidatedCounts(l1=0, store=removed, vectors=removed)
        return InvalidateResult(dry_run=False, tenant=None, removed={namespace: counts})

    async def warm(self, url: str, request: WarmRequest, **kw: Any) -> WarmResult:
        f = self.fleet
        total = f.entries.get(request.from_namespace, 0)
        start = request.offset
        end = min(total, start + request.limit)
        fresh = set(range(start, end)) - f.warmed_positions  # idempotent: cached ones skip
        f.warmed_positions |= fresh
        target = f.active[request.name]
        f.entries[target] = f.entries.get(target, 0) + len(fresh)
        f.mutated(f"warm {start}-{end}")
        return WarmResult(
            processed=end - start,
            stored=len(fresh),
            skipped=end - start - len(fresh),
            failed=0,
            next_offset=end,
            total=total,
            done=end >= total,
        )

    async def reembed(self, url: str, request: ReembedRequest, **kw: Any) -> ReembedResult:
        f = self.fleet
        namespace = request.namespace
        start = int(request.cursor or 0)
        total = f.entries.get(namespace, 0)
        end = min(total, start + request.limit)
        f.reembedded[namespace] = max(f.reembedded.get(namespace, 0), end)
        f.mutated(f"reembed {namespace} {start}-{end}")
        return ReembedResult(
            processed=end - start,
            next_cursor="" if end >= total else str(end),
            total=total,
            done=end >= total,
        )

    async def switch_embedding(self, url: str, space: str, **kw: Any) -> EmbeddingSpaces:
        f = self.fleet
        f.space, f.next_space = space, f.space
        f.mutated(f"embedding {space}")
        return EmbeddingSpaces(active=EmbeddingSpace(model_id="?", space=space))


class FakeAccess:
    async def endpoints(self, cache: SemanticCache) -> list[str]:
        return list(URLS)

    async def admin_key(self, cache: SemanticCache) -> AdminKey:
        return AdminKey(True)


class FakeEvents:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    async def post(self, involved: Any, event: Any) -> None:
        self.reasons.append(event.reason)

    async def post_error_once(self, involved: Any, reason: str, message: str) -> None:
        self.reasons.append(reason)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, tzinfo=UTC)
        self.mono = 0.0

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        self.mono += 0.01
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def context(fleet: Fleet, clock: Clock, events: FakeEvents) -> ServiceContext:
    return ServiceContext(
        kube=cast(Any, None),  # the lifecycle steps call nodes only
        nodes=cast(Any, FakeNodes(fleet)),
        access=cast(Any, FakeAccess()),
        events=cast(Any, events),
        metrics=OperatorMetrics(),
        config=OperatorConfig(),
        clock=clock,
        monotonic=clock.monotonic,
    )


def runner(fleet: Fleet, clock: Clock, events: FakeEvents) -> LifecycleRunner:
    return LifecycleRunner(context(fleet, clock, events), switch_verify_s=0.5)


def persisted(lifecycle: Lifecycle) -> Lifecycle:
    """Written to status and read back (what a restarted operator starts from)."""
    status = SemanticCacheStatus(
        active_namespaces=list(lifecycle.active),
        rollovers=list(lifecycle.rollovers),
        retained_namespaces=list(lifecycle.retained),
        embedding=lifecycle.embedding,
    )
    return Lifecycle.of(SemanticCacheStatus.model_validate(status.to_api()))


async def drive(
    fleet: Fleet,
    the_cache: SemanticCache,
    models: list[ModelVersion],
    lifecycle: Lifecycle,
    clock: Clock,
    events: FakeEvents,
    *,
    embedding: str = MINILM,
    passes: int = 60,
) -> Lifecycle:
    """Passes until nothing is in progress and nothing is due; a crash loses the pass."""
    for _ in range(passes):
        try:
            step = await runner(fleet, clock, events).run(
                the_cache, {}, models, lifecycle, embedding_model=embedding
            )
        except Crash:
            fleet.crash_after = None  # the restarted operator carries on
            continue
        lifecycle = persisted(step.lifecycle)
        if not lifecycle.busy and not lifecycle.retained:
            return lifecycle
        clock.advance(step.requeue_after or 1.0)
    raise AssertionError(f"not done after {passes} passes: {lifecycle}")


def models(version: str, **spec: Any) -> list[ModelVersion]:
    settings = {"retainFor": "5s", "warm": {"topN": 30, "ratePerSecond": 5}}
    return [model_version(version=version, rollover=settings, **spec)]


def ns(model: ModelVersion) -> str:
    return cache_namespace(model.metadata.name, model.spec)


async def first(fleet: Fleet, clock: Clock, v1: list[ModelVersion]) -> Lifecycle:
    step = await runner(fleet, clock, FakeEvents()).run(
        cache("dev"), {}, v1, Lifecycle(), embedding_model=MINILM
    )
    return persisted(step.lifecycle)


async def test_a_rollover_switches_every_node_before_it_is_recorded() -> None:
    v1, v2 = models("1"), models("2")
    fleet = Fleet(active={"gpt-4o-mini": ns(v1[0])}, entries={ns(v1[0]): 40})
    fleet.lagging = {"http://node-b"}  # node-b misses the broadcast: it is told directly
    clock, events = Clock(), FakeEvents()
    lifecycle = await first(fleet, clock, v1)
    step = await runner(fleet, clock, events).run(
        cache("dev"), {}, v2, lifecycle, embedding_model=MINILM
    )
    assert not step.hold_nodes
    assert step.lifecycle.served_namespaces() == {"gpt-4o-mini": ns(v2[0])}
    assert all(view["gpt-4o-mini"] == ns(v2[0]) for view in fleet.node_view.values())
    assert fleet.calls[:2] == [f"switch gpt-4o-mini={ns(v2[0])}"] * 2  # the nudge
    assert step.lifecycle.rollovers[0].phase == "Warming"
    assert events.reasons[:2] == ["RolloverStarted", "NamespaceSwitched"]


async def test_an_unverified_switch_holds_the_node_config() -> None:
    v1, v2 = models("1"), models("2")
    fleet = Fleet(active={"gpt-4o-mini": ns(v1[0])}, entries={})
    clock = Clock()
    lifecycle = await first(fleet, clock, v1)
    nodes = FakeNodes(fleet)

    async def stuck(url: str, *, api_key: str | None = None) -> NamespacesReport:
        report = await FakeNodes.namespaces(nodes, url)
        if url == "http://node-b":
            report = report.model_copy(update={"active": {"gpt-4o-mini": ns(v1[0])}})
        return report

    run = runner(fleet, clock, FakeEvents())
    run._nodes.namespaces = stuck  # type: ignore[method-assign]
    step = await run.run(cache("dev"), {}, v2, lifecycle, embedding_model=MINILM)
    assert step.hold_nodes
    assert step.lifecycle.served_namespaces() == {"gpt-4o-mini": ns(v1[0])}
    assert "1/2 node(s) not on" in step.lifecycle.rollovers[0].message
    assert step.failure == "SwitchNotVerified"  # retried with backoff, not every 2 s


async def test_flushed_answers_are_purged_before_a_switch_back_to_them() -> None:
    v1, v2 = models("1", policy="Flush"), models("2", policy="Flush")
    fleet = Fleet(active={"gpt-4o-mini": ns(v1[0])}, entries={ns(v1[0]): 40})
    clock, events = Clock(), FakeEvents()
    lifecycle = await first(fleet, clock, v1)
    fleet.purges_fail = True  # v1 -> v2 with Flush, but the purge of v1 does not get through
    step = await runner(fleet, clock, events).run(
        cache("dev"), {}, v2, lifecycle, embedding_model=MINILM
    )
    fleet.purges_fail = False
    assert fleet.active["gpt-4o-mini"] == ns(v2[0])
    assert fleet.entries[ns(v1[0])] == 40
    clock.advance(1)
    # Back to v1 before the purge got through: the flushed answers must not be served again.
    step = await runner(fleet, clock, events).run(
        cache("dev"), {}, v1, persisted(step.lifecycle), embedding_model=MINILM
    )
    [record] = step.lifecycle.rollovers
    assert "waiting for the purge" in record.message
    assert step.hold_nodes
    assert ns(v1[0]) not in fleet.entries  # purged in this pass, before any switch
    assert fleet.active["gpt-4o-mini"] == ns(v2[0])
    step = await runner(fleet, clock, events).run(
        cache("dev"), {}, v1, persisted(step.lifecycle), embedding_model=MINILM
    )
    assert fleet.active["gpt-4o-mini"] == ns(v1[0])
    assert fleet.entries.get(ns(v1[0]), 0) == 0
    assert "RolledBack" not in events.reasons


async def test_the_full_rollover_ends_the_same_without_a_crash() -> None:
    v1, v2 = models("1"), models("2")
    fleet = Fleet(active={"gpt-4o-mini": ns(v1[0])}, entries={ns(v1[0]): 40})
    clock, events = Clock(), FakeEvents()
    lifecycle = await drive(fleet, cache("dev"), v2, await first(fleet, clock, v1), clock, events)
    assert lifecycle.served_namespaces() == {"gpt-4o-mini": ns(v2[0])}
    assert fleet.entries == {ns(v2[0]): 30}  # top 30 warmed, the old namespace purged
    assert fleet.warmed == 30
    for reason in ("NamespaceSwitched", "WarmupCompleted", "Purged"):
        assert reason in events.reasons


@pytest.mark.parametrize("crash_after", range(1, 10))
async def test_a_crash_after_any_node_call_resumes_to_the_same_end(crash_after: int) -> None:
    v1, v2 = models("1"), models("2")
    clock = Clock()
    fleet = Fleet(active={"gpt-4o-mini": ns(v1[0])}, entries={ns(v1[0]): 40})
    lifecycle = await first(fleet, clock, v1)
    fleet.crash_after = crash_after
    end = await drive(fleet, cache("dev"), v2, lifecycle, clock, FakeEvents())
    assert end.served_namespaces() == {"gpt-4o-mini": ns(v2[0])}
    assert fleet.entries == {ns(v2[0]): 30}
    assert end.rollovers == ()
    assert end.retained == ()


@pytest.mark.parametrize("crash_after", [None, 1, 2, 3, 4, 5, 6])
async def test_an_embedding_migration_resumes_after_a_crash(crash_after: int | None) -> None:
    v1 = models("1")
    clock = Clock()
    fleet = Fleet(active={"gpt-4o-mini": ns(v1[0])}, entries={ns(v1[0]): 1000})
    lifecycle = await first(fleet, clock, v1)
    moved = models("1", embeddingModel=OTHER)
    the_cache = cache("dev", reembedding={"ratePerSecond": 200, "batchSize": 250})
    # Nodes not restarted with embedding_next yet: it waits (Preparing).
    step = await runner(fleet, clock, FakeEvents()).run(
        the_cache, {}, moved, lifecycle, embedding_model=OTHER
    )
    assert step.lifecycle.embedding.migration.phase == "Preparing"
    fleet.next_space = "copy_384"  # the nodes rolled
    fleet.crash_after = crash_after
    end = await drive(
        fleet, the_cache, moved, persisted(step.lifecycle), clock, FakeEvents(), embedding=OTHER
    )
    assert end.embedding.model == OTHER
    assert end.embedding.migration is None
    assert end.embedding.space == "copy_384"
    assert fleet.space == "copy_384"
    assert fleet.reembedded == {ns(v1[0]): 1000}
    assert end.served_namespaces() == {"gpt-4o-mini": ns(v1[0])}  # same namespace


async def test_a_purge_never_touches_an_active_namespace() -> None:
    v1, v2 = models("1"), models("2")
    clock, events = Clock(), FakeEvents()
    fleet = Fleet(active={"gpt-4o-mini": ns(v1[0])}, entries={ns(v1[0]): 3})
    lifecycle = await first(fleet, clock, v1)
    step = await runner(fleet, clock, events).run(
        cache("dev"), {}, v2, lifecycle, embedding_model=MINILM
    )
    lifecycle = persisted(step.lifecycle)
    assert [e.cache_namespace for e in lifecycle.retained] == [ns(v1[0])]
    # A node serves the old namespace again (say, a stale switch): no purge while it does.
    fleet.node_view["http://node-a"]["gpt-4o-mini"] = ns(v1[0])
    clock.advance(3600)
    # The purge step alone (in a pass, the converge step before it would fix the node first).
    step = LifecycleStep(lifecycle)
    purge = PurgeStep(context(fleet, clock, events))
    await purge.run(FleetPass(step, cache("dev"), v2, URLS, None))
    assert fleet.entries.get(ns(v1[0])) == 3
    assert "PurgeBlocked" in events.reasons
    assert step.failure == "PurgeBlocked"
    assert [e.cache_namespace for e in step.lifecycle.retained] == [ns(v1[0])]
    # A whole pass: the converge step switches the node back, then the purge goes through.
    step = await runner(fleet, clock, events).run(
        cache("dev"), {}, v2, persisted(step.lifecycle), embedding_model=MINILM
    )
    assert fleet.node_view["http://node-a"]["gpt-4o-mini"] == ns(v2[0])
    assert ns(v1[0]) not in fleet.entries
    assert step.lifecycle.retained == ()
    assert {"NamespaceConverged", "Purged"} <= set(events.reasons)


async def test_a_refused_warm_up_ends_the_rollover_with_a_warning() -> None:
    v1, v2 = models("1"), models("2")
    clock, events = Clock(), FakeEvents()
    fleet = Fleet(active={"gpt-4o-mini": ns(v1[0])}, entries={ns(v1[0]): 10})
    lifecycle = await first(fleet, clock, v1)
    run = runner(fleet, clock, events)

    async def refused(url: str, *args: Any, **kw: Any) -> WarmResult:
        raise NodeError("409 upstream_key_missing", status=409, code="upstream_key_missing")

    run._nodes.warm = refused  # type: ignore[method-assign]
    step = await run.run(cache("dev"), {}, v2, lifecycle, embedding_model=MINILM)
    assert step.lifecycle.rollovers == ()
    assert step.lifecycle.served_namespaces() == {"gpt-4o-mini": ns(v2[0])}
    assert "WarmupFailed" in events.reasons
    assert "WarmupCompleted" not in events.reasons
