"""The latency bench's CPU per miss beyond the embedding (`miss_cpu_ms_beyond_embedding`),
on the real model."""

from __future__ import annotations

from collections.abc import Sequence

from cachefleet_bench import latency
from cachefleet_node.config import load_node_config
from cachefleet_node.core.planning import plan_request
from cachefleet_node.core.request import decode_json_object
from cachefleet_node.core.routing import NamespaceRouter
from cachefleet_node.embedders.base import EmbedBudget, Embedder, Vectors


class Recording:
    """The real embedder, remembering what it was asked to embed."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.dim = inner.dim
        self.model_id = inner.model_id
        self.space = inner.space
        self.calls: list[list[str]] = []

    async def embed(self, texts: Sequence[str], budget: EmbedBudget | None = None) -> Vectors:
        self.calls.append(list(texts))
        return await self.inner.embed(texts, budget)

    async def aclose(self) -> None:
        """The session's embedder is closed by its fixture."""


async def test_miss_cpu_subtracts_the_embedders_cpu_on_the_lookups_texts(
    embedder: Embedder,
) -> None:
    router = NamespaceRouter(load_node_config(overrides={}).namespaces)
    bodies = [latency._body(f"a request nobody asked before, number {i}") for i in range(3)]
    recording = Recording(embedder)

    result = await latency._miss_cpu(router, recording, bodies, 6, miss_cpu_s=0.6)

    texts = []
    for raw in bodies:  # what a lookup of each body embeds
        _, plan = plan_request(router, {}, decode_json_object(raw), "default")
        assert plan.keys.semantic is not None
        texts.append(plan.keys.semantic.text)
    assert recording.calls == [[texts[i % 3]] for i in range(6)]
    assert result["miss_cpu_ms"] == 100.0
    assert result["miss_cpu_ms_embedding"] > 0
    beyond = result["miss_cpu_ms"] - result["miss_cpu_ms_embedding"]
    assert abs(result["miss_cpu_ms_beyond_embedding"] - beyond) <= 0.002  # rounded to 3 places
