"""The namespace rule and the ModelVersion level of the lifecycle.

`decide_namespace` maps a ModelVersion's answer identity (version, prompt-template hash,
epoch) to the cache namespace it is served from under a policy; `plan_model_version` applies
it under the ModelVersion's own policy: its namespace, the identity last handled, and the
previous namespaces it retains.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cachefleet_operator.api.v1alpha1 import ModelVersion, ModelVersionSpec
from cachefleet_operator.api.v1alpha1.modelversion import (
    NamespaceIdentity,
    PreviousNamespace,
    RolloverSettings,
)
from cachefleet_operator.domain.durations import parse_duration
from cachefleet_operator.domain.events import EventSpec
from cachefleet_operator.domain.naming import cache_namespace

__all__ = [
    "Identity",
    "ModelVersionPlan",
    "NamespaceDecision",
    "Transition",
    "decide_namespace",
    "plan_model_version",
    "retain_until",
    "retains",
    "rollover_settings",
]

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


def retain_until(settings: RolloverSettings, policy: str, now: datetime) -> datetime:
    """When a namespace retired now under `policy` is purged (Flush: at once)."""
    if not retains(policy):
        return now
    return now + timedelta(seconds=parse_duration(settings.retain_for))


def rollover_settings(model_versions: Mapping[str, ModelVersion], name: str) -> RolloverSettings:
    """The `rollover` settings of the ModelVersion `name` (the defaults where it is gone)."""
    mv = model_versions.get(name)
    return mv.spec.rollover if mv is not None else _DEFAULT_SETTINGS


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
                    purge_after=retain_until(spec.rollover, spec.policy, now),
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
