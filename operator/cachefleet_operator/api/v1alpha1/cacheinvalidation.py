"""`CacheInvalidation`: a one-shot, auditable purge of a SemanticCache's entries by scope."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import AwareDatetime, Field, StringConstraints

from cachefleet_contract.config import Identifier
from cachefleet_operator.api.v1alpha1.base import (
    ApiModel,
    ListMap,
    ObjectMeta,
    PrinterColumn,
    ResourceDefinition,
    Rule,
)
from cachefleet_operator.api.v1alpha1.types import (
    CONDITIONS_DESCRIPTION,
    Conditions,
    Duration,
    LocalObjectReference,
)

__all__ = [
    "CacheInvalidation",
    "CacheInvalidationSpec",
    "CacheInvalidationStatus",
    "InvalidationPhase",
    "InvalidationScope",
    "NamespaceResult",
    "RemovedCounts",
    "SimilarTo",
]

InvalidationPhase = Literal["Pending", "Running", "Succeeded", "Failed"]
MAX_NAME_LENGTH = 63


class SimilarTo(ApiModel):
    """Entries whose prompt is semantically close to a text (the namespace's embedding model)."""

    text: Annotated[str, StringConstraints(min_length=1, max_length=4096)] = Field(
        description="The text to compare the stored prompts with."
    )
    min_similarity: float = Field(
        gt=0, le=1, description="Cosine similarity in (0, 1] an entry must reach to be removed."
    )
    limit: int | None = Field(
        None, ge=1, le=10_000, description="At most this many entries (closest first)."
    )


class InvalidationScope(ApiModel):
    """Which entries: one namespace (by ModelVersion or by name, default every active one),
    narrowed by tenant, tags, age and similarity (all given conditions must hold)."""

    cel_rules = (
        Rule(
            "!(has(self.modelVersion) && has(self.cacheNamespace))",
            "scope: set at most one of modelVersion or cacheNamespace",
            check=lambda self: self.model_version is None or self.cache_namespace is None,
        ),
    )

    model_version: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        description="The active cache namespace of this ModelVersion (as the cache serves it).",
    )
    cache_namespace: Identifier | None = Field(
        None, description="A cache namespace by name (active or retained)."
    )
    tenant: Identifier | None = Field(None, description="Only this tenant's entries.")
    tags: list[Identifier] | None = Field(
        None, min_length=1, max_length=16, description="Only entries carrying any of these tags."
    )
    older_than: Duration | None = Field(
        None, description="Only entries at least this old, e.g. `2h` (measured when it runs)."
    )
    similar_to: SimilarTo | None = Field(
        None, description="Only entries semantically similar to a text."
    )


class CacheInvalidationSpec(ApiModel):
    """What to remove, from which cache. Immutable: create a new object to run another one."""

    cel_rules = (
        Rule(
            "self == oldSelf",
            "spec is immutable: a CacheInvalidation runs once; create a new one to run another "
            "invalidation",
        ),
    )

    cache_ref: LocalObjectReference = Field(
        description="The SemanticCache (same namespace) whose entries are removed."
    )
    scope: InvalidationScope = Field(
        default_factory=InvalidationScope,
        description="Which entries; empty: every entry of every active namespace.",
    )
    dry_run: bool = Field(False, description="Only count what would be removed.")


class RemovedCounts(ApiModel):
    """Entries removed (or, with `dryRun`, matched) per tier."""

    l1: int = Field(0, ge=0, description="Entries dropped from the nodes' in-process tiers.")
    store: int = Field(0, ge=0, description="Entries removed from the exact tier (Redis).")
    vectors: int = Field(0, ge=0, description="Vectors removed from the semantic tier (Milvus).")


class NamespaceResult(ApiModel):
    """Progress of one cache namespace: a crash mid-run resumes after the last one done."""

    cache_namespace: Identifier = Field(description="The cache namespace.")
    matched: RemovedCounts | None = Field(
        None, description="What a dry run counted just before the removal."
    )
    removed: RemovedCounts | None = Field(None, description="What was removed (or counted).")
    done: bool = Field(False, description="Finished.")


class CacheInvalidationStatus(ApiModel):
    """Observed state of a CacheInvalidation, written by the operator."""

    observed_generation: int | None = Field(
        None, ge=0, description="The `metadata.generation` this status describes."
    )
    phase: InvalidationPhase | None = Field(
        None,
        description="`Pending` (not started), `Running`, `Succeeded` or `Failed`. It never "
        "runs again once `Succeeded` or `Failed`.",
    )
    dry_run: bool | None = Field(None, description="Whether this was a dry run.")
    namespaces: Annotated[list[NamespaceResult], ListMap("cacheNamespace")] = Field(
        default_factory=list,
        max_length=64,
        description="Each cache namespace in scope and its result.",
    )
    removed: RemovedCounts | None = Field(
        None, description="Totals per tier (with `dryRun`: what would be removed)."
    )
    start_time: AwareDatetime | None = Field(None, description="When it started running.")
    completion_time: AwareDatetime | None = Field(None, description="When it succeeded or failed.")
    message: str | None = Field(None, max_length=4096, description="Summary or the failure.")
    conditions: Conditions = Field(default_factory=list, description=CONDITIONS_DESCRIPTION)


class CacheInvalidation(ApiModel):
    """A one-shot purge of cached entries by scope."""

    definition: ClassVar[ResourceDefinition] = ResourceDefinition(
        kind="CacheInvalidation",
        plural="cacheinvalidations",
        short_names=("cinv",),
        description="A one-shot, auditable purge of a SemanticCache's entries by namespace, "
        "tenant, tag, age or semantic similarity, with dry run. Never runs twice.",
        printer_columns=(
            PrinterColumn("Phase", ".status.phase", "Pending, Running, Succeeded or Failed."),
            PrinterColumn(
                "Removed",
                ".status.removed.store",
                "Entries removed (with dryRun: matched).",
                type="integer",
            ),
            PrinterColumn("Age", ".metadata.creationTimestamp", "Age.", type="date"),
            PrinterColumn("Cache", ".spec.cacheRef.name", "The SemanticCache.", priority=1),
            PrinterColumn("Dry-Run", ".spec.dryRun", "Only counted.", type="boolean", priority=1),
        ),
    )

    api_version: Literal["cachefleet.io/v1alpha1"] = Field(
        "cachefleet.io/v1alpha1", description="API group and version."
    )
    kind: Literal["CacheInvalidation"] = Field("CacheInvalidation", description="Kind.")
    metadata: ObjectMeta = Field(description="Standard object metadata.")
    spec: CacheInvalidationSpec = Field(description="What to remove. Immutable.")
    status: CacheInvalidationStatus = Field(
        default_factory=CacheInvalidationStatus, description="Observed state."
    )
