"""Deterministic names: cache namespaces, child objects, per-fleet storage prefixes.

Everything here is a pure function of the objects' identity, so a restarted operator computes
the same names and Git never has to carry them.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re

from cachefleet_operator.api.v1alpha1 import ModelVersion, ModelVersionSpec, SemanticCache

__all__ = [
    "CACHE_NAMESPACE_MAX_LENGTH",
    "CHILD_NAME_MAX_LENGTH",
    "Component",
    "active_cache_namespace",
    "cache_namespace",
    "child_name",
    "collection_prefix",
    "key_prefix",
    "milvus_operator_service",
    "namespace_of",
]

CACHE_NAMESPACE_MAX_LENGTH = 63
#: StatefulSet pods carry `controller-revision-hash: <name>-<10 chars>`, a 63-character label.
CHILD_NAME_MAX_LENGTH = 52
_HASH_LENGTH = 10
_SLUG_INVALID = re.compile(r"[^a-z0-9]+")


class Component(enum.StrEnum):
    """The parts of a fleet; each names its children (`<cache>-<component>`) and labels."""

    REDIS = "redis"
    MILVUS = "milvus"
    #: The `Milvus` of the Milvus Operator (`engine: milvusOperator`). Its own name, so that
    #: nothing the Milvus Operator derives from it (ConfigMap `<name>`, Service
    #: `<name>-milvus`) ever meets a standalone child while the engine changes.
    MILVUS_CLUSTER = "milvus-cluster"
    EMBEDDING = "embedding"
    NODE = "node"


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()


def _slug(text: str, max_length: int) -> str:
    return _SLUG_INVALID.sub("-", text.lower()).strip("-")[:max_length].rstrip("-")


def cache_namespace(model_version_name: str, spec: ModelVersionSpec) -> str:
    """`<slug of the name>-<hash of the identity>`: model, version, prompt-template hash,
    embedding model and epoch. A valid node identifier of at most 63 characters."""
    digest = _digest(
        spec.model,
        spec.version,
        spec.prompt_template_hash or "",
        spec.embedding_model,
        spec.invalidation.epoch,
    )[:_HASH_LENGTH]
    slug = _slug(model_version_name, CACHE_NAMESPACE_MAX_LENGTH - _HASH_LENGTH - 1)
    return f"{slug}-{digest}" if slug else digest


def active_cache_namespace(model_version: ModelVersion) -> str:
    """The namespace the operator reported as active, else the one the identity derives."""
    return model_version.status.cache_namespace or cache_namespace(
        model_version.metadata.name, model_version.spec
    )


def child_name(cache_name: str, component: Component) -> str:
    """`<cache>-<component>`, shortened with a hash when it would pass 52 characters."""
    name = f"{cache_name}-{component}"
    if len(name) <= CHILD_NAME_MAX_LENGTH:
        return name
    digest = _digest(cache_name)[:6]
    room = CHILD_NAME_MAX_LENGTH - len(component) - len(digest) - 2
    return f"{cache_name[:room].rstrip('-')}-{digest}-{component}"


def milvus_operator_service(cache_name: str) -> str:
    """The Service the Milvus Operator puts in front of the fleet's `Milvus`
    (`<cache>-milvus-cluster`): `<its name>-milvus`, at most 59 characters."""
    return f"{child_name(cache_name, Component.MILVUS_CLUSTER)}-milvus"


def key_prefix(namespace: str, cache_name: str) -> str:
    """Redis key prefix of one fleet, so fleets sharing an external Redis never collide."""
    return f"cf-{_digest(namespace, cache_name)[:_HASH_LENGTH]}"


def collection_prefix(namespace: str, cache_name: str) -> str:
    """Milvus collection prefix of one fleet, so fleets sharing a Milvus never collide."""
    return f"cf_{_digest(namespace, cache_name)[:_HASH_LENGTH]}"


def namespace_of(resource: SemanticCache | ModelVersion) -> str:
    """The Kubernetes namespace of an object read from the API (where it always has one)."""
    if not resource.metadata.namespace:
        raise ValueError(f"{resource.kind} {resource.metadata.name} has no metadata.namespace")
    return resource.metadata.namespace
