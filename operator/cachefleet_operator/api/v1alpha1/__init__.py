"""`cachefleet.io/v1alpha1`: SemanticCache, ModelVersion, CacheInvalidation, shared types."""

from cachefleet_operator.api.v1alpha1.base import (
    CATEGORY,
    GROUP,
    VERSION,
    ApiModel,
    ObjectMeta,
    ResourceDefinition,
    Rule,
)
from cachefleet_operator.api.v1alpha1.cacheinvalidation import (
    CacheInvalidation,
    CacheInvalidationSpec,
    CacheInvalidationStatus,
)
from cachefleet_operator.api.v1alpha1.lifecycle import (
    ActiveNamespace,
    EmbeddingMigration,
    EmbeddingStatus,
    ReembedCursor,
    RetainedNamespace,
    RolloverProgress,
    WarmProgress,
)
from cachefleet_operator.api.v1alpha1.modelversion import (
    ModelVersion,
    ModelVersionSpec,
    ModelVersionStatus,
)
from cachefleet_operator.api.v1alpha1.placement import (
    Autoscaling,
    CacheNodes,
    DisruptionBudget,
    EmbeddedMilvus,
    Embedding,
    ExactTier,
    ExternalMilvus,
    ExternalRedis,
    GpuEmbedding,
    ManagedMilvus,
    ManagedRedis,
    MilvusCluster,
    SemanticTier,
)
from cachefleet_operator.api.v1alpha1.semanticcache import (
    SemanticCache,
    SemanticCacheSpec,
    SemanticCacheStatus,
)
from cachefleet_operator.api.v1alpha1.types import (
    Condition,
    ConditionStatus,
    ResourceRequirements,
    SecretKeyRef,
    Toleration,
)

__all__ = [
    "CATEGORY",
    "GROUP",
    "RESOURCES",
    "VERSION",
    "ActiveNamespace",
    "ApiModel",
    "Autoscaling",
    "CacheInvalidation",
    "CacheInvalidationSpec",
    "CacheInvalidationStatus",
    "CacheNodes",
    "Condition",
    "ConditionStatus",
    "DisruptionBudget",
    "EmbeddedMilvus",
    "Embedding",
    "EmbeddingMigration",
    "EmbeddingStatus",
    "ExactTier",
    "ExternalMilvus",
    "ExternalRedis",
    "GpuEmbedding",
    "ManagedMilvus",
    "ManagedRedis",
    "MilvusCluster",
    "ModelVersion",
    "ModelVersionSpec",
    "ModelVersionStatus",
    "ObjectMeta",
    "ReembedCursor",
    "ResourceDefinition",
    "ResourceRequirements",
    "RetainedNamespace",
    "RolloverProgress",
    "Rule",
    "SecretKeyRef",
    "SemanticCache",
    "SemanticCacheSpec",
    "SemanticCacheStatus",
    "SemanticTier",
    "Toleration",
    "WarmProgress",
]

#: The kinds of this API version, in the order the CRDs are generated.
RESOURCES: tuple[type[SemanticCache] | type[ModelVersion] | type[CacheInvalidation], ...] = (
    SemanticCache,
    ModelVersion,
    CacheInvalidation,
)
