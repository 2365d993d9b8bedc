"""The children of the managed tiers and of the GPU embedding pods:

- exact tier, managed: Redis StatefulSet + headless Service + ConfigMap (`redis.conf`);
- semantic tier, managed: Milvus standalone StatefulSet (embedded etcd, local storage) +
  Service + ConfigMap, or (`engine: milvusOperator`) one `Milvus` of the Milvus Operator in
  mode cluster, with its etcd, MinIO and message stream in the cluster;
- embedding, gpu: text-embeddings-inference Deployment + Service (nothing for `local`).
"""

from __future__ import annotations

from typing import Any

from cachefleet_operator.api.v1alpha1 import (
    GpuEmbedding,
    ManagedMilvus,
    ManagedRedis,
    MilvusCluster,
    SemanticCache,
)
from cachefleet_operator.domain.manifests import (
    Manifest,
    child_labels,
    child_metadata,
    config_map,
    container_security,
    http_probe,
    pod_basics,
    pod_security,
    resources_of,
    selector_labels,
    service,
    stateful_set,
    text_hash,
)
from cachefleet_operator.domain.naming import Component, child_name
from cachefleet_operator.domain.nodeconfig import EMBEDDING_PORT, MILVUS_PORT, REDIS_PORT
from cachefleet_operator.domain.quantity import mebibytes, to_bytes

__all__ = [
    "MILVUS_OPERATOR_API_VERSION",
    "MILVUS_OPERATOR_KIND",
    "render_embedding",
    "render_milvus",
    "render_milvus_cluster",
    "render_redis",
]

MILVUS_HTTP_PORT = 9091
#: The Milvus Operator's kind (github.com/zilliztech/milvus-operator), CRD `milvuses.milvus.io`.
MILVUS_OPERATOR_API_VERSION = "milvus.io/v1beta1"
MILVUS_OPERATOR_KIND = "Milvus"
#: The in-cluster MinIO's volume when `persistence` leaves it out (the chart's own is 500Gi).
_MILVUS_CLUSTER_STORAGE_SIZE = "20Gi"
REDIS_UID = 999
_MILVUS_ETCD_CONFIG = "embedEtcd.yaml"
# Milvus standalone with its embedded etcd: reachable from inside the pod only.
_MILVUS_ETCD_SETTINGS = """\
listen-client-urls: http://127.0.0.1:2379
advertise-client-urls: http://127.0.0.1:2379
quota-backend-bytes: 4294967296
auto-compaction-mode: revision
auto-compaction-retention: '1000'
"""


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
        return resources_of(redis.resources)
    memory = mebibytes(to_bytes(redis.max_memory) * 1.25)
    return {"requests": {"cpu": "100m", "memory": memory}, "limits": {"memory": memory}}


def render_redis(
    cache: SemanticCache, redis: ManagedRedis, owner: dict[str, Any]
) -> list[Manifest]:
    """Managed Redis: ConfigMap, headless Service, StatefulSet."""
    conf = _redis_conf(redis)
    config_name = child_name(cache.metadata.name, Component.REDIS)
    pod_spec: dict[str, Any] = {
        **pod_basics(cache),
        "securityContext": pod_security(REDIS_UID),
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
                "securityContext": container_security(read_only_root=True),
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/redis", "readOnly": True},
                    {"name": "data", "mountPath": "/data"},
                ],
            }
        ],
        "volumes": [{"name": "config", "configMap": {"name": config_name}}],
    }
    return [
        config_map(cache, Component.REDIS, owner, {"redis.conf": conf}),
        service(
            cache,
            Component.REDIS,
            owner,
            [{"name": "redis", "port": REDIS_PORT, "targetPort": "redis"}],
            headless=True,
        ),
        stateful_set(
            cache,
            Component.REDIS,
            owner,
            pod_spec,
            config_hash=text_hash(conf),
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
        **pod_basics(cache),
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
                "startupProbe": http_probe("/healthz", period=10, failures=30),
                "readinessProbe": http_probe("/healthz", period=10, failures=3),
                "livenessProbe": http_probe("/healthz", period=20, failures=5),
                "resources": resources_of(milvus.resources),
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
        config_map(cache, Component.MILVUS, owner, {_MILVUS_ETCD_CONFIG: _MILVUS_ETCD_SETTINGS}),
        service(
            cache,
            Component.MILVUS,
            owner,
            [
                {"name": "grpc", "port": MILVUS_PORT, "targetPort": "grpc"},
                {"name": "http", "port": MILVUS_HTTP_PORT, "targetPort": "http"},
            ],
        ),
        stateful_set(
            cache,
            Component.MILVUS,
            owner,
            pod_spec,
            config_hash=text_hash(_MILVUS_ETCD_SETTINGS),
            persistence=milvus.persistence,
            data_volume="data",
        ),
    ]


def _in_cluster(cache: SemanticCache, values: dict[str, Any] | None = None) -> dict[str, Any]:
    """A dependency the Milvus Operator deploys; deleted with the Milvus (claims included)
    only under `deletionPolicy: Delete`, as the standalone's claim."""
    policy = cache.spec.deletion_policy
    config: dict[str, Any] = {"deletionPolicy": policy, "pvcDeletion": policy == "Delete"}
    if values:
        config["values"] = values
    return {"inCluster": config}


def render_milvus_cluster(
    cache: SemanticCache, milvus: ManagedMilvus, owner: dict[str, Any]
) -> Manifest:
    """A `Milvus` (milvus.io/v1beta1) in mode cluster for the Milvus Operator: the spec's image,
    resources (every component) and replicas; etcd, a standalone MinIO and the message stream
    deployed in the cluster by the Milvus Operator. Its Service is `<name>-milvus`, port 19530
    (`naming.milvus_operator_service`)."""
    cluster = milvus.cluster or MilvusCluster()
    storage_class = milvus.persistence.storage_class_name if milvus.persistence else None
    size = milvus.persistence.size if milvus.persistence else _MILVUS_CLUSTER_STORAGE_SIZE
    minio_volume: dict[str, Any] = {"size": size}
    if storage_class:
        minio_volume["storageClass"] = storage_class
    dependencies: dict[str, Any] = {
        "etcd": _in_cluster(
            cache, {"persistence": {"storageClass": storage_class}} if storage_class else None
        ),
        "storage": _in_cluster(cache, {"mode": "standalone", "persistence": minio_volume}),
        "msgStreamType": cluster.message_stream,
    }
    if cluster.message_stream != "woodpecker":  # woodpecker runs inside Milvus
        dependencies[cluster.message_stream] = _in_cluster(cache)
    components: dict[str, Any] = {
        "image": milvus.image,
        "resources": resources_of(milvus.resources),
    }
    if cache.spec.image_pull_secrets:
        components["imagePullSecrets"] = [s.to_api() for s in cache.spec.image_pull_secrets]
    components |= {
        "proxy": {"replicas": cluster.proxy_replicas},
        "queryNode": {"replicas": cluster.query_node_replicas},
        "dataNode": {"replicas": cluster.data_node_replicas},
    }
    return {
        "apiVersion": MILVUS_OPERATOR_API_VERSION,
        "kind": MILVUS_OPERATOR_KIND,
        "metadata": child_metadata(cache, Component.MILVUS_CLUSTER, owner),
        "spec": {"mode": "cluster", "components": components, "dependencies": dependencies},
    }


# --- embedding ------------------------------------------------------------------------------


def render_embedding(
    cache: SemanticCache, gpu: GpuEmbedding, model_id: str, owner: dict[str, Any]
) -> list[Manifest]:
    """GPU embedding pods (text-embeddings-inference): Deployment and Service."""
    resources = resources_of(gpu.resources)
    resources.setdefault("limits", {})["nvidia.com/gpu"] = gpu.gpus_per_pod
    pod_spec: dict[str, Any] = {
        **pod_basics(cache),
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "embedding",
                "image": gpu.image,
                "args": ["--model-id", model_id, "--port", str(EMBEDDING_PORT)],
                "env": [{"name": "HUGGINGFACE_HUB_CACHE", "value": "/data"}],
                "ports": [{"name": "http", "containerPort": EMBEDDING_PORT}],
                # The first start downloads the model: allow ten minutes.
                "startupProbe": http_probe("/health", period=10, failures=60),
                "readinessProbe": http_probe("/health", period=10, failures=3),
                "livenessProbe": http_probe("/health", period=20, failures=3),
                "resources": resources,
                "securityContext": container_security(read_only_root=False),
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
        "metadata": child_metadata(cache, Component.EMBEDDING, owner),
        "spec": {
            "replicas": gpu.replicas,
            # Replace pods one at a time without a surge pod: GPUs are scarce.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
            },
            "selector": {"matchLabels": selector_labels(cache, Component.EMBEDDING)},
            "template": {
                "metadata": {"labels": child_labels(cache, Component.EMBEDDING)},
                "spec": pod_spec,
            },
        },
    }
    return [
        deployment,
        service(
            cache,
            Component.EMBEDDING,
            owner,
            [{"name": "http", "port": EMBEDDING_PORT, "targetPort": "http"}],
        ),
    ]
