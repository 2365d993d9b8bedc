"""Switching a fleet coherently: tell one node, verify on every node (the loop the namespace
switch of a rollover and the embedding switch of a migration share), and converge nodes
that serve a ModelVersion from another namespace than the fleet's."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

import structlog

from cachefleet_contract.admin import NamespacesReport
from cachefleet_operator.adapters.nodes import NodeClient, NodeError
from cachefleet_operator.api.v1alpha1 import RolloverProgress
from cachefleet_operator.domain.events import EventSpec
from cachefleet_operator.domain.lifecycle.rollover import (
    namespace_mismatches,
    node_name_for,
    switched,
    unswitched_nodes,
)
from cachefleet_operator.services.context import Service, ServiceContext
from cachefleet_operator.services.lifecycle.step import FleetPass, Reports

__all__ = ["SWITCH_NUDGE_S", "SWITCH_VERIFY_S", "Switcher", "namespace_reports"]

log = structlog.get_logger("cachefleet.lifecycle")

#: How long a switch may take to reach every node before the pass gives up (and retries).
SWITCH_VERIFY_S = 5.0
#: After this long, a node that has not switched is told directly (missed pub/sub, no Redis).
SWITCH_NUDGE_S = 0.5


async def namespace_reports(nodes: NodeClient, urls: Sequence[str], api_key: str | None) -> Reports:
    """`GET /v1/cache/namespaces` of every node that answers, by URL."""

    async def one(url: str) -> tuple[str, NamespacesReport | None]:
        try:
            return url, await nodes.namespaces(url, api_key=api_key)
        except NodeError as error:
            log.info("node_unreachable", url=url, error=str(error))
            return url, None

    answers = await asyncio.gather(*(one(url) for url in urls))
    return {url: report for url, report in answers if report is not None}


class Switcher(Service):
    """The switch steps of a pass (`switch_namespaces`, `converge`) and the verified switch
    the embedding migration ends with."""

    def __init__(self, context: ServiceContext, *, verify_s: float = SWITCH_VERIFY_S) -> None:
        super().__init__(context)
        self.verify_s = verify_s

    async def verified(
        self,
        fleet: FleetPass,
        *,
        tell: Callable[[str], Awaitable[NodeError | None]],
        late_nodes: Callable[[Reports], list[str]],
        refused: str,
        stuck: Callable[[list[str]], str],
    ) -> tuple[bool, str]:
        """Tell one node (it persists the switch and publishes it to the fleet), then read every
        node until none is late. A node that answers but is still late after `SWITCH_NUDGE_S`
        is told directly, once; after the verify time the pass gives up with `stuck(late)`."""
        urls = fleet.urls
        errors: list[str] = []
        for url in urls:
            error = await tell(url)
            if error is None:
                break
            errors.append(str(error))
        else:
            return False, f"{refused}: {errors[-1]}"
        started = self._monotonic()
        nudged: set[str] = set()
        while True:
            answers = await namespace_reports(self._nodes, urls, fleet.api_key)
            fleet.reports.update(answers)
            late = late_nodes(answers)
            if not late:
                return True, ""
            elapsed = self._monotonic() - started
            if elapsed > self.verify_s:
                return False, stuck(late)
            if elapsed > min(SWITCH_NUDGE_S, self.verify_s / 4):
                for url in late:
                    if url in answers and url not in nudged:
                        nudged.add(url)
                        await tell(url)
            await asyncio.sleep(0.05)

    async def switch_namespaces(self, fleet: FleetPass) -> None:
        """Every rollover in Switching: switch the fleet to its new namespace, verified."""
        step = fleet.step
        waiting = {r.model_version for r in step.lifecycle.awaiting_purge}
        for record in step.lifecycle.switching:
            if record.model_version in waiting:  # the purge step empties the target first
                step.hold_nodes = True
                step.note(
                    record,
                    f"waiting for the purge of {record.to_namespace} (its earlier answers "
                    "were flushed) before switching to it",
                )
                continue
            ok, message = await self._switch(record, fleet)
            if not ok:
                step.hold_nodes = True
                step.retry("SwitchNotVerified")
                step.note(record, message)
                log.warning(
                    "switch_not_verified",
                    cache=fleet.cache.metadata.name,
                    model_version=record.model_version,
                    detail=message,
                )
                continue
            plan, outcome = switched(
                step.lifecycle,
                record.model_version,
                model_versions=fleet.model_versions,
                nodes=len(fleet.urls),
                now=self._clock(),
            )
            step.apply(plan)
            self._metrics.rollovers.labels(outcome.policy).inc()
            self._metrics.rollover_duration.labels(outcome.policy).observe(outcome.seconds)
            log.info(
                "namespace_switched",
                cache=fleet.cache.metadata.name,
                model_version=record.model_version,
                to=record.to_namespace,
                nodes=len(fleet.urls),
                seconds=round(outcome.seconds, 3),
            )

    async def _switch(self, record: RolloverProgress, fleet: FleetPass) -> tuple[bool, str]:
        """Tell the fleet, then wait until every node reports the new namespace active."""
        urls = fleet.urls
        if not urls:
            return True, "no node endpoint: nothing serves the old namespace"

        def late_nodes(answers: Reports) -> list[str]:
            active = {url: report.active for url, report in answers.items()}
            return [url for url in urls if url not in answers] + unswitched_nodes(record, active)

        return await self.verified(
            fleet,
            tell=lambda url: self._switch_one(url, record, fleet.api_key),
            late_nodes=late_nodes,
            refused="no node accepted the switch",
            stuck=lambda late: (
                f"{len(late)}/{len(urls)} node(s) not on {record.to_namespace} after "
                f"{self.verify_s:g}s: {', '.join(sorted(late))}"
            ),
        )

    async def _switch_one(
        self, url: str, record: RolloverProgress, api_key: str | None
    ) -> NodeError | None:
        names = [node_name_for(record)]
        if record.model_version not in names:
            names.append(record.model_version)  # the node may already run the new config
        error: NodeError | None = None
        for name in names:
            try:
                await self._nodes.switch_namespace(url, name, record.to_namespace, api_key=api_key)
                return None
            except NodeError as failure:
                error = failure
                if failure.status != 404:
                    break
        return error

    async def converge(self, fleet: FleetPass) -> None:
        """Nodes that serve a ModelVersion from another namespace than the fleet's are switched
        back (a switch persisted in Redis by an earlier state, a node that missed one)."""
        step, urls, reports = fleet.step, fleet.urls, fleet.reports
        if not urls:
            return
        missing = [url for url in urls if url not in reports]
        if missing:
            reports.update(await namespace_reports(self._nodes, missing, fleet.api_key))
        active = {url: report.active for url, report in reports.items()}
        for url, name, namespace in namespace_mismatches(step.lifecycle, active):
            try:
                await self._nodes.switch_namespace(url, name, namespace, api_key=fleet.api_key)
            except NodeError as error:
                log.warning("converge_failed", url=url, name=name, error=str(error))
                step.retry("ConvergeFailed")
                continue
            log.info("namespace_converged", url=url, name=name, namespace=namespace)
            step.events.append(
                EventSpec(
                    "Normal",
                    "NamespaceConverged",
                    f"node {url} served {name} from {active[url].get(name)}: switched to "
                    f"{namespace}",
                )
            )
        embedding = step.lifecycle.embedding
        if embedding is not None and embedding.space is None and embedding.migration is None:
            for report in reports.values():
                part = report.embedding.active
                if part.model_id == embedding.model and part.space:
                    step.lifecycle = replace(
                        step.lifecycle, embedding=embedding.model_copy(update={"space": part.space})
                    )
                    break
