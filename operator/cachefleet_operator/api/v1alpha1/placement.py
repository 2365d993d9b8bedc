"""Where a SemanticCache's parts run: the exact tier (Redis), the semantic tier (Milvus), the
embedding pods and the cache nodes, each managed by the operator or brought by the user."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from cachefleet_contract import __version__ as node_version
from cachefleet_contract.config import RedisMode, RedisNode, SentinelService
from cachefleet_operator.api.v1alpha1.base import ApiModel, Rule
from cachefleet_operator.api.v1alpha1.types import (
    ByteQuantity,
    HttpUrl,
    IntOrPercent,
    Persistence,
    ResourceRequirements,
    SecretKeyRef,
    Toleration,
)

__all__ = [
    "MILVUS_IMAGE",
    "NODE_IMAGE",
    "REDIS_IMAGE",
    "TEI_IMAGE",
    "Autoscaling",
    "CacheNodes",
    "DisruptionBudget",
    "EmbeddedMilvus",
    "Embedding",
    "ExactTier",
    "ExternalMilvus",
    "ExternalRedis",
    "GpuEmbedding",
    "ManagedMilvus",
    "ManagedRedis",
    "MilvusCluster",
    "SemanticTier",
]

REDIS_IMAGE = "docker.io/library/redis:7.4.6-alpine"
MILVUS_IMAGE = "docker.io/milvusdb/milvus:v2.6.16"
TEI_IMAGE = "ghcr.io/huggingface/text-embeddings-inference:1.9.3"
NODE_IMAGE = f"ghcr.io/cachefleet/cache-node:{node_version}"


Image = Annotated[str, StringConstraints(min_length=1, max_length=512)]


def _exactly_one(*fields: str) -> str:
    return " + ".join(f"(has(self.{name}) ? 1 : 0)" for name in fields) + " == 1"


# --- exact tier (Redis) ---------------------------------------------------------------------


class ManagedRedis(ApiModel):
    """Redis run by the operator: a one-replica StatefulSet behind a headless Service."""

    image: Image = Field(REDIS_IMAGE, description="Redis image.")
    max_memory: ByteQuantity = Field(
        "256Mi", description="Redis `maxmemory`: beyond it keys are evicted by `evictionPolicy`."
    )
    eviction_policy: Literal[
        "volatile-lru",
        "allkeys-lru",
        "volatile-lfu",
        "allkeys-lfu",
        "volatile-ttl",
        "volatile-random",
        "allkeys-random",
        "noeviction",
    ] = Field(
        "volatile-lru",
        description="Redis `maxmemory-policy`. Every key the nodes write carries a TTL, so "
        "`volatile-lru` evicts least recently used entries first.",
    )
    resources: ResourceRequirements | None = Field(
        None,
        description="Container resources. Default: 100m CPU and a memory request and limit "
        "25% above `maxMemory`.",
    )
    persistence: Persistence | None = Field(
        None, description="Keep data on a PersistentVolumeClaim (append-only file); unset: memory."
    )


class ExternalRedis(ApiModel):
    """A Redis the operator does not run: one server, a Redis Cluster, or a master watched by
    Redis Sentinel."""

    cel_rules = (
        Rule(
            "self.mode == 'sentinel' ? has(self.sentinelService) : !has(self.sentinelService)",
            "exactTier.external.sentinelService is required when mode is sentinel, and must be "
            "left out otherwise",
            check=lambda self: (self.mode == "sentinel") == (self.sentinel_service is not None),
        ),
        Rule(
            "self.mode != 'standalone' || !has(self.seedNodes)",
            "exactTier.external.seedNodes is for mode cluster or sentinel",
            check=lambda self: self.mode != "standalone" or self.seed_nodes is None,
        ),
    )

    url_secret_ref: SecretKeyRef = Field(
        description="Secret key holding the `redis://` or `rediss://` URL (it may carry a "
        "password); it reaches the nodes as an environment variable, never in a ConfigMap. "
        "`cluster`: any node of the cluster; `sentinel`: one sentinel (the password, TLS and "
        "database number apply to the master)."
    )
    mode: RedisMode = Field(
        "standalone",
        description="What the URL points at: `standalone` one Redis server (or one endpoint in "
        "front of it), `cluster` a node of a Redis Cluster (the nodes learn the slot map and "
        "follow failovers), `sentinel` a Redis Sentinel that names the current master.",
    )
    seed_nodes: list[RedisNode] | None = Field(
        None,
        min_length=1,
        max_length=32,
        description="`cluster`: more cluster nodes, `sentinel`: more sentinels (`host:port`), "
        "tried when the one in the URL does not answer.",
    )
    sentinel_service: SentinelService | None = Field(
        None,
        description="`sentinel` only, and required there: the name of the monitored master "
        "(`sentinel monitor <name>`).",
    )


class ExactTier(ApiModel):
    """The shared exact tier (Redis): payloads, TTLs, embedding cache and the coherence bus."""

    cel_rules = (
        Rule(
            _exactly_one("managed", "external"),
            "exactTier: set exactly one of managed (the operator runs Redis) or external "
            "(urlSecretRef names your Redis)",
            check=lambda self: (self.managed is None) != (self.external is None),
        ),
    )

    managed: ManagedRedis | None = Field(None, description="Redis run by the operator.")
    external: ExternalRedis | None = Field(None, description="Your own Redis.")


# --- semantic tier (Milvus) -----------------------------------------------------------------


class MilvusCluster(ApiModel):
    """The Milvus cluster asked of the Milvus Operator (`engine: milvusOperator`)."""

    proxy_replicas: int = Field(1, ge=1, le=64, description="Proxy pods (the endpoint).")
    query_node_replicas: int = Field(
        1, ge=1, le=256, description="Query node pods (they hold the vectors searched)."
    )
    data_node_replicas: int = Field(1, ge=1, le=64, description="Data node pods.")
    message_stream: Literal["woodpecker", "pulsar", "kafka"] = Field(
        "woodpecker",
        description="Milvus's message stream: `woodpecker` (inside Milvus, on the object "
        "storage: nothing more to run), or an in-cluster `pulsar` or `kafka` the Milvus "
        "Operator deploys.",
    )


class ManagedMilvus(ApiModel):
    """Milvus run for the fleet: a standalone StatefulSet (the operator's own, embedded etcd,
    local storage, one replica) or a distributed cluster the Milvus Operator runs."""

    cel_rules = (
        Rule(
            "!has(self.cluster) || self.engine == 'milvusOperator'",
            "semanticTier.managed.cluster is for engine milvusOperator",
            check=lambda self: self.cluster is None or self.engine == "milvusOperator",
        ),
    )

    engine: Literal["standalone", "milvusOperator"] = Field(
        "standalone",
        description="`standalone`: the operator runs Milvus standalone itself. "
        "`milvusOperator`: the operator creates a `Milvus` (milvus.io/v1beta1, mode "
        "`cluster`) for the Milvus Operator, which must be installed, and waits for it to "
        "be Healthy; the nodes use its `<cache>-milvus-cluster-milvus` Service. Changing the "
        "engine starts with an empty semantic tier.",
    )
    image: Image = Field(MILVUS_IMAGE, description="Milvus image.")
    resources: ResourceRequirements = Field(
        default_factory=lambda: ResourceRequirements(
            requests={"cpu": "500m", "memory": "2Gi"}, limits={"memory": "4Gi"}
        ),
        description="Container resources: of the standalone pod, or of each Milvus "
        "component pod of a cluster (`components.resources`).",
    )
    persistence: Persistence | None = Field(
        None,
        description="standalone: keep vectors on a PersistentVolumeClaim (unset: an "
        "emptyDir). milvusOperator: the size of the in-cluster MinIO's volume and the "
        "StorageClass of MinIO's and etcd's (unset: 20Gi, the cluster's default StorageClass; "
        "a cluster always keeps its data on volumes).",
    )
    cluster: MilvusCluster | None = Field(
        None,
        description="The cluster's shape (engine milvusOperator only; unset: one of each "
        "component, woodpecker).",
    )


class ExternalMilvus(ApiModel):
    """A Milvus the operator does not run."""

    uri: HttpUrl = Field(description="Milvus endpoint, e.g. `http://milvus.vector.svc:19530`.")
    token_secret_ref: SecretKeyRef | None = Field(
        None, description="Secret key holding the Milvus token (`user:password` or API key)."
    )


class EmbeddedMilvus(ApiModel):
    """Milvus Lite inside each cache node: vectors are not shared between nodes (development)."""


class SemanticTier(ApiModel):
    """The shared semantic tier (Milvus): vectors with their partition fields."""

    cel_rules = (
        Rule(
            _exactly_one("managed", "external", "embedded"),
            "semanticTier: set exactly one of managed (the operator runs Milvus), external "
            "(uri of your Milvus) or embedded (Milvus Lite in each node, development only)",
            check=lambda self: [self.managed, self.external, self.embedded].count(None) == 2,
        ),
    )

    managed: ManagedMilvus | None = Field(
        None, description="Milvus run for the fleet (by the operator or the Milvus Operator)."
    )
    external: ExternalMilvus | None = Field(None, description="Your own Milvus.")
    embedded: EmbeddedMilvus | None = Field(
        None, description="Milvus Lite inside each cache node (development only)."
    )


# --- embedding ------------------------------------------------------------------------------


class GpuEmbedding(ApiModel):
    """GPU embedding pods running HuggingFace text-embeddings-inference (TEI)."""

    image: Image = Field(
        TEI_IMAGE,
        description="TEI image. The default is built for Ampere (A100, A10); use the "
        "`hopper-…` tag for H100 and `89-…` for L4/Ada.",
    )
    model_id: str | None = Field(
        None,
        alias="modelID",
        max_length=512,
        description="What TEI loads (`--model-id`): a hub id or a path. Default: the "
        "ModelVersions' `embeddingModel`. Must be the same model.",
    )
    replicas: int = Field(1, ge=1, le=64, description="Embedding pods.")
    gpus_per_pod: int = Field(
        1, ge=1, le=16, description="`nvidia.com/gpu` limit of each embedding pod."
    )
    node_selector: dict[str, str] | None = Field(
        None, description="Node labels the embedding pods must land on."
    )
    tolerations: list[Toleration] | None = Field(
        None, max_length=32, description="Taints the embedding pods tolerate (e.g. GPU nodes)."
    )
    runtime_class_name: str | None = Field(
        None, max_length=253, description="RuntimeClass of the pods, e.g. `nvidia`."
    )
    resources: ResourceRequirements | None = Field(
        None, description="CPU and memory; the GPU limit comes from `gpusPerPod`."
    )


class Embedding(ApiModel):
    """Where embeddings are computed."""

    cel_rules = (
        Rule(
            "self.mode == 'gpu' ? has(self.gpu) : !has(self.gpu)",
            "embedding.gpu is required when embedding.mode is gpu, and must be left out when "
            "it is local",
            check=lambda self: (self.mode == "gpu") == (self.gpu is not None),
        ),
    )

    mode: Literal["local", "gpu"] = Field(
        "local",
        description="`local`: ONNX Runtime inside each cache node (no GPU); `gpu`: a separate "
        "Deployment of GPU embedding pods.",
    )
    gpu: GpuEmbedding | None = Field(None, description="GPU embedding pods (mode gpu only).")


# --- cache nodes ----------------------------------------------------------------------------


class Autoscaling(ApiModel):
    """A HorizontalPodAutoscaler on CPU for the cache nodes."""

    cel_rules = (
        Rule(
            "self.minReplicas <= self.maxReplicas",
            "nodes.autoscaling.minReplicas must not exceed nodes.autoscaling.maxReplicas",
            check=lambda self: self.min_replicas <= self.max_replicas,
        ),
    )

    enabled: bool = Field(False, description="Create the HorizontalPodAutoscaler.")
    min_replicas: int = Field(2, ge=1, le=1000, description="Lowest node count.")
    max_replicas: int = Field(10, ge=1, le=1000, description="Highest node count.")
    target_cpu_utilization_percentage: int = Field(
        70,
        ge=1,
        le=100,
        alias="targetCPUUtilizationPercentage",
        description="Average CPU utilisation (of the request) the autoscaler aims for.",
    )


class DisruptionBudget(ApiModel):
    """The cache nodes' PodDisruptionBudget."""

    min_available: IntOrPercent = Field(
        1,
        description="Nodes that must stay up during voluntary disruptions (a count or a "
        "percentage). No budget is created while the fleet may run a single node.",
    )


class CacheNodes(ApiModel):
    """The cache node Deployment: the OpenAI-compatible proxy the applications call."""

    image: Image = Field(NODE_IMAGE, description="Cache node image.")
    replicas: int = Field(
        2,
        ge=1,
        le=1000,
        description="Cache nodes. Ignored while `autoscaling.enabled` is true: the "
        "HorizontalPodAutoscaler owns the count then.",
    )
    resources: ResourceRequirements = Field(
        default_factory=lambda: ResourceRequirements(
            requests={"cpu": "250m", "memory": "768Mi"}, limits={"memory": "1536Mi"}
        ),
        description="Container resources (the local embedder needs about 300Mi).",
    )
    autoscaling: Autoscaling = Field(
        default_factory=Autoscaling, description="CPU-based autoscaling."
    )
    pod_disruption_budget: DisruptionBudget = Field(
        default_factory=DisruptionBudget, description="Disruption budget."
    )
    model_cache_claim_name: str | None = Field(
        None,
        max_length=253,
        description="PersistentVolumeClaim (ReadWriteMany) shared by the nodes as the embedding "
        "model download cache; unset: each pod downloads into an emptyDir.",
    )
