"""Fairness of the embedder: texts cut to what the model reads before tokenizing, owners
(tenants) served in turn with a bounded share of the queue each, batches bounded in
characters. The batcher tests hold the worker with a gate (deterministic); the node test runs
the real ONNX model and asserts counts, never timings."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cachefleet_node.embedders import EmbedBudget, EmbedderBusy, MicroBatcher, OnnxEmbedder
from cachefleet_node.embedders.base import text_window
from cachefleet_node.embedders.local import OnnxModel
from node_harness import NodeFactory

ROOT = Path(__file__).resolve().parents[1]
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


class GatedRun:
    """A batch function that records its batches and holds each until the gate opens."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = asyncio.Event()
        self._running = asyncio.Event()

    async def __call__(self, texts: list[str]) -> np.ndarray:
        self.batches.append(list(texts))
        self._running.set()
        await self.gate.wait()
        return np.zeros((len(texts), 2), dtype=np.float32)

    async def first_batch_running(self) -> None:
        await self._running.wait()


def budget(owner: str) -> EmbedBudget:
    return EmbedBudget(service_s=60.0, queue_s=60.0, owner=owner)


async def test_owners_take_turns_so_a_flood_delays_others_by_one_turn() -> None:
    run = GatedRun()
    batcher = MicroBatcher(run, max_batch=4)
    calls = [asyncio.create_task(batcher.submit(["a0"], budget("a")))]
    await run.first_batch_running()
    calls += [asyncio.create_task(batcher.submit([f"a{i}"], budget("a"))) for i in range(1, 9)]
    calls.append(asyncio.create_task(batcher.submit(["v"], budget("v"))))
    await asyncio.sleep(0)
    assert (batcher.queued_for("a"), batcher.queued_for("v")) == (8, 1)
    run.gate.set()
    await asyncio.gather(*calls)
    # The victim arrived behind 8 texts of the flood and rides in the very next batch.
    assert run.batches[:3] == [["a0"], ["a1", "v", "a2", "a3"], ["a4", "a5", "a6", "a7"]]
    await batcher.aclose()


async def test_an_owner_past_its_share_is_shed_and_the_others_are_not() -> None:
    run = GatedRun()
    batcher = MicroBatcher(run, max_batch=4, owner_queue=3)
    calls = [asyncio.create_task(batcher.submit(["a0"], budget("a")))]
    await run.first_batch_running()
    calls += [asyncio.create_task(batcher.submit([f"a{i}"], budget("a"))) for i in range(1, 4)]
    await asyncio.sleep(0)
    assert batcher.queued_for("a") == 3  # its whole share
    shed = budget("a")
    with pytest.raises(EmbedderBusy, match="already queued"):
        await batcher.submit(["a4"], shed)
    assert (shed.shed, shed.queued_s) == ("owner", 0.0)
    # Another tenant still gets in; a request with more texts than a share is admitted onto
    # its owner's empty queue (split into turns), and then that owner is full.
    calls.append(asyncio.create_task(batcher.submit(["v"], budget("v"))))
    calls.append(asyncio.create_task(batcher.submit([f"b{i}" for i in range(6)], budget("b"))))
    await asyncio.sleep(0)
    with pytest.raises(EmbedderBusy):
        await batcher.submit(["b6"], budget("b"))
    # Calls without a budget (background re-embedding) are never shed.
    calls.append(asyncio.create_task(batcher.submit(["x0", "x1", "x2", "x3", "x4"])))
    run.gate.set()
    results = await asyncio.gather(*calls)
    assert [len(rows) for rows in results] == [1, 1, 1, 1, 1, 6, 5]
    assert run.batches[1] == ["a1", "v"]  # then b's first part of 4 did not fit
    await batcher.aclose()


async def test_texts_are_cut_and_a_batch_holds_at_most_its_characters() -> None:
    run = GatedRun()
    run.gate.set()
    batcher = MicroBatcher(run, max_batch=8, max_text_chars=10, max_batch_chars=25)
    texts = ["x" * 1000, "y" * 50, "z" * 10, "short", "tiny"]
    held = GatedRun()
    gated = MicroBatcher(held, max_batch=8, max_text_chars=10, max_batch_chars=25)
    first = asyncio.create_task(gated.submit(["w"], budget("a")))
    await held.first_batch_running()
    queued = [asyncio.create_task(gated.submit([t], budget(f"o{i}"))) for i, t in enumerate(texts)]
    await asyncio.sleep(0)
    held.gate.set()
    await asyncio.gather(first, *queued)
    assert held.batches[1:] == [["x" * 10, "y" * 10], ["z" * 10, "short", "tiny"]]
    assert all(sum(map(len, batch)) <= 25 for batch in held.batches)
    rows = await batcher.submit(["q" * 100])
    assert rows.shape == (1, 2)
    assert run.batches == [["q" * 10]]
    await batcher.aclose()
    await gated.aclose()


def huge_prompt(size: int = 900_000) -> str:
    """About 0.9 MB of real prose (the project's docs, repeated)."""
    text = (ROOT / "docs" / "cache-node.md").read_text(encoding="utf-8")
    return (text * (size // len(text) + 1))[:size]


async def test_a_huge_prompt_embeds_exactly_like_the_models_window_of_it(
    onnx_model: OnnxModel,
) -> None:
    """The embedder cuts a 0.9 MB prompt to `text_window` characters before the tokenizer: the
    cut still fills the model's 256-token window, so the vector is the one the model gives the
    whole text (which it truncates to the same 256 tokens)."""
    prompt = huge_prompt()
    window = text_window(onnx_model.max_tokens)
    assert len(prompt) > 200 * window
    tokenizer = onnx_model._tokenizer  # truncates at max_tokens
    assert len(tokenizer.encode(prompt[:window]).ids) == onnx_model.max_tokens
    assert tokenizer.encode(prompt[:window]).ids == tokenizer.encode(prompt).ids
    embedder = OnnxEmbedder(onnx_model, MODEL_ID)
    try:
        cut = await embedder.embed([prompt])
        whole = await asyncio.to_thread(onnx_model.encode, [prompt])  # no cut: all 0.9 MB
        prefix = await embedder.embed([prompt[:window]])
        np.testing.assert_array_equal(cut, whole)
        np.testing.assert_array_equal(cut, prefix)
    finally:
        await embedder.aclose()


async def test_candidates_are_judged_on_the_window_and_refused_when_they_differ_past_it(
    node_factory: NodeFactory,
) -> None:
    """The guards read the model's window of both texts (on whole 0.9 MB texts they held the
    event loop for minutes); texts that differ only past it embed alike, so such a candidate
    is refused (`window`) rather than judged on what the vector could not see."""
    node = await node_factory()
    prompt = huge_prompt()
    assert (await node.chat(prompt)).headers["x-cachefleet-cache"] == "miss"
    await node.settle()

    def lookup(text: str) -> dict[str, Any]:
        return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}

    past = (await node.client.post("/v1/cache/lookup", json=lookup(prompt[:-4] + "1234"))).json()
    assert (past["result"], past["vetoes"]) == ("miss", ["window"]), past
    within = (await node.client.post("/v1/cache/lookup", json=lookup("X" + prompt[1:]))).json()
    # Judged by the guards and the verifier on the window: served, or refused by one of them.
    judged = within["result"] == "hit-semantic" or bool(within["vetoes"])
    assert judged, within
    assert "window" not in within["vetoes"], within
    registry = node.runtime.metrics.registry
    assert registry.get_sample_value("cachefleet_guard_rejections_total", {"reason": "window"}) == 1


PAIRS = [
    ("How do I export my billing history?", "how can I export my billing history"),
    ("How do I rotate my API keys?", "how can I rotate my api keys"),
    ("What is the refund policy for annual plans?", "what's the refund policy on annual plans"),
]
KEYS = {"flood-1": "sk-flood-1", "flood-2": "sk-flood-2", "calm": "sk-calm"}
FLOOD_REQUESTS = 40  # per flooding client, all at once


def auth(tenant: str) -> dict[str, str]:
    return {"authorization": f"Bearer {KEYS[tenant]}"}


async def test_two_clients_sending_huge_prompts_do_not_push_a_third_out_of_the_cache(
    node_factory: NodeFactory,
) -> None:
    """Two tenants send 40 concurrent 0.9 MB prompts each while a third asks paraphrases of
    its stored questions: every paraphrase is a semantic hit, the flood is answered (its
    lookups fail open when its share of the embedder is full), and the shed calls are counted
    by reason."""
    node = await node_factory(
        {
            "embedding": {"batch_size": 4},  # a share of 16 queued texts per tenant
            "deadlines": {"embedder_ms": 3000, "embedder_queue_ms": 5000},
            "auth": {
                "api_keys": [
                    {"tenant": tenant, "key_sha256": hashlib.sha256(key.encode()).hexdigest()}
                    for tenant, key in KEYS.items()
                ]
            },
        },
        shared_embedder=False,
        environ={"CACHEFLEET_UPSTREAM_API_KEY": "sk-upstream"},
    )
    for question, _ in PAIRS:
        stored = await node.chat(question, headers=auth("calm"))
        assert stored.headers["x-cachefleet-cache"] == "miss", stored.text
    await node.settle()
    batcher = node.runtime.engine.embedder.inner._batcher

    prompt = huge_prompt()
    flood = [
        asyncio.create_task(node.chat(f"{index} {prompt}", headers=auth(tenant)))
        for tenant in ("flood-1", "flood-2")
        for index in range(FLOOD_REQUESTS)
    ]
    deadline = time.monotonic() + 120  # a failsafe only: the flood queues within seconds
    while batcher.queued_for("flood-1") + batcher.queued_for("flood-2") < 8:
        assert time.monotonic() < deadline, "the flood never queued"
        await asyncio.sleep(0.05)

    served = []
    for _, paraphrase in PAIRS:
        queued_ahead = batcher.queued_texts
        answer = await node.chat(paraphrase, headers=auth("calm"))
        served.append((answer.headers["x-cachefleet-cache"], queued_ahead))
    still_flooding = sum(not task.done() for task in flood)
    results = await asyncio.gather(*flood)

    assert [result for result, _ in served] == ["hit-semantic"] * len(PAIRS), served
    assert all(ahead > 0 for _, ahead in served), served  # each asked into a loaded queue
    assert still_flooding > 0  # the flood outlasted the calm client's requests
    assert Counter(r.status_code for r in results) == {200: 2 * FLOOD_REQUESTS}
    registry = node.runtime.metrics.registry
    shed = {
        reason: registry.get_sample_value(
            "cachefleet_embed_shed_total", {"tier": "embedder", "reason": reason}
        )
        or 0.0
        for reason in ("owner", "queue")
    }
    assert shed["owner"] > 0, shed  # 40 at once against a share of 16: the flood was shed
    await node.settle()  # the flood's write-backs embed in the background
    assert batcher.queued_texts == 0  # nothing shed or served stays counted in the queue
