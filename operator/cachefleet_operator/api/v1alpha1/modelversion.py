"""`ModelVersion`: the identity that cached answers depend on, and what happens when it changes."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import AwareDatetime, Field, StringConstraints

from cachefleet_contract.config import EmbeddingConfig, Identifier
from cachefleet_operator.api.v1alpha1.base import (
    ApiModel,
    ObjectMeta,
    PrinterColumn,
    ResourceDefinition,
    Rule,
    validations,
)
from cachefleet_operator.api.v1alpha1.types import CONDITIONS_DESCRIPTION, Conditions, Duration

__all__ = [
    "DEFAULT_EMBEDDING_MODEL",
    "Invalidation",
    "ModelVersion",
    "ModelVersionSpec",
    "ModelVersionStatus",
    "NamespaceIdentity",
    "PreviousNamespace",
    "RolloverPolicy",
    "RolloverSettings",
    "Warmup",
]

DEFAULT_EMBEDDING_MODEL: str = EmbeddingConfig.model_fields["model_id"].default
MAX_NAME_LENGTH = 63

RolloverPolicy = Literal["Rollover", "Flush", "Keep"]
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=253)]


class Warmup(ApiModel):
    """Refill a new cache namespace by replaying the old one's most-hit prompts upstream."""

    top_n: int = Field(100, ge=1, le=100_000, description="How many of the top prompts to replay.")
    rate_per_second: float = Field(
        5.0, gt=0, le=1000, description="Upper bound on replayed upstream requests per second."
    )


class RolloverSettings(ApiModel):
    """How a `Rollover` keeps the previous cache namespace around."""

    retain_for: Duration = Field(
        "24h",
        description="How long the previous cache namespace is kept (read-only) before it is "
        "purged: a duration such as `90m`, `24h` or `1h30m`.",
    )
    retain_previous: int = Field(
        2, ge=0, le=10, description="How many previous cache namespaces are kept at most."
    )
    warm: Warmup | None = Field(
        None, description="Replay the most-hit prompts into the new namespace (off when unset)."
    )


class Invalidation(ApiModel):
    """Manual invalidation of everything cached for this ModelVersion."""

    epoch: int = Field(
        0,
        ge=0,
        description="Bump to start a new, empty cache namespace (the policy decides what happens "
        "to the old one). May only increase.",
        json_schema_extra=validations(
            Rule(
                "self >= oldSelf",
                "invalidation.epoch may only increase: set a value above the current one to "
                "start a new cache namespace",
            )
        ),
    )


class ModelVersionSpec(ApiModel):
    """What cached answers were produced by. A change of identity means a new cache namespace."""

    model: ModelName = Field(
        description="Model name as requests carry it, e.g. `gpt-4o-mini`. Immutable.",
        json_schema_extra=validations(
            Rule(
                "self == oldSelf",
                "model is immutable: create a new ModelVersion for another model and point the "
                "SemanticCache at it",
            )
        ),
    )
    version: str = Field(
        min_length=1,
        max_length=128,
        description="Revision or snapshot of the model, e.g. `2024-07-18`. Changing it starts a "
        "new cache namespace.",
    )
    prompt_template_hash: str | None = Field(
        None,
        max_length=128,
        description="Hash of the prompt template in front of the model; answers change when "
        "the template does.",
    )
    embedding_model: ModelName = Field(
        DEFAULT_EMBEDDING_MODEL,
        description="Embedding model (hub id) the semantic tier compares prompts with.",
    )
    request_models: list[ModelName] | None = Field(
        None,
        min_length=1,
        max_length=16,
        description="Model names (glob patterns, `*` matches any) of the requests this "
        "ModelVersion serves. Default: `model`.",
    )
    policy: RolloverPolicy = Field(
        "Rollover",
        description="On a change of `version`, `promptTemplateHash` or `invalidation.epoch`: "
        "`Rollover` (a new cache namespace at once on every node, the old one kept read-only "
        "for `rollover.retainFor`, then purged), `Flush` (the old namespace purged at once) or "
        "`Keep` (declared answer-compatible: the cache namespace stays; an epoch bump still "
        "starts a new one, retained like `Rollover`). An `embeddingModel` change never changes "
        "the namespace: its entries are re-embedded. See docs/lifecycle.md.",
    )
    rollover: RolloverSettings = Field(
        default_factory=RolloverSettings, description="Settings of the `Rollover` policy."
    )
    invalidation: Invalidation = Field(
        default_factory=Invalidation, description="Manual invalidation by epoch."
    )


class NamespaceIdentity(ApiModel):
    """What a cache namespace's answers were produced by: the answer identity of a ModelVersion.

    The embedding model is not part of it: a new embedding model re-embeds the same entries.
    """

    version: str = Field(max_length=128, description="The ModelVersion's `version`.")
    prompt_template_hash: str | None = Field(
        None, max_length=128, description="The ModelVersion's `promptTemplateHash`."
    )
    epoch: int = Field(0, ge=0, description="The ModelVersion's `invalidation.epoch`.")


class PreviousNamespace(ApiModel):
    """A cache namespace this ModelVersion used before, kept until its retention ends."""

    cache_namespace: Identifier = Field(description="The retired cache namespace.")
    version: str = Field(max_length=128, description="The `version` it was serving.")
    prompt_template_hash: str | None = Field(
        None, max_length=128, description="The `promptTemplateHash` it was serving."
    )
    epoch: int | None = Field(None, ge=0, description="The `invalidation.epoch` it was serving.")
    retired_at: AwareDatetime = Field(description="When it stopped being the active namespace.")
    purge_after: AwareDatetime | None = Field(
        None,
        description="When its retention (`rollover.retainFor`) ends: the caches purge it then. "
        "Until then, pointing back to its version reactivates it (rollback).",
    )


class ModelVersionStatus(ApiModel):
    """Observed state of a ModelVersion, written by the operator."""

    observed_generation: int | None = Field(
        None, ge=0, description="The `metadata.generation` this status describes."
    )
    conditions: Conditions = Field(default_factory=list, description=CONDITIONS_DESCRIPTION)
    cache_namespace: Identifier | None = Field(
        None,
        description="Active cache namespace: a slug of the name plus a hash of model, version, "
        "prompt-template hash, embedding model and epoch.",
    )
    identity: NamespaceIdentity | None = Field(
        None,
        description="The answer identity (version, prompt-template hash, epoch) last handled: "
        "a change of it is a rollover, a rollback or, with policy `Keep`, nothing.",
    )
    previous_namespaces: list[PreviousNamespace] = Field(
        default_factory=list,
        max_length=16,
        description="Retired cache namespaces still retained (under this ModelVersion's own "
        "policy), newest first; at most `rollover.retainPrevious`.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    embedding_space: str | None = Field(
        None,
        max_length=128,
        description="Vector space of the embedding model (model and dimension), as the nodes "
        "name their Milvus collection.",
    )


class ModelVersion(ApiModel):
    """A model version that SemanticCaches serve answers for."""

    definition: ClassVar[ResourceDefinition] = ResourceDefinition(
        kind="ModelVersion",
        plural="modelversions",
        short_names=("mv",),
        description="The identity of what cached answers depend on (model, version, prompt "
        "template, embedding model) and what happens to cached answers when it changes.",
        printer_columns=(
            PrinterColumn("Model", ".spec.model", "Model name."),
            PrinterColumn("Version", ".spec.version", "Model revision or snapshot."),
            PrinterColumn("Policy", ".spec.policy", "What happens on an identity change."),
            PrinterColumn(
                "Cache-Namespace", ".status.cacheNamespace", "The active cache namespace."
            ),
            PrinterColumn("Age", ".metadata.creationTimestamp", "Age.", type="date"),
        ),
    )
    cel_rules = (
        Rule(
            f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
            f"ModelVersion names are at most {MAX_NAME_LENGTH} characters: the name is the "
            "stable namespace name on every cache node",
            check=lambda self: len(self.metadata.name) <= MAX_NAME_LENGTH,
            field_path=".metadata.name",
        ),
    )

    api_version: Literal["cachefleet.io/v1alpha1"] = Field(
        "cachefleet.io/v1alpha1", description="API group and version."
    )
    kind: Literal["ModelVersion"] = Field("ModelVersion", description="Kind.")
    metadata: ObjectMeta = Field(description="Standard object metadata.")
    spec: ModelVersionSpec = Field(description="Desired identity and lifecycle policy.")
    status: ModelVersionStatus = Field(
        default_factory=ModelVersionStatus, description="Observed state."
    )
