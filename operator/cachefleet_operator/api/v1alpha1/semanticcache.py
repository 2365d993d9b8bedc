"""`SemanticCache`: one cache fleet — its tiers, embedding pods, cache nodes and policies."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from pydantic import AwareDatetime, Field, StringConstraints

from cachefleet_node import __version__ as node_version
from cachefleet_node.config import (
    DeadlinesConfig,
    GuardsConfig,
    Identifier,
    NamespaceConfig,
    TemperaturePolicy,
    UpstreamConfig,
    VerifierConfig,
)
from cachefleet_operator.api.v1alpha1.base import (
    ApiModel,
    ListMap,
    ObjectMeta,
    PrinterColumn,
    ResourceDefinition,
    Rule,
)
from cachefleet_operator.api.v1alpha1.modelversion import RolloverPolicy
from cachefleet_operator.api.v1alpha1.types import (
    CONDITIONS_DESCRIPTION,
    ByteQuantity,
    Conditions,
    Duration,
    IntOrPercent,
    LocalObjectReference,
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
    "ActiveNamespace",
    "Auth",
    "Autoscaling",
    "CacheNodes",
    "Deadlines",
    "DisruptionBudget",
    "EmbeddedMilvus",
    "Embedding",
    "EmbeddingMigration",
    "EmbeddingStatus",
    "ExactTier",
    "ExternalMilvus",
    "ExternalRedis",
    "FuzzyText",
    "GpuEmbedding",
    "HitRate",
    "ManagedMilvus",
    "ManagedRedis",
    "ModelVersionRef",
    "Policies",
    "ReembedCursor",
    "Reembedding",
    "RetainedNamespace",
    "RolloverProgress",
    "Savings",
    "SemanticCache",
    "SemanticCacheSpec",
    "SemanticCacheStatus",
    "SemanticTier",
    "Targets",
    "Tenant",
    "Upstream",
    "WarmProgress",
]

REDIS_IMAGE = "docker.io/library/redis:7.4.6-alpine"
MILVUS_IMAGE = "docker.io/milvusdb/milvus:v2.6.16"
TEI_IMAGE = "ghcr.io/huggingface/text-embeddings-inference:1.9.3"
NODE_IMAGE = f"ghcr.io/cachefleet/cache-node:{node_version}"

_NAMESPACE_DEFAULTS = NamespaceConfig.model_fields
_DEADLINE_DEFAULTS = DeadlinesConfig.model_fields
_GUARD_DEFAULTS = GuardsConfig.model_fields
_VERIFIER_DEFAULTS = VerifierConfig.model_fields
MAX_NAME_LENGTH = 63
_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")

Image = Annotated[str, StringConstraints(min_length=1, max_length=512)]
FuzzyText = Literal["last_user_turn", "all_user_turns"]
Ratio = Annotated[str, StringConstraints(pattern=r"^(0(\.[0-9]{1,4})?|1(\.0{1,4})?)$")]
Decimal = Annotated[str, StringConstraints(pattern=r"^[0-9]+(\.[0-9]+)?$", max_length=32)]
Threshold = Annotated[float, Field(gt=0, le=1)]
HttpUrl = Annotated[str, StringConstraints(pattern=r"^https?://[^\s/]+\S*$", max_length=2048)]


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
    """A Redis the operator does not run."""

    url_secret_ref: SecretKeyRef = Field(
        description="Secret key holding the `redis://` or `rediss://` URL (it may carry a "
        "password); it reaches the nodes as an environment variable, never in a ConfigMap."
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


class ManagedMilvus(ApiModel):
    """Milvus standalone run by the operator (embedded etcd, local storage), one replica."""

    image: Image = Field(MILVUS_IMAGE, description="Milvus image.")
    resources: ResourceRequirements = Field(
        default_factory=lambda: ResourceRequirements(
            requests={"cpu": "500m", "memory": "2Gi"}, limits={"memory": "4Gi"}
        ),
        description="Container resources.",
    )
    persistence: Persistence | None = Field(
        None, description="Keep vectors on a PersistentVolumeClaim; unset: an emptyDir."
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

    managed: ManagedMilvus | None = Field(None, description="Milvus run by the operator.")
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


# --- upstream, tenants, policies ------------------------------------------------------------


class Upstream(ApiModel):
    """The OpenAI-compatible API that misses go to."""

    base_url: HttpUrl = Field(
        UpstreamConfig.model_fields["base_url"].default,
        alias="baseURL",
        description="Base URL; `/chat/completions` is appended.",
    )
    api_key_secret_ref: SecretKeyRef | None = Field(
        None,
        description="Secret key with the upstream API key, used when tenants are configured; "
        "without tenants the caller's Authorization header is forwarded.",
    )


class Tenant(ApiModel):
    """A tenant: its API key is the Secret's value under the tenant's name."""

    name: Identifier = Field(description="Tenant name, also the key in the Secret.")
    admin: bool = Field(
        False, description="May invalidate any tenant's entries and switch namespaces."
    )


class Auth(ApiModel):
    """Tenancy by API key. The keys reach the nodes as environment variables only."""

    api_keys_secret_ref: LocalObjectReference = Field(
        description="Secret whose keys are tenant names and whose values are their API keys."
    )
    tenants: Annotated[list[Tenant], ListMap("name")] = Field(
        min_length=1,
        max_length=256,
        description="The tenants (keys of the Secret) the nodes accept.",
    )


class Guards(ApiModel):
    """Guards against confident wrong answers: each vetoes a semantic candidate that differs
    from the request in a way that changes the answer (all on by default)."""

    negation: bool = Field(
        _GUARD_DEFAULTS["negation"].default,
        description="One text negated and the other not (is it safe / is it not safe).",
    )
    opposites: bool = Field(
        _GUARD_DEFAULTS["opposites"].default,
        description="Opposite sides (enable/disable, ascending/descending) or a reversed "
        "direction (miles to km / km to miles).",
    )
    numbers: bool = Field(
        _GUARD_DEFAULTS["numbers"].default,
        description="Each text has a number the other lacks (quantities, dates, versions).",
    )
    entities: bool = Field(
        _GUARD_DEFAULTS["entities"].default,
        description="Each text names something the other does not (names, identifiers, "
        "quoted strings).",
    )


class Verifier(ApiModel):
    """The verifier: a pair classifier that reads the request and the cached prompt together
    after the threshold and the guards (on by default, at the operating point the quality
    harness chose)."""

    enabled: bool = Field(
        _VERIFIER_DEFAULTS["enabled"].default,
        description="Score semantic candidates with the verifier.",
    )
    min_score: float = Field(
        _VERIFIER_DEFAULTS["min_score"].default,
        ge=0,
        le=1,
        description="Refuse a candidate whose verifier score (probability that the cached "
        "answer answers the request) is lower.",
    )
    weight: float = Field(
        _VERIFIER_DEFAULTS["weight"].default,
        ge=0,
        le=0.2,
        description="score = similarity + weight × (verifier score − 0.5) is compared with "
        "the threshold; 0 = refusals only.",
    )


class Policies(ApiModel):
    """Cache policies of every namespace this fleet serves (defaults are the node's)."""

    cel_rules = (
        Rule(
            "self.minThreshold <= self.similarityThreshold && "
            "self.similarityThreshold <= self.maxThreshold",
            "policies: need minThreshold <= similarityThreshold <= maxThreshold",
            check=lambda self: (
                self.min_threshold <= self.similarity_threshold <= self.max_threshold
            ),
        ),
        Rule(
            "!has(self.thresholds) || self.thresholds.all(m, self.minThreshold <= "
            "self.thresholds[m] && self.thresholds[m] <= self.maxThreshold)",
            "policies.thresholds: every per-embedding-model threshold must lie within "
            "[minThreshold, maxThreshold]",
            check=lambda self: all(
                self.min_threshold <= value <= self.max_threshold
                for value in (self.thresholds or {}).values()
            ),
        ),
    )

    similarity_threshold: float = Field(
        _NAMESPACE_DEFAULTS["similarity_threshold"].default,
        gt=0,
        le=1,
        description="Cosine similarity in (0, 1] a semantic candidate must reach.",
    )
    thresholds: dict[str, Threshold] | None = Field(
        None,
        max_length=16,
        description="Per-embedding-model thresholds, keyed by embedding model (hub id), e.g. "
        "`{BAAI/bge-small-en-v1.5: 0.86}`: the threshold in force is the one of the model "
        "that serves lookups (it changes with an `embeddingModel` migration), else "
        "`similarityThreshold`.",
    )
    guards: Guards | None = Field(
        None,
        description="Switch single guards off (unset: all on, the setting the quality "
        "harness chose).",
    )
    verifier: Verifier | None = Field(
        None,
        description="Verifier settings (unset: on, at the node's defaults).",
    )
    lexical_weight: float | None = Field(
        None,
        ge=0,
        le=0.5,
        description="Weight of word overlap (content words, Jaccard) added to the cosine "
        "similarity before the threshold applies; unset or 0: cosine only. Serves more at "
        "loose, high-recall thresholds and fewer at strict ones: raise `similarityThreshold` "
        "with it (docs/benchmarks/quality.md).",
    )
    min_threshold: float = Field(
        _NAMESPACE_DEFAULTS["min_threshold"].default,
        gt=0,
        le=1,
        description="Lowest threshold a request may ask for (`x-cachefleet-threshold`).",
    )
    max_threshold: float = Field(
        _NAMESPACE_DEFAULTS["max_threshold"].default,
        gt=0,
        le=1,
        description="Highest threshold a request may ask for.",
    )
    semantic: bool = Field(
        _NAMESPACE_DEFAULTS["semantic"].default, description="Enable the semantic tiers."
    )
    fuzzy_text: FuzzyText = Field(
        _NAMESPACE_DEFAULTS["fuzzy_text"].default,
        description="Which text is embedded: the last user turn or all user turns.",
    )
    ttl_seconds: int = Field(
        _NAMESPACE_DEFAULTS["ttl_s"].default, ge=1, description="Entry lifetime in seconds."
    )
    max_entry_bytes: int = Field(
        _NAMESPACE_DEFAULTS["max_entry_bytes"].default,
        ge=256,
        description="Larger answers are not stored.",
    )
    temperature_policy: TemperaturePolicy = Field(
        _NAMESPACE_DEFAULTS["temperature_policy"].default,
        description="For requests with temperature > 0: `cache`, `bypass`, or `sample:N` "
        "(collect N answers, then serve them in rotation; N from 1 to 99).",
    )
    cache_tool_results: bool = Field(
        _NAMESPACE_DEFAULTS["cache_tool_results"].default,
        description="Cache requests whose last message is a tool result.",
    )


class Reembedding(ApiModel):
    """How an embedding-model migration re-embeds the stored prompts (by the nodes' embedder)."""

    rate_per_second: float = Field(
        200.0,
        gt=0,
        le=100_000,
        description="Upper bound on entries re-embedded per second, all namespaces together.",
    )
    batch_size: int = Field(256, ge=1, le=1000, description="Entries per `/v1/cache/reembed` call.")


class Deadlines(ApiModel):
    """Per-tier deadlines in milliseconds; a tier that misses one is skipped (fail-open)."""

    redis_ms: float = Field(
        _DEADLINE_DEFAULTS["redis_ms"].default, gt=0, le=10_000, description="Redis reads."
    )
    milvus_ms: float = Field(
        _DEADLINE_DEFAULTS["milvus_ms"].default, gt=0, le=10_000, description="Milvus searches."
    )
    embedder_ms: float = Field(
        _DEADLINE_DEFAULTS["embedder_ms"].default,
        gt=0,
        le=10_000,
        description="Embedding service time per text (queue time is bounded separately).",
    )
    embedder_queue_ms: float = Field(
        _DEADLINE_DEFAULTS["embedder_queue_ms"].default,
        gt=0,
        le=60_000,
        description="Longest wait in the embedder's queue on the request path; a lookup that "
        "would wait longer goes upstream at once (shed, not a failure).",
    )
    write_ms: float = Field(
        _DEADLINE_DEFAULTS["write_ms"].default,
        gt=0,
        le=60_000,
        description="Background write-backs.",
    )


class Targets(ApiModel):
    """Service objectives reported as conditions."""

    hit_rate: float = Field(
        ge=0, le=1, description="Hit rate below which `HitRateBelowTarget` becomes True."
    )


class ModelVersionRef(ApiModel):
    """A ModelVersion in the same namespace that this cache serves."""

    name: str = Field(
        min_length=1, max_length=MAX_NAME_LENGTH, description="Name of the ModelVersion."
    )
    policy: RolloverPolicy | None = Field(
        None, description="Overrides the ModelVersion's `policy` for this cache."
    )


class SemanticCacheSpec(ApiModel):
    """Desired state of one cache fleet."""

    cel_rules = (
        Rule(
            "self.deletionPolicy != 'Delete' || !has(self.auth) || "
            "self.auth.tenants.exists(t, has(t.admin) && t.admin)",
            "deletionPolicy Delete with spec.auth needs an admin tenant: the operator purges "
            "the cached data with that tenant's key",
            check=lambda self: (
                self.deletion_policy != "Delete"
                or self.auth is None
                or any(tenant.admin for tenant in self.auth.tenants)
            ),
        ),
    )

    model_versions: Annotated[list[ModelVersionRef], ListMap("name")] = Field(
        min_length=1,
        max_length=16,
        description="ModelVersions served, by name; a request goes to the first whose models "
        "match.",
    )
    exact_tier: ExactTier = Field(description="Shared exact tier (Redis).")
    semantic_tier: SemanticTier = Field(description="Shared semantic tier (Milvus).")
    embedding: Embedding = Field(default_factory=Embedding, description="Embedding placement.")
    nodes: CacheNodes = Field(default_factory=CacheNodes, description="The cache nodes.")
    upstream: Upstream = Field(default_factory=Upstream, description="The upstream LLM API.")
    auth: Auth | None = Field(
        None, description="Tenants by API key; unset: every caller is tenant `default`."
    )
    policies: Policies = Field(default_factory=Policies, description="Cache policies.")
    deadlines: Deadlines = Field(default_factory=Deadlines, description="Per-tier deadlines.")
    reembedding: Reembedding = Field(
        default_factory=Reembedding,
        description="Pace of the re-embedding when the ModelVersions' `embeddingModel` changes.",
    )
    targets: Targets | None = Field(None, description="Objectives reported in status.")
    deletion_policy: Literal["Retain", "Delete"] = Field(
        "Retain",
        description="On deletion: `Retain` keeps cached data (volumes, external entries); "
        "`Delete` purges it.",
    )
    paused: bool = Field(
        False, description="Stop changing the children (status still reports what runs)."
    )
    image_pull_secrets: list[LocalObjectReference] | None = Field(
        None, max_length=16, description="Pull secrets for every pod of the fleet."
    )


# --- status ---------------------------------------------------------------------------------


class HitRate(ApiModel):
    """Coarse hit rates as fixed-precision strings (updated at most once a minute)."""

    overall: Ratio | None = Field(None, description="Hits of any tier per request.")
    exact: Ratio | None = Field(None, description="Exact hits per request.")
    semantic: Ratio | None = Field(None, description="Semantic hits per request.")
    window: Duration | None = Field(None, description="Window the rates are computed over.")
    observed_at: AwareDatetime | None = Field(None, description="When the rates were collected.")


class Savings(ApiModel):
    """What the cache saved, since the entries' namespaces were created."""

    tokens: int | None = Field(None, ge=0, description="Upstream tokens not spent.")
    dollars: str | None = Field(
        None, pattern=r"^[0-9]+\.[0-9]{2}$", description="US dollars not spent, e.g. `12.34`."
    )


class ActiveNamespace(ApiModel):
    """The cache namespace a ModelVersion is served from right now, on every node."""

    model_version: str = Field(max_length=MAX_NAME_LENGTH, description="ModelVersion name.")
    cache_namespace: Identifier = Field(description="Its active cache namespace.")
    version: str | None = Field(
        None, max_length=128, description="The ModelVersion `version` its answers are for."
    )
    prompt_template_hash: str | None = Field(
        None, max_length=128, description="The `promptTemplateHash` its answers are for."
    )
    epoch: int | None = Field(None, ge=0, description="The `invalidation.epoch` it belongs to.")
    since: AwareDatetime | None = Field(
        None, description="When every node reported it active (the switch)."
    )


class RetainedNamespace(ApiModel):
    """A retired cache namespace: read-only (no lookup reaches it), purged at `purgeAfter`."""

    cache_namespace: Identifier = Field(description="The retired cache namespace.")
    model_version: str = Field(
        max_length=MAX_NAME_LENGTH, description="The ModelVersion it served."
    )
    version: str | None = Field(None, max_length=128, description="The `version` it served.")
    prompt_template_hash: str | None = Field(
        None, max_length=128, description="The `promptTemplateHash` it served."
    )
    epoch: int | None = Field(None, ge=0, description="The `invalidation.epoch` it served.")
    retired_at: AwareDatetime = Field(description="When it stopped being active.")
    purge_after: AwareDatetime = Field(
        description="When it is purged (with `retired_only`, so never while active); until "
        "then pointing back to its version reactivates it."
    )


class WarmProgress(ApiModel):
    """Replay of the previous namespace's most-hit prompts into the new one."""

    total: int | None = Field(
        None,
        ge=0,
        description="Prompts to replay: `warm.topN`, or fewer if the previous "
        "namespace holds fewer (known after the first batch).",
    )
    processed: int = Field(0, ge=0, description="Prompts replayed so far.")
    stored: int = Field(0, ge=0, description="Answers stored into the new namespace.")
    skipped: int = Field(0, ge=0, description="Prompts skipped (already cached, not replayable).")
    failed: int = Field(0, ge=0, description="Prompts whose upstream call failed.")
    next_offset: int = Field(0, ge=0, description="Where the next batch starts (a cursor).")


class RolloverProgress(ApiModel):
    """A namespace rollover in progress for one ModelVersion (cleared when it completes)."""

    model_version: str = Field(max_length=MAX_NAME_LENGTH, description="ModelVersion name.")
    from_model_version: str | None = Field(
        None,
        max_length=MAX_NAME_LENGTH,
        description="The ModelVersion served before, when the cache was pointed at another.",
    )
    policy: RolloverPolicy = Field(description="The policy in force for this cache.")
    trigger: Literal[
        "VersionChanged", "PromptTemplateChanged", "EpochBumped", "ModelVersionChanged"
    ] = Field(description="What started it.")
    rollback: bool = Field(False, description="The target is a retained namespace (rollback).")
    phase: Literal["Switching", "Warming"] = Field(
        description="`Switching`: nodes are told to use the new namespace and checked until "
        "every one reports it; `Warming`: the old namespace's hot prompts are replayed."
    )
    from_namespace: Identifier | None = Field(None, description="The namespace being retired.")
    to_namespace: Identifier = Field(description="The namespace becoming active.")
    version: str = Field(max_length=128, description="The `version` of the new namespace.")
    prompt_template_hash: str | None = Field(
        None, max_length=128, description="The `promptTemplateHash` of the new namespace."
    )
    epoch: int = Field(0, ge=0, description="The `invalidation.epoch` of the new namespace.")
    started_at: AwareDatetime = Field(description="When the rollover started.")
    switched_at: AwareDatetime | None = Field(
        None, description="When every node reported the new namespace active."
    )
    warm: WarmProgress | None = Field(None, description="Warm-up progress (phase Warming).")
    message: str = Field("", max_length=2048, description="The last thing that happened.")


class ReembedCursor(ApiModel):
    """Re-embedding progress of one cache namespace (a resumable cursor)."""

    cache_namespace: Identifier = Field(description="The cache namespace.")
    cursor: str = Field("", max_length=1024, description="Where the next batch starts.")
    processed: int = Field(0, ge=0, description="Entries re-embedded so far.")
    total: int | None = Field(None, ge=0, description="Entries the node reported in total.")
    done: bool = Field(False, description="Every entry is re-embedded.")


class EmbeddingMigration(ApiModel):
    """A move of the fleet's vectors to another embedding model."""

    from_model: str = Field(max_length=253, description="Embedding model serving lookups now.")
    to_model: str = Field(max_length=253, description="Embedding model being migrated to.")
    from_space: str | None = Field(None, max_length=128, description="Vector space of `fromModel`.")
    to_space: str | None = Field(
        None, max_length=128, description="Vector space of `toModel` (known once nodes run it)."
    )
    phase: Literal["Preparing", "Reembedding", "Switching"] = Field(
        description="`Preparing`: nodes restart with the new model as `embedding_next` "
        "(dual-writing); `Reembedding`: stored prompts are re-embedded batch by batch; "
        "`Switching`: every node is told to search the new space."
    )
    started_at: AwareDatetime = Field(description="When the migration started.")
    reembed_started_at: AwareDatetime | None = Field(
        None, description="When the first batch was re-embedded."
    )
    namespaces: Annotated[list[ReembedCursor], ListMap("cacheNamespace")] = Field(
        default_factory=list, max_length=64, description="Progress per cache namespace."
    )
    processed: int = Field(0, ge=0, description="Entries re-embedded, all namespaces.")
    total: int | None = Field(None, ge=0, description="Entries to re-embed, all namespaces.")
    rate: Decimal | None = Field(None, description="Entries re-embedded per second so far.")
    eta: Duration | None = Field(None, description="Estimated time left at that rate.")
    message: str = Field("", max_length=2048, description="The last thing that happened.")


class EmbeddingStatus(ApiModel):
    """The embedding model the fleet's lookups use, and a migration in progress."""

    model: str = Field(max_length=253, description="Embedding model serving lookups.")
    space: str | None = Field(
        None, max_length=128, description="Its vector space, as the nodes report it."
    )
    migration: EmbeddingMigration | None = Field(
        None, description="A migration to another model (absent when none is in progress)."
    )


class SemanticCacheStatus(ApiModel):
    """Observed state of a cache fleet, written by the operator."""

    observed_generation: int | None = Field(
        None, ge=0, description="The `metadata.generation` this status describes."
    )
    conditions: Conditions = Field(default_factory=list, description=CONDITIONS_DESCRIPTION)
    hit_rate: HitRate | None = Field(None, description="Hit rates over the recent window.")
    entries: int | None = Field(None, ge=0, description="Cached entries in the active namespaces.")
    savings: Savings | None = Field(None, description="Tokens and dollars saved.")
    model: str | None = Field(
        None,
        max_length=1024,
        description="Models served, `model@version` comma-joined, e.g. `gpt-4o-mini@2024-07-18`.",
    )
    active_namespaces: Annotated[list[ActiveNamespace], ListMap("modelVersion")] = Field(
        default_factory=list,
        max_length=16,
        description="Active cache namespace of each ModelVersion, as every node serves it.",
    )
    rollovers: Annotated[list[RolloverProgress], ListMap("modelVersion")] = Field(
        default_factory=list,
        max_length=16,
        description="Namespace rollovers in progress (the `RollingOver` condition sums them up).",
    )
    retained_namespaces: Annotated[list[RetainedNamespace], ListMap("cacheNamespace")] = Field(
        default_factory=list,
        max_length=64,
        description="Retired cache namespaces kept read-only until `purgeAfter`, oldest first.",
    )
    embedding: EmbeddingStatus | None = Field(
        None, description="Embedding model in use and a migration in progress."
    )
    ready_nodes: int | None = Field(None, ge=0, description="Cache nodes ready to serve.")


class SemanticCache(ApiModel):
    """A semantic cache fleet."""

    definition: ClassVar[ResourceDefinition] = ResourceDefinition(
        kind="SemanticCache",
        plural="semanticcaches",
        short_names=("scache",),
        description="A semantic cache fleet in front of an LLM API: exact tier (Redis), "
        "semantic tier (Milvus), embedding pods and cache nodes, with hit rate and savings in "
        "status.",
        printer_columns=(
            PrinterColumn(
                "Ready", '.status.conditions[?(@.type=="Ready")].status', "Ready condition."
            ),
            PrinterColumn("Hit-Rate", ".status.hitRate.overall", "Overall hit rate."),
            PrinterColumn("Model", ".status.model", "Models served (model@version)."),
            PrinterColumn("Entries", ".status.entries", "Cached entries.", type="integer"),
            PrinterColumn("Age", ".metadata.creationTimestamp", "Age.", type="date"),
            PrinterColumn(
                "Reason",
                '.status.conditions[?(@.type=="Ready")].reason',
                "Why the cache is (not) ready.",
                priority=1,
            ),
            PrinterColumn(
                "Message",
                '.status.conditions[?(@.type=="Ready")].message',
                "Details of the Ready condition.",
                priority=1,
            ),
        ),
    )
    cel_rules = (
        Rule(
            "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && "
            f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
            "SemanticCache names must be DNS labels: lower-case letters, digits and '-', "
            f"starting with a letter, at most {MAX_NAME_LENGTH} characters (they name Services)",
            check=lambda self: (
                len(self.metadata.name) <= MAX_NAME_LENGTH
                and _DNS_LABEL.fullmatch(self.metadata.name) is not None
            ),
            field_path=".metadata.name",
        ),
    )

    api_version: Literal["cachefleet.io/v1alpha1"] = Field(
        "cachefleet.io/v1alpha1", description="API group and version."
    )
    kind: Literal["SemanticCache"] = Field("SemanticCache", description="Kind.")
    metadata: ObjectMeta = Field(description="Standard object metadata.")
    spec: SemanticCacheSpec = Field(description="Desired state.")
    status: SemanticCacheStatus = Field(
        default_factory=SemanticCacheStatus, description="Observed state."
    )
