"""The latency bench's CPU per miss beyond the embedding (`miss_cpu_ms_beyond_embedding`),
on the real model."""

from __future__ import annotations

from cachefleet_bench import latency
from cachefleet_node.config import load_node_config
from cachefleet_node.core.planning import plan_request
from cachefleet_node.core.request import decode_json_object
from cachefleet_node.core.routing import NamespaceRouter
from cachefleet_node.embedders.base import Embedder
from embedding_service import CountingEmbedder


async def test_miss_cpu_subtracts_the_embedders_cpu_on_the_lookups_texts(
    embedder: Embedder,
) -> None:
    router = NamespaceRouter(load_node_config(overrides={}).namespaces)
    bodies = [latency._body(f"a request nobody asked before, number {i}") for i in range(3)]
    recording = CountingEmbedder(embedder)

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
