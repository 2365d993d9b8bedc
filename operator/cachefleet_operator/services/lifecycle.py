"""The model-version lifecycle of one fleet, one bounded step per pass (issue 5).

The pure state machine is `domain.rollover`; this runs its steps against the fleet's nodes:

```
plan_cache (pure) ─► Switching: POST /namespaces/switch ─► poll GET /namespaces on every
                     node until all report the new namespace (else: hold the node ConfigMap,
                     retry) ─► switched (pure)
                  ─► Warming: one POST /warm batch (≈3 s at the rate) ─► warmed (pure)
                  ─► due purges: POST /invalidate {retired_only} on every node ─► purged
                  ─► embedding: Preparing (GET: every node loaded the next model live from
                     its ConfigMap, no restart) ─►
                     Reembedding (one POST /reembed batch) ─► Switching (POST
                     /embedding/switch, verify) ─► done
                  ─► converge: a node serving a ModelVersion from another namespace
                     (a stale persisted switch) is switched back
```

The caller writes the resulting lifecycle into status; a crash between two steps repeats the
last one, which is idempotent. The node ConfigMap follows the lifecycle (`FleetView`) and
never names a namespace before every node reported it active.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import structlog

from cachefleet_operator.adapters.metrics import OperatorMetrics
from cachefleet_operator.adapters.nodes import NodeClient, NodeError
from cachefleet_operator.api.v1alpha1 import ModelVersion, SemanticCache
from cachefleet_operator.api.v1alpha1.modelversion import Warmup
from cachefleet_operator.api.v1alpha1.semanticcache import RolloverProgress
from cachefleet_operator.domain.events import EventSpec
from cachefleet_operator.domain.rollover import (
    Lifecycle,
    Plan,
    due_purges,
    embedding_switched,
    namespace_mismatches,
    node_name_for,
    plan_cache,
    prepared,
    purged,
    reembed_request,
    reembedded,
    switched,
    unswitched_nodes,
    warm_request,
    warmed,
)
from cachefleet_operator.services.events import EventRecorder, object_reference
from cachefleet_operator.services.nodeaccess import AdminKey, NodeAccess

__all__ = ["LifecycleRunner", "LifecycleStep"]

log = structlog.get_logger("cachefleet.lifecycle")

#: How long a switch may take to reach every node before the pass gives up (and retries).
SWITCH_VERIFY_S = 5.0
#: After this long, a node that has not switched is told directly (missed pub/sub, no Redis).
SWITCH_NUDGE_S = 0.5
Reports = dict[str, dict[str, Any]]
_NO_WARM = Warmup(top_n=1)
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
        self.lifecycle = plan.lifecycle
        self.events += plan.events
        if any(e.reason in _COMPLETIONS for e in plan.events):
            self.completed = True

    def update_migration(self, **update: Any) -> None:
        """Set fields (a `message`, cursors) of the embedding migration in progress."""
        embedding = self.lifecycle.embedding
        if embedding is None or embedding.migration is None:
            return
        migration = embedding.migration.model_copy(update=update)
        self.lifecycle = replace(
            self.lifecycle, embedding=embedding.model_copy(update={"migration": migration})
        )


def _with_message(lifecycle: Lifecycle, record: RolloverProgress, message: str) -> Lifecycle:
    """`lifecycle` with the rollover of `record`'s ModelVersion saying `message`."""
    return replace(
        lifecycle,
        rollovers=tuple(
            r.model_copy(update={"message": message})
            if r.model_version == record.model_version
            else r
            for r in lifecycle.rollovers
        ),
    )


def _active_map(report: Mapping[str, Any]) -> dict[str, str]:
    active = report.get("active")
    return {str(k): str(v) for k, v in active.items()} if isinstance(active, dict) else {}


def _embedding_part(report: Mapping[str, Any], which: str) -> dict[str, Any] | None:
    embedding = report.get("embedding")
    part = embedding.get(which) if isinstance(embedding, dict) else None
    return part if isinstance(part, dict) else None


def _removed_entries(answer: Mapping[str, Any], namespace: str) -> tuple[int, int]:
    counts = (answer.get("removed") or {}).get(namespace) or {}
    return int(counts.get("store", 0) or 0), int(counts.get("vectors", 0) or 0)


class LifecycleRunner:
    """Runs the lifecycle steps of a fleet against its nodes."""

    def __init__(
        self,
        *,
        nodes: NodeClient,
        access: NodeAccess,
        events: EventRecorder,
        metrics: OperatorMetrics,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        switch_verify_s: float = SWITCH_VERIFY_S,
    ) -> None:
        self._nodes = nodes
        self._access = access
        self._events = events
        self._metrics = metrics
        self._clock = clock
        self._monotonic = monotonic
        self._verify_s = switch_verify_s

    async def run(
        self,
        cache: SemanticCache,
        body: Mapping[str, Any],
        model_versions: Sequence[ModelVersion],
        lifecycle: Lifecycle,
        *,
        embedding_model: str,
    ) -> LifecycleStep:
        now = self._clock()
        step = LifecycleStep(lifecycle)
        step.apply(
            plan_cache(cache, model_versions, lifecycle, embedding_model=embedding_model, now=now)
        )
        urls = await self._access.endpoints(cache)
        key = await self._access.admin_key(cache) if urls else AdminKey(True)
        if urls and not key.usable:
            await self._blocked(step, key.problem)
        else:
            reports: Reports = {}
            await self._switch_namespaces(step, cache, model_versions, urls, key.value, reports)
            await self._warm(step, cache, model_versions, urls, key.value)
            await self._converge(step, urls, key.value, reports)
            await self._purge(step, cache, urls, key.value)
            await self._migrate_embedding(step, cache, urls, key.value, reports)
        await self._post(step.events, body)
        self._gauge(cache, step.lifecycle)
        return step

    # --- steps -------------------------------------------------------------------------------

    async def _blocked(self, step: LifecycleStep, problem: str) -> None:
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

    async def _reports(self, urls: Sequence[str], api_key: str | None) -> Reports:
        """`GET /v1/cache/namespaces` of every node that answers, by URL."""

        async def one(url: str) -> tuple[str, dict[str, Any] | None]:
            try:
                return url, await self._nodes.namespaces(url, api_key=api_key)
            except NodeError as error:
                log.info("node_unreachable", url=url, error=str(error))
                return url, None

        answers = await asyncio.gather(*(one(url) for url in urls))
        return {url: report for url, report in answers if report is not None}

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

    async def _coherent_switch(
        self,
        urls: Sequence[str],
        api_key: str | None,
        reports: Reports,
        *,
        tell: Callable[[str], Awaitable[NodeError | None]],
        late_nodes: Callable[[Reports], list[str]],
        refused: str,
        stuck: Callable[[list[str]], str],
    ) -> tuple[bool, str]:
        """Tell one node (it persists the switch and publishes it to the fleet), then read every
        node until none is late. A node that answers but is still late after `SWITCH_NUDGE_S`
        is told directly, once; after the verify time the pass gives up with `stuck(late)`."""
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
            answers = await self._reports(urls, api_key)
            reports.update(answers)
            late = late_nodes(answers)
            if not late:
                return True, ""
            elapsed = self._monotonic() - started
            if elapsed > self._verify_s:
                return False, stuck(late)
            if elapsed > min(SWITCH_NUDGE_S, self._verify_s / 4):
                for url in late:
                    if url in answers and url not in nudged:
                        nudged.add(url)
                        await tell(url)
            await asyncio.sleep(0.05)

    async def _switch(
        self, record: RolloverProgress, urls: Sequence[str], api_key: str | None, reports: Reports
    ) -> tuple[bool, str]:
        """Tell the fleet, then wait until every node reports the new namespace active."""
        if not urls:
            return True, "no node endpoint: nothing serves the old namespace"

        def late_nodes(answers: Reports) -> list[str]:
            active = {url: _active_map(report) for url, report in answers.items()}
            return [url for url in urls if url not in answers] + unswitched_nodes(record, active)

        return await self._coherent_switch(
            urls,
            api_key,
            reports,
            tell=lambda url: self._switch_one(url, record, api_key),
            late_nodes=late_nodes,
            refused="no node accepted the switch",
            stuck=lambda late: (
                f"{len(late)}/{len(urls)} node(s) not on {record.to_namespace} after "
                f"{self._verify_s:g}s: {', '.join(sorted(late))}"
            ),
        )

    async def _switch_namespaces(
        self,
        step: LifecycleStep,
        cache: SemanticCache,
        model_versions: Sequence[ModelVersion],
        urls: Sequence[str],
        api_key: str | None,
        reports: Reports,
    ) -> None:
        waiting = {r.model_version for r in step.lifecycle.awaiting_purge}
        for record in step.lifecycle.switching:
            if record.model_version in waiting:  # `_purge` below empties the target first
                step.hold_nodes = True
                step.lifecycle = _with_message(
                    step.lifecycle,
                    record,
                    f"waiting for the purge of {record.to_namespace} (its earlier answers "
                    "were flushed) before switching to it",
                )
                continue
            ok, message = await self._switch(record, urls, api_key, reports)
            if not ok:
                step.hold_nodes = True
                step.retry("SwitchNotVerified")
                step.lifecycle = _with_message(step.lifecycle, record, message)
                log.warning(
                    "switch_not_verified",
                    cache=cache.metadata.name,
                    model_version=record.model_version,
                    detail=message,
                )
                continue
            plan, outcome = switched(
                step.lifecycle,
                record.model_version,
                model_versions=model_versions,
                nodes=len(urls),
                now=self._clock(),
            )
            step.apply(plan)
            self._metrics.rollovers.labels(outcome.policy).inc()
            self._metrics.rollover_duration.labels(outcome.policy).observe(outcome.seconds)
            log.info(
                "namespace_switched",
                cache=cache.metadata.name,
                model_version=record.model_version,
                to=record.to_namespace,
                nodes=len(urls),
                seconds=round(outcome.seconds, 3),
            )

    async def _warm(
        self,
        step: LifecycleStep,
        cache: SemanticCache,
        model_versions: Sequence[ModelVersion],
        urls: Sequence[str],
        api_key: str | None,
    ) -> None:
        by_name = {mv.metadata.name: mv for mv in model_versions}
        now = self._clock()
        for record in [r for r in step.lifecycle.rollovers if r.phase == "Warming"]:
            mv = by_name.get(record.model_version)
            settings = mv.spec.rollover.warm if mv is not None else None
            if settings is None:  # warm-up switched off meanwhile
                step.apply(
                    warmed(
                        step.lifecycle,
                        record.model_version,
                        None,
                        settings=_NO_WARM,
                        now=self._clock(),
                    )
                )
                continue
            request = warm_request(record, settings)
            if request is None:
                step.apply(
                    warmed(
                        step.lifecycle,
                        record.model_version,
                        None,
                        settings=settings,
                        now=self._clock(),
                    )
                )
                continue
            if not urls:
                step.retry("NoNodeEndpoint")
                continue
            try:
                result = await self._nodes.warm(
                    urls[0],
                    from_namespace=request.from_namespace,
                    name=request.name,
                    offset=request.offset,
                    limit=request.limit,
                    rate_per_s=request.rate_per_second,
                    api_key=api_key,
                    time_limit=request.expected_seconds + 30.0,
                )
            except NodeError as error:
                if error.status is not None and 400 <= error.status < 500 and error.status != 429:
                    # Refused for good (e.g. 409 upstream_key_missing): the rollover is done
                    # without the rest of the warm-up.
                    step.lifecycle = warmed(
                        step.lifecycle, record.model_version, None, settings=settings, now=now
                    ).lifecycle
                    step.completed = True
                    step.events.append(
                        EventSpec(
                            "Warning",
                            "WarmupFailed",
                            f"{record.model_version}: warm-up of {record.to_namespace} "
                            f"stopped: {error}",
                        )
                    )
                    continue
                step.lifecycle = _with_message(
                    step.lifecycle, record, f"warm-up batch failed (retrying): {error}"
                )
                step.retry("WarmupBatchFailed")
                continue
            step.apply(
                warmed(
                    step.lifecycle,
                    record.model_version,
                    result,
                    settings=settings,
                    now=self._clock(),
                )
            )
            step.soon(0.05)

    async def _purge(
        self, step: LifecycleStep, cache: SemanticCache, urls: Sequence[str], api_key: str | None
    ) -> None:
        """Purge retired namespaces whose retention is over. Never one that any node reports
        active (checked first), and every node is asked with `retired_only` (it refuses with
        409 if it serves the namespace itself)."""
        now = self._clock()
        due = due_purges(step.lifecycle, now)
        if due and not urls:
            step.retry("NoNodeEndpoint")
            return
        reports = await self._reports(urls, api_key) if due else {}
        for entry in due:
            removed, vectors, answered = 0, 0, 0
            blocked = sorted(
                url
                for url, report in reports.items()
                if entry.cache_namespace in _active_map(report).values()
            )
            errors: list[str] = []
            for url in [] if blocked else urls:  # shared tiers: the first removes it
                try:
                    answer = await self._nodes.invalidate(
                        url, entry.cache_namespace, api_key=api_key, retired_only=True
                    )
                except NodeError as error:
                    if error.status == 409:
                        blocked.append(url)
                    else:
                        errors.append(str(error))
                    continue
                answered += 1
                store, vector_count = _removed_entries(answer, entry.cache_namespace)
                removed = max(removed, store)
                vectors += vector_count
            reference = object_reference(cache.to_api())
            if blocked:
                await self._events.post_error_once(
                    reference,
                    "PurgeBlocked",
                    f"cache namespace {entry.cache_namespace} is still active on "
                    f"{', '.join(blocked)}: not purged (retrying)",
                )
                step.retry("PurgeBlocked")
                continue
            if not answered:
                await self._events.post_error_once(
                    reference,
                    "PurgeRetrying",
                    f"no cache node answered the purge of {entry.cache_namespace}: "
                    f"{errors[-1] if errors else 'no endpoint'}",
                )
                step.retry("PurgeUnanswered")
                continue
            reason = "flush" if entry.purge_after <= entry.retired_at else "retention"
            self._metrics.purged_entries.labels(reason).inc(removed)
            step.lifecycle = purged(step.lifecycle, entry.cache_namespace)
            step.events.append(
                EventSpec(
                    "Normal",
                    "Purged",
                    f"purged retired cache namespace {entry.cache_namespace} of "
                    f"{entry.model_version} ({removed} entries, {vectors} vectors; {reason})",
                )
            )
        upcoming = [e.purge_after for e in step.lifecycle.retained if e.purge_after > now]
        if upcoming:
            step.soon((min(upcoming) - now).total_seconds() + 0.2)

    async def _migrate_embedding(
        self,
        step: LifecycleStep,
        cache: SemanticCache,
        urls: Sequence[str],
        api_key: str | None,
        reports: Reports,
    ) -> None:
        embedding = step.lifecycle.embedding
        migration = embedding.migration if embedding else None
        if migration is None:
            return
        if not urls:
            step.retry("NoNodeEndpoint")
            return
        if migration.phase == "Preparing":
            answers = await self._reports(urls, api_key)
            reports.update(answers)
            ready = [
                url
                for url, report in answers.items()
                if (_embedding_part(report, "next") or {}).get("model_id") == migration.to_model
            ]
            if len(ready) < len(urls):
                loading = [
                    url
                    for url, report in answers.items()
                    if (report.get("embedding") or {}).get("loading") == migration.to_model
                ]
                message = (
                    f"waiting for every node to load {migration.to_model} as the next embedding "
                    f"model (live, from the node ConfigMap; no restart): {len(ready)}/{len(urls)} "
                    f"do" + (f", {len(loading)} loading" if loading else "")
                )
                step.update_migration(message=message)
                step.retry("EmbeddingNotPrepared")
                return
            first = answers[ready[0]]
            to_space = str((_embedding_part(first, "next") or {}).get("space") or "")
            from_space = (_embedding_part(first, "active") or {}).get("space")
            step.apply(
                prepared(
                    step.lifecycle,
                    from_space=str(from_space) if from_space else None,
                    to_space=to_space,
                    now=self._clock(),
                )
            )
            step.soon(0.05)
            return
        if migration.phase == "Reembedding":
            request = reembed_request(step.lifecycle, cache.spec.reembedding)
            if request is None:
                return
            began_wall, began = self._clock(), self._monotonic()
            targets = urls if cache.spec.semantic_tier.embedded is not None else urls[:1]
            result: dict[str, Any] | None = None
            try:
                for url in targets:  # Milvus Lite per node: each node re-embeds its own copy
                    answer = await self._nodes.reembed(
                        url,
                        namespace=request.namespace,
                        cursor=request.cursor,
                        limit=request.limit,
                        api_key=api_key,
                        time_limit=request.expected_seconds + 60.0,
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
            processed = int(result.get("processed", 0) or 0)
            self._metrics.reembedded_entries.inc(processed)
            step.apply(
                reembedded(step.lifecycle, request, result, began=began_wall, now=self._clock())
            )
            elapsed = self._monotonic() - began
            step.soon(max(0.05, request.limit / request.rate_per_second - elapsed))
            return
        # Switching
        space = migration.to_space or ""
        ok, message = await self._switch_embedding(space, urls, api_key, reports)
        if not ok:
            step.update_migration(message=message)
            step.retry("EmbeddingSwitchNotVerified")
            return
        step.apply(embedding_switched(step.lifecycle, nodes=len(urls), now=self._clock()))

    async def _switch_embedding(
        self, space: str, urls: Sequence[str], api_key: str | None, reports: Reports
    ) -> tuple[bool, str]:
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
                if (_embedding_part(answers.get(url, {}), "active") or {}).get("space") != space
            ]

        return await self._coherent_switch(
            urls,
            api_key,
            reports,
            tell=tell,
            late_nodes=late_nodes,
            refused="no node accepted the embedding switch",
            stuck=lambda late: f"{len(late)}/{len(urls)} node(s) not searching {space} yet",
        )

    async def _converge(
        self, step: LifecycleStep, urls: Sequence[str], api_key: str | None, reports: Reports
    ) -> None:
        """Nodes that serve a ModelVersion from another namespace than the fleet's are switched
        back (a switch persisted in Redis by an earlier state, a node that missed one)."""
        if not urls:
            return
        missing = [url for url in urls if url not in reports]
        if missing:
            reports.update(await self._reports(missing, api_key))
        active = {url: _active_map(report) for url, report in reports.items()}
        for url, name, namespace in namespace_mismatches(step.lifecycle, active):
            try:
                await self._nodes.switch_namespace(url, name, namespace, api_key=api_key)
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
                part = _embedding_part(report, "active") or {}
                if part.get("model_id") == embedding.model and part.get("space"):
                    step.lifecycle = replace(
                        step.lifecycle,
                        embedding=embedding.model_copy(update={"space": str(part["space"])}),
                    )
                    break

    # --- reporting ---------------------------------------------------------------------------

    async def _post(self, events: Sequence[EventSpec], body: Mapping[str, Any]) -> None:
        reference = object_reference(body)
        for event in events:
            await self._events.post(reference, event)

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
