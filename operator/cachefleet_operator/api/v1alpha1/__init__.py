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
from cachefleet_operator.api.v1alpha1.modelversion import (
    ModelVersion,
    ModelVersionSpec,
    ModelVersionStatus,
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
    "ApiModel",
    "CacheInvalidation",
    "CacheInvalidationSpec",
    "CacheInvalidationStatus",
    "Condition",
    "ConditionStatus",
    "ModelVersion",
    "ModelVersionSpec",
    "ModelVersionStatus",
    "ObjectMeta",
    "ResourceDefinition",
    "ResourceRequirements",
    "Rule",
    "SecretKeyRef",
    "SemanticCache",
    "SemanticCacheSpec",
    "SemanticCacheStatus",
    "Toleration",
]

#: The kinds of this API version, in the order the CRDs are generated.
RESOURCES: tuple[type[SemanticCache] | type[ModelVersion] | type[CacheInvalidation], ...] = (
    SemanticCache,
    ModelVersion,
    CacheInvalidation,
)
