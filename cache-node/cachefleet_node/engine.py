"""The cache engine: lookups across the tiers, write-back, invalidation.

Order of a lookup: L1 exact → L2 exact (Redis or the local store) → embed → L1 semantic →
L2 semantic (Milvus). Every call outside the process runs under a deadline and a circuit
breaker; a failing tier is skipped and named in the outcome, never raised (fail-open).
The vector computed for a lookup is reused for the write-back, so a miss embeds once.
"""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import structlog

from cachefleet_node.config import NamespaceConfig, NodeConfig
from cachefleet_node.core.entry import CacheEntry
from cachefleet_node.core.judging import CandidateJudge, Judgement
from cachefleet_node.core.planning import LookupPlan, Outcome
from cachefleet_node.core.routing import NamespaceRouter
from cachefleet_node.core.savings import saved_dollars
from cachefleet_node.core.scope import InvalidationScope
from cachefleet_node.embedders.base import (
    EmbedBudget,
    Embedder,
    EmbedderBusy,
    EmbeddingTimeout,
    Vectors,
    text_window,
)
from cachefleet_node.memory import MemoryBudget
from cachefleet_node.metrics import NodeMetrics
from cachefleet_node.resilience import Breaker, TierGuard, TierResult
from cachefleet_node.spaces import VectorSpace, VectorSpaces
from cachefleet_node.stats import HitCounter, NamespaceStats
from cachefleet_node.thresholds import Thresholds
from cachefleet_node.tiers.entry_store import EntryStore
from cachefleet_node.tiers.l1_exact import ByteBoundedLRU
from cachefleet_node.tiers.l1_semantic import SemanticIndex, VectorMeta
from cachefleet_node.tiers.milvus_store import MilvusBusy, MilvusVectorStore, VectorRow
from cachefleet_node.tiers.vector_tier import VectorHit, VectorQuery
from cachefleet_node.tiers.write_batch import WriteBatcher, WriteQueueFull

__all__ = ["SEMANTIC_CANDIDATES", "CacheEngine"]

log = structlog.get_logger(__name__)
Vector = npt.NDArray[np.float32]

SEMANTIC_CANDIDATES = 4
#: An in-process (L1) semantic candidate at least this similar is served without asking the
#: shared tier. L1 holds a subset of the entries (a restarted node, evictions, other nodes'
#: writes), so a less similar L1 winner may not be the best match: the shared tier is asked
#: too and the better of the two wins.
L1_SETTLES_SIMILARITY = 0.95
MAX_PENDING_WRITES = 2048
MAX_PENDING_DUAL_WRITES = 1024  # copies into a migration's other space (own budget)
#: The veto of a candidate whose text differs from the request's past the embedder's window.
BEYOND_WINDOW = "window"


@dataclass(frozen=True, slots=True)
class _Winner:
    """The best candidate of one semantic tier so far."""

    judgement: Judgement
    entry: CacheEntry
    hit: VectorHit


class CacheEngine:
    """Owns the tiers of one node: lookups, write-backs, invalidation, embedding spaces."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        embedder: Embedder,
        store: EntryStore,
        vectors: MilvusVectorStore | None,
        metrics: NodeMetrics,
        memory_budget: MemoryBudget,
        next_embedder: Embedder | None = None,
        next_vectors: MilvusVectorStore | None = None,
    ) -> None:
        self.config = config
        deadlines = config.deadlines

        def guard(tier: str) -> TierGuard:
            return TierGuard(
                tier, Breaker(deadlines.breaker_failures, deadlines.breaker_cooldown_s), metrics
            )

        self.spaces = VectorSpaces(
            VectorSpace(embedder, vectors),
            None if next_embedder is None else VectorSpace(next_embedder, next_vectors),
            guard,
        )
        self.store = store
        self.metrics = metrics
        self.router = NamespaceRouter(config.namespaces)
        self.stats = NamespaceStats()
        self.hits = HitCounter()
        self.thresholds = Thresholds(metrics)
        self.memory_budget = memory_budget
        self.l1_exact = ByteBoundedLRU(self.memory_budget)
        self.l1_semantic = self._new_l1_semantic(embedder.dim)
        self._store_guard = guard(store.name)
        self._store_deadline = deadlines.redis_ms / 1000
        self._milvus_deadline = deadlines.milvus_ms / 1000
        self._embed_deadline = deadlines.embedder_ms / 1000  # service, per text
        self._embed_queue = deadlines.embedder_queue_ms / 1000
        self._judge_window = text_window(config.embedding.max_tokens)  # what the model reads
        self._write_deadline = deadlines.write_ms / 1000
        self._pending: set[asyncio.Task[Any]] = set()
        self._dual_pending: set[asyncio.Task[Any]] = set()
        self._evictions_seen: dict[str, int] = {}
        # per shared-tier write queue: the retried and abandoned items already counted
        self._write_retries_seen: weakref.WeakKeyDictionary[Any, dict[str, int]] = (
            weakref.WeakKeyDictionary()
        )
        metrics.on_scrape(self._update_gauges)  # tiers change on reads and evictions too
        self._judges: dict[str, CandidateJudge] = {}

    @property
    def embedder(self) -> Embedder:
        """The embedder of the space that serves lookups."""
        return self.spaces.active.embedder

    @property
    def vectors(self) -> MilvusVectorStore | None:
        """The Milvus collection of the space that serves lookups."""
        return self.spaces.active.vectors

    def _new_l1_semantic(self, dim: int) -> SemanticIndex:
        l1 = self.config.l1
        return SemanticIndex(
            dim, l1.semantic_max_entries, self.memory_budget, l1.hnsw_min_partition
        )

    @property
    def store_guard(self) -> TierGuard:
        """Deadline and breaker of the shared entry store (Redis or local)."""
        return self._store_guard

    @property
    def store_breaker_open(self) -> bool:
        """Whether the shared entry store is currently skipped."""
        return self._store_guard.breaker.is_open

    @property
    def embed_breaker_open(self) -> bool:
        """Whether the embedder is currently skipped (down or hung, never merely busy)."""
        return self.spaces.embed_guard.breaker.is_open

    # ----------------------------------------------------------------------------- lookups

    async def lookup(self, plan: LookupPlan) -> Outcome:
        """Find a cached answer for the plan, or say why there is none."""
        if not plan.decision.cacheable:
            return Outcome("bypass", reasons=[plan.decision.reason or "not-cacheable"])
        if not plan.controls.read:
            return Outcome("bypass", reasons=["no-cache"])
        now = time.time()
        outcome = Outcome("miss")

        entry = self.l1_exact.get(plan.keys.exact, now)
        if entry is not None and self._servable(entry, plan, now):
            return self._hit(outcome, "hit-exact", "l1", entry, plan)

        fetched = await self._store_guard.call(
            "get",
            self.store.get(plan.namespace, plan.tenant, plan.keys.exact),
            self._store_deadline,
        )
        if fetched.error:
            outcome.reasons.append(fetched.error)
        elif fetched.value is not None and self._servable(fetched.value, plan, now):
            self.l1_exact.put(fetched.value)
            return self._hit(outcome, "hit-exact", "l2", fetched.value, plan)

        if plan.semantic_enabled:
            await self._semantic_lookup(plan, outcome, now)
        if outcome.hit:
            return outcome
        if outcome.reasons:
            outcome.result = "bypass"
        return outcome

    async def landed(self, plan: LookupPlan) -> Outcome | None:
        """The plan's exact entry once another node has stored it in the shared store (a hit
        from `l2`); None while it has not, or when the store fails."""
        now = time.time()
        fetched = await self._store_guard.call(
            "get",
            self.store.get(plan.namespace, plan.tenant, plan.keys.exact),
            self._store_deadline,
        )
        if fetched.value is None or not self._servable(fetched.value, plan, now):
            return None
        self.l1_exact.put(fetched.value)
        return self._hit(Outcome("miss"), "hit-exact", "l2", fetched.value, plan)

    def _servable(self, entry: CacheEntry, plan: LookupPlan, now: float) -> bool:
        return (
            entry.namespace == plan.namespace
            and entry.tenant == plan.tenant
            and entry.is_fresh(now, plan.controls.max_age_s)
            and len(entry.answers) >= plan.decision.sample_size
            and entry.serves_logprobs(plan.logprobs)
        )

    def _hit(
        self,
        outcome: Outcome,
        result: str,
        tier: str,
        entry: CacheEntry,
        plan: LookupPlan,
        similarity: float | None = None,
    ) -> Outcome:
        outcome.result = result
        outcome.tier = tier
        outcome.entry = entry
        outcome.similarity = similarity
        outcome.matched_prompt = entry.prompt
        answers = entry.answers
        outcome.answer = answers[0] if len(answers) == 1 else random.choice(answers)
        return outcome

    async def embed_one(
        self,
        text: str,
        embedder: Embedder | None = None,
        *,
        background: bool = False,
        tenant: str | None = None,
    ) -> tuple[Vector | None, str | None]:
        """Embed one text under the embedder's deadlines; (vector, None) or (None, reason).

        The service deadline is `deadlines.embedder_ms` per text of the batch that carries
        it; the queue budget is `deadlines.embedder_queue_ms` on the request path and
        `write_ms` for `background` work (write-backs). The call takes `tenant`'s share of
        the embedder's queue (tenants are served in turn).
        """
        queue_s = self._write_deadline if background else self._embed_queue
        guard = self.spaces.embed_guard
        result = await self._embed(guard, embedder or self.embedder, [text], queue_s, tenant)
        if result.value is None:
            return None, result.error
        return result.value[0], None

    async def _embed(
        self,
        guard: TierGuard,
        embedder: Embedder,
        texts: list[str],
        queue_s: float,
        tenant: str | None = None,
    ) -> TierResult[Vectors]:
        """Embed through `guard`: queue time and service time measured apart; a shed call
        (`<tier>-busy`) is counted by reason but does not feed the breaker, a hung embedder
        does."""
        budget = EmbedBudget(service_s=self._embed_deadline, queue_s=queue_s, owner=tenant)
        result = await guard.call(
            "embed",
            embedder.embed(texts, budget),
            None,  # the embedder enforces the budget: queue and service deadlines apart
            timeouts=(EmbeddingTimeout,),
            busy=(EmbedderBusy,),
        )
        if budget.queued_s is not None:
            self.metrics.embed_queue.labels(guard.tier).observe(budget.queued_s)
        if budget.served_s is not None:
            self.metrics.embed_service.labels(guard.tier).observe(budget.served_s)
        if result.error == f"{guard.tier}-busy":
            self.metrics.embed_shed.labels(guard.tier, budget.shed or "queue").inc()
        return result

    async def _semantic_lookup(self, plan: LookupPlan, outcome: Outcome, now: float) -> None:
        """L1 semantic, then (unless L1 settles it) the shared tier; the better winner is
        served. A failing shared tier leaves the L1 winner standing."""
        semantic = plan.keys.semantic
        assert semantic is not None
        # One space for the whole lookup, even if a switch lands while it runs.
        space, l1_semantic = self.spaces.active, self.l1_semantic
        vector, error = await self.embed_one(semantic.text, space.embedder, tenant=plan.tenant)
        if vector is None:
            outcome.reasons.append(error or "embedder-error")
            return
        outcome.vector = vector
        outcome.vector_space = space.space
        threshold = self.thresholds.for_request(plan, space.model_id)
        query = VectorQuery(
            plan.namespace,
            plan.tenant,
            semantic.partition,
            vector,
            SEMANTIC_CANDIDATES,
            now,
            plan.controls.max_age_s,
        )

        started = time.perf_counter()
        candidates = await l1_semantic.nearest(query)
        self.metrics.tier_latency.labels("l1_ann", "search").observe(time.perf_counter() - started)
        best, best_rejected = await self._best_candidate(plan, outcome, threshold, candidates, now)
        vectors = space.vectors
        shared = vectors is not None and vectors.connected
        if best is not None and (best.judgement.similarity >= L1_SETTLES_SIMILARITY or not shared):
            self._semantic_hit(plan, outcome, best, tier="l1")
            return
        if vectors is None or not vectors.connected:
            if vectors is not None:
                outcome.reasons.append("milvus-unavailable")
            self._rejected_similarity(best_rejected)
            return
        found = await self.spaces.milvus_guard.call(
            "search", vectors.nearest(query), self._milvus_deadline, busy=(MilvusBusy,)
        )
        if found.error:
            outcome.reasons.append(found.error)
            if best is not None:  # the shared tier failed: the L1 winner stands
                self._semantic_hit(plan, outcome, best, tier="l1")
                return
            self._rejected_similarity(best_rejected)
            return
        best_l2, rejected_l2 = await self._best_candidate(
            plan, outcome, threshold, found.value or [], now
        )
        best_rejected = max(best_rejected, rejected_l2)
        if best_l2 is not None and (best is None or best_l2.judgement.score > best.judgement.score):
            if best_l2.hit.vector is not None:
                l1_semantic.add(
                    semantic.partition, best_l2.hit.vector, VectorMeta.of(best_l2.entry)
                )
            self._semantic_hit(plan, outcome, best_l2, tier="l2")
            return
        if best is not None:
            self._semantic_hit(plan, outcome, best, tier="l1")
            return
        self._rejected_similarity(best_rejected)

    async def _best_candidate(
        self,
        plan: LookupPlan,
        outcome: Outcome,
        threshold: float,
        candidates: Sequence[VectorHit],
        now: float,
    ) -> tuple[_Winner | None, float]:
        """The best servable candidate of one semantic tier, and the highest similarity of
        those refused (0 if none).

        Candidates come by similarity; the best *score* wins (the lexical term and the
        verifier move it by at most `judge.bonus`), so the loop goes on while a later
        candidate could still beat the best one. A tier that keeps prompts is judged before
        its entry is fetched; otherwise the prompt is read from the entry.
        """
        semantic = plan.keys.semantic
        assert semantic is not None
        judge = self._judge(plan.ns)
        best: _Winner | None = None
        best_rejected = 0.0
        for hit in candidates:
            if (hit.namespace, hit.tenant, hit.partition) != (
                plan.namespace,
                plan.tenant,
                semantic.partition,
            ):
                continue  # impossible by partitioning; checked anyway
            if hit.similarity + judge.bonus < threshold:
                best_rejected = max(best_rejected, hit.similarity)
                break
            if best is not None and hit.similarity + judge.bonus <= best.judgement.score:
                break
            if hit.entry_id in outcome.judged:
                continue  # judged in L1 already (refused, or it is the L1 winner)
            judgement = None
            if hit.prompt is not None:
                judgement = self._judged(outcome, judge, semantic.text, hit.prompt, hit)
                if judgement.score < threshold or not judgement.accepted:
                    best_rejected = max(best_rejected, hit.similarity)
                    continue
            entry = await self._fetch_entry(plan, hit.entry_id, outcome, now)
            if entry is None or entry.partition != semantic.partition:
                continue
            if judgement is None:
                judgement = self._judged(outcome, judge, semantic.text, entry.prompt or "", hit)
                if judgement.score < threshold or not judgement.accepted:
                    best_rejected = max(best_rejected, hit.similarity)
                    continue
            if best is None or judgement.score > best.judgement.score:
                best = _Winner(judgement, entry, hit)
        return best, best_rejected

    def _semantic_hit(
        self, plan: LookupPlan, outcome: Outcome, winner: _Winner, *, tier: str
    ) -> None:
        """Serve the winning candidate (or, in shadow mode, only record it)."""
        judgement = winner.judgement
        if plan.ns.shadow:
            model_id = self.spaces.active.model_id
            self.thresholds.shadow(plan, outcome, winner.entry, judgement.similarity, model_id)
            return
        self._served(judgement)
        outcome.judgement = judgement
        self._hit(outcome, "hit-semantic", tier, winner.entry, plan, judgement.similarity)

    def _judge(self, ns: NamespaceConfig) -> CandidateJudge:
        judge = self._judges.get(ns.name)
        if judge is None or judge.config is not ns:
            judge = self._judges[ns.name] = CandidateJudge(ns)
        return judge

    def _judged(
        self, outcome: Outcome, judge: CandidateJudge, query: str, prompt: str, hit: VectorHit
    ) -> Judgement:
        """Judge a candidate that can reach the threshold (once per entry and request: the
        candidate loop skips what is judged already); count and remember a veto.

        The judge reads what the embedding model reads (`text_window`: a huge prompt must not
        stall the event loop in the guards); past that window the texts must be equal, or the
        candidate is refused (`window`): the vector cannot tell such texts apart."""
        started = time.perf_counter()
        window = self._judge_window
        if query[window:] != prompt[window:]:
            judgement = Judgement(hit.similarity, hit.similarity, (), None, BEYOND_WINDOW)
        else:
            judgement = judge.judge(query[:window], prompt[:window], hit.similarity)
        self.metrics.judge_latency.observe(time.perf_counter() - started)
        outcome.judged[hit.entry_id] = judgement
        if judgement.verifier is not None:
            self.metrics.verifier_score.labels("refused" if judgement.veto else "accepted").observe(
                judgement.verifier
            )
        if judgement.veto is not None:
            self.metrics.guard_rejections.labels(judgement.veto).inc()
            outcome.vetoes.append(judgement.veto)
        return judgement

    async def _fetch_entry(
        self, plan: LookupPlan, entry_id: str, outcome: Outcome, now: float
    ) -> CacheEntry | None:
        entry = self.l1_exact.get(entry_id, now)
        if entry is None:
            fetched = await self._store_guard.call(
                "get", self.store.get(plan.namespace, plan.tenant, entry_id), self._store_deadline
            )
            if fetched.error:
                outcome.reasons.append(fetched.error)
                return None
            entry = fetched.value
            if entry is not None:
                self.l1_exact.put(entry)
        if entry is None or not self._servable(entry, plan, now):
            return None
        return entry

    def _served(self, judgement: Judgement) -> None:
        self.metrics.similarity.labels("served").observe(judgement.similarity)

    def _rejected_similarity(self, similarity: float) -> None:
        if similarity > 0:
            self.metrics.similarity.labels("rejected").observe(similarity)

    # ------------------------------------------------------------------------- accounting

    def record(self, plan_namespace: str, model: str, outcome: Outcome) -> None:
        """Count a finished request in stats and metrics (tokens/dollars saved on hits)."""
        tier = outcome.tier or "none"
        self.metrics.requests.labels(plan_namespace, outcome.result, tier).inc()
        for reason in outcome.reasons:
            self.metrics.bypasses.labels(reason).inc()
        prompt_saved = completion_saved = 0
        cost = 0.0
        if outcome.hit and outcome.entry is not None:
            entry = outcome.entry
            self.hits.record(entry.namespace, entry.tenant, entry.entry_id, entry.expires_at)
            prompt_saved = outcome.entry.prompt_tokens
            completion_saved = outcome.entry.completion_tokens
            cost = saved_dollars(model, prompt_saved, completion_saved, self.config.prices)
            self.metrics.tokens_saved.labels(plan_namespace, "prompt").inc(prompt_saved)
            self.metrics.tokens_saved.labels(plan_namespace, "completion").inc(completion_saved)
            self.metrics.cost_saved.labels(plan_namespace).inc(cost)
        self.stats.record(
            plan_namespace,
            outcome.result,
            prompt_tokens_saved=prompt_saved,
            completion_tokens_saved=completion_saved,
            cost_saved=cost,
        )

    # ---------------------------------------------------------------------------- writes

    def remember_later(
        self,
        plan: LookupPlan,
        completion: dict[str, Any],
        vector: Vector | None,
        vector_space: str | None = None,
    ) -> asyncio.Task[Any] | None:
        """Schedule a write-back without delaying the response (the task doing it); drop it
        under overload (None)."""
        if len(self._pending) >= MAX_PENDING_WRITES:
            self.metrics.writes.labels("dropped").inc()
            return None
        return self._spawn(self.remember(plan, completion, vector, vector_space), self._pending)

    @staticmethod
    def _spawn(
        work: Coroutine[Any, Any, Any], pending: set[asyncio.Task[Any]]
    ) -> asyncio.Task[Any]:
        task = asyncio.create_task(work)
        pending.add(task)
        task.add_done_callback(pending.discard)
        return task

    async def drain(self) -> None:
        """Wait for scheduled writes (tests, shutdown)."""
        while self._pending or self._dual_pending:
            await asyncio.gather(
                *list(self._pending), *list(self._dual_pending), return_exceptions=True
            )

    async def remember(
        self,
        plan: LookupPlan,
        completion: dict[str, Any],
        vector: Vector | None,
        vector_space: str | None = None,
    ) -> str:
        """Store an upstream answer in every tier; return the outcome label.

        `vector` (the lookup's embedding of the fuzzy text, in `vector_space`) is reused when
        it belongs to the space that serves lookups now, else the text is embedded again.
        """
        if not plan.decision.cacheable or not plan.controls.write:
            return self._write_outcome("skipped-policy")
        answer = orjson.dumps(completion)
        if plan.ns.shadow:
            await self.thresholds.verify(plan, answer, self._embed_for_check)
        reason = plan.unstorable(completion, len(answer))
        if reason is not None:
            return self._write_outcome(f"skipped-{reason}")
        now = time.time()
        entry = plan.new_entry(completion, answer, now)
        semantic = plan.keys.semantic if plan.ns.semantic else None
        if plan.decision.sample_size > 1:
            previous = self.l1_exact.get(entry.entry_id, now)
            if previous is None:
                fetched = await self._store_guard.call(
                    "get",
                    self.store.get(plan.namespace, plan.tenant, entry.entry_id),
                    self._write_deadline,
                )
                previous = fetched.value
            if previous is not None and previous.is_fresh(now):
                entry = previous.with_answer(
                    answer, plan.decision.sample_size, now, entry.expires_at, entry.logprobs
                )

        self.l1_exact.put(entry)
        if self._store_guard.breaker.is_open and self.store.put_later(entry):
            stored_label = "stored-later"  # the store is down: written when it answers again
        else:
            stored = await self._store_guard.call(
                "put", self.store.put(entry), self._write_deadline, busy=(WriteQueueFull,)
            )
            stored_label = "stored" if stored.ok else "stored-l1-only"
        if semantic is not None:
            space, l1_semantic = self.spaces.active, self.l1_semantic
            if vector is not None and vector_space not in (None, space.space):
                vector = None  # embedded before an embedding switch: not of this space
            if vector is None:
                vector, _ = await self.embed_one(
                    semantic.text, space.embedder, background=True, tenant=entry.tenant
                )
            if vector is not None:
                l1_semantic.add(semantic.partition, vector, VectorMeta.of(entry))
                if space.vectors is not None and space.vectors.connected:
                    await self.spaces.milvus_guard.call(
                        "insert",
                        space.vectors.insert([VectorRow(entry, vector)]),
                        self._write_deadline,
                        busy=(WriteQueueFull,),
                    )
            target = self.spaces.target
            if target is not None and target.space != space.space:
                # A slow second space must never hold up (or crowd out) the primary writes.
                if len(self._dual_pending) < MAX_PENDING_DUAL_WRITES:
                    self._spawn(self._dual_write(target, entry, semantic.text), self._dual_pending)
                else:
                    self.metrics.writes.labels("dual-dropped").inc()
        return self._write_outcome(stored_label)

    async def _dual_write(self, target: VectorSpace, entry: CacheEntry, text: str) -> None:
        """Copy a write into the migration's other space (background, fail-open)."""
        result = await self._embed(
            self.spaces.target_embed_guard,
            target.embedder,
            [text],
            self._write_deadline,
            entry.tenant,
        )
        if result.value is None or target.vectors is None or not target.vectors.connected:
            return
        await self.spaces.target_milvus_guard.call(
            "insert",
            target.vectors.insert([VectorRow(entry, result.value[0])]),
            self._write_deadline,
            busy=(WriteQueueFull,),
        )

    async def _embed_for_check(self, texts: list[str]) -> Vectors | None:
        """Embed answers to compare them (shadow-mode verification), in the background."""
        guard, embedder = self.spaces.embed_guard, self.embedder
        return (await self._embed(guard, embedder, texts, self._write_deadline)).value

    def _write_outcome(self, outcome: str) -> str:
        self.metrics.writes.labels(outcome).inc()
        return outcome

    def _update_gauges(self) -> None:
        """Set the in-process tiers' gauges and eviction counts (run at each scrape)."""
        self.metrics.entries.labels("l1_exact").set(len(self.l1_exact))
        self.metrics.entries.labels("l1_semantic").set(len(self.l1_semantic))
        for tier, used in self.memory_budget.bytes_by_tier().items():
            self.metrics.l1_bytes.labels(tier).set(used)
        self.metrics.l1_budget_bytes.set(self.memory_budget.max_bytes)
        for tier, count in self.memory_budget.evictions_by_tier().items():
            delta = count - self._evictions_seen.get(tier, 0)
            if delta > 0:
                self.metrics.evictions.labels(tier).inc(delta)
                self._evictions_seen[tier] = count
        self._count_write_retries()

    def _count_write_retries(self) -> None:
        """Add what the shared tiers' write queues sent again or gave up since the last
        scrape (each queue counts from its start: a new space's queue starts at zero)."""
        queues = [getattr(self.store, "writes", None)]
        queues += [
            s.vectors.writes for s in (self.spaces.active, self.spaces.target) if s and s.vectors
        ]
        for queue in queues:
            if not isinstance(queue, WriteBatcher):
                continue
            seen = self._write_retries_seen.setdefault(queue, {})
            for outcome, count in (("retried", queue.retried), ("abandoned", queue.abandoned)):
                if count > seen.get(outcome, 0):
                    self.metrics.shared_write_retries.labels(queue.tier, outcome).inc(
                        count - seen.get(outcome, 0)
                    )
                    seen[outcome] = count

    # ---------------------------------------------------------------------- invalidation

    def drop_l1(self, scope: InvalidationScope) -> int:
        """Remove the scope's entries from this node's in-process tiers."""
        removed = self.l1_exact.remove_where(
            lambda e: scope.matches(e.namespace, e.tenant, e.tags, e.created_at, e.entry_id)
        )
        self.l1_semantic.remove_where(
            lambda m: scope.matches(m.namespace, m.tenant, m.tags, m.created_at, m.entry_id)
        )
        return removed

    def clear_l1(self) -> None:
        """Empty the in-process tiers."""
        self.l1_exact.clear()
        self.l1_semantic.clear()

    async def invalidate(
        self, scope: InvalidationScope, *, dry_run: bool = False
    ) -> dict[str, int]:
        """Remove (or count) the scope's entries in every tier; return counts per tier.

        Shared tiers are purged once; other nodes drop their L1 via the coherence bus.
        Raises `ConnectionError` if a shared tier cannot be reached: a purge must not
        silently half-succeed.
        """
        counts = {"l1": 0, "store": 0, "vectors": 0}
        if dry_run:
            counts["l1"] = self.l1_exact.count_where(
                lambda e: scope.matches(e.namespace, e.tenant, e.tags, e.created_at, e.entry_id)
            )
        else:
            counts["l1"] = self.drop_l1(scope)
        counts["store"] = await self.store.delete_scope(scope, dry_run=dry_run)
        for name, space in (("vectors", self.spaces.active), ("vectors_next", self.spaces.target)):
            if space is None or space.vectors is None:
                continue
            if not space.vectors.connected:
                raise ConnectionError(f"milvus collection {space.vectors.collection} unreachable")
            counts[name] = await space.vectors.delete_scope(scope, dry_run=dry_run)
        if not dry_run:
            for tier, count in counts.items():
                self.metrics.invalidated.labels(tier).inc(count)
        return counts

    # ------------------------------------------------------------------------- hit counts

    async def flush_hits(self) -> None:
        """Write pending per-entry hit counts to the store (kept for next time on failure)."""
        pending = self.hits.take()
        failed = {}
        for namespace, item in pending.items():
            try:
                await self.store.add_hits(namespace, item.counts, item.keep_until)
            except Exception:
                failed[namespace] = item
        if failed:
            self.hits.restore(failed)
            raise ConnectionError("hit counts could not be written; kept for the next flush")

    # ----------------------------------------------------------------- embedding spaces

    async def release_space(self, space: VectorSpace) -> None:
        """Close a space that no longer serves nor receives writes (after the copies into it
        that were already under way)."""
        pending = list(self._dual_pending)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if space.vectors is not None:
            await space.vectors.close()
        await space.embedder.aclose()

    def activate_space(self, space: str) -> bool:
        """Serve lookups from `space`; return whether anything changed.

        The previous space becomes the dual-write target, the L1 semantic index (vectors of
        the previous space) is emptied and calibration restarts (similarities of another
        model). Raises `UnknownSpaceError` if this node has no embedder for `space`.
        """
        if not self.spaces.activate(space):
            return False
        self.l1_semantic.close()
        self.l1_semantic = self._new_l1_semantic(self.embedder.dim)
        self.thresholds.reset()
        self.metrics.embedding_switches.inc()
        return True

    async def close(self) -> None:
        """Finish pending writes, flush hit counts and release tiers."""
        await self.drain()
        try:
            await self.flush_hits()
        except Exception:
            log.warning("hit_counts_lost", reason="store unreachable at shutdown")
        self.l1_semantic.close()  # cancels graph builds
        await self.store.close()
        for space in self.spaces.all():
            if space.vectors is not None:
                await space.vectors.close()
            await space.embedder.aclose()
