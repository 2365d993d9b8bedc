"""The node config the operator renders: a valid `NodeConfig`, no secrets, loads with env."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from operator_testdata import EXAMPLES, NAMESPACE, cache, documents, model_version

from cachefleet_contract.config import NodeConfig
from cachefleet_node.config import load_node_config
from cachefleet_operator.api.v1alpha1 import ModelVersionStatus
from cachefleet_operator.domain.naming import cache_namespace
from cachefleet_operator.domain.nodeconfig import (
    MILVUS_TOKEN_ENV,
    REDIS_URL_ENV,
    SpecError,
    build_node_config,
    node_config_yaml,
    tenant_key_env,
)
from cachefleet_operator.domain.render import render_nodes

EXAMPLE_SECRET_VALUES = [
    value
    for path in EXAMPLES.glob("*.yaml")
    for doc in documents(path)
    if doc["kind"] == "Secret"
    for value in doc["stringData"].values()
]


def rendered(cache_name: str = "chat", **spec_changes: object) -> tuple[NodeConfig, str]:
    config = build_node_config(cache(cache_name, **spec_changes), [model_version()])
    return config, node_config_yaml(config)


def test_the_yaml_is_a_valid_node_config_with_what_the_spec_says() -> None:
    config, text = rendered()
    assert NodeConfig.model_validate(yaml.safe_load(text)) == config
    assert config.server.host == "0.0.0.0"
    assert config.server.port == 8080
    assert config.embedding.kind == "remote"
    assert config.embedding.remote_url == f"http://chat-embedding.{NAMESPACE}.svc:8080"
    assert config.embedding.model_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert config.milvus.uri == f"http://chat-milvus.{NAMESPACE}.svc:19530"
    [namespace] = config.namespaces
    assert namespace.name == "gpt-4o-mini"
    assert namespace.cache_namespace == cache_namespace("gpt-4o-mini", model_version().spec)
    assert namespace.models == ["gpt-4o-mini", "gpt-4o-mini-2024-07-18"]
    assert (namespace.similarity_threshold, namespace.ttl_s) == (0.92, 604800)
    assert namespace.temperature_policy == "sample:3"
    assert namespace.sample_size == 3
    assert [(k.tenant, k.key_env, k.admin) for k in config.auth.api_keys] == [
        ("search", tenant_key_env(0), False),
        ("support", tenant_key_env(1), False),
        ("platform", tenant_key_env(2), True),
    ]


def test_every_policy_reaches_the_namespace() -> None:
    policies = {
        "similarityThreshold": 0.95,
        "minThreshold": 0.9,
        "maxThreshold": 0.99,
        "semantic": False,
        "fuzzyText": "all_user_turns",
        "ttlSeconds": 60,
        "maxEntryBytes": 4096,
        "temperaturePolicy": "bypass",
        "cacheToolResults": True,
    }
    config, _ = rendered(policies=policies)
    namespace = config.namespaces[0]
    assert (namespace.similarity_threshold, namespace.min_threshold, namespace.max_threshold) == (
        0.95,
        0.9,
        0.99,
    )
    assert (namespace.semantic, namespace.fuzzy_text, namespace.ttl_s) == (
        False,
        "all_user_turns",
        60,
    )
    assert (namespace.max_entry_bytes, namespace.temperature_policy) == (4096, "bypass")
    assert namespace.cache_tool_results is True


def test_no_secret_in_the_config_map() -> None:
    for cache_name in ("chat", "dev"):
        _, text = rendered(cache_name)
        assert "redis://" not in text
        assert "token" not in text
        for value in EXAMPLE_SECRET_VALUES:
            assert value not in text
        data = yaml.safe_load(text)
        assert "url" not in data.get("redis", {})
        assert all("key_sha256" not in key for key in data["auth"]["api_keys"])


def test_the_node_loads_the_config_map_with_secrets_from_env(tmp_path: Path) -> None:
    milvus = {
        "external": {
            "uri": "https://milvus.example.com:19530",
            "tokenSecretRef": {"name": "m", "key": "t"},
        }
    }
    _, text = rendered("dev", semanticTier=milvus)
    path = tmp_path / "node.yaml"
    path.write_text(text)
    environ = {
        REDIS_URL_ENV: "redis://:s3cret@redis.example.com:6379/0",
        MILVUS_TOKEN_ENV: "root:Milvus",
    }
    config = load_node_config(path, environ=environ)
    assert config.redis.url is not None
    assert config.redis.url.get_secret_value() == environ[REDIS_URL_ENV]
    assert config.milvus.token is not None
    assert config.milvus.token.get_secret_value() == "root:Milvus"
    assert config.milvus.uri == "https://milvus.example.com:19530"


def test_env_of_the_node_pods_matches_the_config() -> None:
    chat = cache()
    config = build_node_config(chat, [model_version()])
    deployment = next(
        m for m in render_nodes(chat, [model_version()], {}) if m["kind"] == "Deployment"
    )
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    for key in config.auth.api_keys:
        assert key.key_env in env
        assert env[key.key_env]["valueFrom"]["secretKeyRef"] == {
            "name": "chat-tenants",
            "key": key.tenant,
        }
    assert config.upstream.api_key_env in env


def test_embedded_and_local_modes() -> None:
    config, text = rendered("dev")
    assert config.milvus.uri is None  # Milvus Lite under data_dir
    assert "uri" not in yaml.safe_load(text)["milvus"]
    assert config.embedding.kind == "local"
    assert config.embedding.hub_cache_dir == "/var/cache/cachefleet/models"
    assert config.data_dir == "/var/lib/cachefleet"
    assert config.upstream.base_url == "http://llm-stub.default.svc:9000/v1"


def test_namespaces_follow_the_spec_order_and_the_status() -> None:
    claude = model_version("claude", model="claude-sonnet", version="4", requestModels=None)
    kept = model_version().model_copy(
        update={"status": ModelVersionStatus(cache_namespace="gpt-4o-mini-kept")}
    )
    spec_refs = [{"name": "claude"}, {"name": "gpt-4o-mini"}]
    config = build_node_config(cache(modelVersions=spec_refs), [kept, claude])
    assert [ns.name for ns in config.namespaces] == ["claude", "gpt-4o-mini"]
    assert config.namespaces[0].models == ["claude-sonnet"]  # default: the model itself
    assert config.namespaces[1].cache_namespace == "gpt-4o-mini-kept"


def test_missing_model_version_and_embedding_conflict_are_spec_errors() -> None:
    with pytest.raises(SpecError) as missing:
        build_node_config(cache(modelVersions=[{"name": "gpt-5"}]), [model_version()])
    assert missing.value.reason == "ModelVersionNotFound"
    assert "gpt-5" in str(missing.value)
    other = model_version("bge", embeddingModel="BAAI/bge-small-en-v1.5")
    refs = [{"name": "gpt-4o-mini"}, {"name": "bge"}]
    with pytest.raises(SpecError) as conflict:
        build_node_config(cache(modelVersions=refs), [model_version(), other])
    assert conflict.value.reason == "EmbeddingModelConflict"


def test_fleets_in_other_namespaces_get_other_prefixes() -> None:
    here = build_node_config(cache(), [model_version()])
    elsewhere_cache = cache().model_copy(
        update={"metadata": cache().metadata.model_copy(update={"namespace": "other"})}
    )
    elsewhere = build_node_config(elsewhere_cache, [model_version()])
    assert here.redis.key_prefix != elsewhere.redis.key_prefix
    assert here.milvus.collection_prefix != elsewhere.milvus.collection_prefix


def test_the_lifecycle_decides_the_served_namespace_and_the_embedding_next() -> None:
    """What every node serves (a switch verified) and a migration's next model (issue 5)."""
    from cachefleet_operator.domain.render import FleetView, render_children

    chat = cache(policies={"similarityThreshold": 0.9, "thresholds": {"x/next-model": 0.86}})
    config = build_node_config(
        chat,
        [model_version()],
        served={"gpt-4o-mini": "gpt-4o-mini-0123456789"},
        embedding=("sentence-transformers/all-MiniLM-L6-v2", "x/next-model"),
    )
    [namespace] = config.namespaces
    assert namespace.cache_namespace == "gpt-4o-mini-0123456789"
    assert namespace.thresholds == {"x/next-model": 0.86}
    assert namespace.threshold_for("x/next-model") == 0.86
    assert namespace.threshold_for("sentence-transformers/all-MiniLM-L6-v2") == 0.9
    # GPU mode: the TEI pods keep serving the model lookups use; the next one runs in the node.
    assert config.embedding.kind == "remote"
    assert config.embedding_next is not None
    assert (config.embedding_next.kind, config.embedding_next.model_id) == ("local", "x/next-model")
    text = node_config_yaml(config)
    assert NodeConfig.model_validate(yaml.safe_load(text)) == config
    moved = model_version(embeddingModel="x/next-model")
    fleet = FleetView(
        served={"gpt-4o-mini": "gpt-4o-mini-0123456789"},
        embedding=("sentence-transformers/all-MiniLM-L6-v2", "x/next-model"),
    )
    children = render_children(chat, [moved], fleet)
    tei = next(
        c
        for c in children
        if c["kind"] == "Deployment" and c["metadata"]["name"] == "chat-embedding"
    )
    args = " ".join(tei["spec"]["template"]["spec"]["containers"][0].get("args", []))
    assert "sentence-transformers/all-MiniLM-L6-v2" in args
    # Without a migration nothing extra is written (the goldens do not move).
    plain = node_config_yaml(build_node_config(cache(), [model_version()]))
    assert "embedding_next" not in plain
    assert "thresholds" not in plain


def test_guards_and_lexical_weight_reach_the_node_only_when_set() -> None:
    policies = {"similarityThreshold": 0.6, "minThreshold": 0.5, "lexicalWeight": 0.2}
    weighted = build_node_config(
        cache(policies={**policies, "guards": {"numbers": False}}), [model_version()]
    )
    [namespace] = weighted.namespaces
    assert namespace.lexical_weight == 0.2
    assert namespace.guards.model_dump() == {
        "negation": True,
        "opposites": True,
        "numbers": False,
        "entities": True,
    }
    text = node_config_yaml(weighted)
    assert "lexical_weight: 0.2" in text
    assert "numbers: false" in text
    plain = node_config_yaml(build_node_config(cache(), [model_version()]))
    assert "lexical_weight" not in plain
    assert "guards" not in plain


def external_redis(**topology: object) -> dict[str, object]:
    return {"external": {"urlSecretRef": {"name": "redis", "key": "url"}, **topology}}


def test_the_redis_topology_reaches_the_node_and_loads_with_the_url(tmp_path: Path) -> None:
    seeds = ["redis-1.data.svc:6379", "redis-2.data.svc:6379"]
    config, text = rendered("dev", exactTier=external_redis(mode="cluster", seedNodes=seeds))
    redis = yaml.safe_load(text)["redis"]
    assert redis == {"key_prefix": config.redis.key_prefix, "mode": "cluster", "nodes": seeds}
    path = tmp_path / "node.yaml"
    path.write_text(text)
    url = "redis://:s3cret@redis-0.data.svc:6379/0"
    loaded = load_node_config(path, environ={REDIS_URL_ENV: url})
    assert (loaded.redis.mode, loaded.redis.nodes) == ("cluster", seeds)
    assert loaded.redis.url is not None
    assert loaded.redis.url.get_secret_value() == url

    sentinel = external_redis(
        mode="sentinel", seedNodes=["sentinel-1.data.svc:26379"], sentinelService="mymaster"
    )
    config, text = rendered("dev", exactTier=sentinel)
    assert yaml.safe_load(text)["redis"] == {
        "key_prefix": config.redis.key_prefix,
        "mode": "sentinel",
        "nodes": ["sentinel-1.data.svc:26379"],
        "sentinel_service": "mymaster",
    }
    path.write_text(text)
    loaded = load_node_config(path, environ={REDIS_URL_ENV: "redis://sentinel-0.data.svc:26379"})
    assert (loaded.redis.mode, loaded.redis.sentinel_service) == ("sentinel", "mymaster")
    # The URL (and its password) stays in the Secret: the pods read it from the environment.
    deployment = next(
        m
        for m in render_nodes(cache("dev", exactTier=sentinel), [model_version()], {})
        if m["kind"] == "Deployment"
    )
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env[REDIS_URL_ENV]["valueFrom"]["secretKeyRef"] == {"name": "redis", "key": "url"}


def test_one_redis_server_leaves_the_mode_to_the_node() -> None:
    """Managed and external standalone Redis write no topology: existing fleets' files (and
    pods) do not change."""
    for exact_tier in ({"managed": {}}, external_redis(), external_redis(mode="standalone")):
        config, text = rendered("dev", exactTier=exact_tier)
        assert config.redis.mode == "standalone"
        assert yaml.safe_load(text)["redis"] == {"key_prefix": config.redis.key_prefix}
