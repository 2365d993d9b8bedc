"""Embedder deadlines and breaker under load: a moving queue is not a dead tier.

The real model and the real micro-batcher; only the hung embedder is a stand-in (a run
function that never returns). Assertions are on counts and reasons, with generous margins:
CI runs this on a loaded 2-core machine.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence

import pytest

from cachefleet_contract.keyspace import embedding_space
from cachefleet_node.embedders import (
    EmbedBudget,
    EmbedderBusy,
    EmbeddingError,
    MicroBatcher,
    OnnxEmbedder,
    OnnxModel,
    Vectors,
)
from node_harness import NodeFactory

# Distinct texts: the embedding cache in front of the model must not answer any of them.
QUESTIONS = [
    f"question {index}: how do I {verb} my {thing}?"
    for index, (verb, thing) in enumerate(
        (verb, thing)
        for verb in ("export", "reset", "share", "delete", "rename", "archive", "move", "copy")
        for thing in ("billing history", "password", "project", "account")
    )
]


def _errors(node_metrics: object, kind: str, tier: str = "embedder") -> float:
    registry = node_metrics.registry  # type: ignore[attr-defined]
    value = registry.get_sample_value("cachefleet_tier_errors_total", {"tier": tier, "kind": kind})
    return float(value or 0.0)


async def test_32_concurrent_embeds_on_default_deadlines_are_served(
    node_factory: NodeFactory,
) -> None:
    """32 concurrent lookups' embeddings on the real local model, default 50 ms deadline:
    they queue behind one inference thread, but the queue moves, so (nearly) all are served
    and the breaker stays closed. (A batch of a few texts can still overrun its own service
    time on a loaded 2-core machine: that caller goes upstream, which is allowed here for
    at most 3 of 32; before the fix all 32 of the first round timed out.)"""
    node = await node_factory({"deadlines": {}}, shared_embedder=False)  # the defaults
    engine = node.runtime.engine
    assert engine.config.deadlines.embedder_ms == 50
    await engine.embed_one("warm-up")
    assert len(QUESTIONS) == 32
    for round_ in range(3):
        texts = [f"{text} (round {round_})" for text in QUESTIONS]
        results = await asyncio.gather(*(engine.embed_one(text) for text in texts))
        reasons = [reason for _, reason in results if reason is not None]
        assert len(reasons) <= 3, f"round {round_}: {reasons}"
        assert set(reasons) <= {"embedder-timeout"}, reasons
    assert _errors(engine.metrics, "breaker-open") == 0
    assert engine.embed_breaker_open is False


class HungEmbedder:
    """An embedder whose model never answers (a hung inference thread or service), behind
    the real micro-batcher."""

    def __init__(self, dim: int) -> None:
        self.model_id = "hung-model"
        self.dim = dim
        self.space = embedding_space(self.model_id, dim)
        self.batches = 0
        self._batcher = MicroBatcher(self._run, max_batch=32)

    async def _run(self, texts: list[str]) -> Vectors:
        self.batches += 1
        await asyncio.Event().wait()  # never set
        raise AssertionError("unreachable")

    async def embed(self, texts: Sequence[str], budget: EmbedBudget | None = None) -> Vectors:
        return await self._batcher.submit(texts, budget)

    async def aclose(self) -> None:
        await self._batcher.aclose()


async def test_hung_embedder_opens_the_breaker_and_calls_fail_fast(
    node_factory: NodeFactory,
) -> None:
    node = await node_factory({"deadlines": {"embedder_queue_ms": 300}})
    engine = node.runtime.engine
    hung = HungEmbedder(engine.embedder.dim)
    try:
        started = time.perf_counter()
        first = await engine.embed_one("the first question", hung)
        assert first == (None, "embedder-timeout")  # its own batch ran past 50 ms
        # Calls arriving while the model hangs queue, then fail once nothing has finished for
        # a whole queue budget; they feed the breaker, which opens.
        results = await asyncio.gather(*(engine.embed_one(text, hung) for text in QUESTIONS[:8]))
        reasons = [reason for _, reason in results]
        assert set(reasons) <= {"embedder-timeout", "embedder-unavailable"}, reasons
        assert engine.embed_breaker_open
        assert time.perf_counter() - started < 10  # bounded by the deadlines, not the model
        # Now every call fails at once without touching the model.
        batches = hung.batches
        fast = time.perf_counter()
        later = [await engine.embed_one(text, hung) for text in QUESTIONS[8:28]]
        assert [reason for _, reason in later] == ["embedder-unavailable"] * 20
        assert time.perf_counter() - fast < 2  # 20 calls; each returns without waiting
        assert hung.batches == batches
        assert _errors(engine.metrics, "timeout") >= engine.config.deadlines.breaker_failures
        assert _errors(engine.metrics, "breaker-open") >= 20
        # After the cool-down, the probe finds the model still stuck and fails at once.
        await asyncio.sleep(engine.config.deadlines.breaker_cooldown_s + 0.1)
        probe_started = time.perf_counter()
        probe = await engine.embed_one("a probe after the cool-down", hung)
        assert probe == (None, "embedder-timeout")
        assert time.perf_counter() - probe_started < 2
    finally:
        await hung.aclose()


async def test_overloaded_queue_sheds_as_busy_without_opening_the_breaker(
    node_factory: NodeFactory,
) -> None:
    """Far more concurrent embeddings than the model can do within the queue budget: the
    excess is shed at once (`embedder-busy`), the rest is served (a served batch may overrun
    its own service time on a loaded machine: a few `embedder-timeout`s are tolerated), the
    breaker stays closed."""
    node = await node_factory({"deadlines": {"embedder_queue_ms": 100}}, shared_embedder=False)
    engine = node.runtime.engine  # its embedder measured its speed on the start-up warm-up
    texts = [f"{question} (copy {copy})" for copy in range(10) for question in QUESTIONS]
    results = await asyncio.gather(*(engine.embed_one(text) for text in texts))
    reasons = Counter(reason for _, reason in results)
    served = reasons.pop(None, 0)
    assert set(reasons) <= {"embedder-busy", "embedder-timeout"}, reasons
    assert reasons["embedder-timeout"] <= 10, reasons
    assert served >= 1
    assert reasons["embedder-busy"] >= 100  # 320 calls, 100 ms of queue: most are shed
    registry = engine.metrics.registry
    shed = {
        reason: registry.get_sample_value(
            "cachefleet_embed_shed_total", {"tier": "embedder", "reason": reason}
        )
        or 0
        for reason in ("queue", "owner")
    }
    assert sum(shed.values()) == reasons["embedder-busy"], shed
    assert _errors(engine.metrics, "breaker-open") == 0
    assert not engine.embed_breaker_open
    assert engine.config.deadlines.breaker_failures < reasons["embedder-busy"]
    # The node keeps serving: a lone call right after is embedded.
    vector, reason = await engine.embed_one("a lone question after the burst")
    assert reason is None
    assert vector is not None


async def test_calls_queued_past_the_budget_are_dropped_as_busy(onnx_model: OnnxModel) -> None:
    """Before any batch has finished there is no estimate, so a burst is admitted up to the
    caller's share of the queue; the calls still queued after their budget are dropped as busy
    (the queue moves), never timeouts."""
    embedder = OnnxEmbedder(onnx_model, "sentence-transformers/all-MiniLM-L6-v2", batch_size=32)
    try:
        budgets = [EmbedBudget(service_s=0.05, queue_s=0.1) for _ in range(320)]
        texts = [f"{question} (burst {copy})" for copy in range(10) for question in QUESTIONS]
        results = await asyncio.gather(
            *(embedder.embed([text], budget) for text, budget in zip(texts, budgets, strict=True)),
            return_exceptions=True,
        )
        kinds = Counter(type(result).__name__ for result in results)
        assert set(kinds) <= {"ndarray", "EmbedderBusy", "EmbeddingTimeout"}, kinds
        assert kinds["EmbeddingTimeout"] <= 10, kinds  # a batch overrun on a loaded machine
        assert kinds["ndarray"] >= 22  # (nearly) the first batch
        assert kinds["EmbedderBusy"] >= 100
        for result, budget in zip(results, budgets, strict=True):
            assert budget.queued_s is not None
            if isinstance(result, EmbedderBusy):
                if budget.shed == "queue":
                    assert budget.queued_s >= 0.1  # waited its budget, then dropped
                else:  # past the caller's share of the queue (four batches): shed at once
                    assert (budget.shed, budget.queued_s) == ("owner", 0.0)
                assert budget.served_s is None
            elif not isinstance(result, Exception):
                assert budget.served_s is not None
        assert embedder._batcher.queued_texts == 0
    finally:
        await embedder.aclose()


async def test_closing_fails_queued_calls_at_once() -> None:
    hung = HungEmbedder(dim=4)
    running = asyncio.create_task(hung.embed(["runs forever"], EmbedBudget(5.0, 5.0)))
    await asyncio.sleep(0.05)
    queued = asyncio.create_task(hung.embed(["waits"], EmbedBudget(5.0, 5.0)))
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    await hung.aclose()
    for task in (running, queued):
        with pytest.raises(EmbeddingError, match="closed"):
            await task
    assert time.perf_counter() - started < 2  # not after the 5 s queue budget
