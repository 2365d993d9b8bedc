"""A node's in-process semantic index (L1) holds a subset of the entries: after a restart,
after evictions, and never the other nodes' writes. Its best candidate is then not always the
best match, and serving it would give the answer of another question. Real node, real model,
the session's Milvus server as the shared tier."""

from __future__ import annotations

from typing import Any

from node_harness import NodeFactory

RIGHT = "How do I reset the password of my home router?"
NEIGHBOUR = "How do I reset my home router to its factory settings?"
NEAR_REPEAT = "how do I reset the password of my home router please"
NEIGHBOUR_PARAPHRASE = "how can I reset my home router to factory settings"

#: Loose on purpose: the neighbour is acceptable on its own (the point is to pick the best).
LOOSE = {
    "name": "default",
    "similarity_threshold": 0.6,
    "min_threshold": 0.5,
    "verifier": {"enabled": False},
    "guards": {"negation": False, "opposites": False, "numbers": False, "entities": False},
}


def answer(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-stored",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20},
    }


async def test_a_partial_l1_never_serves_a_neighbour_when_the_shared_tier_has_the_match(
    node_factory: NodeFactory,
) -> None:
    node = await node_factory({"namespaces": [LOOSE]})
    for prompt in (RIGHT, NEIGHBOUR):
        stored = await node.client.post(
            "/v1/cache/store",
            json={
                "request": {
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": prompt}],
                },
                "response": answer(f"answer to: {prompt}"),
            },
        )
        assert stored.status_code == 201, stored.text
    await node.settle()
    engine = node.runtime.engine
    engine.l1_exact.clear()  # as after a restart: only the shared tier has them
    engine.l1_semantic.clear()

    # A paraphrase of the neighbour brings the neighbour (alone) into L1.
    first = await node.chat(NEIGHBOUR_PARAPHRASE)
    assert first.headers["x-cachefleet-cache"] == "hit-semantic"
    assert first.headers["x-cachefleet-tier"] == "l2"
    assert len(engine.l1_semantic) == 1

    # The near-repeat of the other question: L1 offers only the neighbour (above the loose
    # threshold); the shared tier has the real match, which must win.
    served = await node.chat(NEAR_REPEAT)
    assert served.headers["x-cachefleet-cache"] == "hit-semantic"
    content = served.json()["choices"][0]["message"]["content"]
    assert content == f"answer to: {RIGHT}", content
    assert served.headers["x-cachefleet-tier"] == "l2"

    # Once L1 has it, a near-identical request is settled in L1 without asking Milvus.
    again = await node.chat(NEAR_REPEAT)
    assert again.headers["x-cachefleet-tier"] == "l1"
    assert again.json()["choices"][0]["message"]["content"] == f"answer to: {RIGHT}"
