"""The pydantic API models: examples parse, bad specs fail like the CRD says, node defaults."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from operator_testdata import EXAMPLES, INVALID, cache, documents, example, expected_message
from pydantic import ValidationError

from cachefleet_contract.config import DeadlinesConfig, NamespaceConfig
from cachefleet_operator.api.v1alpha1 import (
    CacheInvalidation,
    ExternalRedis,
    ManagedRedis,
    ModelVersion,
    SemanticCache,
    cacheinvalidation,
    modelversion,
    placement,
    semanticcache,
    types,
)
from cachefleet_operator.api.v1alpha1.semanticcache import Deadlines, FuzzyText, Policies

MODELS = {
    "SemanticCache": SemanticCache,
    "ModelVersion": ModelVersion,
    "CacheInvalidation": CacheInvalidation,
}


def all_rule_messages() -> list[str]:
    """Messages of every CEL rule with a Python twin, across all API models."""
    messages = []
    for module in (semanticcache, modelversion, cacheinvalidation, placement, types):
        for value in vars(module).values():
            if isinstance(value, type) and hasattr(value, "cel_rules"):
                messages += [rule.message for rule in value.cel_rules if rule.check is not None]
    return messages


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_parse(path: Path) -> None:
    kinds = [doc["kind"] for doc in documents(path)]
    assert set(kinds) & set(MODELS), f"{path.name} holds no cachefleet object"
    for doc in documents(path):
        if doc["kind"] in MODELS:
            MODELS[doc["kind"]].model_validate(doc)


@pytest.mark.parametrize("case", sorted(INVALID.glob("*.yaml")), ids=lambda p: p.stem)
def test_invalid_cases_fail_in_python_too(case: Path) -> None:
    """Single-document cases fail to parse; a CEL rule's Python twin gives the same message.

    Update cases (two documents) are only detectable by the API server: the new object alone
    is valid.
    """
    *earlier, last = documents(case)
    model = MODELS[last["kind"]]
    if earlier:
        model.model_validate(last)
        return
    with pytest.raises(ValidationError) as failed:
        model.model_validate(last)
    message = expected_message(case)
    if any(message in rule_message for rule_message in all_rule_messages()):
        assert message in str(failed.value)


def test_every_rule_twin_is_exercised_by_an_invalid_case() -> None:
    # (an expectation may start with the field path the API server names: "f.g: Invalid value: ")
    expectations = [
        expected_message(case).rpartition("Invalid value: ")[2] for case in INVALID.glob("*.yaml")
    ]
    for message in all_rule_messages():
        assert any(expected in message for expected in expectations), message


def test_policy_defaults_are_the_nodes() -> None:
    node = NamespaceConfig(name="x")
    policies = Policies()
    assert policies.similarity_threshold == node.similarity_threshold
    assert policies.min_threshold == node.min_threshold
    assert policies.max_threshold == node.max_threshold
    assert policies.semantic == node.semantic
    assert policies.fuzzy_text == node.fuzzy_text
    assert policies.ttl_seconds == node.ttl_s
    assert policies.max_entry_bytes == node.max_entry_bytes
    assert policies.temperature_policy == node.temperature_policy
    assert policies.cache_tool_results == node.cache_tool_results
    assert set(typing.get_args(FuzzyText)) == set(
        typing.get_args(NamespaceConfig.model_fields["fuzzy_text"].annotation)
    )
    deadlines, node_deadlines = Deadlines(), DeadlinesConfig()
    assert (deadlines.redis_ms, deadlines.milvus_ms) == (
        node_deadlines.redis_ms,
        node_deadlines.milvus_ms,
    )
    assert (deadlines.embedder_ms, deadlines.embedder_queue_ms, deadlines.write_ms) == (
        node_deadlines.embedder_ms,
        node_deadlines.embedder_queue_ms,
        node_deadlines.write_ms,
    )
    # Every node deadline can be set from the SemanticCache.
    assert set(Deadlines.model_fields) == set(DeadlinesConfig.model_fields) - {
        "breaker_failures",
        "breaker_cooldown_s",
    }


def test_wire_format_is_camel_case_and_round_trips() -> None:
    chat = cache()
    wire = chat.to_api()
    assert wire["spec"]["embedding"]["gpu"]["gpusPerPod"] == 1
    assert wire["spec"]["nodes"]["autoscaling"]["targetCPUUtilizationPercentage"] == 70
    assert wire["spec"]["upstream"]["baseURL"] == "https://api.openai.com/v1"
    assert "auth" in wire["spec"]
    assert "targets" in wire["spec"]
    assert SemanticCache.model_validate(wire) == chat
    # Snake-case names work in Python too.
    assert ManagedRedis(max_memory="1Gi", eviction_policy="allkeys-lru").to_api() == {
        "image": ManagedRedis().image,
        "maxMemory": "1Gi",
        "evictionPolicy": "allkeys-lru",
    }


def test_unset_optional_fields_are_left_out() -> None:
    dev = SemanticCache.model_validate(example("SemanticCache", "dev")).to_api()["spec"]
    assert "auth" not in dev
    assert "targets" not in dev
    assert "gpu" not in dev["embedding"]
    assert "persistence" not in dev["exactTier"].get("managed", {})


def test_quantities_accept_numbers_and_strings() -> None:
    assert ManagedRedis(max_memory=1073741824).max_memory == 1073741824
    assert ManagedRedis(max_memory="1.5Gi").max_memory == "1.5Gi"
    for bad in ("4GB", "-1Gi", "", 0):
        with pytest.raises(ValidationError):
            ManagedRedis(max_memory=bad)


def test_status_conditions_need_a_transition_time() -> None:
    with pytest.raises(ValidationError, match=r"last_transition_time|lastTransitionTime"):
        SemanticCache.model_validate(
            {
                **example("SemanticCache", "dev"),
                "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}]},
            }
        )


def test_external_redis_topology_follows_the_mode() -> None:
    ref = {"urlSecretRef": {"name": "redis", "key": "url"}}
    assert ExternalRedis.model_validate(ref).to_api() == {**ref, "mode": "standalone"}
    cluster = ExternalRedis.model_validate(
        {**ref, "mode": "cluster", "seedNodes": ["redis-1.data.svc:6379", "[fd00::1]:6379"]}
    )
    assert cluster.seed_nodes == ["redis-1.data.svc:6379", "[fd00::1]:6379"]
    sentinel = ExternalRedis(
        url_secret_ref=ref["urlSecretRef"], mode="sentinel", sentinel_service="mymaster"
    )
    assert sentinel.to_api()["sentinelService"] == "mymaster"
    with pytest.raises(ValidationError, match=r"sentinelService is required when mode is"):
        ExternalRedis.model_validate({**ref, "mode": "sentinel"})
    for mode in ("standalone", "cluster"):
        with pytest.raises(ValidationError, match=r"sentinelService is required .* left out"):
            ExternalRedis.model_validate({**ref, "mode": mode, "sentinelService": "mymaster"})
    with pytest.raises(ValidationError, match=r"seedNodes is for mode cluster or sentinel"):
        ExternalRedis.model_validate({**ref, "seedNodes": ["redis-1.data.svc:6379"]})
    for bad in (["redis-1.data.svc"], [], ["a b:6379"]):
        with pytest.raises(ValidationError, match="seedNodes"):
            ExternalRedis.model_validate({**ref, "mode": "cluster", "seedNodes": bad})
