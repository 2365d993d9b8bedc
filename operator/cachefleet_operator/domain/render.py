"""The children of a SemanticCache as plain manifests, ready for server-side apply.

Every child carries the standard `app.kubernetes.io/*` labels and a controller owner reference
to its SemanticCache, and lives in the cache's namespace under `<cache>-<component>`
(`manifests`):

- the managed tiers and the GPU embedding pods: `tiers` (with `engine: milvusOperator`, a
  `Milvus` of the Milvus Operator: `MILVUS_CLUSTER`, not one of `owned_kinds`);
- cache nodes (here): ConfigMap (`node.yaml`, no secrets), Deployment, Service,
  PodDisruptionBudget and, with autoscaling, a HorizontalPodAutoscaler.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cachefleet_operator.api.v1alpha1 import CacheNodes, ModelVersion, SemanticCache
from cachefleet_operator.domain.manifests import (
    CONFIG_HASH_ANNOTATION,
    MANAGED_BY,
    Manifest,
    child_labels,
    child_metadata,
    config_map,
    container_security,
    http_probe,
    owner_reference,
    pod_basics,
    pod_security,
    resources_of,
    selector_labels,
    service,
    text_hash,
)
from cachefleet_operator.domain.naming import Component, child_name
from cachefleet_operator.domain.nodeconfig import (
    CONFIG_FILE,
    CONFIG_MOUNT,
    DATA_DIR,
    MILVUS_TOKEN_ENV,
    MODEL_CACHE_DIR,
    NODE_METRICS_PORT,
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
from cachefleet_operator.domain.tiers import (
    MILVUS_OPERATOR_API_VERSION,
    MILVUS_OPERATOR_KIND,
    render_embedding,
    render_milvus,
    render_milvus_cluster,
    render_redis,
)

__all__ = [
    "CHILD_SELECTOR",
    "FIELD_MANAGER",
    "MILVUS_CLUSTER",
    "NODE_UID",
    "ChildKind",
    "FleetView",
    "owned_kinds",
    "render_children",
    "render_nodes",
]

#: The one field manager of every server-side apply the operator makes.
FIELD_MANAGER = "cachefleet-operator"
NODE_UID = 10001

#: Every child carries it; the operator's watches of children select on it.
CHILD_SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"


@dataclass(frozen=True)
class ChildKind:
    """A kind the operator creates, for watching children and pruning the ones not rendered."""

    api_version: str
    kind: str
    plural: str


def owned_kinds() -> tuple[ChildKind, ...]:
    """Every kind `render_children` can produce but `MILVUS_CLUSTER`: watched and pruned by
    label."""
    return (
        ChildKind("v1", "ConfigMap", "configmaps"),
        ChildKind("v1", "Service", "services"),
        ChildKind("apps/v1", "StatefulSet", "statefulsets"),
        ChildKind("apps/v1", "Deployment", "deployments"),
        ChildKind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
        ChildKind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
    )


#: The Milvus Operator's kind, rendered for `engine: milvusOperator`. Not one of `owned_kinds`:
#: its CRD may be missing, so it is neither watched nor listed; the reconciler applies it only
#: where the API serves it, reads its status from the apply, and deletes it by name.
MILVUS_CLUSTER = ChildKind(MILVUS_OPERATOR_API_VERSION, MILVUS_OPERATOR_KIND, "milvuses")


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
    restart_hash = text_hash(node_config_yaml(restart_relevant(config)))
    model_cache: dict[str, Any] = (
        {"persistentVolumeClaim": {"claimName": nodes.model_cache_claim_name}}
        if nodes.model_cache_claim_name
        else {"emptyDir": {}}
    )
    pod_spec: dict[str, Any] = {
        **pod_basics(cache),
        "securityContext": pod_security(NODE_UID),
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
                "ports": [
                    {"name": "http", "containerPort": NODE_PORT},
                    {"name": "metrics", "containerPort": NODE_METRICS_PORT},
                ],
                # The first start may download the embedding model: allow five minutes.
                "startupProbe": http_probe("/healthz", period=5, failures=60),
                "readinessProbe": http_probe("/readyz", period=5, failures=3),
                "livenessProbe": http_probe("/healthz", period=10, failures=3),
                "resources": resources_of(nodes.resources),
                "securityContext": container_security(read_only_root=True),
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
                "labels": child_labels(cache, Component.NODE),
                "annotations": {CONFIG_HASH_ANNOTATION: restart_hash},
            },
            "spec": pod_spec,
        },
    }
    if not nodes.autoscaling.enabled:  # with autoscaling the HPA owns `replicas`
        deployment_spec = {"replicas": nodes.replicas, **deployment_spec}
    children: list[Manifest] = [
        config_map(cache, Component.NODE, owner, {CONFIG_FILE: config_text}),
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": child_metadata(cache, Component.NODE, owner),
            "spec": deployment_spec,
        },
        service(
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
                "metadata": child_metadata(cache, Component.NODE, owner),
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
                "metadata": child_metadata(cache, Component.NODE, owner),
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
    milvus = spec.semantic_tier.managed
    if milvus is not None and milvus.engine == "milvusOperator":
        children.append(render_milvus_cluster(cache, milvus, owner))
    elif milvus is not None:
        children += render_milvus(cache, milvus, owner)
    if spec.embedding.gpu is not None:
        lookup_model = fleet.embedding[0] if fleet else embedding_model(resolved)
        model_id = spec.embedding.gpu.model_id or lookup_model
        children += render_embedding(cache, spec.embedding.gpu, model_id, owner)
    children += render_nodes(cache, resolved, owner, fleet)
    return children
