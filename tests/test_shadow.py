"""Shadow mode through a real node: would-be semantic hits are recorded, never served."""

from __future__ import annotations

from node_harness import Node, NodeFactory

FIRST = "How do I rename a local branch in git?"
PARAPHRASE = "In git, how can I rename a local branch?"


def _metric(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


async def test_shadow_mode_records_without_serving(node_factory: NodeFactory) -> None:
    node: Node = await node_factory(
        {"namespaces": [{"name": "default", "shadow": True, "calibration": {"min_samples": 20}}]}
    )
    first = await node.chat(FIRST)
    assert first.headers["x-cachefleet-cache"] == "miss"
    await node.settle()
    second = await node.chat(PARAPHRASE)
    assert second.headers["x-cachefleet-cache"] == "miss", "shadow hits are never served"
    assert "Answer to 'In git" in second.json()["choices"][0]["message"]["content"]
    await node.settle()
    metrics = (await node.client.get("/metrics")).text
    assert _metric(metrics, 'cachefleet_shadow_hits_total{namespace="default"}') == 1
    assert _metric(metrics, 'cachefleet_shadow_similarity_ratio_count{namespace="default"}') == 1
    verified = _metric(metrics, "cachefleet_verifications_total")
    assert verified == 1, "the upstream's own answer verified the would-be hit"
    # exact repeats are still served in shadow mode
    again = await node.chat(FIRST)
    assert again.headers["x-cachefleet-cache"] == "hit-exact"


async def test_same_paraphrase_is_served_without_shadow(node_factory: NodeFactory) -> None:
    node = await node_factory()
    await node.chat(FIRST)
    await node.settle()
    second = await node.chat(PARAPHRASE)
    assert second.headers["x-cachefleet-cache"] == "hit-semantic"
