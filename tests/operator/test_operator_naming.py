"""Deterministic names: cache namespaces, child names, per-fleet storage prefixes."""

from __future__ import annotations

import re

import pytest
from operator_testdata import model_version

from cachefleet_contract.config import MilvusConfig, RedisConfig
from cachefleet_operator.api.v1alpha1 import ModelVersionStatus
from cachefleet_operator.domain.naming import (
    CHILD_NAME_MAX_LENGTH,
    Component,
    active_cache_namespace,
    cache_namespace,
    child_name,
    collection_prefix,
    key_prefix,
)

IDENTIFIER = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")  # the node's Identifier


def derived(name: str = "gpt-4o-mini", **spec_changes: object) -> str:
    mv = model_version(name, **spec_changes)
    return cache_namespace(mv.metadata.name, mv.spec)


def test_cache_namespace_is_a_readable_slug_plus_a_stable_hash() -> None:
    namespace = derived()
    assert re.fullmatch(r"gpt-4o-mini-[0-9a-f]{10}", namespace)
    assert namespace == derived()  # deterministic
    assert namespace == "gpt-4o-mini-a1a7439fc3"  # and stable across releases


@pytest.mark.parametrize(
    "change",
    [
        {"version": "2024-09-01"},
        {"promptTemplateHash": "sha256:9c1e"},
        {"embeddingModel": "BAAI/bge-small-en-v1.5"},
        {"invalidation": {"epoch": 1}},
    ],
    ids=lambda change: next(iter(change)),
)
def test_each_identity_field_changes_the_namespace(change: dict[str, object]) -> None:
    assert derived(**change) != derived()


def test_every_epoch_gives_a_new_namespace() -> None:
    namespaces = {derived(invalidation={"epoch": epoch}) for epoch in range(50)}
    assert len(namespaces) == 50


def test_policy_and_request_models_do_not_change_the_namespace() -> None:
    assert derived(policy="Keep") == derived()
    assert derived(requestModels=["*"]) == derived()
    assert derived(rollover={"retainFor": "1h"}) == derived()


def test_the_model_itself_is_part_of_the_identity() -> None:
    mv = model_version()
    other = mv.spec.model_copy(update={"model": "gpt-4o"})
    assert cache_namespace(mv.metadata.name, other) != cache_namespace(mv.metadata.name, mv.spec)


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "gpt-4o-mini",
        "llama.3.1-8b-instruct",
        "x" * 63,
        "a-" * 31 + "b",
        "0.0.0",
        "m-" + "9" * 60,
    ],
)
def test_namespaces_are_valid_node_identifiers(name: str) -> None:
    namespace = derived(name)
    assert len(namespace) <= 63
    assert IDENTIFIER.fullmatch(namespace), namespace


def test_active_namespace_prefers_what_the_status_says() -> None:
    mv = model_version()
    assert active_cache_namespace(mv) == derived()
    kept = mv.model_copy(update={"status": ModelVersionStatus(cache_namespace="gpt-4o-mini-kept")})
    assert active_cache_namespace(kept) == "gpt-4o-mini-kept"


def test_child_names_fit_every_kind_and_stay_distinct() -> None:
    assert child_name("chat", Component.REDIS) == "chat-redis"
    long_names = ["c" * 63, "c" * 62 + "d", "c" * 45]
    produced = set()
    for cache_name in long_names:
        for component in Component:
            name = child_name(cache_name, component)
            assert len(name) <= CHILD_NAME_MAX_LENGTH
            assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name)
            assert name.endswith(f"-{component.value}")
            produced.add(name)
    assert len(produced) == len(long_names) * len(Component)


def test_storage_prefixes_separate_fleets_and_suit_the_node() -> None:
    prefixes = {key_prefix(ns, name) for ns in ("a", "b") for name in ("chat", "search")}
    collections = {collection_prefix(ns, name) for ns in ("a", "b") for name in ("chat", "search")}
    assert len(prefixes) == len(collections) == 4
    for prefix in prefixes:
        RedisConfig(key_prefix=prefix)
    for prefix in collections:
        MilvusConfig(collection_prefix=prefix)
    assert key_prefix("a", "chat") == key_prefix("a", "chat")
