"""The CRD generator: structural, documented schemas; defaults and rules from the models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from operator_testdata import ROOT
from pydantic import Field

from cachefleet_contract.config import NamespaceConfig
from cachefleet_operator.api import crdgen
from cachefleet_operator.api.v1alpha1 import ApiModel, ModelVersion, Rule, SemanticCache


def schema_of(resource: Any) -> dict[str, Any]:
    crd = crdgen.custom_resource_definition(resource)
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    for part in path.split("."):
        schema = schema["items"] if part == "[]" else schema["properties"][part]
    return schema


def nodes(schema: dict[str, Any]) -> list[dict[str, Any]]:
    found = [schema]
    for child in schema.get("properties", {}).values():
        found += nodes(child)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            found += nodes(schema[key])
    return found


@pytest.mark.parametrize("resource", [SemanticCache, ModelVersion], ids=lambda r: r.__name__)
def test_schemas_are_structural_and_every_property_is_described(resource: Any) -> None:
    schema = schema_of(resource)
    assert crdgen.structural_violations(schema) == []
    for node in nodes(schema):
        assert not {"$ref", "oneOf", "allOf", "nullable", "title"} & set(node), node
        assert node.get("additionalProperties") is not False
        for name, child in node.get("properties", {}).items():
            if name != "metadata":
                assert child.get("description", "").strip(), name


@pytest.mark.parametrize("resource", [SemanticCache, ModelVersion], ids=lambda r: r.__name__)
def test_every_cel_rule_tells_the_user_what_to_fix(resource: Any) -> None:
    rules = [
        rule
        for node in nodes(schema_of(resource))
        for rule in node.get("x-kubernetes-validations", [])
    ]
    assert rules
    for rule in rules:
        assert set(rule) <= {"rule", "message", "fieldPath"}
        assert len(rule["message"]) > 20, rule


def test_semantic_cache_schema_details() -> None:
    schema = schema_of(SemanticCache)
    spec = at(schema, "spec")
    assert spec["required"] == ["modelVersions", "exactTier", "semanticTier"]
    threshold = at(spec, "policies.similarityThreshold")
    assert threshold["default"] == NamespaceConfig.model_fields["similarity_threshold"].default
    assert (threshold["minimum"], threshold["exclusiveMinimum"], threshold["maximum"]) == (
        0,
        True,
        1,
    )
    memory = at(spec, "exactTier.managed.maxMemory")
    assert memory["x-kubernetes-int-or-string"] is True
    assert memory["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    limits = at(spec, "nodes.resources.limits")
    assert limits["additionalProperties"]["x-kubernetes-int-or-string"] is True
    refs = at(spec, "modelVersions")
    assert refs["x-kubernetes-list-type"] == "map"
    assert refs["x-kubernetes-list-map-keys"] == ["name"]
    assert refs["minItems"] == 1
    assert at(spec, "embedding.mode")["enum"] == ["local", "gpu"]
    assert at(spec, "deletionPolicy")["default"] == "Retain"
    # Nested objects carry their defaults in full: the API server checks a default against
    # the object's CEL rules without filling in the nested defaults first.
    assert at(spec, "policies")["default"]["minThreshold"] == 0.75
    assert at(spec, "embedding")["default"] == {"mode": "local"}
    # Optional objects and empty lists get no default.
    assert "default" not in at(spec, "auth")
    assert "default" not in at(spec, "imagePullSecrets")
    assert schema["x-kubernetes-validations"][0]["rule"].startswith("self.metadata.name")
    conditions = at(schema, "status.conditions")
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert at(conditions, "[].lastTransitionTime")["format"] == "date-time"
    assert at(conditions, "[].status")["enum"] == ["True", "False", "Unknown"]


def test_model_version_transition_rules() -> None:
    spec = at(schema_of(ModelVersion), "spec")
    assert at(spec, "model")["x-kubernetes-validations"][0]["rule"] == "self == oldSelf"
    epoch = at(spec, "invalidation.epoch")
    assert epoch["x-kubernetes-validations"][0]["rule"] == "self >= oldSelf"
    assert at(spec, "rollover.retainFor")["pattern"] == "^([0-9]+(ms|s|m|h))+$"


def test_crd_metadata_printer_columns_and_subresources() -> None:
    crd = crdgen.custom_resource_definition(SemanticCache)
    assert crd["metadata"]["name"] == "semanticcaches.cachefleet.io"
    names = crd["spec"]["names"]
    assert (names["shortNames"], names["categories"]) == (["scache"], ["cachefleet"])
    [version] = crd["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
    columns = [(c["name"], c.get("priority", 0)) for c in version["additionalPrinterColumns"]]
    assert columns == [
        ("Ready", 0), ("Hit-Rate", 0), ("Model", 0), ("Entries", 0), ("Age", 0),
        ("Reason", 1), ("Message", 1),
    ]  # fmt: skip
    mv_columns = crdgen.custom_resource_definition(ModelVersion)["spec"]["versions"][0]
    assert [c["name"] for c in mv_columns["additionalPrinterColumns"]] == [
        "Model", "Version", "Policy", "Cache-Namespace", "Age",
    ]  # fmt: skip


def test_a_field_without_description_fails_generation() -> None:
    class Undocumented(ApiModel):
        """A model with an undocumented field."""

        documented: int = Field(1, description="Has one.")
        bare: int = 2

    problems = crdgen.structural_violations(crdgen.structural_schema(Undocumented))
    assert problems == [".bare: no description (give the Field one)"]


def test_a_type_union_is_refused() -> None:
    class Union(ApiModel):
        """A model with a union."""

        either: int | list[str] = Field(1, description="Not structural.")

    with pytest.raises(crdgen.SchemaError, match="either"):
        crdgen.structural_schema(Union)


def test_model_rules_land_on_the_object_and_optional_means_not_required() -> None:
    class Window(ApiModel):
        """A window."""

        cel_rules = (
            Rule("self.low <= self.high", "low must not exceed high", check=lambda s: True),
        )
        low: int = Field(0, description="Low end.")
        high: int | None = Field(None, ge=0, description="High end.")

    schema = crdgen.structural_schema(Window)
    assert schema["x-kubernetes-validations"] == [
        {"rule": "self.low <= self.high", "message": "low must not exceed high"}
    ]
    assert "required" not in schema
    assert schema["properties"]["high"] == {
        "type": "integer",
        "description": "High end.",
        "minimum": 0,
    }


def test_check_detects_stale_missing_and_extra_files(tmp_path: Path) -> None:
    assert set(crdgen.check(tmp_path)) == set(crdgen.crd_documents())
    assert crdgen.main(["--check", "--output-dir", str(tmp_path)]) == 1
    assert crdgen.main(["--output-dir", str(tmp_path)]) == 0
    assert crdgen.check(tmp_path) == []
    assert crdgen.main(["--check", "--output-dir", str(tmp_path)]) == 0
    target = tmp_path / "cachefleet.io_modelversions.yaml"
    target.write_text(target.read_text().replace("maxLength: 253", "maxLength: 254", 1))
    assert crdgen.check(tmp_path) == ["cachefleet.io_modelversions.yaml"]
    crdgen.write(tmp_path)
    (tmp_path / "cachefleet.io_retired.yaml").write_text("{}\n")
    assert crdgen.check(tmp_path) == ["cachefleet.io_retired.yaml"]


def test_the_committed_crds_are_up_to_date() -> None:
    assert crdgen.check(ROOT / "crds") == [], "run `make crds`"
    for text in crdgen.crd_documents().values():
        assert yaml.safe_load(text)["kind"] == "CustomResourceDefinition"
