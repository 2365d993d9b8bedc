"""Types shared by both kinds: Kubernetes-shaped references, scheduling, resources, conditions."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, StringConstraints, WithJsonSchema

from cachefleet_operator.api.v1alpha1.base import ApiModel, ListMap

__all__ = [
    "BYTES_PATTERN",
    "CONDITIONS_DESCRIPTION",
    "DURATION_PATTERN",
    "MAX_NAME_LENGTH",
    "QUANTITY_PATTERN",
    "ByteQuantity",
    "Condition",
    "ConditionStatus",
    "Conditions",
    "Duration",
    "HttpUrl",
    "IntOrPercent",
    "LocalObjectReference",
    "Persistence",
    "Quantity",
    "ResourceRequirements",
    "SecretKeyRef",
    "Toleration",
]

#: Kubernetes' own quantity syntax (resource.Quantity).
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
#: A size in bytes: a plain number or one with a decimal (k, M, G, T) or binary (Ki … Ti) suffix.
BYTES_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"
#: A duration such as `90s`, `30m`, `24h` or `1h30m`.
DURATION_PATTERN = r"^([0-9]+(ms|s|m|h))+$"
#: The longest name of an object whose name ends up in a DNS label (a Service, a Lease).
MAX_NAME_LENGTH = 63

HttpUrl = Annotated[str, StringConstraints(pattern=r"^https?://[^\s/]+\S*$", max_length=2048)]


def _int_or_string(pattern: str) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": pattern,
            "x-kubernetes-int-or-string": True,
        }
    )


Quantity = Annotated[
    int | Annotated[str, StringConstraints(pattern=QUANTITY_PATTERN)],
    _int_or_string(QUANTITY_PATTERN),
]
ByteQuantity = Annotated[
    Annotated[int, Field(ge=1)] | Annotated[str, StringConstraints(pattern=BYTES_PATTERN)],
    _int_or_string(BYTES_PATTERN),
]
IntOrPercent = Annotated[
    Annotated[int, Field(ge=0)] | Annotated[str, StringConstraints(pattern=r"^[0-9]{1,3}%$")],
    _int_or_string(r"^[0-9]{1,3}%$"),
]
Duration = Annotated[str, StringConstraints(pattern=DURATION_PATTERN, max_length=32)]
ConditionStatus = Literal["True", "False", "Unknown"]


class SecretKeyRef(ApiModel):
    """One key of a Secret in the same namespace."""

    name: str = Field(min_length=1, max_length=253, description="Name of the Secret.")
    key: str = Field(min_length=1, max_length=253, description="Key inside the Secret.")


class LocalObjectReference(ApiModel):
    """An object in the same namespace, by name."""

    name: str = Field(min_length=1, max_length=253, description="Name of the object.")


class Toleration(ApiModel):
    """A Kubernetes toleration (same fields and meaning as in a Pod spec)."""

    key: str | None = Field(None, max_length=316, description="Taint key; empty with Exists: all.")
    operator: Literal["Exists", "Equal"] | None = Field(
        None, description="`Equal` (default) compares the value; `Exists` matches any value."
    )
    value: str | None = Field(None, max_length=63, description="Taint value to match (Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to match; empty matches every effect."
    )
    toleration_seconds: int | None = Field(
        None, description="How long a NoExecute taint is tolerated before eviction."
    )


class ResourceRequirements(ApiModel):
    """Compute resources of a container, as in a Pod spec."""

    limits: dict[str, Quantity] | None = Field(
        None, description="Upper bounds, e.g. `{memory: 1Gi}`."
    )
    requests: dict[str, Quantity] | None = Field(
        None, description="What the scheduler reserves, e.g. `{cpu: 250m, memory: 512Mi}`."
    )


class Persistence(ApiModel):
    """A PersistentVolumeClaim per replica. Without it, data lives in an emptyDir."""

    size: ByteQuantity = Field(description="Requested volume size, e.g. `10Gi`.")
    storage_class_name: str | None = Field(
        None, max_length=253, description="StorageClass of the claim (default: the cluster's)."
    )


class Condition(ApiModel):
    """A status condition, shaped like metav1.Condition."""

    type: str = Field(
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        max_length=316,
        description="Condition type in CamelCase, e.g. `Ready`.",
    )
    status: ConditionStatus = Field(description="`True`, `False` or `Unknown`.")
    observed_generation: int | None = Field(
        None, ge=0, description="The `metadata.generation` this condition was computed for."
    )
    last_transition_time: AwareDatetime = Field(
        description="When `status` last changed (not when the reason or message did)."
    )
    reason: str = Field(
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        min_length=1,
        max_length=1024,
        description="One-word CamelCase category of the current status.",
    )
    message: str = Field("", max_length=32768, description="Human-readable details.")


#: A status `conditions` list, merged by `type`.
Conditions = Annotated[list[Condition], ListMap("type"), Field(max_length=32)]
CONDITIONS_DESCRIPTION = (
    "Current state by condition type; `lastTransitionTime` changes only when `status` flips."
)
