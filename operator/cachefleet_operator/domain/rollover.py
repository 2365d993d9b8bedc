"""Model-version lifecycle (issue 5), pure: which cache namespace each ModelVersion is served
from, and every step that moves a fleet there.

Two levels, one rule (`decide_namespace`):

- **ModelVersion** (`plan_model_version`): the namespace its answer identity (version,
  prompt-template hash, epoch) maps to under its own policy, the identity last handled, and
  the previous namespaces it retains (bounded by `retainPrevious`, dropped after `retainFor`).
- **SemanticCache** (`Lifecycle` and the step functions): what every node of the fleet serves,
  with the policy in force for that cache (`spec.modelVersions[].policy` overrides):

  ```
  identity changed ──► Rollover/Flush: RolloverProgress(Switching) ──switch + verify──► switched
                   │       └─ Rollover with warm: Warming (batches) ──► done
                   │       old namespace → retainedNamespaces (purgeAfter = now + retainFor;
                   │       Flush: now) ──► purge (retired_only) when due
                   ├─► Keep: same namespace, served identity updated
                   └─► back to a retained identity: Rollback (Switching, no warm, no purge)
  embeddingModel changed ──► migration Preparing ──► Reembedding (cursor) ──► Switching ──► done
  ```

The services do the I/O between steps (node calls) and feed the answers back in. Every state is
written to status, so a restarted operator continues from the last recorded step, and every
step is idempotent (a switch to the namespace already active, a re-embed batch done twice, a
purge of a purged namespace all change nothing).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from cachefleet_operator.api.v1alpha1 import Condition, ModelVersion, ModelVersionSpec
from cachefleet_operator.api.v1alpha1.modelversion import (
    NamespaceIdentity,
    PreviousNamespace,
    RolloverSettings,
    Warmup,
)
from cachefleet_operator.api.v1alpha1.semanticcache import (
    ActiveNamespace,
    EmbeddingMigration,
    EmbeddingStatus,
    ReembedCursor,
    Reembedding,
    RetainedNamespace,
    RolloverProgress,
    SemanticCache,
    SemanticCacheStatus,
    WarmProgress,
)
from cachefleet_operator.domain.conditions import ConditionUpdate
from cachefleet_operator.domain.durations import format_duration, parse_duration
from cachefleet_operator.domain.events import EventSpec
from cachefleet_operator.domain.naming import active_cache_namespace, cache_namespace

__all__ = [
    "MAX_WARM_BATCH",
    "REEMBED_STEP_S",
    "ROLLING_OVER",
    "WARM_STEP_S",
    "Identity",
    "Lifecycle",
    "ModelVersionPlan",
    "NamespaceDecision",
    "Plan",
    "ReembedRequest",
    "SwitchOutcome",
    "Transition",
    "WarmRequest",
    "decide_namespace",
    "due_purges",
    "embedding_migration_refused",
    "embedding_models",
    "embedding_switched",
    "namespace_mismatches",
    "node_name_for",
    "plan_cache",
    "plan_model_version",
    "prepared",
    "purged",
    "reembed_request",
    "reembedded",
    "rolling_over_condition",
    "switched",
    "unswitched_nodes",
    "warm_request",
    "warmed",
]

ROLLING_OVER = "RollingOver"
#: Seconds of upstream replay one warm batch aims at (at the configured rate).
WARM_STEP_S = 3.0
#: Seconds of re-embedding one batch aims at (at the configured rate).
REEMBED_STEP_S = 2.0
#: The node's limit on one `/v1/cache/warm` call.
MAX_WARM_BATCH = 500
_DEFAULT_SETTINGS = RolloverSettings()


# --- the rule: which namespace an identity is served from ----------------------------------


@dataclass(frozen=True)
class Identity:
    """The answer identity of a ModelVersion: what cached answers depend on.

    Not the embedding model: a new embedding model re-embeds the same entries.
    """

    version: str
    prompt_template_hash: str | None = None
    epoch: int = 0

    @classmethod
    def of(cls, spec: ModelVersionSpec) -> Identity:
        return cls(spec.version, spec.prompt_template_hash, spec.invalidation.epoch)

    @classmethod
    def recorded(
        cls, version: str | None, prompt_template_hash: str | None, epoch: int | None
    ) -> Identity | None:
        """An identity written to status (None where it was not recorded)."""
        if version is None or epoch is None:
            return None
        return cls(version, prompt_template_hash, epoch)

    def api(self) -> NamespaceIdentity:
        return NamespaceIdentity(
            version=self.version, prompt_template_hash=self.prompt_template_hash, epoch=self.epoch
        )

    def describe(self) -> str:
        text = self.version
        if self.prompt_template_hash:
            text += f" (template {self.prompt_template_hash})"
        if self.epoch:
            text += f" epoch {self.epoch}"
        return text


class Transition(enum.StrEnum):
    """What an identity change means for the namespace."""

    NEW = "New"  # nothing served yet
    UNCHANGED = "Unchanged"
    KEEP = "Keep"  # policy Keep: same namespace, new identity
    ROLLOVER = "Rollover"  # a new namespace (Rollover or Flush)
    ROLLBACK = "Rollback"  # back to a retained namespace


@dataclass(frozen=True)
class NamespaceDecision:
    transition: Transition
    namespace: str
    trigger: str | None = None  # VersionChanged, PromptTemplateChanged, EpochBumped


def _trigger(old: Identity | None, new: Identity) -> str:
    if old is not None and old.epoch != new.epoch:
        return "EpochBumped"
    if old is None or old.version != new.version:
        return "VersionChanged"
    return "PromptTemplateChanged"


def _rollback_target(
    identity: Identity, derived: str, retained: Sequence[tuple[str, Identity | None]]
) -> str | None:
    for namespace, recorded in retained:
        if recorded == identity or namespace == derived:
            return namespace
    return None


def decide_namespace(
    name: str,
    spec: ModelVersionSpec,
    *,
    current: str | None,
    current_identity: Identity | None,
    policy: str,
    retained: Sequence[tuple[str, Identity | None]] = (),
    fresh: str | None = None,
) -> NamespaceDecision:
    """Which cache namespace `spec` is served from, given what is served now.

    - nothing served: a retained namespace of the same identity, else `fresh` (the namespace
      the ModelVersion reports), else the derived one;
    - same identity: unchanged;
    - `Keep`: a version or template change keeps the namespace; an epoch bump (an explicit
      invalidation) starts a new one as `Rollover` would;
    - a retained namespace of that identity (or with the derived name): rollback to it;
    - else the derived namespace (`naming.cache_namespace`).
    """
    identity = Identity.of(spec)
    derived = cache_namespace(name, spec)
    if current is None:
        first = _rollback_target(identity, derived, retained) or fresh or derived
        return NamespaceDecision(Transition.NEW, first)
    if current_identity is None:
        if current == derived:  # recorded before identities were: it is this identity's
            return NamespaceDecision(Transition.UNCHANGED, current)
    elif current_identity == identity:
        return NamespaceDecision(Transition.UNCHANGED, current)
    trigger = _trigger(current_identity, identity)
    if policy == "Keep" and trigger != "EpochBumped":
        return NamespaceDecision(Transition.KEEP, current, trigger)
    target = _rollback_target(identity, derived, retained)
    if target is not None and target != current:
        return NamespaceDecision(Transition.ROLLBACK, target, trigger)
    if derived == current:
        return NamespaceDecision(Transition.UNCHANGED, current)
    return NamespaceDecision(Transition.ROLLOVER, derived, trigger)


def retains(policy: str) -> bool:
    """Whether the policy keeps the previous namespace for `retainFor` (Flush does not)."""
    return policy != "Flush"


def _retain_until(settings: RolloverSettings, policy: str, now: datetime) -> datetime:
    if not retains(policy):
        return now
    return now + timedelta(seconds=parse_duration(settings.retain_for))


# --- ModelVersion ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelVersionPlan:
    """A ModelVersion's status fields after a pass, and what to tell the user."""

    cache_namespace: str
    identity: NamespaceIdentity
    previous: list[PreviousNamespace]
    transition: Transition
    event: EventSpec | None
    next_due: datetime | None


def plan_model_version(model_version: ModelVersion, *, now: datetime) -> ModelVersionPlan:
    """The namespace under the ModelVersion's own policy, and the previous ones it retains."""
    spec, status = model_version.spec, model_version.status
    name = model_version.metadata.name
    identity = Identity.of(spec)
    current = status.cache_namespace
    current_identity = (
        Identity.recorded(
            status.identity.version, status.identity.prompt_template_hash, status.identity.epoch
        )
        if status.identity is not None
        else None
    )
    previous = list(status.previous_namespaces)
    candidates = [
        (p.cache_namespace, Identity.recorded(p.version, p.prompt_template_hash, p.epoch))
        for p in previous
    ]
    decision = decide_namespace(
        name,
        spec,
        current=current,
        current_identity=current_identity,
        policy=spec.policy,
        retained=candidates,
    )
    event: EventSpec | None = None
    if decision.transition in (Transition.ROLLOVER, Transition.ROLLBACK) and current is not None:
        previous = [p for p in previous if p.cache_namespace != decision.namespace]
        if retains(spec.policy):
            old = current_identity or Identity("")
            previous.insert(
                0,
                PreviousNamespace(
                    cache_namespace=current,
                    version=old.version,
                    prompt_template_hash=old.prompt_template_hash,
                    epoch=current_identity.epoch if current_identity else None,
                    retired_at=now,
                    purge_after=_retain_until(spec.rollover, spec.policy, now),
                ),
            )
        verb = "rolled back" if decision.transition == Transition.ROLLBACK else "changed"
        kept = (
            f"; {current} retained for {spec.rollover.retain_for}"
            if retains(spec.policy) and spec.rollover.retain_previous
            else f"; {current} is purged"
        )
        event = EventSpec(
            "Normal",
            "RolledBack" if decision.transition == Transition.ROLLBACK else "CacheNamespaceChanged",
            f"cache namespace {verb}: {current} -> {decision.namespace} "
            f"({decision.trigger}, policy {spec.policy}){kept}",
        )
    elif decision.transition == Transition.KEEP:
        event = EventSpec(
            "Normal",
            "CacheNamespaceKept",
            f"{identity.describe()} is declared answer-compatible (policy Keep): cache "
            f"namespace {decision.namespace} stays",
        )
    elif decision.transition == Transition.NEW:
        event = EventSpec("Normal", "Resolved", f"cache namespace {decision.namespace}")
    previous = [p for p in previous if p.purge_after is None or p.purge_after > now][
        : spec.rollover.retain_previous
    ]
    dues = [p.purge_after for p in previous if p.purge_after is not None]
    return ModelVersionPlan(
        cache_namespace=decision.namespace,
        identity=identity.api(),
        previous=previous,
        transition=decision.transition,
        event=event,
        next_due=min(dues) if dues else None,
    )


# --- SemanticCache: the fleet's state -------------------------------------------------------


@dataclass(frozen=True)
class Lifecycle:
    """The part of a SemanticCache's status the lifecycle owns (immutable; steps return new)."""

    active: tuple[ActiveNamespace, ...] = ()
    rollovers: tuple[RolloverProgress, ...] = ()
    retained: tuple[RetainedNamespace, ...] = ()
    embedding: EmbeddingStatus | None = None

    @classmethod
    def of(cls, status: SemanticCacheStatus) -> Lifecycle:
        return cls(
            active=tuple(status.active_namespaces),
            rollovers=tuple(status.rollovers),
            retained=tuple(status.retained_namespaces),
            embedding=status.embedding,
        )

    def served(self, model_version: str) -> ActiveNamespace | None:
        return next((a for a in self.active if a.model_version == model_version), None)

    def rollover(self, model_version: str) -> RolloverProgress | None:
        return next((r for r in self.rollovers if r.model_version == model_version), None)

    def served_namespaces(self) -> dict[str, str]:
        """ModelVersion name → the cache namespace every node serves it from."""
        return {a.model_version: a.cache_namespace for a in self.active}

    @property
    def busy(self) -> bool:
        """A rollover or an embedding migration is in progress (look again soon)."""
        migrating = self.embedding is not None and self.embedding.migration is not None
        return bool(self.rollovers) or migrating

    @property
    def switching(self) -> tuple[RolloverProgress, ...]:
        return tuple(r for r in self.rollovers if r.phase == "Switching")

    @property
    def awaiting_purge(self) -> tuple[RolloverProgress, ...]:
        """Switches into a namespace that is still retained for purging (flushed, or left by
        an abandoned switch): they wait for the purge, so its old answers never come back."""
        retained = {e.cache_namespace for e in self.retained}
        return tuple(r for r in self.switching if _awaits_purge(r, retained))


@dataclass
class Plan:
    """The result of a pure step: the new state and the Events to post."""

    lifecycle: Lifecycle
    events: list[EventSpec] = field(default_factory=list)


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


def _retire(
    entry: ActiveNamespace, *, policy: str, settings: RolloverSettings, now: datetime
) -> RetainedNamespace:
    return RetainedNamespace(
        cache_namespace=entry.cache_namespace,
        model_version=entry.model_version,
        version=entry.version,
        prompt_template_hash=entry.prompt_template_hash,
        epoch=entry.epoch,
        retired_at=now,
        purge_after=_retain_until(settings, policy, now),
    )


def _settings(model_versions: Mapping[str, ModelVersion], name: str) -> RolloverSettings:
    mv = model_versions.get(name)
    return mv.spec.rollover if mv is not None else _DEFAULT_SETTINGS


def _awaits_purge(record: RolloverProgress, retained: set[str]) -> bool:
    # Only a rollback switches into a retained namespace (one not yet due); any other switch
    # whose target is retained targets a namespace due for purging.
    return record.phase == "Switching" and not record.rollback and record.to_namespace in retained


def _protected(
    rollovers: Iterable[RolloverProgress], retained: Iterable[RetainedNamespace]
) -> set[str]:
    """Namespaces a purge must not touch: switch targets (except those awaiting the purge of
    their target) and warm-up sources in flight."""
    retained_names = {e.cache_namespace for e in retained}
    names: set[str] = set()
    for record in rollovers:
        if not _awaits_purge(record, retained_names):
            names.add(record.to_namespace)
        if record.phase == "Warming" and record.from_namespace:
            names.add(record.from_namespace)
    return names


def _bound_retention(
    retained: list[RetainedNamespace],
    model_versions: Mapping[str, ModelVersion],
    rollovers: Sequence[RolloverProgress],
    now: datetime,
) -> list[RetainedNamespace]:
    """At most `retainPrevious` retained namespaces per ModelVersion: the oldest beyond it are
    due for purging now. Rollback targets in flight are not counted, nor are namespaces that
    are already due (flushed): a flush never shortens the retention of another namespace."""
    protected = _protected(rollovers, retained)
    bounded: list[RetainedNamespace] = []
    kept: dict[str, int] = {}
    for entry in sorted(retained, key=lambda e: e.retired_at, reverse=True):
        if entry.cache_namespace in protected or entry.purge_after <= now:
            bounded.append(entry)
            continue
        count = kept.get(entry.model_version, 0)
        limit = _settings(model_versions, entry.model_version).retain_previous
        if count >= limit and entry.purge_after > now:
            entry = entry.model_copy(update={"purge_after": now})
        kept[entry.model_version] = count + 1
        bounded.append(entry)
    return sorted(bounded, key=lambda e: (e.retired_at, e.cache_namespace))


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
    referenced = {ref.name for ref, _ in refs}
    events: list[EventSpec] = []
    active: dict[str, ActiveNamespace] = {a.model_version: a for a in lifecycle.active}
    records: dict[str, RolloverProgress] = {r.model_version: r for r in lifecycle.rollovers}
    retained = list(lifecycle.retained)

    def cancel(record: RolloverProgress, why: str) -> None:
        records.pop(record.model_version, None)
        if record.phase == "Switching" and not record.rollback:
            # Some nodes may have switched and written entries: purge them (never active).
            served_now = {a.cache_namespace for a in active.values()}
            if record.to_namespace not in served_now and all(
                e.cache_namespace != record.to_namespace for e in retained
            ):
                retained.append(
                    RetainedNamespace(
                        cache_namespace=record.to_namespace,
                        model_version=record.model_version,
                        version=record.version,
                        prompt_template_hash=record.prompt_template_hash,
                        epoch=record.epoch,
                        retired_at=now,
                        purge_after=now,
                    )
                )
        events.append(
            EventSpec(
                "Normal",
                "RolloverCancelled",
                f"{record.model_version}: rollover to {record.to_namespace} cancelled: {why}",
            )
        )

    for stale in list(records.values()):
        if stale.model_version not in referenced:
            cancel(stale, "the ModelVersion is no longer referenced")
    re_pointing = {
        r.from_model_version
        for r in records.values()
        if r.from_model_version and r.phase == "Switching"
    }
    orphans = [
        entry
        for name, entry in active.items()
        if name not in referenced and name not in re_pointing
    ]

    for ref, mv in refs:
        name = mv.metadata.name
        policy = ref.policy or mv.spec.policy
        served = active.get(name)
        record = records.get(name)
        # A namespace due for purging (flushed, or past its retention) is no rollback target.
        candidates = [
            (e.cache_namespace, _identity_of(e))
            for e in retained
            if e.model_version == name and e.purge_after > now
        ]
        if served is None:
            if record is not None:
                continue  # pointed at from another ModelVersion: switching
            decision = decide_namespace(
                name,
                mv.spec,
                current=None,
                current_identity=None,
                policy=policy,
                retained=candidates,
                fresh=active_cache_namespace(mv),
            )
            rollback = any(
                e.cache_namespace == decision.namespace and e.purge_after > now for e in retained
            )
            if orphans:  # the cache was pointed at this ModelVersion instead of another
                orphan = orphans.pop(0)
                decision = replace(
                    decision,
                    transition=Transition.ROLLBACK if rollback else Transition.ROLLOVER,
                )
                record = _new_record(
                    mv,
                    policy=policy,
                    decision=decision,
                    from_namespace=orphan.cache_namespace,
                    from_model_version=orphan.model_version,
                    now=now,
                )
                records[name] = record
                events.append(_started_event(record))
            else:  # a ModelVersion added to the cache: no node serves it yet
                active[name] = _active(name, decision.namespace, Identity.of(mv.spec), now)
                retained = [e for e in retained if e.cache_namespace != decision.namespace]
            continue
        decision = decide_namespace(
            name,
            mv.spec,
            current=served.cache_namespace,
            current_identity=_identity_of(served),
            policy=policy,
            retained=candidates,
        )
        if (
            record is not None
            and record.phase == "Switching"
            and decision.namespace != record.to_namespace
        ):
            cancel(record, f"the ModelVersion changed again (now {mv.spec.version})")
            record = None
        if (
            record is not None
            and record.phase == "Warming"
            and decision.transition in (Transition.ROLLOVER, Transition.ROLLBACK)
        ):
            records.pop(name)
            events.append(
                EventSpec(
                    "Normal",
                    "WarmupAbandoned",
                    f"{name}: warm-up of {record.to_namespace} stopped: another rollover",
                )
            )
            record = None
        if decision.transition == Transition.KEEP:
            identity = Identity.of(mv.spec)
            active[name] = _active(name, served.cache_namespace, identity, served.since)
            events.append(
                EventSpec(
                    "Normal",
                    "CacheNamespaceKept",
                    f"{name}: {identity.describe()} is answer-compatible (policy Keep): still "
                    f"serving {served.cache_namespace}",
                )
            )
        elif decision.transition == Transition.UNCHANGED and record is None:
            if served.version is None:  # recorded before identities were
                active[name] = _active(
                    name, served.cache_namespace, Identity.of(mv.spec), served.since
                )
        elif decision.transition in (Transition.ROLLOVER, Transition.ROLLBACK) and record is None:
            record = _new_record(
                mv,
                policy=policy,
                decision=decision,
                from_namespace=served.cache_namespace,
                from_model_version=None,
                now=now,
            )
            records[name] = record
            events.append(_started_event(record))

    for orphan in orphans:  # ModelVersions removed from the cache
        mv_gone = by_name.get(orphan.model_version)
        policy = mv_gone.spec.policy if mv_gone is not None else "Rollover"
        del active[orphan.model_version]
        entry = _retire(
            orphan,
            policy=policy,
            settings=_settings(by_name, orphan.model_version),
            now=now,
        )
        retained = [e for e in retained if e.cache_namespace != entry.cache_namespace] + [entry]
        events.append(
            EventSpec(
                "Normal",
                "NamespaceRetired",
                f"ModelVersion {orphan.model_version} is no longer served: cache namespace "
                f"{orphan.cache_namespace} is purged at {entry.purge_after.isoformat()}",
            )
        )

    ordered = [active[ref.name] for ref, _ in refs if ref.name in active]
    ordered += [a for name, a in active.items() if name not in referenced]
    rollovers = [records[ref.name] for ref, _ in refs if ref.name in records]
    lifecycle = Lifecycle(
        active=tuple(ordered),
        rollovers=tuple(rollovers),
        retained=tuple(_bound_retention(retained, by_name, rollovers, now)),
        embedding=lifecycle.embedding,
    )
    embedding, embedding_events = _plan_embedding(
        lifecycle.embedding, embedding_model, now, refuse=_loses_vectors(cache)
    )
    return Plan(replace(lifecycle, embedding=embedding), events + embedding_events)


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
    settings = _settings(by_name, model_version)
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
        entry = _retire(previous, policy=record.policy, settings=settings, now=now)
        retained = [e for e in retained if e.cache_namespace != entry.cache_namespace] + [entry]
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
        retained=tuple(_bound_retention(retained, by_name, rollovers, now)),
    )
    return Plan(lifecycle, [event]), SwitchOutcome(record.policy, seconds)


# --- warming --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WarmRequest:
    """One `POST /v1/cache/warm` call."""

    name: str
    from_namespace: str
    offset: int
    limit: int
    rate_per_second: float

    @property
    def expected_seconds(self) -> float:
        return self.limit / self.rate_per_second


def warm_request(record: RolloverProgress, settings: Warmup) -> WarmRequest | None:
    """The next warm batch (None when nothing is left): about `WARM_STEP_S` at the rate."""
    progress = record.warm or WarmProgress()
    if record.from_namespace is None:
        return None
    budget = settings.top_n if progress.total is None else min(settings.top_n, progress.total)
    left = budget - progress.next_offset
    if left <= 0:
        return None
    per_step = max(1, math.ceil(settings.rate_per_second * WARM_STEP_S))
    return WarmRequest(
        name=record.model_version,
        from_namespace=record.from_namespace,
        offset=progress.next_offset,
        limit=min(MAX_WARM_BATCH, left, per_step),
        rate_per_second=settings.rate_per_second,
    )


def _count(result: Mapping[str, Any], key: str) -> int:
    value = result.get(key)
    return int(value) if isinstance(value, int | float) and value >= 0 else 0


def warmed(
    lifecycle: Lifecycle,
    model_version: str,
    result: Mapping[str, Any] | None,
    *,
    settings: Warmup,
    now: datetime,
) -> Plan:
    """A warm batch's answer (`None`: nothing was left) recorded; done when the top N or the
    whole previous namespace has been replayed."""
    record = lifecycle.rollover(model_version)
    if record is None or record.phase != "Warming":
        return Plan(lifecycle)
    progress = record.warm or WarmProgress()
    done = result is None
    if result is not None:
        total = result.get("total")
        known = min(settings.top_n, int(total)) if isinstance(total, int) else progress.total
        next_offset = _count(result, "next_offset") or progress.next_offset + _count(
            result, "processed"
        )
        progress = WarmProgress(
            total=known,
            processed=progress.processed + _count(result, "processed"),
            stored=progress.stored + _count(result, "stored"),
            skipped=progress.skipped + _count(result, "skipped"),
            failed=progress.failed + _count(result, "failed"),
            next_offset=next_offset,
        )
        limit = settings.top_n if known is None else known
        done = bool(result.get("done")) or progress.next_offset >= limit
    summary = (
        f"{progress.processed}/{progress.total if progress.total is not None else '?'} "
        f"prompts replayed ({progress.stored} stored, {progress.skipped} skipped, "
        f"{progress.failed} failed)"
    )
    if not done:
        updated = record.model_copy(
            update={"warm": progress, "message": f"warming {record.to_namespace}: {summary}"}
        )
        rollovers = tuple(updated if r is record else r for r in lifecycle.rollovers)
        return Plan(replace(lifecycle, rollovers=rollovers))
    rollovers = tuple(r for r in lifecycle.rollovers if r is not record)
    event = EventSpec(
        "Normal", "WarmupCompleted", f"{model_version}: {record.to_namespace} warmed: {summary}"
    )
    return Plan(replace(lifecycle, rollovers=rollovers), [event])


# --- purging --------------------------------------------------------------------------------


def due_purges(lifecycle: Lifecycle, now: datetime) -> list[RetainedNamespace]:
    """Retained namespaces whose retention is over, oldest first (never an active one, a
    switch target or a warm-up source)."""
    protected = _protected(lifecycle.rollovers, lifecycle.retained) | {
        a.cache_namespace for a in lifecycle.active
    }
    due = [
        e for e in lifecycle.retained if e.purge_after <= now and e.cache_namespace not in protected
    ]
    return sorted(due, key=lambda e: (e.retired_at, e.cache_namespace))


def purged(lifecycle: Lifecycle, namespace: str) -> Lifecycle:
    """The namespace is gone from every tier: no longer retained."""
    retained = tuple(e for e in lifecycle.retained if e.cache_namespace != namespace)
    return replace(lifecycle, retained=retained)


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


# --- embedding migration --------------------------------------------------------------------


def _loses_vectors(cache: SemanticCache) -> bool:
    """Whether a migration of this cache would throw its vectors away: Milvus Lite in each node
    (an emptyDir) and GPU embedding, whose migration ends with a rollout of the nodes (back
    onto the GPU pods, which serve the new model then). With in-node embedding a migration
    restarts nothing, and a shared Milvus survives any rollout."""
    return cache.spec.semantic_tier.embedded is not None and cache.spec.embedding.mode == "gpu"


def embedding_migration_refused(
    cache: SemanticCache, lifecycle: Lifecycle, desired: str
) -> str | None:
    """Why the embedding migration to `desired` is not started (`Stalled`, reason
    `EmbeddingMigrationRefused`), or None."""
    embedding = lifecycle.embedding
    if embedding is None or embedding.migration is not None or embedding.model == desired:
        return None
    if not _loses_vectors(cache):
        return None
    return (
        f"embedding model {embedding.model} -> {desired} not started: with "
        "semanticTier.embedded each node keeps its vectors in Milvus Lite on the pod's "
        "emptyDir, and with embedding.mode gpu the migration ends with a rollout of the nodes "
        "(back onto the GPU pods), which would throw every re-embedded vector away. Use a "
        "shared Milvus (semanticTier.managed or semanticTier.external), or embedding.mode "
        f"local (the migration then restarts nothing), or set embeddingModel back to "
        f"{embedding.model}"
    )


def _plan_embedding(
    current: EmbeddingStatus | None, desired: str, now: datetime, *, refuse: bool = False
) -> tuple[EmbeddingStatus, list[EventSpec]]:
    if current is None:
        return EmbeddingStatus(model=desired), []
    migration = current.migration
    if migration is None:
        if current.model == desired or refuse:
            return current, []
        return current.model_copy(
            update={"migration": _migration(current.model, desired, current.space, now)}
        ), [
            EventSpec(
                "Normal",
                "EmbeddingMigrationStarted",
                f"embedding model {current.model} -> {desired}: every node loads {desired} "
                "live as the next model (dual writes; no restart), then the stored prompts are "
                "re-embedded",
            )
        ]
    if migration.to_model == desired or migration.phase == "Switching":
        return current, []  # (a switch in flight finishes first; a later pass goes on)
    if desired == migration.from_model:
        return current.model_copy(update={"migration": None}), [
            EventSpec(
                "Normal",
                "EmbeddingMigrationCancelled",
                f"embedding model back to {desired}: migration to {migration.to_model} dropped",
            )
        ]
    return current.model_copy(
        update={"migration": _migration(migration.from_model, desired, current.space, now)}
    ), [
        EventSpec(
            "Normal",
            "EmbeddingMigrationRestarted",
            f"embedding model {migration.from_model} -> {desired} (was -> {migration.to_model})",
        )
    ]


def _migration(
    from_model: str, to_model: str, from_space: str | None, now: datetime
) -> EmbeddingMigration:
    return EmbeddingMigration(
        from_model=from_model,
        to_model=to_model,
        from_space=from_space,
        phase="Preparing",
        started_at=now,
        message=f"waiting for every node to load {to_model} as the next embedding model",
    )


def embedding_models(lifecycle: Lifecycle, fallback: str) -> tuple[str, str | None]:
    """(model serving lookups, next model) for the node config."""
    embedding = lifecycle.embedding
    if embedding is None:
        return fallback, None
    if embedding.migration is not None:
        return embedding.migration.from_model, embedding.migration.to_model
    return embedding.model, None


def _with_migration(lifecycle: Lifecycle, migration: EmbeddingMigration) -> Lifecycle:
    assert lifecycle.embedding is not None
    return replace(
        lifecycle, embedding=lifecycle.embedding.model_copy(update={"migration": migration})
    )


def prepared(
    lifecycle: Lifecycle,
    *,
    from_space: str | None,
    to_space: str,
    now: datetime,
) -> Plan:
    """Every node runs the next model (dual writes): re-embed every active and retained
    namespace (in that order)."""
    migration = lifecycle.embedding.migration if lifecycle.embedding else None
    if migration is None or migration.phase != "Preparing":
        return Plan(lifecycle)
    namespaces: list[str] = []
    for name in [a.cache_namespace for a in lifecycle.active] + [
        e.cache_namespace for e in lifecycle.retained
    ]:
        if name not in namespaces:
            namespaces.append(name)
    updated = migration.model_copy(
        update={
            "phase": "Reembedding" if namespaces else "Switching",
            "from_space": from_space or migration.from_space,
            "to_space": to_space,
            "namespaces": [ReembedCursor(cache_namespace=name) for name in namespaces],
            "total": None if namespaces else 0,
            "message": f"re-embedding {len(namespaces)} namespace(s) into {to_space}"
            if namespaces
            else f"nothing to re-embed: switching every node to {to_space}",
        }
    )
    event = EventSpec(
        "Normal",
        "Reembedding",
        f"every node dual-writes into {to_space}: re-embedding "
        f"{', '.join(namespaces) or 'nothing'}",
    )
    return Plan(_with_migration(lifecycle, updated), [event])


@dataclass(frozen=True)
class ReembedRequest:
    """One `POST /v1/cache/reembed` call."""

    namespace: str
    cursor: str
    limit: int
    rate_per_second: float

    @property
    def expected_seconds(self) -> float:
        return self.limit / self.rate_per_second


def reembed_request(lifecycle: Lifecycle, settings: Reembedding) -> ReembedRequest | None:
    """The next batch: the first namespace not done, about `REEMBED_STEP_S` at the rate."""
    migration = lifecycle.embedding.migration if lifecycle.embedding else None
    if migration is None or migration.phase != "Reembedding":
        return None
    for cursor in migration.namespaces:
        if not cursor.done:
            per_step = max(1, math.ceil(settings.rate_per_second * REEMBED_STEP_S))
            return ReembedRequest(
                namespace=cursor.cache_namespace,
                cursor=cursor.cursor,
                limit=min(settings.batch_size, per_step),
                rate_per_second=settings.rate_per_second,
            )
    return None


def reembedded(
    lifecycle: Lifecycle,
    request: ReembedRequest,
    result: Mapping[str, Any],
    *,
    began: datetime,
    now: datetime,
) -> Plan:
    """A batch's answer recorded (cursor, counts, rate, ETA); all done: on to Switching.

    `began`: when the batch was sent (the first one starts the rate's clock)."""
    migration = lifecycle.embedding.migration if lifecycle.embedding else None
    if migration is None or migration.phase != "Reembedding":
        return Plan(lifecycle)
    processed = _count(result, "processed")
    total = result.get("total")
    cursors = []
    for cursor in migration.namespaces:
        if cursor.cache_namespace == request.namespace and cursor.cursor == request.cursor:
            next_cursor = result.get("next_cursor")
            cursor = cursor.model_copy(
                update={
                    "cursor": str(next_cursor) if next_cursor else "",
                    "processed": cursor.processed + processed,
                    "total": int(total) if isinstance(total, int) else cursor.total,
                    "done": bool(result.get("done")) or not next_cursor,
                }
            )
        cursors.append(cursor)
    started = migration.reembed_started_at or began
    done_total = sum(c.processed for c in cursors)
    totals = [c.total for c in cursors]
    grand_total = sum(t for t in totals if t is not None) if any(totals) else None
    elapsed = (now - started).total_seconds()
    rate = done_total / elapsed if elapsed > 0 else None
    eta = None
    if rate and grand_total is not None:
        eta = format_duration(max(0, grand_total - done_total) / rate)
    all_done = all(c.done for c in cursors)
    progress = f"{done_total}/{grand_total if grand_total is not None else '?'} entries"
    if grand_total:
        progress += f" ({100 * min(done_total, grand_total) / grand_total:.0f}%)"
    if rate:
        progress += f", {rate:.1f}/s"
    if eta and not all_done:
        progress += f", ETA {eta}"
    updated = migration.model_copy(
        update={
            "namespaces": cursors,
            "processed": done_total,
            "total": grand_total,
            "reembed_started_at": started,
            "rate": f"{rate:.1f}" if rate else migration.rate,
            "eta": eta if not all_done else "0s",
            "phase": "Switching" if all_done else "Reembedding",
            "message": (
                f"re-embedded {progress}: switching every node to {migration.to_space}"
                if all_done
                else f"re-embedding into {migration.to_space}: {progress}"
            ),
        }
    )
    events = []
    if all_done:
        events.append(
            EventSpec(
                "Normal",
                "Reembedded",
                f"re-embedded {progress} into {migration.to_space}; switching lookups",
            )
        )
    return Plan(_with_migration(lifecycle, updated), events)


def embedding_switched(lifecycle: Lifecycle, *, nodes: int, now: datetime) -> Plan:
    """Every node searches the new space: the migration is over (the config drops
    `embedding_next` and names the new model)."""
    embedding = lifecycle.embedding
    migration = embedding.migration if embedding else None
    if embedding is None or migration is None:
        return Plan(lifecycle)
    seconds = (now - migration.started_at).total_seconds()
    event = EventSpec(
        "Normal",
        "EmbeddingSwitched",
        f"{nodes} node(s) search {migration.to_space} ({migration.to_model}); "
        f"{migration.processed} entries re-embedded"
        + (f" at {migration.rate}/s" if migration.rate else "")
        + f"; migration took {format_duration(seconds)}",
    )
    done = EmbeddingStatus(model=migration.to_model, space=migration.to_space)
    return Plan(replace(lifecycle, embedding=done), [event])


# --- the condition --------------------------------------------------------------------------


def rolling_over_condition(
    lifecycle: Lifecycle, previous: Condition | None, *, completed: bool = False
) -> ConditionUpdate:
    """`RollingOver`: True with the phase as reason while anything moves; then
    False/`Completed` (False/`Idle` on a cache that never rolled over). `completed`: a
    rollover or migration finished in this pass (it may never have been seen as True)."""
    migration = lifecycle.embedding.migration if lifecycle.embedding else None
    parts: list[str] = []
    reason = ""
    if migration is not None:
        reason = migration.phase
        parts.append(
            f"embedding {migration.from_model} -> {migration.to_model}: {migration.message}"
        )
    for record in lifecycle.rollovers:
        reason = reason or record.phase
        parts.append(
            f"{record.model_version}: {record.from_namespace} -> {record.to_namespace} "
            f"({'rollback' if record.rollback else record.policy}): {record.message}"
        )
    if parts:
        return ConditionUpdate(ROLLING_OVER, "True", reason, "; ".join(parts)[:4000])
    served = ", ".join(f"{a.model_version}={a.cache_namespace}" for a in lifecycle.active)
    rolled = completed or (
        previous is not None and (previous.status == "True" or previous.reason == "Completed")
    )
    return ConditionUpdate(
        ROLLING_OVER,
        "False",
        "Completed" if rolled else "Idle",
        f"serving {served}" if served else "no cache namespace yet",
    )
