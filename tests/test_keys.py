"""Keys and partitions: exact keys are stable, semantic partitions isolate by construction."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cachefleet_node.core.keys import compute_keys
from cachefleet_node.memory import MemoryBudget
from cachefleet_node.tiers.l1_semantic import SemanticIndex, VectorMeta

GOLDEN = Path(__file__).parent / "golden" / "keys.json"

BASE: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are a helpful support assistant."},
        {"role": "user", "content": "How do I reset my password?"},
    ],
    "temperature": 0,
}


def body(**changes: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(BASE))
    data.update(changes)
    return data


def with_messages(*messages: dict[str, Any]) -> dict[str, Any]:
    return body(messages=list(messages))


USER = {"role": "user", "content": "How do I reset my password?"}

# Each variant differs from BASE in exactly one thing that must separate partitions.
PARTITION_VARIANTS: dict[str, dict[str, Any]] = {
    "model": body(model="gpt-4o"),
    "system prompt": with_messages({"role": "system", "content": "You are a pirate."}, USER),
    "no system prompt": with_messages(USER),
    "earlier turns": with_messages(
        {"role": "system", "content": "You are a helpful support assistant."},
        {"role": "user", "content": "I use the mobile app."},
        {"role": "assistant", "content": "Okay."},
        USER,
    ),
    "tools": body(tools=[{"type": "function", "function": {"name": "lookup", "parameters": {}}}]),
    "response format": body(response_format={"type": "json_object"}),
    "temperature": body(temperature=0.7),
    "top_p": body(top_p=0.5),
    "max tokens": body(max_tokens=16),
    "seed": body(seed=7),
    "unknown field": body(reasoning_effort="high"),
}


def keys(data: dict[str, Any], tenant: str = "acme", namespace: str = "chat"):  # type: ignore[no-untyped-def]
    return compute_keys(data, namespace=namespace, tenant=tenant)


def test_exact_key_is_deterministic_and_ignores_answer_neutral_fields() -> None:
    assert keys(body()).exact == keys(body()).exact
    neutral = body(
        stream=True, stream_options={"include_usage": True}, user="u-1", metadata={"a": 1}
    )
    assert keys(neutral).exact == keys(body()).exact
    reordered = dict(reversed(list(body().items())))
    assert keys(reordered).exact == keys(body()).exact


@pytest.mark.parametrize("name", sorted(PARTITION_VARIANTS))
def test_every_context_difference_changes_exact_key_and_partition(name: str) -> None:
    base, other = keys(body()), keys(PARTITION_VARIANTS[name])
    assert base.semantic is not None
    assert other.semantic is not None
    assert other.exact != base.exact
    assert other.semantic.partition != base.semantic.partition
    # the fuzzy text is the same: only the context differs
    assert other.semantic.text == base.semantic.text


@pytest.mark.parametrize(
    ("tenant", "namespace"), [("globex", "chat"), ("acme", "chat-v2")], ids=["tenant", "namespace"]
)
def test_tenant_and_namespace_separate_everything(tenant: str, namespace: str) -> None:
    base, other = keys(body()), keys(body(), tenant=tenant, namespace=namespace)
    assert base.semantic is not None
    assert other.semantic is not None
    assert other.exact != base.exact
    assert other.semantic.partition != base.semantic.partition


def test_paraphrase_shares_partition_but_not_exact_key() -> None:
    paraphrase = with_messages(
        BASE["messages"][0], {"role": "user", "content": "how can I reset my password"}
    )
    base, other = keys(body()), keys(paraphrase)
    assert base.semantic is not None
    assert other.semantic is not None
    assert other.exact != base.exact
    assert other.semantic.partition == base.semantic.partition
    assert other.semantic.text == "how can I reset my password"


def test_text_only_parts_count_as_text_and_images_disable_semantic() -> None:
    parts = with_messages({"role": "user", "content": [{"type": "text", "text": "hello"}]})
    assert keys(parts).semantic is not None
    assert keys(parts).semantic.text == "hello"
    image = with_messages(
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
        }
    )
    assert keys(image).semantic is None
    assert keys(image).semantic_skip_reason == "user turn is not plain text"


def test_last_turn_must_be_user_for_semantic() -> None:
    tool = with_messages(USER, {"role": "tool", "content": "42", "tool_call_id": "c1"})
    assert keys(tool).semantic is None
    assert keys(tool).semantic_skip_reason == "last message is not a user turn"


def test_all_user_turns_mode_embeds_every_user_turn() -> None:
    data = with_messages(
        {"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"}, USER
    )
    semantic = compute_keys(data, namespace="chat", tenant="acme", fuzzy="all_user_turns").semantic
    assert semantic is not None
    assert semantic.text == "first\nHow do I reset my password?"


def test_identical_vectors_never_match_across_partitions() -> None:
    """Whatever the similarity (here exactly 1.0), a search only sees its own partition."""
    index = SemanticIndex(dim=4, max_entries=100, budget=MemoryBudget(1 << 30))
    vector = np.array([1, 0, 0, 0], dtype=np.float32)
    base = keys(body()).semantic
    assert base is not None
    meta = VectorMeta("e-base", "chat", "acme", "How do I reset my password?", 0.0, 1e12)
    index.add(base.partition, vector, meta)
    for name, variant in PARTITION_VARIANTS.items():
        other = keys(variant).semantic
        assert other is not None
        assert index.search(other.partition, vector, 4, now=1.0) == [], name
    for tenant, namespace in [("globex", "chat"), ("acme", "other")]:
        other = keys(body(), tenant=tenant, namespace=namespace).semantic
        assert other is not None
        assert index.search(other.partition, vector, 4, now=1.0) == []
    found = index.search(base.partition, vector, 4, now=1.0)
    assert [c.meta.entry_id for c in found] == ["e-base"]


def test_keys_match_golden_file() -> None:
    """Key layout changes invalidate every cache in production: they must be deliberate.

    Regenerate with CACHEFLEET_UPDATE_GOLDEN=1 after an intended change (and bump KEY_VERSION).
    """
    cases = {"base": body(), **PARTITION_VARIANTS}
    actual = {}
    for name, data in sorted(cases.items()):
        computed = keys(data)
        actual[name] = {
            "exact": computed.exact,
            "partition": computed.semantic.partition if computed.semantic else None,
        }
    if os.environ.get("CACHEFLEET_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
    assert actual == json.loads(GOLDEN.read_text())
