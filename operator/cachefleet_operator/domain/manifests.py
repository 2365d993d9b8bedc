"""The building blocks of every child manifest: standard labels, metadata with the owner
reference, security contexts, probes, and the ConfigMap, Service and StatefulSet shapes the
renderers share."""

from __future__ import annotations

import hashlib
from typing import Any

from cachefleet_operator.api.v1alpha1 import SemanticCache
from cachefleet_operator.api.v1alpha1.types import Persistence, ResourceRequirements
from cachefleet_operator.domain.naming import Component, child_name, namespace_of

__all__ = [
    "CONFIG_HASH_ANNOTATION",
    "MANAGED_BY",
    "Manifest",
    "child_labels",
    "child_metadata",
    "config_map",
    "container_security",
    "http_probe",
    "owner_reference",
    "pod_basics",
    "pod_security",
    "resources_of",
    "selector_labels",
    "service",
    "stateful_set",
    "text_hash",
]

Manifest = dict[str, Any]

MANAGED_BY = "cachefleet-operator"
PART_OF = "cachefleet"
CONFIG_HASH_ANNOTATION = "cachefleet.io/config-hash"

_APP_NAMES = {
    Component.REDIS: "redis",
    Component.MILVUS: "milvus",
    Component.MILVUS_CLUSTER: "milvus",
    Component.EMBEDDING: "text-embeddings-inference",
    Component.NODE: "cachefleet-node",
}


def owner_reference(cache: SemanticCache) -> dict[str, Any]:
    """Controller owner reference to the cache: children are garbage-collected with it."""
    if not cache.metadata.uid:
        raise ValueError(f"SemanticCache {cache.metadata.name} has no metadata.uid")
    return {
        "apiVersion": cache.definition.api_version,
        "kind": cache.definition.kind,
        "name": cache.metadata.name,
        "uid": cache.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def selector_labels(cache: SemanticCache, component: Component) -> dict[str, str]:
    """The labels that select a component's pods (never change them: selectors are immutable)."""
    return {
        "app.kubernetes.io/name": _APP_NAMES[component],
        "app.kubernetes.io/instance": cache.metadata.name,
        "app.kubernetes.io/component": component.value,
    }


def child_labels(cache: SemanticCache, component: Component) -> dict[str, str]:
    """The selector labels and the standard `part-of` and `managed-by` labels."""
    return {
        **selector_labels(cache, component),
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def child_metadata(
    cache: SemanticCache, component: Component, owner: dict[str, Any]
) -> dict[str, Any]:
    """Name, namespace, labels and owner reference of a component's child."""
    return {
        "name": child_name(cache.metadata.name, component),
        "namespace": namespace_of(cache),
        "labels": child_labels(cache, component),
        "ownerReferences": [dict(owner)],
    }


def text_hash(*texts: str) -> str:
    """A short digest of config texts: a pod annotation that rolls the pods when they change."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def resources_of(resources: ResourceRequirements | None) -> dict[str, Any]:
    """The spec's resource requirements as a manifest field (none: empty)."""
    return resources.to_api() if resources is not None else {}


def pod_security(uid: int) -> dict[str, Any]:
    """A pod security context: non-root as `uid`, default seccomp profile."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security(*, read_only_root: bool) -> dict[str, Any]:
    """A container security context: no privilege escalation, no capabilities."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": read_only_root,
        "capabilities": {"drop": ["ALL"]},
    }


def pod_basics(cache: SemanticCache) -> dict[str, Any]:
    """Fields every pod of the fleet shares: no API token, no service env vars, pull secrets."""
    basics: dict[str, Any] = {"automountServiceAccountToken": False, "enableServiceLinks": False}
    if cache.spec.image_pull_secrets:
        basics["imagePullSecrets"] = [secret.to_api() for secret in cache.spec.image_pull_secrets]
    return basics


def http_probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    """An HTTP GET probe on the container's `http` port."""
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 3,
    }


def config_map(
    cache: SemanticCache, component: Component, owner: dict[str, Any], data: dict[str, str]
) -> Manifest:
    """A ConfigMap of the component holding `data`."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(cache, component, owner),
        "data": data,
    }


def service(
    cache: SemanticCache,
    component: Component,
    owner: dict[str, Any],
    ports: list[dict[str, Any]],
    *,
    headless: bool = False,
) -> Manifest:
    """A Service selecting the component's pods (`headless`: no cluster IP)."""
    spec: dict[str, Any] = {"selector": selector_labels(cache, component), "ports": ports}
    if headless:
        spec["clusterIP"] = "None"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(cache, component, owner),
        "spec": spec,
    }


def stateful_set(
    cache: SemanticCache,
    component: Component,
    owner: dict[str, Any],
    pod_spec: dict[str, Any],
    *,
    config_hash: str,
    persistence: Persistence | None,
    data_volume: str,
) -> Manifest:
    """A one-replica StatefulSet; its data volume is a claim template with persistence."""
    name = child_name(cache.metadata.name, component)
    spec: dict[str, Any] = {
        "serviceName": name,
        "replicas": 1,
        "selector": {"matchLabels": selector_labels(cache, component)},
        "template": {
            "metadata": {
                "labels": child_labels(cache, component),
                "annotations": {CONFIG_HASH_ANNOTATION: config_hash},
            },
            "spec": pod_spec,
        },
    }
    if persistence is None:
        volumes = [*pod_spec["volumes"], {"name": data_volume, "emptyDir": {}}]
        spec["template"]["spec"] = {**pod_spec, "volumes": volumes}
    else:
        claim: dict[str, Any] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": persistence.size}},
        }
        if persistence.storage_class_name:
            claim["storageClassName"] = persistence.storage_class_name
        spec["volumeClaimTemplates"] = [
            {
                "metadata": {"name": data_volume, "labels": child_labels(cache, component)},
                "spec": claim,
            }
        ]
        spec["persistentVolumeClaimRetentionPolicy"] = {
            "whenDeleted": cache.spec.deletion_policy,
            "whenScaled": "Retain",
        }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": child_metadata(cache, component, owner),
        "spec": spec,
    }
