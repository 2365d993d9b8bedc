"""`SemanticCache`: one cache fleet — its tiers, embedding pods, cache nodes and policies.

Where the parts run is in `placement`, the lifecycle's status records in `lifecycle`."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from pydantic import AwareDatetime, Field, StringConstraints

from cachefleet_contract.config import (
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
from cachefleet_operator.api.v1alpha1.lifecycle import (
    ActiveNamespace,
    EmbeddingStatus,
    RetainedNamespace,
    RolloverProgress,
)
from cachefleet_operator.api.v1alpha1.modelversion import RolloverPolicy
from cachefleet_operator.api.v1alpha1.placement import (
    CacheNodes,
    Embedding,
    ExactTier,
    SemanticTier,
)
from cachefleet_operator.api.v1alpha1.types import (
    CONDITIONS_DESCRIPTION,
    MAX_NAME_LENGTH,
    Conditions,
    Duration,
    HttpUrl,
    LocalObjectReference,
    SecretKeyRef,
)

__all__ = [
    "Auth",
    "Deadlines",
    "FuzzyText",
    "HitRate",
    "ModelVersionRef",
    "Policies",
    "Reembedding",
    "Savings",
    "SemanticCache",
    "SemanticCacheSpec",
    "SemanticCacheStatus",
    "Targets",
    "Tenant",
    "Upstream",
]

_NAMESPACE_DEFAULTS = NamespaceConfig.model_fields
_DEADLINE_DEFAULTS = DeadlinesConfig.model_fields
_GUARD_DEFAULTS = GuardsConfig.model_fields
_VERIFIER_DEFAULTS = VerifierConfig.model_fields
_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")

FuzzyText = Literal["last_user_turn", "all_user_turns"]
Ratio = Annotated[str, StringConstraints(pattern=r"^(0(\.[0-9]{1,4})?|1(\.0{1,4})?)$")]
Threshold = Annotated[float, Field(gt=0, le=1)]


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
