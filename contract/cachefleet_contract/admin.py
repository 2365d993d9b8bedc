"""The node's admin API as the operator calls it: one request model per body it sends, one
answer model per route it reads.

| route | request | answer |
|---|---|---|
| `GET /readyz` | — | `Readiness` |
| `GET /v1/cache/stats` | — | `StatsReport` |
| `GET /v1/cache/namespaces` | — | `NamespacesReport` |
| `POST /v1/cache/namespaces/switch` | `SwitchRequest` | `ActiveNamespaces` |
| `POST /v1/cache/invalidate` | `InvalidateRequest` | `InvalidateResult` |
| `POST /v1/cache/warm` | `WarmRequest` | `WarmResult` |
| `POST /v1/cache/reembed` | `ReembedRequest` | `ReembedResult` |
| `GET /v1/cache/embedding` | — | `EmbeddingSpaces` |
| `POST /v1/cache/embedding/switch` | `EmbeddingSwitchRequest` | `EmbeddingSpaces` |

Request bodies are strict (the node refuses unknown fields and loose types); answers ignore
fields they do not know, so a newer node can add some without breaking an older operator.
The node serves answers with `model_dump(mode="json")`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    computed_field,
    field_serializer,
    model_serializer,
)

from cachefleet_contract.config import Identifier

__all__ = [
    "ActiveNamespaces",
    "Counters",
    "EmbeddingSpace",
    "EmbeddingSpaces",
    "EmbeddingSwitchRequest",
    "InvalidateRequest",
    "InvalidateResult",
    "InvalidatedCounts",
    "L1Usage",
    "MilvusHealth",
    "NamespaceCounts",
    "NamespacesReport",
    "Readiness",
    "ReadinessTiers",
    "ReembedRequest",
    "ReembedResult",
    "SimilarTo",
    "StatsReport",
    "StoreHealth",
    "StrictBody",
    "SwitchRequest",
    "TierFlags",
    "WarmRequest",
    "WarmResult",
]


class StrictBody(BaseModel):
    """Base of the API's request bodies: unknown fields and loose types are rejected."""

    model_config = ConfigDict(extra="forbid", strict=True)


class _Answer(BaseModel):
    """Base of the API's answers: fields this side does not know are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


# --- requests --------------------------------------------------------------------------------


class SimilarTo(StrictBody):
    """Narrow an invalidation to entries whose prompt is semantically close to a text."""

    text: str = Field(min_length=1, max_length=65_536, description="Text to compare prompts to.")
    min_similarity: float = Field(
        gt=0, le=1, description="Cosine similarity a stored prompt must reach to be removed."
    )
    limit: int = Field(
        1000, ge=1, le=10_000, description="Most entries matched (the nearest ones first)."
    )


class InvalidateRequest(StrictBody):
    """Remove entries. Without `namespace`, every active namespace of this node is in scope."""

    namespace: Identifier | None = Field(None, description="Cache namespace (as in responses).")
    tenant: Identifier | None = Field(None, description="Only this tenant's entries.")
    tags: list[Identifier] = Field(default_factory=list, max_length=16)
    older_than_s: float | None = Field(
        None, ge=0, le=3_153_600_000, description="Only entries at least this old (≤ 100 years)."
    )
    dry_run: bool = Field(False, description="Count, do not delete.")
    retired_only: bool = Field(
        False,
        description="Refuse (409 namespace_active, nothing deleted) if a namespace in scope is "
        "active for any configured namespace: a purge of a retired namespace never deletes "
        "live entries. A whole-namespace retired purge also drops its counters.",
    )
    similar_to: SimilarTo | None = Field(
        None,
        description="Only entries whose prompt is at least `min_similarity` similar to `text`, "
        "across all partitions of the namespace.",
    )
    deleting_cache: bool = Field(
        False,
        description="The SemanticCache is being deleted (`deletionPolicy: Delete`): also drop "
        "the namespaces' counters and the fleet's persisted namespace and embedding switches.",
    )


class SwitchRequest(StrictBody):
    """Point a configured namespace at another cache namespace, on every node."""

    name: Identifier = Field(description="Configured namespace name.")
    namespace: Identifier = Field(description="Cache namespace to activate.")


class WarmRequest(StrictBody):
    """Replay ranking positions [offset, offset+limit) of `from_namespace` into `name`."""

    from_namespace: Identifier = Field(description="Cache namespace to take the requests from.")
    name: Identifier = Field(
        description="Configured namespace to refill (its active cache namespace is written)."
    )
    offset: int = Field(
        ge=0, le=2**31, description="First position in the ranking by hits (0: top)."
    )
    limit: int = Field(ge=1, le=500, description="Positions to process in this batch.")
    rate_per_s: float | None = Field(
        None, gt=0, description="Most upstream calls started per second within the batch."
    )


class ReembedRequest(StrictBody):
    """Embed about `limit` stored prompts of `namespace` from `cursor` into the next space."""

    namespace: Identifier = Field(description="Cache namespace whose prompts are re-embedded.")
    cursor: str = Field(
        max_length=512, description='Opaque cursor from the previous batch; "" starts.'
    )
    limit: int = Field(ge=1, le=1000, description="Entries to read in this batch (a target).")


class EmbeddingSwitchRequest(StrictBody):
    """Make an embedding space serve lookups on every node."""

    space: str = Field(min_length=1, max_length=128, description="Space id (see GET embedding).")


# --- answers ---------------------------------------------------------------------------------


class Counters(_Answer):
    """Monotonic request counters of one cache namespace: a node's own since its start, or the
    fleet's (summed in Redis by every node)."""

    requests: int = 0
    hits_exact: int = 0
    hits_semantic: int = 0
    misses: int = 0
    bypasses: int = 0
    prompt_tokens_saved: int = 0
    completion_tokens_saved: int = 0
    cost_saved_dollars: float = 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def hits(self) -> int:
        """Exact and semantic hits."""
        return self.hits_exact + self.hits_semantic

    @computed_field  # type: ignore[prop-decorator]
    @property
    def hit_rate(self) -> float:
        """Hits per request, rounded to 4 decimals (0 without requests)."""
        return round(self.hits / self.requests, 4) if self.requests else 0.0

    @property
    def tokens_saved(self) -> int:
        """Prompt and completion tokens not spent upstream."""
        return self.prompt_tokens_saved + self.completion_tokens_saved

    @field_serializer("cost_saved_dollars")
    def _round_dollars(self, value: float) -> float:
        return round(value, 6)

    def __add__(self, other: Counters) -> Counters:
        return Counters(
            **{name: getattr(self, name) + getattr(other, name) for name in Counters.model_fields}
        )

    def increment_since(self, previous: Counters | None) -> Counters:
        """What was counted since `previous`; after a reset (any counter went down) all of self."""
        if previous is None:
            return Counters()
        names = Counters.model_fields
        if any(getattr(self, name) < getattr(previous, name) for name in names):
            return self
        return Counters(**{name: getattr(self, name) - getattr(previous, name) for name in names})


class NamespaceCounts(_Answer):
    """One cache namespace in `StatsReport`. `fleet` is null without Redis or when Redis could
    not be read; `entries` is null when the store could not be read."""

    node: Counters
    fleet: Counters | None = None
    entries: int | None = None


class L1Usage(_Answer):
    """The node's in-process tiers and the one memory budget they share (the budget fields are
    absent from nodes older than the budget)."""

    exact_entries: int
    exact_bytes: int
    semantic_entries: int
    budget_bytes: int | None = Field(
        None, description="Byte budget of all in-process tiers together (`l1` config)."
    )
    tier_bytes: dict[str, int] = Field(
        default_factory=dict,
        description="Bytes held per in-process tier: `l1_exact`, `l1_semantic`, `embeddings` "
        "(the embedding caches, when the node runs one).",
    )
    evictions: dict[str, int] = Field(
        default_factory=dict,
        description="Items evicted per in-process tier since the node started.",
    )


class TierFlags(_Answer):
    """Which shared tiers the node uses."""

    store: str = Field(description="`redis` or the embedded store's name.")
    milvus_connected: bool
    redis: bool


class StatsReport(_Answer):
    """`GET /v1/cache/stats`: counters per cache namespace, L1 usage and tier flags."""

    node_id: str
    uptime_s: float
    active: dict[str, str] = Field(description="Configured namespace -> active cache namespace.")
    namespaces: dict[str, NamespaceCounts]
    l1: L1Usage
    tiers: TierFlags


class StoreHealth(_Answer):
    """The entry store as `/readyz` reports it."""

    kind: str
    breaker_open: bool


class MilvusHealth(_Answer):
    """The vector tier as `/readyz` reports it: `problem` says why it is not connected."""

    connected: bool
    problem: str | None = None
    recoveries: int = 0


class ReadinessTiers(_Answer):
    """Shared tiers as the node sees them (`coherence` null without a coherence bus)."""

    store: StoreHealth
    milvus: MilvusHealth
    coherence: bool | None


class Readiness(_Answer):
    """`GET /readyz`: `ready` (HTTP 200, with `tiers`) or `starting` (HTTP 503)."""

    status: Literal["ready", "starting"]
    tiers: ReadinessTiers | None = None


class EmbeddingSpace(_Answer):
    """One embedding space: its model, id and Milvus collection (null without Milvus)."""

    model_id: str
    space: str
    collection: str | None = None


class EmbeddingSpaces(_Answer):
    """`GET /v1/cache/embedding`: the space serving lookups, the migration's other one (null
    without a migration), and a next model being loaded live (not usable yet)."""

    active: EmbeddingSpace
    next: EmbeddingSpace | None = None
    loading: str | None = None


class NamespacesReport(_Answer):
    """`GET /v1/cache/namespaces`: the cache namespace each configured one uses, the embedding
    spaces, and the entries per cache namespace (null when the store is unreachable)."""

    active: dict[str, str]
    embedding: EmbeddingSpaces
    entries: dict[str, int] | None = None


class ActiveNamespaces(_Answer):
    """`POST /v1/cache/namespaces/switch`: the active cache namespaces after the switch."""

    active: dict[str, str]


class InvalidatedCounts(_Answer):
    """What an invalidation removed (or would remove) from one cache namespace, per tier.
    `vectors_next` only during an embedding migration, `matched` only with `similar_to`."""

    l1: int = 0
    store: int = 0
    vectors: int = 0
    vectors_next: int | None = None
    matched: int | None = None

    @model_serializer(mode="wrap")
    def _without_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {key: value for key, value in data.items() if value is not None}


class InvalidateResult(_Answer):
    """`POST /v1/cache/invalidate`: counts per cache namespace (`dry_run`: would remove)."""

    dry_run: bool
    tenant: str | None
    removed: dict[str, InvalidatedCounts]


class WarmResult(_Answer):
    """`POST /v1/cache/warm`: one batch; `processed == stored + skipped + failed`."""

    processed: int
    stored: int
    skipped: int
    failed: int
    next_offset: int
    total: int
    done: bool


class ReembedResult(_Answer):
    """`POST /v1/cache/reembed`: one batch; resume from `next_cursor` until `done`."""

    processed: int
    next_cursor: str
    total: int
    done: bool
