"""Rollovers of a SemanticCache: `plan_cache` starts, keeps or cancels a rollover per
referenced ModelVersion (a small planner per case), and the switch of every node to the new
namespace (`unswitched_nodes` to verify it, `switched` once every node serves it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from cachefleet_operator.api.v1alpha1 import (
    ActiveNamespace,
    ModelVersion,
    RetainedNamespace,
    RolloverProgress,
    SemanticCache,
    WarmProgress,
)
from cachefleet_operator.domain.events import EventSpec
from cachefleet_operator.domain.lifecycle.embedding import plan_embedding
from cachefleet_operator.domain.lifecycle.modelversion import (
    Identity,
    NamespaceDecision,
    Transition,
    decide_namespace,
    rollover_settings,
)
from cachefleet_operator.domain.lifecycle.purge import bound_retention, retain, retire
from cachefleet_operator.domain.lifecycle.state import Lifecycle, Plan
from cachefleet_operator.domain.naming import active_cache_namespace

__all__ = [
    "SwitchOutcome",
    "namespace_mismatches",
    "node_name_for",
    "plan_cache",
    "switched",
    "unswitched_nodes",
]


def _identity_of(entry: ActiveNamespace | RetainedNamespace) -> Identity | None:
    return Identity.recorded(entry.version, entry.prompt_template_hash, entry.epoch)


def _active(
    model_version: str, namespace: str, identity: Identity, since: datetime | None
) -> ActiveNamespace:
    return ActiveNamespace(
        model_version=model_version,
        cache_namespace=namespace,
        version=identity.version,
        prompt_template_hash=identity.prompt_template_hash,
        epoch=identity.epoch,
        since=since,
    )


def _new_record(
    model_version: ModelVersion,
    *,
    policy: str,
    decision: NamespaceDecision,
    from_namespace: str | None,
    from_model_version: str | None,
    now: datetime,
) -> RolloverProgress:
    identity = Identity.of(model_version.spec)
    trigger = (
        "ModelVersionChanged" if from_model_version else (decision.trigger or "VersionChanged")
    )
    return RolloverProgress(
        model_version=model_version.metadata.name,
        from_model_version=from_model_version,
        policy=policy,
        trigger=trigger,
        rollback=decision.transition == Transition.ROLLBACK,
        phase="Switching",
        from_namespace=from_namespace,
        to_namespace=decision.namespace,
        version=identity.version,
        prompt_template_hash=identity.prompt_template_hash,
        epoch=identity.epoch,
        started_at=now,
        message=f"switching every node to {decision.namespace}",
    )


def _started_event(record: RolloverProgress) -> EventSpec:
    what = "rollback" if record.rollback else f"rollover ({record.policy})"
    source = (
        f"ModelVersion {record.from_model_version} -> {record.model_version}"
        if record.from_model_version
        else f"{record.model_version} {record.trigger}"
    )
    return EventSpec(
        "Normal",
        "RollbackStarted" if record.rollback else "RolloverStarted",
        f"{what}: {source}: cache namespace {record.from_namespace} -> {record.to_namespace}",
    )


# --- planning: one planner per case, `plan_cache` dispatches -------------------------------


@dataclass
class _Draft:
    """The lifecycle records one `plan_cache` pass changes, and the Events it posts."""

    now: datetime
    active: dict[str, ActiveNamespace]
    records: dict[str, RolloverProgress]
    retained: list[RetainedNamespace]
    events: list[EventSpec] = field(default_factory=list)

    @classmethod
    def of(cls, lifecycle: Lifecycle, now: datetime) -> _Draft:
        return cls(
            now=now,
            active={a.model_version: a for a in lifecycle.active},
            records={r.model_version: r for r in lifecycle.rollovers},
            retained=list(lifecycle.retained),
        )

    def rollback_targets(self, name: str) -> list[tuple[str, Identity | None]]:
        """The retained namespaces of ModelVersion `name` (a namespace due for purging,
        flushed or past its retention, is no rollback target)."""
        return [
            (e.cache_namespace, _identity_of(e))
            for e in self.retained
            if e.model_version == name and e.purge_after > self.now
        ]

    def start(self, record: RolloverProgress) -> None:
        self.records[record.model_version] = record
        self.events.append(_started_event(record))

    def cancel(self, record: RolloverProgress, why: str) -> None:
        """Drop a rollover; the target of a switch (never active) is purged at once: some
        nodes may have switched and written entries."""
        self.records.pop(record.model_version, None)
        if record.phase == "Switching" and not record.rollback:
            served_now = {a.cache_namespace for a in self.active.values()}
            if record.to_namespace not in served_now and all(
                e.cache_namespace != record.to_namespace for e in self.retained
            ):
                self.retained.append(
                    RetainedNamespace(
                        cache_namespace=record.to_namespace,
                        model_version=record.model_version,
                        version=record.version,
                        prompt_template_hash=record.prompt_template_hash,
                        epoch=record.epoch,
                        retired_at=self.now,
                        purge_after=self.now,
                    )
                )
        self.events.append(
            EventSpec(
                "Normal",
                "RolloverCancelled",
                f"{record.model_version}: rollover to {record.to_namespace} cancelled: {why}",
            )
        )


def _cancel_unreferenced(draft: _Draft, referenced: set[str]) -> None:
    """Rollovers of ModelVersions the cache no longer references stop."""
    for stale in list(draft.records.values()):
        if stale.model_version not in referenced:
            draft.cancel(stale, "the ModelVersion is no longer referenced")


def _removed(draft: _Draft, referenced: set[str]) -> list[ActiveNamespace]:
    """Served ModelVersions the cache no longer references (but for those a switch in flight
    re-points): ModelVersions added take their places in turn, the rest are retired."""
    re_pointing = {
        r.from_model_version
        for r in draft.records.values()
        if r.from_model_version and r.phase == "Switching"
    }
    return [
        entry
        for name, entry in draft.active.items()
        if name not in referenced and name not in re_pointing
    ]


def _plan_added(
    draft: _Draft, mv: ModelVersion, policy: str, removed: list[ActiveNamespace]
) -> None:
    """A referenced ModelVersion no node serves: it replaces a removed one (a rollover that
    re-points that one's nodes), or else is served at once (there is nothing to switch)."""
    name = mv.metadata.name
    decision = decide_namespace(
        name,
        mv.spec,
        current=None,
        current_identity=None,
        policy=policy,
        retained=draft.rollback_targets(name),
        fresh=active_cache_namespace(mv),
    )
    if not removed:
        draft.active[name] = _active(name, decision.namespace, Identity.of(mv.spec), draft.now)
        draft.retained = [e for e in draft.retained if e.cache_namespace != decision.namespace]
        return
    replaced = removed.pop(0)
    rollback = any(
        e.cache_namespace == decision.namespace and e.purge_after > draft.now
        for e in draft.retained
    )
    decision = replace(
        decision, transition=Transition.ROLLBACK if rollback else Transition.ROLLOVER
    )
    draft.start(
        _new_record(
            mv,
            policy=policy,
            decision=decision,
            from_namespace=replaced.cache_namespace,
            from_model_version=replaced.model_version,
            now=draft.now,
        )
    )


def _plan_served(draft: _Draft, mv: ModelVersion, policy: str, served: ActiveNamespace) -> None:
    """A served ModelVersion: a changed identity starts a rollover (Keep: the namespace
    stays); a rollover in flight goes on, or is superseded by the change."""
    name = mv.metadata.name
    record = draft.records.get(name)
    decision = decide_namespace(
        name,
        mv.spec,
        current=served.cache_namespace,
        current_identity=_identity_of(served),
        policy=policy,
        retained=draft.rollback_targets(name),
    )
    moves = decision.transition in (Transition.ROLLOVER, Transition.ROLLBACK)
    if (
        record is not None
        and record.phase == "Switching"
        and decision.namespace != record.to_namespace
    ):
        draft.cancel(record, f"the ModelVersion changed again (now {mv.spec.version})")
        record = None
    if record is not None and record.phase == "Warming" and moves:
        draft.records.pop(name)
        draft.events.append(
            EventSpec(
                "Normal",
                "WarmupAbandoned",
                f"{name}: warm-up of {record.to_namespace} stopped: another rollover",
            )
        )
        record = None
    if decision.transition == Transition.KEEP:
        identity = Identity.of(mv.spec)
        draft.active[name] = _active(name, served.cache_namespace, identity, served.since)
        draft.events.append(
            EventSpec(
                "Normal",
                "CacheNamespaceKept",
                f"{name}: {identity.describe()} is answer-compatible (policy Keep): still "
                f"serving {served.cache_namespace}",
            )
        )
    elif decision.transition == Transition.UNCHANGED and record is None:
        if served.version is None:  # recorded before identities were
            draft.active[name] = _active(
                name, served.cache_namespace, Identity.of(mv.spec), served.since
            )
    elif moves and record is None:
        draft.start(
            _new_record(
                mv,
                policy=policy,
                decision=decision,
                from_namespace=served.cache_namespace,
                from_model_version=None,
                now=draft.now,
            )
        )


def _retire_removed(
    draft: _Draft, removed: ActiveNamespace, model_versions: Mapping[str, ModelVersion]
) -> None:
    """A ModelVersion removed from the cache: its namespace is retired under its policy."""
    gone = model_versions.get(removed.model_version)
    policy = gone.spec.policy if gone is not None else "Rollover"
    del draft.active[removed.model_version]
    settings = rollover_settings(model_versions, removed.model_version)
    entry = retire(removed, policy=policy, settings=settings, now=draft.now)
    draft.retained = retain(draft.retained, entry)
    draft.events.append(
        EventSpec(
            "Normal",
            "NamespaceRetired",
            f"ModelVersion {removed.model_version} is no longer served: cache namespace "
            f"{removed.cache_namespace} is purged at {entry.purge_after.isoformat()}",
        )
    )


def plan_cache(
    cache: SemanticCache,
    model_versions: Sequence[ModelVersion],
    lifecycle: Lifecycle,
    *,
    embedding_model: str,
    now: datetime,
) -> Plan:
    """Start, keep or cancel a rollover per referenced ModelVersion; retire the namespaces of
    ModelVersions no longer referenced; bound retention; start an embedding migration.

    `model_versions`: the ModelVersions of the cache's namespace (every referenced one exists:
    the caller does not plan a stalled cache). `embedding_model`: theirs (they agree).
    """
    by_name = {mv.metadata.name: mv for mv in model_versions}
    refs = [(ref, by_name[ref.name]) for ref in cache.spec.model_versions if ref.name in by_name]
    order = [ref.name for ref, _ in refs]
    referenced = set(order)
    draft = _Draft.of(lifecycle, now)
    _cancel_unreferenced(draft, referenced)
    removed = _removed(draft, referenced)
    for ref, mv in refs:
        policy = ref.policy or mv.spec.policy
        served = draft.active.get(ref.name)
        if served is not None:
            _plan_served(draft, mv, policy, served)
        elif ref.name not in draft.records:  # else: pointed at from another ModelVersion
            _plan_added(draft, mv, policy, removed)
    for entry in removed:
        _retire_removed(draft, entry, by_name)
    active = [draft.active[name] for name in order if name in draft.active]
    active += [a for name, a in draft.active.items() if name not in referenced]
    rollovers = [draft.records[name] for name in order if name in draft.records]
    embedding, embedding_events = plan_embedding(cache, lifecycle.embedding, embedding_model, now)
    planned = Lifecycle(
        active=tuple(active),
        rollovers=tuple(rollovers),
        retained=tuple(bound_retention(draft.retained, by_name, rollovers, now)),
        embedding=embedding,
    )
    return Plan(planned, draft.events + embedding_events)


# --- switching ------------------------------------------------------------------------------


def node_name_for(record: RolloverProgress) -> str:
    """The configured namespace name the running nodes know the ModelVersion by."""
    return record.from_model_version or record.model_version


def unswitched_nodes(
    record: RolloverProgress, reports: Mapping[str, Mapping[str, str]]
) -> list[str]:
    """Nodes (by URL) whose `GET /v1/cache/namespaces` does not show the new namespace active
    for the ModelVersion (under its own name, or under the name it replaces)."""
    names = [record.model_version] + (
        [record.from_model_version] if record.from_model_version else []
    )
    late = []
    for url, active in reports.items():
        serving = [active[name] for name in names if name in active]
        if not serving or any(namespace != record.to_namespace for namespace in serving):
            late.append(url)
    return late


def namespace_mismatches(
    lifecycle: Lifecycle, reports: Mapping[str, Mapping[str, str]]
) -> list[tuple[str, str, str]]:
    """(node URL, configured name, namespace) where a node serves a ModelVersion from another
    namespace than the fleet's (a stale switch persisted in Redis, a node that missed one).
    ModelVersions being switched are left to their rollover."""
    in_flight = {r.model_version for r in lifecycle.switching} | {
        r.from_model_version for r in lifecycle.switching if r.from_model_version
    }
    wanted = {
        name: namespace
        for name, namespace in lifecycle.served_namespaces().items()
        if name not in in_flight
    }
    found = []
    for url, active in reports.items():
        for name, namespace in wanted.items():
            if name in active and active[name] != namespace:
                found.append((url, name, namespace))
    return found


@dataclass(frozen=True)
class SwitchOutcome:
    """A finished switch, for metrics: its policy and how long the rollover took to switch."""

    policy: str
    seconds: float


def switched(
    lifecycle: Lifecycle,
    model_version: str,
    *,
    model_versions: Sequence[ModelVersion],
    nodes: int,
    now: datetime,
) -> tuple[Plan, SwitchOutcome]:
    """Every node reported the new namespace: it is active; the old one is retained (Flush:
    due at once); the rollover goes on to warming, or is done."""
    record = lifecycle.rollover(model_version)
    if record is None:
        raise ValueError(f"no rollover in progress for {model_version}")
    by_name = {mv.metadata.name: mv for mv in model_versions}
    settings = rollover_settings(by_name, model_version)
    previous_name = record.from_model_version or model_version
    previous = lifecycle.served(previous_name)
    identity = Identity(record.version, record.prompt_template_hash, record.epoch)
    active = [a for a in lifecycle.active if a.model_version not in (model_version, previous_name)]
    position = next(
        (i for i, a in enumerate(lifecycle.active) if a.model_version == previous_name),
        len(active),
    )
    active.insert(
        min(position, len(active)), _active(model_version, record.to_namespace, identity, now)
    )
    retained = [e for e in lifecycle.retained if e.cache_namespace != record.to_namespace]
    still_active = {a.cache_namespace for a in active}
    retire_note = ""
    if previous is not None and previous.cache_namespace not in still_active:
        entry = retire(previous, policy=record.policy, settings=settings, now=now)
        retained = retain(retained, entry)
        retire_note = (
            f"; {entry.cache_namespace} is purged now"
            if entry.purge_after <= now
            else f"; {entry.cache_namespace} is read-only until {entry.purge_after.isoformat()}"
        )
    warm = settings.warm
    warming = (
        warm is not None
        and record.policy != "Flush"
        and not record.rollback
        and previous is not None
        and previous.cache_namespace != record.to_namespace
    )
    seconds = (now - record.started_at).total_seconds()
    rollovers = [r for r in lifecycle.rollovers if r.model_version != model_version]
    if warming:
        assert warm is not None
        rollovers.append(
            record.model_copy(
                update={
                    "phase": "Warming",
                    "switched_at": now,
                    "warm": WarmProgress(total=None),
                    "message": f"warming {record.to_namespace} with the {warm.top_n} most-hit "
                    f"prompts of {record.from_namespace} at {warm.rate_per_second:g}/s",
                }
            )
        )
    verb = "rolled back to" if record.rollback else "switched to"
    event = EventSpec(
        "Normal",
        "RolledBack" if record.rollback else "NamespaceSwitched",
        f"{model_version}: {nodes} node(s) {verb} {record.to_namespace} "
        f"(from {record.from_namespace}, {record.policy}) in {seconds:.2f}s{retire_note}",
    )
    lifecycle = replace(
        lifecycle,
        active=tuple(active),
        rollovers=tuple(rollovers),
        retained=tuple(bound_retention(retained, by_name, rollovers, now)),
    )
    return Plan(lifecycle, [event]), SwitchOutcome(record.policy, seconds)
