"""The similarity a semantic candidate must reach, per namespace: configured, overridden per
request, or learnt online from shadow-mode hits checked against the upstream's answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
import structlog

from cachefleet_node.config import NamespaceConfig
from cachefleet_node.core.calibration import OnlineCalibrator
from cachefleet_node.core.entry import CacheEntry
from cachefleet_node.core.planning import LookupPlan, Outcome
from cachefleet_node.embedders.base import Vectors
from cachefleet_node.metrics import NodeMetrics

__all__ = ["MAX_PENDING_SHADOWS", "Thresholds"]

log = structlog.get_logger(__name__)

MAX_PENDING_SHADOWS = 4096

#: Embeds texts in the space serving lookups (None when the embedder failed).
EmbedTexts = Callable[[list[str]], Awaitable[Vectors | None]]


class Thresholds:
    """Per-namespace thresholds and their online calibrators; shadow hits awaiting a check."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self.metrics = metrics
        self.calibrators: dict[str, OnlineCalibrator] = {}
        # exact key -> (namespace config name, similarity, cached answer) awaiting verification
        self._shadows: dict[str, tuple[str, float, bytes]] = {}

    def reset(self) -> None:
        """Restart calibration (similarities of another embedding model)."""
        self.calibrators.clear()

    def for_request(self, plan: LookupPlan, model_id: str) -> float:
        """The similarity a candidate must reach for this request (`model_id`: the embedding
        model serving lookups).

        A per-request override wins; shadow mode looks down to `min_threshold` (nothing is
        served, and calibration needs samples below the threshold too); online calibration
        replaces the configured threshold once it has enough verified samples.
        """
        if plan.controls.threshold is not None:
            return plan.controls.threshold
        if plan.ns.shadow:
            self._calibrator(plan.ns).count_request()
            return plan.ns.min_threshold
        configured = plan.ns.threshold_for(model_id)
        calibrator = self.calibrators.get(plan.ns.name)
        if plan.ns.calibration.online and calibrator is not None:
            return calibrator.threshold or configured
        return configured

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

    def shadow(
        self,
        plan: LookupPlan,
        outcome: Outcome,
        entry: CacheEntry,
        similarity: float,
        model_id: str,
    ) -> None:
        """Record a would-be hit without serving it; keep it for verification."""
        outcome.shadow_similarity = similarity
        outcome.matched_prompt = entry.prompt
        self.metrics.shadow_hits.labels(plan.namespace).inc()
        self.metrics.shadow_similarity.labels(plan.namespace).observe(similarity)
        configured = plan.ns.threshold_for(model_id)
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

    async def verify(self, plan: LookupPlan, fresh_answer: bytes, embed: EmbedTexts) -> None:
        """Compare the upstream's answer with the would-be hit's; feed the calibrator."""
        pending = self._shadows.pop(plan.keys.exact, None)
        if pending is None:
            return
        _, similarity, cached_answer = pending
        texts = [_answer_text(cached_answer), _answer_text(fresh_answer)]
        if not all(texts):
            return
        vectors = await embed(texts)
        if vectors is None:
            return
        agreement = float(vectors[0] @ vectors[1])
        correct = agreement >= plan.ns.calibration.agreement_similarity
        self.metrics.verifications.labels(plan.namespace, "right" if correct else "wrong").inc()
        calibration = self._calibrator(plan.ns).observe(similarity, correct)
        if calibration is not None:
            self.metrics.calibrated_threshold.labels(plan.namespace).set(calibration.threshold)
            self.metrics.estimated_false_hit.labels(plan.namespace).set(calibration.false_hit_rate)
            self.metrics.estimated_error.labels(plan.namespace).set(calibration.error_rate)


def _answer_text(answer: bytes) -> str:
    """The assistant text of a stored chat completion ("" if it has none)."""
    try:
        message = orjson.loads(answer)["choices"][0]["message"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return ""
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else ""
