"""The runner: one pass of lifecycle work over a fleet, its steps in order."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from cachefleet_operator.api.v1alpha1 import ModelVersion, SemanticCache
from cachefleet_operator.domain.lifecycle.rollover import plan_cache
from cachefleet_operator.domain.lifecycle.state import Lifecycle
from cachefleet_operator.services.context import Service, ServiceContext
from cachefleet_operator.services.events import object_reference
from cachefleet_operator.services.lifecycle.embedding import EmbeddingStep
from cachefleet_operator.services.lifecycle.purge import PurgeStep
from cachefleet_operator.services.lifecycle.step import FleetPass, LifecycleStep
from cachefleet_operator.services.lifecycle.switching import SWITCH_VERIFY_S, Switcher
from cachefleet_operator.services.lifecycle.warmup import WarmStep
from cachefleet_operator.services.nodeaccess import AdminKey

__all__ = ["LifecycleRunner"]


class LifecycleRunner(Service):
    """Runs the lifecycle steps of a fleet against its nodes."""

    def __init__(
        self, context: ServiceContext, *, switch_verify_s: float = SWITCH_VERIFY_S
    ) -> None:
        super().__init__(context)
        switcher = Switcher(context, verify_s=switch_verify_s)
        self._steps: tuple[Callable[[FleetPass], Awaitable[None]], ...] = (
            switcher.switch_namespaces,
            WarmStep(context).run,
            switcher.converge,
            PurgeStep(context).run,
            EmbeddingStep(context, switcher).run,
        )

    async def run(
        self,
        cache: SemanticCache,
        body: Mapping[str, Any],
        model_versions: Sequence[ModelVersion],
        lifecycle: Lifecycle,
        *,
        embedding_model: str,
    ) -> LifecycleStep:
        """Plan the fleet's lifecycle, then run every step due against its nodes; post the
        Events. The caller writes the resulting lifecycle into status."""
        step = LifecycleStep(lifecycle)
        step.apply(
            plan_cache(
                cache,
                model_versions,
                lifecycle,
                embedding_model=embedding_model,
                now=self._clock(),
            )
        )
        urls = await self._access.endpoints(cache)
        key = await self._access.admin_key(cache) if urls else AdminKey(True)
        if urls and not key.usable:
            self._blocked(step, key.problem)
        else:
            fleet = FleetPass(step, cache, model_versions, urls, key.value)
            for run_step in self._steps:
                await run_step(fleet)
        reference = object_reference(body)
        for event in step.events:
            await self._events.post(reference, event)
        self._gauge(cache, step.lifecycle)
        return step

    def _blocked(self, step: LifecycleStep, problem: str) -> None:
        """Without an admin key nothing can be switched: hold the nodes as they are."""
        if step.lifecycle.switching:
            step.hold_nodes = True
            message = f"cannot call the nodes' admin API: {problem}"
            step.lifecycle = replace(
                step.lifecycle,
                rollovers=tuple(
                    r.model_copy(update={"message": message}) if r.phase == "Switching" else r
                    for r in step.lifecycle.rollovers
                ),
            )
            step.retry("NoAdminKey")

    def _gauge(self, cache: SemanticCache, lifecycle: Lifecycle) -> None:
        labels = (cache.metadata.namespace or "", cache.metadata.name)
        migration = lifecycle.embedding.migration if lifecycle.embedding else None
        if migration is None:
            with contextlib.suppress(KeyError):
                self._metrics.reembed_progress.remove(*labels)
            return
        ratio = 0.0
        if migration.phase == "Switching":
            ratio = 1.0
        elif migration.total:
            ratio = min(1.0, migration.processed / migration.total)
        self._metrics.reembed_progress.labels(*labels).set(ratio)
