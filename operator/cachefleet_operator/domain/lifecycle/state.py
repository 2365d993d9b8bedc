"""The lifecycle's records in a SemanticCache's status (`Lifecycle`), the result of a step
(`Plan`), and the `RollingOver` condition that sums them up."""

from __future__ import annotations

from dataclasses import dataclass, field

from cachefleet_operator.api.v1alpha1 import (
    ActiveNamespace,
    Condition,
    EmbeddingStatus,
    RetainedNamespace,
    RolloverProgress,
    SemanticCacheStatus,
)
from cachefleet_operator.domain.conditions import ConditionType, ConditionUpdate
from cachefleet_operator.domain.events import EventSpec

__all__ = ["Lifecycle", "Plan", "awaits_purge", "rolling_over_condition"]


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
        return tuple(r for r in self.switching if awaits_purge(r, retained))


@dataclass
class Plan:
    """The result of a pure step: the new state and the Events to post."""

    lifecycle: Lifecycle
    events: list[EventSpec] = field(default_factory=list)


def awaits_purge(record: RolloverProgress, retained: set[str]) -> bool:
    """Whether a switch waits for the purge of its target (one of the `retained` namespaces)."""
    # Only a rollback switches into a retained namespace (one not yet due); any other switch
    # whose target is retained targets a namespace due for purging.
    return record.phase == "Switching" and not record.rollback and record.to_namespace in retained


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
        return ConditionUpdate(ConditionType.ROLLING_OVER, "True", reason, "; ".join(parts)[:4000])
    served = ", ".join(f"{a.model_version}={a.cache_namespace}" for a in lifecycle.active)
    rolled = completed or (
        previous is not None and (previous.status == "True" or previous.reason == "Completed")
    )
    return ConditionUpdate(
        ConditionType.ROLLING_OVER,
        "False",
        "Completed" if rolled else "Idle",
        f"serving {served}" if served else "no cache namespace yet",
    )
