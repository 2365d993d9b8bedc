"""The optional lexical term of the semantic score (`lexical_weight`): pure function and the
node's choice between real candidates, from the in-process index and from Milvus."""

from __future__ import annotations

import pytest

from cachefleet_node.config import NamespaceConfig
from cachefleet_node.core.lexical import blended_score, content_words, word_overlap
from node_harness import NodeFactory

QUERY = "how much is on my paycheck this week"
NEAREST = "what're my wages for the week"  # higher cosine (≈0.78), shares only "week"
WORDIER = "did i receive my paycheck this week"  # lower cosine (≈0.72), shares "paycheck week"


def test_content_words_drop_function_words() -> None:
    assert content_words(QUERY) == {"much", "paycheck", "week"}
    assert content_words("What is it?") == frozenset()


def test_word_overlap_is_a_jaccard_index() -> None:
    assert word_overlap(QUERY, WORDIER) == pytest.approx(2 / 4)
    assert word_overlap(QUERY, QUERY) == 1.0
    assert word_overlap(QUERY, "What is it?") == 0.0
    assert word_overlap(QUERY, WORDIER) == word_overlap(WORDIER, QUERY)


def test_weight_zero_is_cosine_alone() -> None:
    assert blended_score(0.7, QUERY, WORDIER, 0.0) == 0.7
    assert blended_score(0.7, QUERY, WORDIER, 0.2) == pytest.approx(0.8)


def test_the_weight_is_bounded() -> None:
    with pytest.raises(ValueError, match="lexical_weight"):
        NamespaceConfig(name="default", lexical_weight=0.9)


@pytest.mark.parametrize("tier", ["l1", "l2"])
@pytest.mark.parametrize(("weight", "served"), [(0.0, NEAREST), (0.3, WORDIER)])
async def test_the_node_serves_the_best_blended_candidate(
    node_factory: NodeFactory, tier: str, weight: float, served: str
) -> None:
    namespace = {
        "name": "default",
        "similarity_threshold": 0.75,
        "lexical_weight": weight,
        "verifier": {"enabled": False},  # the lexical term alone decides here
    }
    node = await node_factory({"namespaces": [namespace]})
    for prompt in (NEAREST, WORDIER):
        assert (await node.chat(prompt)).headers["x-cachefleet-cache"] == "miss"
    await node.settle()
    if tier == "l2":
        node.runtime.engine.clear_l1()  # the candidates now come from Milvus
    response = await node.chat(QUERY)
    assert response.headers["x-cachefleet-cache"] == "hit-semantic"
    assert response.headers["x-cachefleet-tier"] == tier
    assert f"Answer to '{served}'" in response.json()["choices"][0]["message"]["content"]
