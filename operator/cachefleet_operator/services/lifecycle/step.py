"""What the lifecycle steps of one pass share: the `LifecycleStep` they build and the
`FleetPass` they read (the cache, its nodes, their answers so far)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cachefleet_contract.admin import NamespacesReport
from cachefleet_operator.api.v1alpha1 import ModelVersion, RolloverProgress, SemanticCache
from cachefleet_operator.domain.events import EventSpec
from cachefleet_operator.domain.lifecycle.state import Lifecycle, Plan

__all__ = ["FleetPass", "LifecycleStep", "Reports"]

#: `GET /v1/cache/namespaces` of the nodes that answered, by URL.
Reports = dict[str, NamespacesReport]
_COMPLETIONS = frozenset(
    {
        "NamespaceSwitched",
        "RolledBack",
        "WarmupCompleted",
        "EmbeddingSwitched",
        "CacheNamespaceKept",
    }
)


@dataclass
class LifecycleStep:
    """What a pass of lifecycle work left: the state to write, whether the node ConfigMap and
    Deployment must stay as they are (a switch not yet seen by every node), when to look
    again."""

    lifecycle: Lifecycle
    hold_nodes: bool = False
    requeue_after: float | None = None
    events: list[EventSpec] = field(default_factory=list)
    completed: bool = False  # a switch, warm-up or migration finished in this pass
    failure: str | None = None  # why a step could not go on (the pass retries with backoff)

    def soon(self, seconds: float) -> None:
        """Look again in `seconds`: work in progress (a next batch, a purge that falls due)."""
        seconds = max(0.05, seconds)
        self.requeue_after = (
            seconds if self.requeue_after is None else min(self.requeue_after, seconds)
        )

    def retry(self, reason: str) -> None:
        """A step failed for `reason` (nodes unreachable, a switch not verified): the pass is
        retried with the object's exponential backoff, not at a fixed pace."""
        self.failure = self.failure or reason

    def apply(self, plan: Plan) -> None:
        """Take a domain step's result: its lifecycle and its Events."""
        self.lifecycle = plan.lifecycle
        self.events += plan.events
        if any(e.reason in _COMPLETIONS for e in plan.events):
            self.completed = True

    def note(self, record: RolloverProgress, message: str) -> None:
        """Let the rollover of `record`'s ModelVersion say `message`."""
        self.lifecycle = replace(
            self.lifecycle,
            rollovers=tuple(
                r.model_copy(update={"message": message})
                if r.model_version == record.model_version
                else r
                for r in self.lifecycle.rollovers
            ),
        )

    def update_migration(self, **update: Any) -> None:
        """Set fields (a `message`, cursors) of the embedding migration in progress."""
        embedding = self.lifecycle.embedding
        if embedding is None or embedding.migration is None:
            return
        migration = embedding.migration.model_copy(update=update)
        self.lifecycle = replace(
            self.lifecycle, embedding=embedding.model_copy(update={"migration": migration})
        )


@dataclass
class FleetPass:
    """One pass over one fleet: the step it builds and what every lifecycle step reads."""

    step: LifecycleStep
    cache: SemanticCache
    model_versions: Sequence[ModelVersion]
    urls: Sequence[str]
    api_key: str | None
    reports: Reports = field(default_factory=dict)  # node answers read so far in this pass
