"""The cache node's `NodeConfig`, built from a SemanticCache and its resolved ModelVersions.

The config goes into a ConfigMap, so it never holds a secret: the Redis URL (it may carry a
password), the Milvus token, the upstream API key and the tenants' keys reach the node as
environment variables (`*_ENV` below), which the node's loader merges over the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from cachefleet_contract.config import (
    AuthConfig,
    DeadlinesConfig,
    EmbeddingConfig,
    GuardsConfig,
    MilvusConfig,
    NamespaceConfig,
    NodeConfig,
    RedisConfig,
    ServerConfig,
    TenantKey,
    UpstreamConfig,
    VerifierConfig,
)
from cachefleet_operator.api.v1alpha1 import ModelVersion, SemanticCache
from cachefleet_operator.domain.naming import (
    Component,
    active_cache_namespace,
    child_name,
    collection_prefix,
    key_prefix,
    milvus_operator_service,
    namespace_of,
)

__all__ = [
    "CONFIG_FILE",
    "CONFIG_MOUNT",
    "DATA_DIR",
    "EMBEDDING_PORT",
    "MILVUS_PORT",
    "MILVUS_TOKEN_ENV",
    "MODEL_CACHE_DIR",
    "NODE_METRICS_PORT",
    "NODE_PORT",
    "REDIS_PORT",
    "REDIS_URL_ENV",
    "UPSTREAM_API_KEY_ENV",
    "SpecError",
    "build_node_config",
    "embedding_model",
    "node_config_yaml",
    "resolve_model_versions",
    "service_host",
    "tenant_key_env",
]

NODE_PORT = 8080
# `/metrics` without the API keys, for Prometheus (the API port needs a key when keys are set).
NODE_METRICS_PORT = 9090
REDIS_PORT = 6379
MILVUS_PORT = 19530
EMBEDDING_PORT = 8080
CONFIG_MOUNT = "/etc/cachefleet"
CONFIG_FILE = "node.yaml"
DATA_DIR = "/var/lib/cachefleet"
MODEL_CACHE_DIR = "/var/cache/cachefleet/models"
#: Environment variables that carry the node's secrets (the loader merges them over the file).
REDIS_URL_ENV = "CACHEFLEET_REDIS__URL"
MILVUS_TOKEN_ENV = "CACHEFLEET_MILVUS__TOKEN"  # noqa: S105 - a variable name, not a token
UPSTREAM_API_KEY_ENV: str = UpstreamConfig.model_fields["api_key_env"].default
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - a pod serves on its pod IP


class SpecError(ValueError):
    """A spec the schema accepts but the operator cannot run; `reason` goes to `Stalled`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def tenant_key_env(index: int) -> str:
    """Variable holding the API key of the `index`-th tenant of `spec.auth.tenants`."""
    return f"CACHEFLEET_TENANT_KEY_{index}"


def service_host(cache: SemanticCache, component: Component) -> str:
    """In-cluster DNS name of a component's Service."""
    return f"{child_name(cache.metadata.name, component)}.{namespace_of(cache)}.svc"


def resolve_model_versions(
    cache: SemanticCache, model_versions: Sequence[ModelVersion]
) -> list[ModelVersion]:
    """The referenced ModelVersions in `spec.modelVersions` order; `SpecError` if any is missing."""
    by_name = {mv.metadata.name: mv for mv in model_versions}
    missing = [ref.name for ref in cache.spec.model_versions if ref.name not in by_name]
    if missing:
        raise SpecError(
            "ModelVersionNotFound",
            f"ModelVersion {', '.join(missing)} not found in namespace {namespace_of(cache)}",
        )
    return [by_name[ref.name] for ref in cache.spec.model_versions]


def embedding_model(model_versions: Sequence[ModelVersion]) -> str:
    """The one embedding model of the ModelVersions; `SpecError` if they disagree."""
    models = sorted({mv.spec.embedding_model for mv in model_versions})
    if len(models) > 1:
        raise SpecError(
            "EmbeddingModelConflict",
            "the ModelVersions of one SemanticCache must share an embeddingModel (the nodes embed "
            f"with one model); found {', '.join(models)}",
        )
    return models[0]


def _namespace(
    cache: SemanticCache, model_version: ModelVersion, served: Mapping[str, str] | None
) -> NamespaceConfig:
    policies = cache.spec.policies
    name = model_version.metadata.name
    extra: dict[str, Any] = {}
    if policies.thresholds:  # only when set: the file says what the operator decided
        extra["thresholds"] = dict(policies.thresholds)
    if policies.guards is not None:
        extra["guards"] = GuardsConfig(**policies.guards.model_dump())
    if policies.verifier is not None:
        extra["verifier"] = VerifierConfig(**policies.verifier.model_dump(by_alias=False))
    if policies.lexical_weight is not None:
        extra["lexical_weight"] = policies.lexical_weight
    return NamespaceConfig(
        name=name,
        cache_namespace=(served or {}).get(name) or active_cache_namespace(model_version),
        models=list(model_version.spec.request_models or [model_version.spec.model]),
        similarity_threshold=policies.similarity_threshold,
        min_threshold=policies.min_threshold,
        max_threshold=policies.max_threshold,
        semantic=policies.semantic,
        fuzzy_text=policies.fuzzy_text,
        ttl_s=policies.ttl_seconds,
        max_entry_bytes=policies.max_entry_bytes,
        temperature_policy=policies.temperature_policy,
        cache_tool_results=policies.cache_tool_results,
        **extra,
    )


def _milvus(cache: SemanticCache) -> MilvusConfig:
    tier = cache.spec.semantic_tier
    prefix = collection_prefix(namespace_of(cache), cache.metadata.name)
    if tier.managed is not None and tier.managed.engine == "milvusOperator":
        service = milvus_operator_service(cache.metadata.name)
        uri = f"http://{service}.{namespace_of(cache)}.svc:{MILVUS_PORT}"
    elif tier.managed is not None:
        uri = f"http://{service_host(cache, Component.MILVUS)}:{MILVUS_PORT}"
    elif tier.external is not None:
        uri = tier.external.uri
    else:
        uri = None  # Milvus Lite in a file under data_dir
    return MilvusConfig(uri=uri, collection_prefix=prefix)


def _redis(cache: SemanticCache) -> RedisConfig:
    """The exact tier's key prefix and topology (its URL comes from `REDIS_URL_ENV`).

    The managed Redis and an external `standalone` one leave `mode` to the node's default
    (`standalone`), so fleets without a topology keep their file, and their pods, as they were.
    """
    prefix = key_prefix(namespace_of(cache), cache.metadata.name)
    external = cache.spec.exact_tier.external
    if external is None or external.mode == "standalone":
        return RedisConfig(key_prefix=prefix)
    return RedisConfig(
        key_prefix=prefix,
        mode=external.mode,
        nodes=list(external.seed_nodes or []),
        sentinel_service=external.sentinel_service,
    )


def _embedding(cache: SemanticCache, model_id: str, *, migration: bool = False) -> EmbeddingConfig:
    """The embedder of `model_id`. A migration's next model always runs in the node (the GPU
    pods serve the model that lookups use until the switch)."""
    if cache.spec.embedding.mode == "gpu" and not migration:
        return EmbeddingConfig(
            kind="remote",
            model_id=model_id,
            remote_url=f"http://{service_host(cache, Component.EMBEDDING)}:{EMBEDDING_PORT}",
            remote_protocol="tei",
        )
    return EmbeddingConfig(kind="local", model_id=model_id, hub_cache_dir=MODEL_CACHE_DIR)


def build_node_config(
    cache: SemanticCache,
    model_versions: Sequence[ModelVersion],
    *,
    served: Mapping[str, str] | None = None,
    embedding: tuple[str, str | None] | None = None,
) -> NodeConfig:
    """The node configuration of a fleet (no secrets: they come from the `*_ENV` variables).

    `served`: ModelVersion name → the cache namespace the fleet serves it from (the lifecycle's
    view, which changes only after every node switched); default: each ModelVersion's
    `status.cacheNamespace`. `embedding`: (model serving lookups, next model of a migration or
    None); default: the ModelVersions' `embeddingModel`. Raises `SpecError` when a referenced
    ModelVersion is missing or the ModelVersions disagree on the embedding model.
    """
    resolved = resolve_model_versions(cache, model_versions)
    spec = cache.spec
    tenants = spec.auth.tenants if spec.auth else []
    model_id, next_model_id = embedding or (embedding_model(resolved), None)
    extra: dict[str, Any] = {}
    if next_model_id is not None and next_model_id != model_id:
        extra["embedding_next"] = _embedding(cache, next_model_id, migration=True)
    return NodeConfig(
        data_dir=DATA_DIR,
        server=ServerConfig(host=ALL_INTERFACES, port=NODE_PORT, metrics_port=NODE_METRICS_PORT),
        upstream=UpstreamConfig(base_url=spec.upstream.base_url),
        redis=_redis(cache),
        milvus=_milvus(cache),
        deadlines=DeadlinesConfig(
            redis_ms=spec.deadlines.redis_ms,
            milvus_ms=spec.deadlines.milvus_ms,
            embedder_ms=spec.deadlines.embedder_ms,
            embedder_queue_ms=spec.deadlines.embedder_queue_ms,
            write_ms=spec.deadlines.write_ms,
        ),
        embedding=_embedding(cache, model_id),
        **extra,
        namespaces=[_namespace(cache, mv, served) for mv in resolved],
        auth=AuthConfig(
            api_keys=[
                TenantKey(tenant=tenant.name, key_env=tenant_key_env(index), admin=tenant.admin)
                for index, tenant in enumerate(tenants)
            ]
        ),
    )


#: Stands for the embedding model in the restart hash of in-node embedders (lifecycle state).
LIVE_EMBEDDING_MODEL = "<live>"


def restart_relevant(config: NodeConfig) -> NodeConfig:
    """The config without what running nodes take live, so that the lifecycle restarts
    nothing. The node pods' config hash covers only this.

    - each namespace's `cache_namespace`: the lifecycle switches it on every node in place (a
      node that starts later on an older file is switched by the persisted switch and the
      lifecycle's convergence step);
    - `embedding_next`: the nodes load and drop a migration's next model live from the file
      (the ConfigMap volume is updated in place), so a migration keeps every node's vectors,
      Milvus Lite in the node's data dir included;
    - the model of an in-node (`local`) embedder: at the end of a migration the nodes already
      serve the next model (switched live) and the file only catches up. A `remote` embedder
      (the GPU pods) keeps its model in the hash: the nodes move back to the GPU pods, which
      now serve the new model, with exactly one rollout, after the switch.
    """
    embedding = config.embedding
    if embedding.kind == "local":
        embedding = embedding.model_copy(update={"model_id": LIVE_EMBEDDING_MODEL})
    return config.model_copy(
        update={
            "namespaces": [
                namespace.model_copy(update={"cache_namespace": None})
                for namespace in config.namespaces
            ],
            "embedding": embedding,
            "embedding_next": None,
        }
    )


def node_config_yaml(config: NodeConfig) -> str:
    """The config file the node reads (`cachefleet-node serve --config`).

    Only the fields the operator set are written (even where they equal today's defaults), so
    the file says what the operator decided and the node's own defaults apply to the rest.
    """
    data = config.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    return yaml.safe_dump(data, sort_keys=False)
