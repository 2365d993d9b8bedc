"""The children of a SemanticCache as plain manifests, ready for server-side apply.

Every child carries the standard `app.kubernetes.io/*` labels and a controller owner reference
to its SemanticCache, and lives in the cache's namespace under `<cache>-<component>`:

- exact tier, managed: Redis StatefulSet + headless Service + ConfigMap (`redis.conf`);
- semantic tier, managed: Milvus standalone StatefulSet (embedded etcd, local storage) +
  Service + ConfigMap;
- embedding, gpu: text-embeddings-inference Deployment + Service (nothing for `local`);
- cache nodes: ConfigMap (`node.yaml`, no secrets), Deployment, Service, PodDisruptionBudget
  and, with autoscaling, a HorizontalPodAutoscaler.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cachefleet_operator.api.v1alpha1 import ModelVersion, SemanticCache
from cachefleet_operator.api.v1alpha1.semanticcache import (
    CacheNodes,
    GpuEmbedding,
    ManagedMilvus,
    ManagedRedis,
)
from cachefleet_operator.api.v1alpha1.types import Persistence, ResourceRequirements
from cachefleet_operator.domain.naming import Component, child_name, namespace_of
from cachefleet_operator.domain.nodeconfig import (
    CONFIG_FILE,
    CONFIG_MOUNT,
    DATA_DIR,
    EMBEDDING_PORT,
    MILVUS_PORT,
    MILVUS_TOKEN_ENV,
    MODEL_CACHE_DIR,
    NODE_PORT,
    REDIS_PORT,
    REDIS_URL_ENV,
    UPSTREAM_API_KEY_ENV,
    build_node_config,
    embedding_model,
    node_config_yaml,
    resolve_model_versions,
    restart_relevant,
    service_host,
    tenant_key_env,
)
from cachefleet_operator.domain.quantity import mebibytes, to_bytes

__all__ = [
    "CHILD_SELECTOR",
    "CONFIG_HASH_ANNOTATION",
    "FIELD_MANAGER",
    "ChildKind",
    "FleetView",
    "Manifest",
    "owned_kinds",
    "owner_reference",
    "render_children",
    "render_embedding",
    "render_milvus",
    "render_nodes",
    "render_redis",
    "selector_labels",
]

Manifest = dict[str, Any]

#: The one field manager of every server-side apply the operator makes.
FIELD_MANAGER = "cachefleet-operator"
MANAGED_BY = "cachefleet-operator"
PART_OF = "cachefleet"
CONFIG_HASH_ANNOTATION = "cachefleet.io/config-hash"
MILVUS_HTTP_PORT = 9091
NODE_UID = 10001
REDIS_UID = 999

_APP_NAMES = {
    Component.REDIS: "redis",
    Component.MILVUS: "milvus",
    Component.EMBEDDING: "text-embeddings-inference",
    Component.NODE: "cachefleet-node",
}
_MILVUS_ETCD_CONFIG = "embedEtcd.yaml"
# Milvus standalone with its embedded etcd: reachable from inside the pod only.
_MILVUS_ETCD_SETTINGS = """\
listen-client-urls: http://127.0.0.1:2379
advertise-client-urls: http://127.0.0.1:2379
quota-backend-bytes: 4294967296
auto-compaction-mode: revision
auto-compaction-retention: '1000'
"""


#: Every child carries it; the operator's watches of children select on it.
CHILD_SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"


@dataclass(frozen=True)
class ChildKind:
    """A kind the operator creates, for watching children and pruning the ones not rendered."""

    api_version: str
    kind: str
    plural: str


def owned_kinds() -> tuple[ChildKind, ...]:
    """Every kind `render_children` can produce."""
    return (
        ChildKind("v1", "ConfigMap", "configmaps"),
        ChildKind("v1", "Service", "services"),
        ChildKind("apps/v1", "StatefulSet", "statefulsets"),
        ChildKind("apps/v1", "Deployment", "deployments"),
        ChildKind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
        ChildKind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
    )


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


def _labels(cache: SemanticCache, component: Component) -> dict[str, str]:
    return {
        **selector_labels(cache, component),
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def _metadata(cache: SemanticCache, component: Component, owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": child_name(cache.metadata.name, component),
        "namespace": namespace_of(cache),
        "labels": _labels(cache, component),
        "ownerReferences": [dict(owner)],
    }


def _config_hash(*texts: str) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _resources(resources: ResourceRequirements | None) -> dict[str, Any]:
    return resources.to_api() if resources is not None else {}


def _pod_security(uid: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security(*, read_only_root: bool) -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": read_only_root,
        "capabilities": {"drop": ["ALL"]},
    }


def _pod_basics(cache: SemanticCache) -> dict[str, Any]:
    """Fields every pod of the fleet shares: no API token, no service env vars, pull secrets."""
    basics: dict[str, Any] = {"automountServiceAccountToken": False, "enableServiceLinks": False}
    if cache.spec.image_pull_secrets:
        basics["imagePullSecrets"] = [secret.to_api() for secret in cache.spec.image_pull_secrets]
    return basics


def _http_probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 3,
    }


def _config_map(
    cache: SemanticCache, component: Component, owner: dict[str, Any], data: dict[str, str]
) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(cache, component, owner),
        "data": data,
    }


def _service(
    cache: SemanticCache,
    component: Component,
    owner: dict[str, Any],
    ports: list[dict[str, Any]],
    *,
    headless: bool = False,
) -> Manifest:
    spec: dict[str, Any] = {"selector": selector_labels(cache, component), "ports": ports}
    if headless:
        spec["clusterIP"] = "None"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(cache, component, owner),
        "spec": spec,
    }


def _stateful_set(
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
                "labels": _labels(cache, component),
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
            {"metadata": {"name": data_volume, "labels": _labels(cache, component)}, "spec": claim}
        ]
        spec["persistentVolumeClaimRetentionPolicy"] = {
            "whenDeleted": cache.spec.deletion_policy,
            "whenScaled": "Retain",
        }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(cache, component, owner),
        "spec": spec,
    }


# --- exact tier -----------------------------------------------------------------------------


def _redis_conf(redis: ManagedRedis) -> str:
    lines = [
        "# Rendered by the cachefleet operator from spec.exactTier.managed.",
        "bind * -::*",
        f"port {REDIS_PORT}",
        "protected-mode no",
        "dir /data",
        f"maxmemory {to_bytes(redis.max_memory)}",
        f"maxmemory-policy {redis.eviction_policy}",
    ]
    if redis.persistence is None:
        lines += ["appendonly no", 'save ""']
    else:
        lines += ["appendonly yes", "appendfsync everysec"]
    return "\n".join(lines) + "\n"


def _redis_resources(redis: ManagedRedis) -> dict[str, Any]:
    """The spec's resources, else memory 25% above maxmemory (Redis needs the headroom)."""
    if redis.resources is not None:
        return _resources(redis.resources)
    memory = mebibytes(to_bytes(redis.max_memory) * 1.25)
    return {"requests": {"cpu": "100m", "memory": memory}, "limits": {"memory": memory}}


def render_redis(
    cache: SemanticCache, redis: ManagedRedis, owner: dict[str, Any]
) -> list[Manifest]:
    """Managed Redis: ConfigMap, headless Service, StatefulSet."""
    conf = _redis_conf(redis)
    config_name = child_name(cache.metadata.name, Component.REDIS)
    pod_spec: dict[str, Any] = {
        **_pod_basics(cache),
        "securityContext": _pod_security(REDIS_UID),
        "containers": [
            {
                "name": "redis",
                "image": redis.image,
                "command": ["redis-server", "/etc/redis/redis.conf"],
                "ports": [{"name": "redis", "containerPort": REDIS_PORT}],
                "readinessProbe": {
                    "exec": {"command": ["sh", "-c", "redis-cli ping | grep -q PONG"]},
                    "periodSeconds": 5,
                    "timeoutSeconds": 3,
                },
                "livenessProbe": {
                    "tcpSocket": {"port": "redis"},
                    "periodSeconds": 10,
                    "failureThreshold": 6,
                },
                "resources": _redis_resources(redis),
                "securityContext": _container_security(read_only_root=True),
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/redis", "readOnly": True},
                    {"name": "data", "mountPath": "/data"},
                ],
            }
        ],
        "volumes": [{"name": "config", "configMap": {"name": config_name}}],
    }
    return [
        _config_map(cache, Component.REDIS, owner, {"redis.conf": conf}),
        _service(
            cache,
            Component.REDIS,
            owner,
            [{"name": "redis", "port": REDIS_PORT, "targetPort": "redis"}],
            headless=True,
        ),
        _stateful_set(
            cache,
            Component.REDIS,
            owner,
            pod_spec,
            config_hash=_config_hash(conf),
            persistence=redis.persistence,
            data_volume="data",
        ),
    ]


# --- semantic tier --------------------------------------------------------------------------


def render_milvus(
    cache: SemanticCache, milvus: ManagedMilvus, owner: dict[str, Any]
) -> list[Manifest]:
    """Managed Milvus standalone (embedded etcd, local storage): ConfigMap, Service, StatefulSet."""
    config_name = child_name(cache.metadata.name, Component.MILVUS)
    pod_spec: dict[str, Any] = {
        **_pod_basics(cache),
        # No seccomp profile or user here: the Milvus image runs as root and its own
        # deployment scripts run it unconfined.
        "containers": [
            {
                "name": "milvus",
                "image": milvus.image,
                "command": ["milvus", "run", "standalone"],
                "env": [
                    {"name": "ETCD_USE_EMBED", "value": "true"},
                    {"name": "ETCD_DATA_DIR", "value": "/var/lib/milvus/etcd"},
                    {"name": "ETCD_CONFIG_PATH", "value": f"/milvus/configs/{_MILVUS_ETCD_CONFIG}"},
                    {"name": "COMMON_STORAGETYPE", "value": "local"},
                ],
                "ports": [
                    {"name": "grpc", "containerPort": MILVUS_PORT},
                    {"name": "http", "containerPort": MILVUS_HTTP_PORT},
                ],
                "startupProbe": _http_probe("/healthz", period=10, failures=30),
                "readinessProbe": _http_probe("/healthz", period=10, failures=3),
                "livenessProbe": _http_probe("/healthz", period=20, failures=5),
                "resources": _resources(milvus.resources),
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [
                    {
                        "name": "config",
                        "mountPath": f"/milvus/configs/{_MILVUS_ETCD_CONFIG}",
                        "subPath": _MILVUS_ETCD_CONFIG,
                        "readOnly": True,
                    },
                    {"name": "data", "mountPath": "/var/lib/milvus"},
                ],
            }
        ],
        "volumes": [{"name": "config", "configMap": {"name": config_name}}],
    }
    return [
        _config_map(cache, Component.MILVUS, owner, {_MILVUS_ETCD_CONFIG: _MILVUS_ETCD_SETTINGS}),
        _service(
            cache,
            Component.MILVUS,
            owner,
            [
                {"name": "grpc", "port": MILVUS_PORT, "targetPort": "grpc"},
                {"name": "http", "port": MILVUS_HTTP_PORT, "targetPort": "http"},
            ],
        ),
        _stateful_set(
            cache,
            Component.MILVUS,
            owner,
            pod_spec,
            config_hash=_config_hash(_MILVUS_ETCD_SETTINGS),
            persistence=milvus.persistence,
            data_volume="data",
        ),
    ]


# --- embedding ------------------------------------------------------------------------------


def render_embedding(
    cache: SemanticCache, gpu: GpuEmbedding, model_id: str, owner: dict[str, Any]
) -> list[Manifest]:
    """GPU embedding pods (text-embeddings-inference): Deployment and Service."""
    resources = _resources(gpu.resources)
    resources.setdefault("limits", {})["nvidia.com/gpu"] = gpu.gpus_per_pod
    pod_spec: dict[str, Any] = {
        **_pod_basics(cache),
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "embedding",
                "image": gpu.image,
                "args": ["--model-id", model_id, "--port", str(EMBEDDING_PORT)],
                "env": [{"name": "HUGGINGFACE_HUB_CACHE", "value": "/data"}],
                "ports": [{"name": "http", "containerPort": EMBEDDING_PORT}],
                # The first start downloads the model: allow ten minutes.
                "startupProbe": _http_probe("/health", period=10, failures=60),
                "readinessProbe": _http_probe("/health", period=10, failures=3),
                "livenessProbe": _http_probe("/health", period=20, failures=3),
                "resources": resources,
                "securityContext": _container_security(read_only_root=False),
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            }
        ],
        "volumes": [{"name": "data", "emptyDir": {}}],
    }
    if gpu.node_selector:
        pod_spec["nodeSelector"] = dict(gpu.node_selector)
    if gpu.tolerations:
        pod_spec["tolerations"] = [toleration.to_api() for toleration in gpu.tolerations]
    if gpu.runtime_class_name:
        pod_spec["runtimeClassName"] = gpu.runtime_class_name
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(cache, Component.EMBEDDING, owner),
        "spec": {
            "replicas": gpu.replicas,
            # Replace pods one at a time without a surge pod: GPUs are scarce.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
            },
            "selector": {"matchLabels": selector_labels(cache, Component.EMBEDDING)},
            "template": {
                "metadata": {"labels": _labels(cache, Component.EMBEDDING)},
                "spec": pod_spec,
            },
        },
    }
    return [
        deployment,
        _service(
            cache,
            Component.EMBEDDING,
            owner,
            [{"name": "http", "port": EMBEDDING_PORT, "targetPort": "http"}],
        ),
    ]


# --- cache nodes ----------------------------------------------------------------------------


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _node_env(cache: SemanticCache) -> list[dict[str, Any]]:
    """Secrets (and the Redis URL) as environment variables; never in the ConfigMap."""
    spec = cache.spec
    env: list[dict[str, Any]] = [{"name": "HOME", "value": "/tmp"}]  # noqa: S108 - an emptyDir
    if spec.exact_tier.external is not None:
        ref = spec.exact_tier.external.url_secret_ref
        env.append(_secret_env(REDIS_URL_ENV, ref.name, ref.key))
    else:
        host = service_host(cache, Component.REDIS)
        env.append({"name": REDIS_URL_ENV, "value": f"redis://{host}:{REDIS_PORT}/0"})
    milvus = spec.semantic_tier.external
    if milvus is not None and milvus.token_secret_ref is not None:
        env.append(
            _secret_env(MILVUS_TOKEN_ENV, milvus.token_secret_ref.name, milvus.token_secret_ref.key)
        )
    if spec.upstream.api_key_secret_ref is not None:
        ref = spec.upstream.api_key_secret_ref
        env.append(_secret_env(UPSTREAM_API_KEY_ENV, ref.name, ref.key))
    if spec.auth is not None:
        secret = spec.auth.api_keys_secret_ref.name
        env += [
            _secret_env(tenant_key_env(index), secret, tenant.name)
            for index, tenant in enumerate(spec.auth.tenants)
        ]
    return env


def _min_nodes(nodes: CacheNodes) -> int:
    return nodes.autoscaling.min_replicas if nodes.autoscaling.enabled else nodes.replicas


def render_nodes(
    cache: SemanticCache,
    model_versions: Sequence[ModelVersion],
    owner: dict[str, Any],
    fleet: FleetView | None = None,
) -> list[Manifest]:
    """Cache nodes: ConfigMap, Deployment, Service, PodDisruptionBudget, optional HPA."""
    nodes = cache.spec.nodes
    name = child_name(cache.metadata.name, Component.NODE)
    config = build_node_config(
        cache,
        model_versions,
        served=fleet.served if fleet else None,
        embedding=fleet.embedding if fleet else None,
    )
    config_text = node_config_yaml(config)
    restart_hash = _config_hash(node_config_yaml(restart_relevant(config)))
    model_cache: dict[str, Any] = (
        {"persistentVolumeClaim": {"claimName": nodes.model_cache_claim_name}}
        if nodes.model_cache_claim_name
        else {"emptyDir": {}}
    )
    pod_spec: dict[str, Any] = {
        **_pod_basics(cache),
        "securityContext": _pod_security(NODE_UID),
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector_labels(cache, Component.NODE)},
            }
        ],
        "containers": [
            {
                "name": "node",
                "image": nodes.image,
                "command": [
                    "cachefleet-node",
                    "serve",
                    "--config",
                    f"{CONFIG_MOUNT}/{CONFIG_FILE}",
                ],
                "env": _node_env(cache),
                "ports": [{"name": "http", "containerPort": NODE_PORT}],
                # The first start may download the embedding model: allow five minutes.
                "startupProbe": _http_probe("/healthz", period=5, failures=60),
                "readinessProbe": _http_probe("/readyz", period=5, failures=3),
                "livenessProbe": _http_probe("/healthz", period=10, failures=3),
                "resources": _resources(nodes.resources),
                "securityContext": _container_security(read_only_root=True),
                "volumeMounts": [
                    {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
                    {"name": "data", "mountPath": DATA_DIR},
                    {"name": "models", "mountPath": MODEL_CACHE_DIR},
                    {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir
                ],
            }
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": name}},
            {"name": "data", "emptyDir": {}},
            {"name": "models", **model_cache},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    deployment_spec: dict[str, Any] = {
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        },
        "selector": {"matchLabels": selector_labels(cache, Component.NODE)},
        "template": {
            "metadata": {
                "labels": _labels(cache, Component.NODE),
                "annotations": {CONFIG_HASH_ANNOTATION: restart_hash},
            },
            "spec": pod_spec,
        },
    }
    if not nodes.autoscaling.enabled:  # with autoscaling the HPA owns `replicas`
        deployment_spec = {"replicas": nodes.replicas, **deployment_spec}
    children: list[Manifest] = [
        _config_map(cache, Component.NODE, owner, {CONFIG_FILE: config_text}),
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _metadata(cache, Component.NODE, owner),
            "spec": deployment_spec,
        },
        _service(
            cache,
            Component.NODE,
            owner,
            [{"name": "http", "port": NODE_PORT, "targetPort": "http", "appProtocol": "http"}],
        ),
    ]
    if _min_nodes(nodes) > 1:  # a budget over a single pod would block every node drain
        children.append(
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": _metadata(cache, Component.NODE, owner),
                "spec": {
                    "minAvailable": nodes.pod_disruption_budget.min_available,
                    "selector": {"matchLabels": selector_labels(cache, Component.NODE)},
                },
            }
        )
    if nodes.autoscaling.enabled:
        children.append(
            {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": _metadata(cache, Component.NODE, owner),
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    "minReplicas": nodes.autoscaling.min_replicas,
                    "maxReplicas": nodes.autoscaling.max_replicas,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {
                                "name": "cpu",
                                "target": {
                                    "type": "Utilization",
                                    "averageUtilization": (
                                        nodes.autoscaling.target_cpu_utilization_percentage
                                    ),
                                },
                            },
                        }
                    ],
                },
            }
        )
    return children


@dataclass(frozen=True)
class FleetView:
    """What the lifecycle says the nodes serve: ModelVersion → cache namespace, and the
    embedding (model serving lookups, next model of a migration or None)."""

    served: Mapping[str, str]
    embedding: tuple[str, str | None]


def render_children(
    cache: SemanticCache,
    model_versions: Sequence[ModelVersion],
    fleet: FleetView | None = None,
) -> list[Manifest]:
    """Every child of the cache, in apply order (config before the workloads that read it).

    `model_versions` are the ModelVersions of the cache's namespace (at least the referenced
    ones). `fleet`: the lifecycle's view of what the nodes serve (default: the ModelVersions'
    status and embedding model). Raises `SpecError` when a referenced one is missing or they
    disagree on the embedding model.
    """
    owner = owner_reference(cache)
    resolved = resolve_model_versions(cache, model_versions)
    spec = cache.spec
    children: list[Manifest] = []
    if spec.exact_tier.managed is not None:
        children += render_redis(cache, spec.exact_tier.managed, owner)
    if spec.semantic_tier.managed is not None:
        children += render_milvus(cache, spec.semantic_tier.managed, owner)
    if spec.embedding.gpu is not None:
        lookup_model = fleet.embedding[0] if fleet else embedding_model(resolved)
        model_id = spec.embedding.gpu.model_id or lookup_model
        children += render_embedding(cache, spec.embedding.gpu, model_id, owner)
    children += render_nodes(cache, resolved, owner, fleet)
    return children
