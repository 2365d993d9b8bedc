"""The embedding migration step: Preparing (every node loaded the next model), Reembedding
(one `POST /v1/cache/reembed` batch), Switching (`POST /v1/cache/embedding/switch`, verified
like a namespace switch)."""

from __future__ import annotations

from typing import Any

from cachefleet_contract.admin import ReembedResult
from cachefleet_operator.adapters.nodes import NodeError
from cachefleet_operator.api.v1alpha1 import EmbeddingMigration
from cachefleet_operator.domain.lifecycle.embedding import (
    embedding_switched,
    prepared,
    reembed_request,
    reembedded,
)
from cachefleet_operator.services.context import Service, ServiceContext
from cachefleet_operator.services.lifecycle.step import FleetPass, Reports
from cachefleet_operator.services.lifecycle.switching import Switcher, namespace_reports

__all__ = ["EmbeddingStep"]


class EmbeddingStep(Service):
    """Moves a migration to another embedding model on by one phase step per pass."""

    def __init__(self, context: ServiceContext, switcher: Switcher) -> None:
        super().__init__(context)
        self._switcher = switcher

    async def run(self, fleet: FleetPass) -> None:
        """The step of the migration in progress, if any (needs the nodes)."""
        embedding = fleet.step.lifecycle.embedding
        migration = embedding.migration if embedding else None
        if migration is None:
            return
        if not fleet.urls:
            fleet.step.retry("NoNodeEndpoint")
            return
        if migration.phase == "Preparing":
            await self._prepare(fleet, migration)
        elif migration.phase == "Reembedding":
            await self._reembed(fleet, migration)
        else:
            await self._switch(fleet, migration.to_space or "")

    async def _prepare(self, fleet: FleetPass, migration: EmbeddingMigration) -> None:
        """On to Reembedding once every node loaded the next model (live, no restart)."""
        step, urls = fleet.step, fleet.urls
        answers = await namespace_reports(self._nodes, urls, fleet.api_key)
        fleet.reports.update(answers)
        ready = [
            url
            for url, report in answers.items()
            if report.embedding.next is not None
            and report.embedding.next.model_id == migration.to_model
        ]
        if len(ready) < len(urls):
            loading = [
                url
                for url, report in answers.items()
                if report.embedding.loading == migration.to_model
            ]
            message = (
                f"waiting for every node to load {migration.to_model} as the next embedding "
                f"model (live, from the node ConfigMap; no restart): {len(ready)}/{len(urls)} "
                f"do" + (f", {len(loading)} loading" if loading else "")
            )
            step.update_migration(message=message)
            step.retry("EmbeddingNotPrepared")
            return
        first = answers[ready[0]].embedding
        assert first.next is not None  # `ready` says so
        step.apply(
            prepared(
                step.lifecycle,
                from_space=first.active.space or None,
                to_space=first.next.space,
                now=self._clock(),
            )
        )
        step.soon(0.05)

    async def _reembed(self, fleet: FleetPass, migration: EmbeddingMigration) -> None:
        """One re-embedding batch (on every node with Milvus Lite, else on one)."""
        step, cache = fleet.step, fleet.cache
        settings = cache.spec.reembedding
        request = reembed_request(step.lifecycle, settings)
        if request is None:
            return
        expected_s = request.limit / settings.rate_per_second
        began_wall, began = self._clock(), self._monotonic()
        targets = fleet.urls if cache.spec.semantic_tier.embedded is not None else fleet.urls[:1]
        result: ReembedResult | None = None
        try:
            for url in targets:  # Milvus Lite per node: each node re-embeds its own copy
                answer = await self._nodes.reembed(
                    url, request, api_key=fleet.api_key, time_limit=expected_s + 60.0
                )
                result = result or answer
        except NodeError as error:
            message = f"re-embedding batch failed (retrying): {error}"
            update: dict[str, Any] = {"message": message}
            if error.status == 400 and request.cursor:
                # The node no longer knows the cursor (say, its store was restarted): the
                # namespace starts over (re-embedding an entry twice changes nothing).
                update["namespaces"] = [
                    c.model_copy(update={"cursor": ""})
                    if c.cache_namespace == request.namespace
                    else c
                    for c in migration.namespaces
                ]
                update["message"] = (
                    f"the node refused the cursor of {request.namespace}: starting it over"
                )
            step.update_migration(**update)
            step.retry("ReembedBatchFailed")
            return
        assert result is not None
        self._metrics.reembedded_entries.inc(result.processed)
        step.apply(reembedded(step.lifecycle, request, result, began=began_wall, now=self._clock()))
        elapsed = self._monotonic() - began
        step.soon(max(0.05, expected_s - elapsed))

    async def _switch(self, fleet: FleetPass, space: str) -> None:
        """Every node searches `space` (verified): the migration is done."""
        urls, api_key = fleet.urls, fleet.api_key

        async def tell(url: str) -> NodeError | None:
            try:
                await self._nodes.switch_embedding(url, space, api_key=api_key)
            except NodeError as error:
                return error
            return None

        def late_nodes(answers: Reports) -> list[str]:
            return [
                url
                for url in urls
                if url not in answers or answers[url].embedding.active.space != space
            ]

        ok, message = await self._switcher.verified(
            fleet,
            tell=tell,
            late_nodes=late_nodes,
            refused="no node accepted the embedding switch",
            stuck=lambda late: f"{len(late)}/{len(urls)} node(s) not searching {space} yet",
        )
        if not ok:
            fleet.step.update_migration(message=message)
            fleet.step.retry("EmbeddingSwitchNotVerified")
            return
        fleet.step.apply(
            embedding_switched(fleet.step.lifecycle, nodes=len(urls), now=self._clock())
        )
