"""The cache engine: lookups across the tiers, write-back, invalidation, namespace switches.

Order of a lookup: L1 exact → L2 exact (Redis or the local store) → embed → L1 semantic →
L2 semantic (Milvus). Every call outside the process runs under a deadline and a circuit
breaker; a failing tier is skipped and named in the outcome, never raised (fail-open).
The vector computed for a lookup is reused for the write-back, so a miss embeds once.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import redis.asyncio as aioredis
import structlog

from cachefleet_node import keyspace
from cachefleet_node.config import NamespaceConfig, NodeConfig
from cachefleet_node.core.calibration import OnlineCalibrator
from cachefleet_node.core.controls import CacheControls
from cachefleet_node.core.entry import CacheEntry, completion_usage
from cachefleet_node.core.judging import CandidateJudge, Judgement
from cachefleet_node.core.keys import CacheKeys, canonical_request
from cachefleet_node.core.policy import RequestDecision, response_cacheable
from cachefleet_node.core.routing import NamespaceRouter
from cachefleet_node.core.savings import saved_dollars
from cachefleet_node.core.scope import InvalidationScope
from cachefleet_node.embedders.base import (
    EmbedBudget,
    Embedder,
    EmbedderBusy,
    EmbeddingTimeout,
    Vectors,
)
from cachefleet_node.metrics import NodeMetrics
from cachefleet_node.resilience import Breaker, TierGuard, TierResult
from cachefleet_node.stats import HitCounter, NamespaceStats
from cachefleet_node.tiers.entry_store import EntryStore
from cachefleet_node.tiers.l1_exact import ByteBoundedLRU
from cachefleet_node.tiers.l1_semantic import SemanticIndex, VectorMeta
from cachefleet_node.tiers.milvus_store import MilvusVectorStore, VectorRow

__all__ = ["CacheEngine", "LookupPlan", "Outcome", "UnknownSpaceError", "VectorSpace"]

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
MAX_PENDING_SHADOWS = 4096


@dataclass(frozen=True, slots=True)
class LookupPlan:
    """Everything the engine needs about one request."""

    ns: NamespaceConfig
    namespace: str  # active cache namespace
    tenant: str
    model: str
    keys: CacheKeys
    controls: CacheControls
    decision: RequestDecision
    body: Mapping[str, Any] | None = None  # the request body (its canonical form is stored)

    @property
    def threshold(self) -> float:
        """Similarity a semantic candidate must reach (without an embedding-model override)."""
        if self.controls.threshold is not None:
            return self.controls.threshold
        return self.ns.similarity_threshold

    @property
    def semantic_enabled(self) -> bool:
        """Whether semantic tiers apply to this request."""
        return self.ns.semantic and self.keys.semantic is not None


@dataclass(slots=True)
class Outcome:
    """Result of a lookup."""

    result: str  # hit-exact | hit-semantic | miss | bypass
    tier: str | None = None  # l1 | l2 on hits
    entry: CacheEntry | None = None
    answer: bytes | None = None
    similarity: float | None = None
    matched_prompt: str | None = None
    reasons: list[str] = field(default_factory=list)
    vector: Vector | None = None
    vector_space: str | None = None  # embedding space of `vector`
    shadow_similarity: float | None = None  # a would-be semantic hit not served (shadow mode)
    judgement: Judgement | None = None  # why the semantic hit was served
    vetoes: list[str] = field(default_factory=list)  # why candidates were refused
    judged: dict[str, Judgement] = field(default_factory=dict)  # entry id -> judgement

    @property
    def hit(self) -> bool:
        """Whether an answer is served from cache."""
        return self.answer is not None


class UnknownSpaceError(ValueError):
    """An embedding switch named a space this node has no embedder for."""


@dataclass(slots=True)
class VectorSpace:
    """One embedding space on this node: its embedder and its Milvus collection."""

    embedder: Embedder
    vectors: MilvusVectorStore | None

    @property
    def space(self) -> str:
        """Identity of the space (`keyspace.embedding_space`)."""
        return self.embedder.space

    @property
    def model_id(self) -> str:
        """The embedding model."""
        return self.embedder.model_id

    def describe(self) -> dict[str, str | None]:
        """`{model_id, space, collection}` for the API."""
        return {
            "model_id": self.model_id,
            "space": self.space,
            "collection": None if self.vectors is None else self.vectors.collection,
        }


class CacheEngine:
    """Owns the tiers of one node.

    During an embedding migration the node holds two vector spaces: `active_space` serves
    lookups; `target_space` (the next model, or after a switch the previous one) receives a
    copy of every write in the background, so either can serve after a switch.
    """

    def __init__(
        self,
        config: NodeConfig,
        *,
        embedder: Embedder,
        store: EntryStore,
        vectors: MilvusVectorStore | None,
        redis: aioredis.Redis | None,
        metrics: NodeMetrics,
        next_embedder: Embedder | None = None,
        next_vectors: MilvusVectorStore | None = None,
    ) -> None:
        self.config = config
        self.active_space = VectorSpace(embedder, vectors)
        self.target_space = (
            None if next_embedder is None else VectorSpace(next_embedder, next_vectors)
        )
        self.next_loading: str | None = None  # a next model being loaded live (model id)
        self.store = store
        self.redis = redis
        self.metrics = metrics
        self.router = NamespaceRouter(config.namespaces)
        self.stats = NamespaceStats()
        self.hits = HitCounter()
        self.l1_exact = ByteBoundedLRU(config.l1.exact_max_bytes)
        self.l1_semantic = self._new_l1_semantic(embedder.dim)
        deadlines = config.deadlines

        def guard(tier: str) -> TierGuard:
            return TierGuard(
                tier, Breaker(deadlines.breaker_failures, deadlines.breaker_cooldown_s), metrics
            )

        self._guard = guard
        self._store_guard = guard(store.name)
        self._milvus_guard = guard("milvus")
        self._embed_guard = guard("embedder")
        self._target_milvus_guard = guard("milvus-next")
        self._target_embed_guard = guard("embedder-next")
        self._store_deadline = deadlines.redis_ms / 1000
        self._milvus_deadline = deadlines.milvus_ms / 1000
        self._embed_deadline = deadlines.embedder_ms / 1000  # service, per text
        self._embed_queue = deadlines.embedder_queue_ms / 1000
        self._write_deadline = deadlines.write_ms / 1000
        self._pending: set[asyncio.Task[Any]] = set()
        self._dual_pending: set[asyncio.Task[Any]] = set()
        self._evictions_seen: dict[str, int] = {}
        self._judges: dict[str, CandidateJudge] = {}
        self.calibrators: dict[str, OnlineCalibrator] = {}
        # exact key -> (namespace config name, similarity, cached answer) awaiting verification
        self._shadows: dict[str, tuple[str, float, bytes]] = {}

    @property
    def embedder(self) -> Embedder:
        """The embedder of the space that serves lookups."""
        return self.active_space.embedder

    @property
    def vectors(self) -> MilvusVectorStore | None:
        """The Milvus collection of the space that serves lookups."""
        return self.active_space.vectors

    def _new_l1_semantic(self, dim: int) -> SemanticIndex:
        l1 = self.config.l1
        return SemanticIndex(dim, l1.semantic_max_entries, l1.hnsw_min_partition)

    @property
    def store_breaker_open(self) -> bool:
        """Whether the shared entry store is currently skipped."""
        return self._store_guard.breaker.is_open

    @property
    def embed_breaker_open(self) -> bool:
        """Whether the embedder is currently skipped (down or hung, never merely busy)."""
        return self._embed_guard.breaker.is_open

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

    def _servable(self, entry: CacheEntry, plan: LookupPlan, now: float) -> bool:
        return (
            entry.namespace == plan.namespace
            and entry.tenant == plan.tenant
            and entry.is_fresh(now, plan.controls.max_age_s)
            and len(entry.answers) >= plan.decision.sample_size
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
        self, text: str, embedder: Embedder | None = None, *, background: bool = False
    ) -> tuple[Vector | None, str | None]:
        """Embed one text under the embedder's deadlines; (vector, None) or (None, reason).

        The service deadline is `deadlines.embedder_ms` per text of the batch that carries
        it; the queue budget is `deadlines.embedder_queue_ms` on the request path and
        `write_ms` for `background` work (write-backs).
        """
        queue_s = self._write_deadline if background else self._embed_queue
        result = await self._embed(self._embed_guard, embedder or self.embedder, [text], queue_s)
        if result.value is None:
            return None, result.error
        return result.value[0], None

    async def _embed(
        self, guard: TierGuard, embedder: Embedder, texts: list[str], queue_s: float
    ) -> TierResult[Vectors]:
        """Embed through `guard`: queue time and service time measured apart; a shed call
        (`<tier>-busy`) is counted but does not feed the breaker, a hung embedder does."""
        budget = EmbedBudget(service_s=self._embed_deadline, queue_s=queue_s)
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
            self.metrics.embed_shed.labels(guard.tier).inc()
        return result

    async def _semantic_lookup(self, plan: LookupPlan, outcome: Outcome, now: float) -> None:
        semantic = plan.keys.semantic
        assert semantic is not None
        # One space for the whole lookup, even if a switch lands while it runs.
        space, l1_semantic = self.active_space, self.l1_semantic
        vector, error = await self.embed_one(semantic.text, space.embedder)
        if vector is None:
            outcome.reasons.append(error or "embedder-error")
            return
        outcome.vector = vector
        outcome.vector_space = space.space
        threshold = self._threshold(plan)
        best_rejected = 0.0

        started = time.perf_counter()
        candidates = l1_semantic.search(
            semantic.partition, vector, SEMANTIC_CANDIDATES, now, plan.controls.max_age_s
        )
        self.metrics.tier_latency.labels("l1_ann", "search").observe(time.perf_counter() - started)
        # Candidates come by similarity; the best *score* wins (the lexical term and the
        # verifier move it by at most `judge.bonus`), so the loop goes on while a later
        # candidate could still beat the best one.
        judge = self._judge(plan.ns)
        best: tuple[Judgement, CacheEntry] | None = None
        for candidate in candidates:
            meta = candidate.meta
            if meta.namespace != plan.namespace or meta.tenant != plan.tenant:
                continue  # impossible by partitioning; checked anyway
            if candidate.similarity + judge.bonus < threshold:
                best_rejected = max(best_rejected, candidate.similarity)
                break
            if best is not None and candidate.similarity + judge.bonus <= best[0].score:
                break
            judgement = self._judged(
                outcome, judge, semantic.text, meta.prompt, candidate.similarity, meta.entry_id
            )
            if judgement.score < threshold or not judgement.accepted:
                best_rejected = max(best_rejected, candidate.similarity)
                continue
            entry = await self._fetch_entry(plan, meta.entry_id, outcome, now)
            if entry is None or entry.partition != semantic.partition:
                continue
            if best is None or judgement.score > best[0].score:
                best = (judgement, entry)
        vectors = space.vectors
        shared = vectors is not None and vectors.connected
        if best is not None and (best[0].similarity >= L1_SETTLES_SIMILARITY or not shared):
            self._semantic_hit(plan, outcome, *best, tier="l1")
            return
        if vectors is None or not vectors.connected:
            if vectors is not None:
                outcome.reasons.append("milvus-unavailable")
            self._rejected_similarity(best_rejected)
            return
        found = await self._milvus_guard.call(
            "search",
            vectors.search(
                namespace=plan.namespace,
                tenant=plan.tenant,
                partition=semantic.partition,
                vector=vector,
                limit=SEMANTIC_CANDIDATES,
                max_age_s=plan.controls.max_age_s,
                with_vectors=True,
            ),
            self._milvus_deadline,
        )
        if found.error:
            outcome.reasons.append(found.error)
            if best is not None:  # the shared tier failed: the L1 winner stands
                self._semantic_hit(plan, outcome, *best, tier="l1")
                return
            self._rejected_similarity(best_rejected)
            return
        best_l2: tuple[Judgement, CacheEntry, Any] | None = None  # judgement, entry, vector
        for hit in found.value or []:
            if (hit.namespace, hit.tenant, hit.partition) != (
                plan.namespace,
                plan.tenant,
                semantic.partition,
            ):
                continue
            if hit.similarity + judge.bonus < threshold:
                best_rejected = max(best_rejected, hit.similarity)
                break
            if best_l2 is not None and hit.similarity + judge.bonus <= best_l2[0].score:
                break
            if hit.entry_id in outcome.judged:
                continue  # judged in L1 already (refused, or it is the L1 winner)
            entry = await self._fetch_entry(plan, hit.entry_id, outcome, now)
            if entry is None or entry.partition != semantic.partition:
                continue
            judgement = self._judged(
                outcome, judge, semantic.text, entry.prompt or "", hit.similarity, hit.entry_id
            )
            if judgement.score < threshold or not judgement.accepted:
                best_rejected = max(best_rejected, hit.similarity)
                continue
            if best_l2 is None or judgement.score > best_l2[0].score:
                best_l2 = (judgement, entry, hit.vector)
        if best_l2 is not None and (best is None or best_l2[0].score > best[0].score):
            judgement, entry, vector = best_l2
            if vector is not None:
                l1_semantic.add(semantic.partition, vector, _vector_meta(entry))
            self._semantic_hit(plan, outcome, judgement, entry, tier="l2")
            return
        if best is not None:
            self._semantic_hit(plan, outcome, *best, tier="l1")
            return
        self._rejected_similarity(best_rejected)

    def _semantic_hit(
        self,
        plan: LookupPlan,
        outcome: Outcome,
        judgement: Judgement,
        entry: CacheEntry,
        *,
        tier: str,
    ) -> None:
        """Serve the winning candidate (or, in shadow mode, only record it)."""
        if plan.ns.shadow:
            self._shadow(plan, outcome, entry, judgement.similarity)
            return
        self._served(judgement)
        outcome.judgement = judgement
        self._hit(outcome, "hit-semantic", tier, entry, plan, judgement.similarity)

    def _threshold(self, plan: LookupPlan) -> float:
        """The similarity a candidate must reach for this request.

        A per-request override wins; shadow mode looks down to `min_threshold` (nothing is
        served, and calibration needs samples below the threshold too); online calibration
        replaces the configured threshold once it has enough verified samples.
        """
        if plan.controls.threshold is not None:
            return plan.controls.threshold
        if plan.ns.shadow:
            self._calibrator(plan.ns).count_request()
            return plan.ns.min_threshold
        configured = self.configured_threshold(plan.ns)
        calibrator = self.calibrators.get(plan.ns.name)
        if plan.ns.calibration.online and calibrator is not None:
            return calibrator.threshold or configured
        return configured

    def configured_threshold(self, ns: NamespaceConfig) -> float:
        """The namespace's threshold for the embedding model that serves lookups now."""
        return ns.threshold_for(self.active_space.model_id)

    def _calibrator(self, ns: NamespaceConfig) -> OnlineCalibrator:
        calibrator = self.calibrators.get(ns.name)
        if calibrator is None:
            settings = ns.calibration
            calibrator = self.calibrators[ns.name] = OnlineCalibrator(
                settings.target_error_rate,
                floor=ns.min_threshold,
                ceiling=ns.max_threshold,
                window=settings.window,
                min_samples=settings.min_samples,
            )
        return calibrator

    def _shadow(
        self, plan: LookupPlan, outcome: Outcome, entry: CacheEntry, similarity: float
    ) -> None:
        """Record a would-be hit without serving it; keep it for verification."""
        outcome.shadow_similarity = similarity
        outcome.matched_prompt = entry.prompt
        self.metrics.shadow_hits.labels(plan.namespace).inc()
        self.metrics.shadow_similarity.labels(plan.namespace).observe(similarity)
        configured = self.configured_threshold(plan.ns)
        would_serve = similarity >= configured
        log.info(
            "shadow_hit",
            namespace=plan.namespace,
            similarity=round(similarity, 4),
            threshold=configured,
            would_serve=would_serve,
            entry_id=entry.entry_id,
        )
        if len(self._shadows) < MAX_PENDING_SHADOWS and entry.answers:
            self._shadows[plan.keys.exact] = (plan.ns.name, similarity, entry.answers[0])

    async def _verify_shadow(self, plan: LookupPlan, fresh_answer: bytes) -> None:
        """Compare the upstream's answer with the would-be hit's; feed the calibrator."""
        pending = self._shadows.pop(plan.keys.exact, None)
        if pending is None:
            return
        _, similarity, cached_answer = pending
        texts = [_answer_text(cached_answer), _answer_text(fresh_answer)]
        if not all(texts):
            return
        result = await self._embed(self._embed_guard, self.embedder, texts, self._write_deadline)
        if result.value is None:
            return
        agreement = float(result.value[0] @ result.value[1])
        correct = agreement >= plan.ns.calibration.agreement_similarity
        self.metrics.verifications.labels(plan.namespace, "right" if correct else "wrong").inc()
        calibration = self._calibrator(plan.ns).observe(similarity, correct)
        if calibration is not None:
            self.metrics.calibrated_threshold.labels(plan.namespace).set(calibration.threshold)
            self.metrics.estimated_false_hit.labels(plan.namespace).set(calibration.false_hit_rate)
            self.metrics.estimated_error.labels(plan.namespace).set(calibration.error_rate)

    def _judge(self, ns: NamespaceConfig) -> CandidateJudge:
        judge = self._judges.get(ns.name)
        if judge is None or judge.config is not ns:
            judge = self._judges[ns.name] = CandidateJudge(ns)
        return judge

    def _judged(
        self,
        outcome: Outcome,
        judge: CandidateJudge,
        query: str,
        prompt: str,
        similarity: float,
        entry_id: str,
    ) -> Judgement:
        """Judge a candidate that can reach the threshold, once per entry and request (L1 and
        Milvus may both return it); count and remember a veto."""
        known = outcome.judged.get(entry_id)
        if known is not None:
            return known
        started = time.perf_counter()
        judgement = judge.judge(query, prompt, similarity)
        self.metrics.judge_latency.observe(time.perf_counter() - started)
        outcome.judged[entry_id] = judgement
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
    ) -> None:
        """Schedule a write-back without delaying the response; drop it under overload."""
        if len(self._pending) >= MAX_PENDING_WRITES:
            self.metrics.writes.labels("dropped").inc()
            return
        self._spawn(self.remember(plan, completion, vector, vector_space), self._pending)

    @staticmethod
    def _spawn(work: Coroutine[Any, Any, Any], pending: set[asyncio.Task[Any]]) -> None:
        task = asyncio.create_task(work)
        pending.add(task)
        task.add_done_callback(pending.discard)

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
            await self._verify_shadow(plan, answer)
        reason = response_cacheable(completion, len(answer), plan.ns)
        if reason is not None:
            return self._write_outcome(f"skipped-{reason}")
        now = time.time()
        ttl = plan.controls.ttl_s or plan.ns.ttl_s
        expires = now + ttl
        semantic = plan.keys.semantic if plan.ns.semantic else None
        prompt_tokens, completion_tokens = completion_usage(completion)
        request = None
        if plan.body is not None:
            request = orjson.dumps(canonical_request(dict(plan.body)))
            if len(request) > plan.ns.max_entry_bytes:
                request = None  # bounded: such an entry cannot be replayed by a warm-up

        entry = CacheEntry(
            entry_id=plan.keys.exact,
            namespace=plan.namespace,
            tenant=plan.tenant,
            model=plan.model,
            created_at=now,
            expires_at=expires,
            answers=(answer,),
            partition=semantic.partition if semantic else None,
            prompt=semantic.text if semantic else None,
            tags=plan.controls.tags,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            request=request,
        )
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
                entry = previous.with_answer(answer, plan.decision.sample_size, now, expires)

        self.l1_exact.put(entry)
        stored = await self._store_guard.call("put", self.store.put(entry), self._write_deadline)
        if semantic is not None:
            space, l1_semantic = self.active_space, self.l1_semantic
            if vector is not None and vector_space not in (None, space.space):
                vector = None  # embedded before an embedding switch: not of this space
            if vector is None:
                vector, _ = await self.embed_one(semantic.text, space.embedder, background=True)
            if vector is not None:
                l1_semantic.add(semantic.partition, vector, _vector_meta(entry))
                if space.vectors is not None and space.vectors.connected:
                    await self._milvus_guard.call(
                        "insert",
                        space.vectors.insert([vector_row(entry, vector)]),
                        self._write_deadline,
                    )
            target = self.target_space
            if target is not None and target.space != space.space:
                # A slow second space must never hold up (or crowd out) the primary writes.
                if len(self._dual_pending) < MAX_PENDING_DUAL_WRITES:
                    self._spawn(self._dual_write(target, entry, semantic.text), self._dual_pending)
                else:
                    self.metrics.writes.labels("dual-dropped").inc()
        self._update_gauges()
        return self._write_outcome("stored" if stored.ok else "stored-l1-only")

    async def _dual_write(self, target: VectorSpace, entry: CacheEntry, text: str) -> None:
        """Copy a write into the migration's other space (background, fail-open)."""
        result = await self._embed(
            self._target_embed_guard, target.embedder, [text], self._write_deadline
        )
        if result.value is None or target.vectors is None or not target.vectors.connected:
            return
        await self._target_milvus_guard.call(
            "insert",
            target.vectors.insert([vector_row(entry, result.value[0])]),
            self._write_deadline,
        )

    def _write_outcome(self, outcome: str) -> str:
        self.metrics.writes.labels(outcome).inc()
        return outcome

    def _update_gauges(self) -> None:
        self.metrics.entries.labels("l1_exact").set(len(self.l1_exact))
        self.metrics.entries.labels("l1_semantic").set(len(self.l1_semantic))
        self.metrics.l1_bytes.set(self.l1_exact.bytes_used)
        for tier, count in (
            ("l1_exact", self.l1_exact.evictions),
            ("l1_semantic", self.l1_semantic.evictions),
        ):
            delta = count - self._evictions_seen.get(tier, 0)
            if delta > 0:
                self.metrics.evictions.labels(tier).inc(delta)
                self._evictions_seen[tier] = count

    # ---------------------------------------------------------------------- invalidation

    def drop_l1(self, scope: InvalidationScope) -> int:
        """Remove the scope's entries from this node's in-process tiers."""
        removed = self.l1_exact.remove_where(
            lambda e: scope.matches(e.namespace, e.tenant, e.tags, e.created_at, e.entry_id)
        )
        self.l1_semantic.remove_where(
            lambda m: scope.matches(m.namespace, m.tenant, m.tags, m.created_at, m.entry_id)
        )
        self._update_gauges()
        return removed

    def clear_l1(self) -> None:
        """Empty the in-process tiers."""
        self.l1_exact.clear()
        self.l1_semantic.clear()
        self._update_gauges()

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
        for name, space in (("vectors", self.active_space), ("vectors_next", self.target_space)):
            if space is None or space.vectors is None:
                continue
            if not space.vectors.connected:
                raise ConnectionError(f"milvus collection {space.vectors.collection} unreachable")
            counts[name] = await space.vectors.delete_scope(scope, dry_run=dry_run)
        if not dry_run:
            for tier, count in counts.items():
                self.metrics.invalidated.labels(tier).inc(count)
        return counts

    async def drop_namespace_stats(self, namespace: str) -> None:
        """Delete a purged namespace's fleet-wide counters (its last Redis key)."""
        self.stats.forget(namespace)
        if self.redis is not None:
            await self.redis.unlink(keyspace.stats_key(self.config.redis.key_prefix, namespace))

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

    def describe_embedding(self) -> dict[str, Any]:
        """`{"active": {...}, "next": {...} | None, "loading": model_id | None}` (see
        `VectorSpace.describe`; `loading`: a next model being loaded live, not usable yet)."""
        target = self.target_space
        return {
            "active": self.active_space.describe(),
            "next": None if target is None else target.describe(),
            "loading": self.next_loading,
        }

    def replace_target_space(self, space: VectorSpace | None) -> VectorSpace | None:
        """Make `space` the dual-write target (a migration's next model loaded live), or drop
        the target (`None`: the migration is over or cancelled); return the space replaced.

        The caller releases the returned space with `release_space` once nothing uses it."""
        if space is not None and space.space == self.active_space.space:
            raise ValueError(f"space {space.space} already serves lookups")
        previous, self.target_space = self.target_space, space
        self._target_milvus_guard = self._guard("milvus-next")
        self._target_embed_guard = self._guard("embedder-next")
        log.info(
            "embedding_target_replaced",
            space=None if space is None else space.space,
            model_id=None if space is None else space.model_id,
            previous=None if previous is None else previous.space,
        )
        return previous

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
        if space == self.active_space.space:
            return False
        target = self.target_space
        if target is None or target.space != space:
            raise UnknownSpaceError(space)
        self.active_space, self.target_space = target, self.active_space
        self._milvus_guard, self._target_milvus_guard = (
            self._guard("milvus"),
            self._guard("milvus-next"),
        )
        self._embed_guard, self._target_embed_guard = (
            self._guard("embedder"),
            self._guard("embedder-next"),
        )
        self.l1_semantic = self._new_l1_semantic(target.embedder.dim)
        self.calibrators.clear()
        self._update_gauges()
        self.metrics.embedding_switches.inc()
        log.info(
            "embedding_switched",
            space=space,
            model_id=target.model_id,
            previous=self.target_space.space,
        )
        return True

    # ------------------------------------------------------------------ namespace switch

    async def load_active_namespaces(self) -> None:
        """Reload namespace switches from Redis (start-up and bus reconnects)."""
        if self.redis is None:
            return
        self.router.replace_active(await self.persisted_switches())

    async def persisted_switches(self) -> dict[str, str]:
        """Namespace switches persisted in Redis (configured name -> cache namespace)."""
        if self.redis is None:
            return {}
        raw = await self.redis.hgetall(keyspace.active_namespaces_key(self.config.redis.key_prefix))
        return {_text(k): _text(v) for k, v in raw.items()}

    async def persist_switch(self, name: str, namespace: str) -> None:
        """Record a switch in Redis so nodes starting later see it."""
        if self.redis is None:
            return
        key = keyspace.active_namespaces_key(self.config.redis.key_prefix)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(key, name, namespace)
        pipe.expire(key, keyspace.FLEET_STATE_TTL_S)
        await pipe.execute()

    async def forget_fleet_state(self, namespaces: Iterable[str]) -> None:
        """The cache is being deleted: drop the counters of `namespaces` and the persisted
        namespace and embedding switches (the keys that only expire a month after use)."""
        for namespace in namespaces:
            await self.drop_namespace_stats(namespace)
        if self.redis is not None:
            prefix = self.config.redis.key_prefix
            await self.redis.unlink(
                keyspace.active_namespaces_key(prefix), keyspace.embedding_active_key(prefix)
            )

    async def renew_fleet_state(self) -> None:
        """Renew the TTL of the persisted switches while this node runs."""
        if self.redis is None:
            return
        prefix = self.config.redis.key_prefix
        pipe = self.redis.pipeline(transaction=False)
        for key in (keyspace.active_namespaces_key(prefix), keyspace.embedding_active_key(prefix)):
            pipe.expire(key, keyspace.FLEET_STATE_TTL_S)
        await pipe.execute()

    async def close(self) -> None:
        """Finish pending writes, flush hit counts and release tiers."""
        await self.drain()
        try:
            await self.flush_hits()
        except Exception:
            log.warning("hit_counts_lost", reason="store unreachable at shutdown")
        await self.store.close()
        for space in (self.active_space, self.target_space):
            if space is None:
                continue
            if space.vectors is not None:
                await space.vectors.close()
            await space.embedder.aclose()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _answer_text(answer: bytes) -> str:
    """The assistant text of a stored chat completion ("" if it has none)."""
    try:
        message = orjson.loads(answer)["choices"][0]["message"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return ""
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else ""


def vector_row(entry: CacheEntry, vector: Vector) -> VectorRow:
    """The Milvus row of a semantic entry."""
    assert entry.partition is not None
    return VectorRow(
        entry_id=entry.entry_id,
        namespace=entry.namespace,
        tenant=entry.tenant,
        model=entry.model,
        partition=entry.partition,
        vector=vector,
        created_at=entry.created_at,
        expires_at=entry.expires_at,
        tags=entry.tags,
    )


def _vector_meta(entry: CacheEntry) -> VectorMeta:
    return VectorMeta(
        entry_id=entry.entry_id,
        namespace=entry.namespace,
        tenant=entry.tenant,
        prompt=entry.prompt or "",
        created_at=entry.created_at,
        expires_at=entry.expires_at,
        tags=entry.tags,
    )
