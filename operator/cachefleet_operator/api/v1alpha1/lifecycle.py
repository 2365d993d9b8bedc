"""The model-version lifecycle's records in a SemanticCache's status: the namespace each
ModelVersion is served from, the retired ones still retained, rollovers and warm-ups in
progress, and the embedding model with its migration."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, StringConstraints

from cachefleet_contract.config import Identifier
from cachefleet_operator.api.v1alpha1.base import ApiModel, ListMap
from cachefleet_operator.api.v1alpha1.modelversion import RolloverPolicy
from cachefleet_operator.api.v1alpha1.types import MAX_NAME_LENGTH, Duration

__all__ = [
    "ActiveNamespace",
    "EmbeddingMigration",
    "EmbeddingStatus",
    "ReembedCursor",
    "RetainedNamespace",
    "RolloverProgress",
    "WarmProgress",
]

Decimal = Annotated[str, StringConstraints(pattern=r"^[0-9]+(\.[0-9]+)?$", max_length=32)]


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
