"""Building blocks of the API models: camelCase models with CEL rules, object metadata, CRD facts.

Every model derives from `ApiModel`. A model's `cel_rules` become the CRD's
`x-kubernetes-validations` at that object, and the ones with a Python twin (`check`) are also
enforced when the operator parses an object, with the same message. Transition rules (those
that read `oldSelf`) only exist in the CRD.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    model_validator,
)
from pydantic.alias_generators import to_camel, to_snake
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

__all__ = [
    "CATEGORY",
    "GROUP",
    "VERSION",
    "ApiModel",
    "ListMap",
    "ObjectMeta",
    "PrinterColumn",
    "ResourceDefinition",
    "Rule",
    "validations",
]

GROUP = "cachefleet.io"
VERSION = "v1alpha1"
CATEGORY = "cachefleet"


@dataclass(frozen=True)
class Rule:
    """One CEL validation rule, with its Python twin where the rule needs no old object."""

    cel: str
    message: str
    check: Callable[[Any], bool] | None = None
    field_path: str | None = None

    def to_schema(self) -> dict[str, str]:
        """The rule as an `x-kubernetes-validations` entry."""
        entry = {"rule": self.cel, "message": self.message}
        if self.field_path:
            entry["fieldPath"] = self.field_path
        return entry


def validations(*rules: Rule) -> dict[str, Any]:
    """`json_schema_extra` for a field that carries CEL rules (transition rules, mostly)."""
    return {"x-kubernetes-validations": [rule.to_schema() for rule in rules]}


class ListMap:
    """`Annotated` marker of a list merged by key (`+listType=map`): the keys must be unique.

    The API server enforces it from the CRD; the same check runs when the operator parses.
    """

    def __init__(self, *keys: str) -> None:
        self.keys = keys

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._unique, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["x-kubernetes-list-type"] = "map"
        json_schema["x-kubernetes-list-map-keys"] = list(self.keys)
        return json_schema

    def _unique(self, items: list[BaseModel]) -> list[BaseModel]:
        seen: set[tuple[Any, ...]] = set()
        for item in items:
            key = tuple(getattr(item, to_snake(name)) for name in self.keys)
            if key in seen:
                shown = ", ".join(f"{n}={v!r}" for n, v in zip(self.keys, key, strict=True))
                raise ValueError(f"duplicate entries for key [{shown}]")
            seen.add(key)
        return items


def _add_model_rules(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    rules: tuple[Rule, ...] = getattr(cls, "cel_rules", ())
    if rules:
        schema["x-kubernetes-validations"] = [rule.to_schema() for rule in rules]


class ApiModel(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields rejected, CEL rules."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        validate_default=True,
        json_schema_extra=_add_model_rules,
    )

    cel_rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_cel_rules(self) -> ApiModel:
        for rule in type(self).cel_rules:
            if rule.check is not None and not rule.check(self):
                raise ValueError(rule.message)
        return self

    def to_api(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, JSON types, unset fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ObjectMeta(BaseModel):
    """The parts of Kubernetes object metadata the operator reads."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, serialize_by_alias=True, extra="ignore"
    )

    name: str = Field(description="Object name, unique in its namespace.")
    namespace: str | None = Field(None, description="Kubernetes namespace of the object.")
    uid: str | None = Field(None, description="Unique id the API server assigned.")
    generation: int | None = Field(None, description="Spec generation; bumps on spec changes.")
    labels: dict[str, str] = Field(default_factory=dict, description="Object labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Object annotations.")
    creation_timestamp: datetime | None = Field(None, description="When the object was created.")


@dataclass(frozen=True)
class PrinterColumn:
    """One `kubectl get` column (`additionalPrinterColumns`)."""

    name: str
    json_path: str
    description: str
    type: str = "string"
    priority: int = 0

    def to_schema(self) -> dict[str, Any]:
        """The column as a CRD `additionalPrinterColumns` entry."""
        column: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "jsonPath": self.json_path,
            "description": self.description,
        }
        if self.priority:
            column["priority"] = self.priority
        return column


@dataclass(frozen=True)
class ResourceDefinition:
    """What the CRD says about a kind besides its schema: names and printer columns."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    description: str
    printer_columns: tuple[PrinterColumn, ...]

    @property
    def singular(self) -> str:
        """Lower-case kind, as `kubectl get <singular>` accepts it."""
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        """`<plural>.<group>`, the CustomResourceDefinition's name."""
        return f"{self.plural}.{GROUP}"

    @property
    def api_version(self) -> str:
        """`<group>/<version>` of the kind."""
        return f"{GROUP}/{VERSION}"
