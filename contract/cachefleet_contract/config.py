"""The cache node's configuration models: the file `cachefleet-node serve --config` reads and
the ConfigMap the operator renders.

Plain pydantic models (no environment magic), so the operator can build and serialise them;
the node's loader (`cachefleet_node.config.load_node_config`) reads a file and the
`CACHEFLEET_*` environment variables into `NodeConfig`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = [
    "ENV_PREFIX",
    "MODEL_DIR_ENV",
    "AuthConfig",
    "CalibrationConfig",
    "DeadlinesConfig",
    "EmbeddingConfig",
    "GuardsConfig",
    "Identifier",
    "L1Config",
    "LoggingConfig",
    "MilvusConfig",
    "ModelPrice",
    "NamespaceConfig",
    "NodeConfig",
    "RedisConfig",
    "RedisMode",
    "RedisNode",
    "SentinelService",
    "ServerConfig",
    "SingleFlightConfig",
    "TemperaturePolicy",
    "TenantKey",
    "UpstreamConfig",
    "VerifierConfig",
]

#: Prefix of the environment variables the node's loader merges over the file
#: (`CACHEFLEET_REDIS__URL` sets `redis.url`).
ENV_PREFIX = "CACHEFLEET_"
#: The embedding model directory (`embedding.model_dir` when the file leaves it unset).
MODEL_DIR_ENV = "CACHEFLEET_EMBEDDING_MODEL_DIR"
_NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"

# Identifiers that end up in Redis keys, Milvus filters and metric labels: lower-case DNS-ish names.
Identifier = Annotated[str, Field(pattern=_NAME_PATTERN, max_length=63)]

# What `redis.url` points at, another Redis Cluster node or sentinel, and a sentinel's master name
# (the operator's SemanticCache `exactTier.external` uses the same types).
RedisMode = Literal["standalone", "cluster", "sentinel"]
RedisNode = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:\[\]-]+:[0-9]{1,5}$")]
SentinelService = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ServerConfig(_Strict):
    """HTTP listener and request limits."""

    host: str = Field("127.0.0.1", description="Address to bind.")
    port: int = Field(8080, ge=0, le=65535, description="Port to bind (0 picks a free port).")
    metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="When set, `/metrics` is also served on this port of `host`, without "
        "the API keys (for Prometheus); `/metrics` on `port` needs a key when keys are "
        "configured. 0 picks a free port.",
    )
    keep_alive_s: int = Field(
        75,
        ge=1,
        le=3600,
        description="Seconds an idle client connection stays open. Longer than the idle "
        "timeouts of clients and load balancers (httpx 5 s, AWS ALB 60 s): a server that "
        "closes first races the client's next request on that connection (a reset).",
    )
    max_request_bytes: int = Field(
        33_554_432,
        ge=1024,
        description="Largest chat-completion body the node reads (default 32 MiB: room for "
        "images sent inline as base64); larger ones get 413. Bodies of routes that pass "
        "through to the upstream are streamed and not limited here.",
    )
    body_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Longest a client may take to send a request body; a slower upload gets "
        "408 and its connection is freed.",
    )


class UpstreamConfig(_Strict):
    """The OpenAI-compatible API the node forwards misses to."""

    base_url: str = Field(
        "https://api.openai.com/v1", description="Base URL; `/chat/completions` is appended."
    )
    timeout_s: float = Field(
        300.0,
        gt=0,
        description="Total deadline of one upstream call: connect, first byte and the whole "
        "body (a trickling upstream is cut: 504, or a streamed answer ends with an "
        "interruption event; nothing is stored).",
    )
    connect_timeout_s: float = Field(5.0, gt=0, description="TCP/TLS connect timeout.")
    api_key_env: str = Field(
        "CACHEFLEET_UPSTREAM_API_KEY",
        description=(
            "Environment variable holding the upstream API key. Used when tenant API keys are "
            "configured; without them the caller's Authorization header is forwarded."
        ),
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http(s) URL such as http://127.0.0.1:9000/v1")
        return value.rstrip("/")


class RedisConfig(_Strict):
    """Shared L2 exact tier, embedding cache and coherence bus. Unset: embedded mode.

    `mode` says what `url` points at: one Redis server (`standalone`), any node of a Redis
    Cluster (`cluster`: the client discovers the others and follows failovers), or one Redis
    Sentinel (`sentinel`: the client asks it for the master of `sentinel_service`)."""

    url: SecretStr | None = Field(
        None,
        description="redis:// or rediss:// URL (may carry a password). Unset: no Redis. "
        "`cluster`: any node of the cluster; `sentinel`: one sentinel (the password and TLS "
        "apply to the master and its replicas, the database number to the master).",
    )
    mode: RedisMode = Field(
        "standalone", description="What `url` points at: a server, a cluster node, a sentinel."
    )
    nodes: list[RedisNode] = Field(
        default_factory=list,
        description="`cluster`: more startup nodes, `sentinel`: more sentinels (`host:port`), "
        "tried when the one in `url` does not answer.",
    )
    sentinel_service: SentinelService | None = Field(
        None,
        description="`sentinel`: the name of the monitored master (`sentinel monitor <name>`).",
    )
    key_prefix: Identifier = Field("cf", description="Prefix of every key the node writes.")
    max_connections: int = Field(
        512,
        ge=1,
        description="Connection pool size (`cluster`: per cluster node). `standalone` and "
        "`sentinel`: a request that finds every connection busy waits for one within its tier "
        "deadline instead of failing; `cluster`: it fails (the tier is skipped).",
    )

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.match(r"^(redis|rediss|unix)://", value.get_secret_value()):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @model_validator(mode="after")
    def _mode(self) -> RedisConfig:
        if (self.mode == "sentinel") != (self.sentinel_service is not None):
            raise ValueError("sentinel_service is required with mode sentinel, and only there")
        if self.mode == "standalone" and self.nodes:
            raise ValueError("nodes is for mode cluster or sentinel")
        url = self.url.get_secret_value() if self.url is not None else ""
        if self.mode != "standalone" and url.startswith("unix://"):
            raise ValueError(f"mode {self.mode} needs a redis:// or rediss:// url")
        return self


class MilvusConfig(_Strict):
    """Shared L2 semantic tier. Unset URI: Milvus Lite in a local file under `data_dir`."""

    uri: str | None = Field(
        None, description="http(s)://host:port of Milvus, or a local Milvus Lite path."
    )
    token: SecretStr | None = Field(None, description="Milvus token (user:password or API key).")
    collection_prefix: str = Field(
        "cachefleet", pattern=r"^[A-Za-z][A-Za-z0-9_]{0,31}$", description="Collection prefix."
    )


class DeadlinesConfig(_Strict):
    """Per-tier deadlines on the request path. Past a deadline the tier is skipped (fail-open)."""

    redis_ms: float = Field(20.0, gt=0, le=10_000, description="Redis read deadline.")
    milvus_ms: float = Field(50.0, gt=0, le=10_000, description="Milvus search deadline.")
    embedder_ms: float = Field(
        50.0,
        gt=0,
        le=10_000,
        description="Embedding service deadline per text: the batch that carries a call may run "
        "this long per text it holds, counted from its start (time queued is not counted).",
    )
    embedder_queue_ms: float = Field(
        1_000.0,
        gt=0,
        le=60_000,
        description="Longest wait for the embedder on the request path: a lookup whose "
        "estimated queue wait is longer is shed at once, one still queued after it is dropped "
        "(`embedder-busy`: the request goes upstream; not a failure, the breaker ignores it).",
    )
    write_ms: float = Field(2_000.0, gt=0, le=60_000, description="Background write deadline.")
    breaker_failures: int = Field(
        5, ge=1, description="Consecutive failures that open a tier's circuit breaker."
    )
    breaker_cooldown_s: float = Field(
        2.0, gt=0, description="How long an open breaker skips the tier before probing again."
    )


class SingleFlightConfig(_Strict):
    """Identical concurrent misses share one upstream call: always on one node; across the
    nodes of a fleet through a short Redis lease per exact key."""

    fleet: bool = Field(
        True,
        description="Across nodes: the first node to miss an exact key takes a Redis lease on "
        "it (TTL: `upstream.timeout_s` plus `deadlines.write_ms`); identical misses on other "
        "nodes wait for its answer to land in Redis and are served it (`hit-exact`, tier "
        "`l2`). If the holder lands nothing (upstream error, answer not storable, lease "
        "expired) or Redis fails, each waits no longer and calls the upstream itself. Off, "
        "or without Redis: per node only.",
    )
    poll_ms: float = Field(
        20.0,
        gt=0,
        le=1_000,
        description="How often a node waiting on another node's lease first looks for the "
        "answer in Redis (each look is one read of the entry and one of the lease, under "
        "`deadlines.redis_ms`); the interval doubles after each look, up to 250 ms.",
    )


class L1Config(_Strict):
    """In-process tiers of this node."""

    max_bytes: int | None = Field(
        None,
        ge=0,
        description="Byte budget of all in-process tiers together (exact entries, semantic "
        "vectors and cached embeddings, least recently used evicted first). Unset: "
        "`memory_fraction` of the container's memory limit (cgroup), or 256 MiB without a limit.",
    )
    memory_fraction: float = Field(
        0.25,
        gt=0,
        le=0.9,
        description="Share of the container's memory limit given to the in-process tiers when "
        "`max_bytes` is unset; the rest covers the runtime, the embedding model and buffers.",
    )
    semantic_max_entries: int | None = Field(
        None,
        ge=0,
        description="Most vectors in the in-process ANN, all partitions. Unset: as many as "
        "the `l1` byte budget holds (least recently used evicted first); 0: no in-process "
        "semantic tier (every semantic lookup goes to the durable tier).",
    )
    hnsw_min_partition: int = Field(
        8_192,
        ge=64,
        description="A partition this large also gets an HNSW graph, built in the background "
        "(exact search until it is ready).",
    )


class EmbeddingConfig(_Strict):
    """The embedder: `local` (ONNX Runtime in the node) or `remote` (TEI / OpenAI pods)."""

    kind: Literal["local", "remote"] = Field("local", description="Where embeddings come from.")
    model_id: str = Field(
        "sentence-transformers/all-MiniLM-L6-v2",
        description="Embedding model identity; the hub id to download when no model_dir is set.",
    )
    model_dir: str | None = Field(
        None,
        description=f"Local model directory (also from ${MODEL_DIR_ENV}). Must hold "
        "`onnx/model.onnx` and `tokenizer.json`.",
    )
    revision: str = Field("main", description="Hub revision to download.")
    hub_endpoint: str = Field("https://huggingface.co", description="Model hub base URL.")
    hub_cache_dir: str | None = Field(
        None, description="Download cache (default ~/.cache/cachefleet/models)."
    )
    max_tokens: int = Field(256, ge=8, le=8192, description="Truncation length in tokens.")
    batch_size: int = Field(32, ge=1, le=1024, description="Largest micro-batch.")
    threads: int = Field(0, ge=0, le=256, description="ONNX intra-op threads (0: all cores).")
    remote_url: str | None = Field(None, description="Base URL of the embedding service.")
    remote_protocol: Literal["tei", "openai"] = Field(
        "tei", description="`tei`: POST /embed; `openai`: POST /v1/embeddings."
    )
    remote_model: str | None = Field(None, description="`model` sent to an OpenAI endpoint.")
    remote_api_key_env: str | None = Field(
        None, description="Environment variable with the embedding service's API key."
    )
    remote_timeout_s: float = Field(
        2.0, gt=0, le=300, description="Deadline of one call to the embedding service."
    )
    cache_ttl_s: int = Field(
        7 * 24 * 3600, ge=0, description="TTL of cached embeddings in Redis (0: no Redis cache)."
    )
    local_cache_entries: int = Field(
        10_000,
        ge=0,
        description="In-process embedding cache size (entries), within the `l1` byte budget.",
    )

    @model_validator(mode="after")
    def _remote_needs_url(self) -> EmbeddingConfig:
        if self.kind == "remote" and not self.remote_url:
            raise ValueError("embedding.remote_url is required when embedding.kind is 'remote'")
        return self


TemperaturePolicy = Annotated[
    str,
    Field(
        pattern=r"^(cache|bypass|sample:([1-9][0-9]?))$",
        description="For requests with temperature > 0: `cache`, `bypass`, or `sample:N`.",
    ),
]


class GuardsConfig(_Strict):
    """Checks that veto a semantic candidate above the threshold (see `core/guards/`).

    Defaults are the ones the quality harness chose (docs/benchmarks/quality.md).
    """

    negation: bool = Field(
        True, description="Reject when one text is negated and the other is not."
    )
    opposites: bool = Field(
        True,
        description="Reject when the texts take opposite sides (enable/disable, show/delete, "
        "ascending/descending, un-/dis- forms) or reverse a direction (miles to km / km to miles).",
    )
    numbers: bool = Field(
        True,
        description="Reject when the numbers differ (quantities, dates, versions) or the same "
        "number counts another thing (5 miles in km / miles in 5 km).",
    )
    entities: bool = Field(
        True,
        description="Reject when each text names something the other does not (names, "
        "identifiers, quoted strings), or a name stands where the other text has another "
        "word (Roth IRA / traditional IRA).",
    )


class VerifierConfig(_Strict):
    """The verifier: a pair classifier that reads the request and the cached prompt together
    after the threshold and the guards (see `core/verifier.py`).

    Defaults are the operating point `make train-verifier` chose on the adversarial tuning
    split and CLINC150 (docs/benchmarks/quality.md).
    """

    enabled: bool = Field(
        True, description="Score semantic candidates with the verifier (off: threshold + guards)."
    )
    min_score: float = Field(
        0.75,
        ge=0,
        le=1,
        description="A candidate whose verifier score (probability that the cached answer "
        "answers the request) is lower is refused.",
    )
    weight: float = Field(
        0.05,
        ge=0,
        le=0.2,
        description="How much the verifier moves the score compared with the threshold: "
        "score = similarity + weight × (verifier score − 0.5); 0 = refusals only.",
    )


class CalibrationConfig(_Strict):
    """Threshold calibration on live traffic from verified shadow-mode samples."""

    target_error_rate: float = Field(
        0.01,
        gt=0,
        lt=1,
        description="Wrong answers per request the calibrated threshold may cost.",
    )
    online: bool = Field(
        False,
        description="Serve with the calibrated threshold (within min/max_threshold) once "
        "`min_samples` verified samples exist; otherwise it is only reported as a metric.",
    )
    min_samples: int = Field(
        200, ge=20, description="Verified samples needed before a threshold is calibrated."
    )
    window: int = Field(5000, ge=100, description="Most recent verified samples kept.")
    agreement_similarity: float = Field(
        0.9,
        gt=0,
        le=1,
        description="A would-be hit counts as right when the cosine similarity between the "
        "cached answer and the upstream's fresh answer reaches this.",
    )


class NamespaceConfig(_Strict):
    """One cache namespace: which models it serves and its policies."""

    name: Identifier = Field(
        description="Stable name of this namespace (e.g. the ModelVersion it serves)."
    )
    cache_namespace: Identifier | None = Field(
        None,
        description="Cache namespace the entries are stored under (default: `name`). A model "
        "version rollover points `name` at a new cache namespace; a switch published through "
        "Redis takes precedence until the configuration catches up.",
    )
    models: list[str] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        description="Model names served by this namespace; `*` matches any model.",
    )
    similarity_threshold: float = Field(
        0.82,
        gt=0,
        le=1,
        description="Cosine similarity a semantic candidate must reach (default chosen by the "
        "quality harness for error rate <= 1% on CLINC150, docs/benchmarks/quality.md).",
    )
    min_threshold: float = Field(
        0.75, gt=0, le=1, description="Lowest per-request threshold override allowed."
    )
    max_threshold: float = Field(1.0, gt=0, le=1, description="Highest override allowed.")
    semantic: bool = Field(True, description="Enable the semantic tiers for this namespace.")
    fuzzy_text: Literal["last_user_turn", "all_user_turns"] = Field(
        "last_user_turn",
        description="Which text is embedded; everything else must match exactly.",
    )
    ttl_s: int = Field(86_400, ge=1, description="Entry time to live in seconds.")
    max_entry_bytes: int = Field(
        262_144, ge=256, description="Responses larger than this are not stored."
    )
    temperature_policy: TemperaturePolicy = "cache"
    cache_tool_results: bool = Field(
        False, description="Cache requests whose last message is a tool result."
    )
    guards: GuardsConfig = Field(
        default_factory=GuardsConfig, description="Guards against confident wrong answers."
    )
    lexical_weight: float = Field(
        0.0,
        ge=0.0,
        le=0.5,
        description="Weight of word overlap (Jaccard index of content words) added to the "
        "cosine similarity before the threshold applies; 0 = cosine only (the default). It "
        "serves more at loose, high-recall thresholds and fewer at strict ones "
        "(docs/benchmarks/quality.md); raise the threshold with it.",
    )
    verifier: VerifierConfig = Field(
        default_factory=VerifierConfig,
        description="The verifier that reads request and cached prompt together.",
    )
    shadow: bool = Field(
        False,
        description="Compute semantic hits (down to min_threshold) without serving them; "
        "record their similarity and verify them against the upstream's answer.",
    )
    calibration: CalibrationConfig = Field(
        default_factory=CalibrationConfig, description="Threshold calibration."
    )
    thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Per-embedding-model similarity thresholds, keyed by embedding `model_id`: "
        "the threshold in force is `thresholds[<model_id of the embedding space that serves "
        "lookups>]`, else `similarity_threshold`. Each must lie in [min_threshold, "
        "max_threshold].",
    )

    @model_validator(mode="after")
    def _threshold_range(self) -> NamespaceConfig:
        if not self.min_threshold <= self.similarity_threshold <= self.max_threshold:
            raise ValueError("need min_threshold <= similarity_threshold <= max_threshold")
        for model_id, value in self.thresholds.items():
            if not model_id:
                raise ValueError("thresholds: keys must be embedding model ids, not empty")
            if not 0 < value <= 1:
                raise ValueError(f"thresholds[{model_id!r}]: must be in (0, 1], got {value}")
            if not self.min_threshold <= value <= self.max_threshold:
                raise ValueError(
                    f"thresholds[{model_id!r}]: {value} is outside [min_threshold, "
                    f"max_threshold] = [{self.min_threshold}, {self.max_threshold}]"
                )
        return self

    def threshold_for(self, embedding_model_id: str) -> float:
        """The configured threshold when `embedding_model_id` serves lookups."""
        return self.thresholds.get(embedding_model_id, self.similarity_threshold)

    @property
    def sample_size(self) -> int:
        """N of a `sample:N` temperature policy, else 1."""
        if self.temperature_policy.startswith("sample:"):
            return int(self.temperature_policy.split(":", 1)[1])
        return 1


class TenantKey(_Strict):
    """Maps an API key to a tenant. Give the key's SHA-256 or the env variable holding it."""

    tenant: Identifier = Field(description="Tenant the key's callers belong to.")
    key_sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="Hex SHA-256 of the API key (the key itself never appears in config).",
    )
    key_env: str | None = Field(None, description="Environment variable holding the key.")
    admin: bool = Field(False, description="May invalidate any tenant and switch namespaces.")

    @model_validator(mode="after")
    def _one_source(self) -> TenantKey:
        if (self.key_sha256 is None) == (self.key_env is None):
            raise ValueError("set exactly one of key_sha256 or key_env")
        return self


class AuthConfig(_Strict):
    """Tenancy. Without keys every caller is tenant `default` and may use the admin API, the
    caller's `Authorization` goes upstream, and a cached answer is served only to a
    credential the upstream accepted recently (see `cachefleet_node/key_check.py`)."""

    api_keys: list[TenantKey] = Field(default_factory=list)
    serve_hits_without_key_check: bool = Field(
        False,
        description="Without api_keys: serve cached answers to any caller, whatever its "
        "credential (an internal, key-less shared cache). Off: a hit needs a credential the "
        "upstream accepted within key_verdict_ttl_s. The node warns at start when it is on.",
    )
    key_verdict_ttl_s: float = Field(
        300.0,
        gt=0,
        le=86_400,
        description="How long the upstream's acceptance of a credential lets it read hits "
        "(a revoked key reads them at most this long).",
    )
    rejected_key_ttl_s: float = Field(
        30.0,
        gt=0,
        le=3_600,
        description="How long a credential the upstream refused is answered with its refusal "
        "without asking again.",
    )
    key_check_timeout_s: float = Field(
        5.0,
        gt=0,
        le=60,
        description="Deadline of the upstream call (GET /models) that checks an unknown "
        "credential; past it the request goes upstream like a miss.",
    )


class ModelPrice(_Strict):
    """Price of one model in US dollars per million tokens."""

    input_per_mtok: float = Field(ge=0, description="US dollars per million prompt tokens.")
    output_per_mtok: float = Field(ge=0, description="US dollars per million completion tokens.")


class LoggingConfig(_Strict):
    """Structured logging."""

    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level written."
    )
    log_prompts: bool = Field(
        False, description="Include prompt text in request logs (debug only; off by default)."
    )


def _default_prices() -> dict[str, ModelPrice]:
    return {
        "gpt-4o-mini": ModelPrice(input_per_mtok=0.15, output_per_mtok=0.60),
        "gpt-4o": ModelPrice(input_per_mtok=2.50, output_per_mtok=10.00),
        "gpt-4.1-mini": ModelPrice(input_per_mtok=0.40, output_per_mtok=1.60),
    }


class NodeConfig(_Strict):
    """Complete configuration of one cache node."""

    node_id: str | None = Field(None, description="Node name in logs and events (default: host).")
    data_dir: str = Field(
        ".cachefleet", description="Local state: Milvus Lite file and embedded entry store."
    )
    server: ServerConfig = Field(default_factory=ServerConfig)
    upstream: UpstreamConfig = Field(default_factory=UpstreamConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    milvus: MilvusConfig = Field(default_factory=MilvusConfig)
    deadlines: DeadlinesConfig = Field(default_factory=DeadlinesConfig)
    single_flight: SingleFlightConfig = Field(default_factory=SingleFlightConfig)
    l1: L1Config = Field(default_factory=L1Config)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    embedding_next: EmbeddingConfig | None = Field(
        None,
        description="Target embedding model of a migration. While set, every write is also "
        "embedded with it into its own collection, `POST /v1/cache/reembed` fills that "
        "collection from stored prompts, and `POST /v1/cache/embedding/switch` makes it serve "
        "lookups on every node. Must name another `model_id` than `embedding`.",
    )
    namespaces: list[NamespaceConfig] = Field(
        default_factory=lambda: [NamespaceConfig(name="default")],
        min_length=1,
        description="First namespace whose `models` match a request serves it.",
    )
    auth: AuthConfig = Field(default_factory=AuthConfig)
    prices: dict[str, ModelPrice] = Field(default_factory=_default_prices)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @model_validator(mode="after")
    def _next_is_another_model(self) -> NodeConfig:
        if self.embedding_next is not None and (
            self.embedding_next.model_id == self.embedding.model_id
        ):
            raise ValueError(
                "embedding_next.model_id must differ from embedding.model_id (a migration "
                "moves to another vector space)"
            )
        return self

    @field_validator("namespaces")
    @classmethod
    def _unique_names(cls, value: list[NamespaceConfig]) -> list[NamespaceConfig]:
        names = [ns.name for ns in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate namespace names: {', '.join(duplicates)}")
        return value
