"""`python -m cachefleet_operator.api.docgen`: the reference pages cover every field and catch drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from cachefleet_contract.config import NodeConfig
from cachefleet_operator.api import docgen
from cachefleet_operator.api.crdgen import custom_resource_definition
from cachefleet_operator.api.v1alpha1 import RESOURCES


def _schema_paths(schema: dict[str, Any], prefix: str) -> list[str]:
    paths = []
    for name, child in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        paths.append(path)
        paths += _schema_paths(child, f"{path}.")
        paths += _schema_paths(child.get("items", {}), f"{path}[].")
    return paths


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.definition.kind)
def test_crd_reference_lists_every_field_of_the_crd(resource: Any) -> None:
    text = docgen.crds_markdown()
    root = custom_resource_definition(resource)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for part in ("spec", "status"):
        for path in _schema_paths(root["properties"][part], f"{part}."):
            assert f"| `{path}` |" in text, path
    assert f"## {resource.definition.kind}" in text


def _model_paths(model: type[BaseModel], prefix: str) -> list[str]:
    paths = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        paths.append(path)
        annotation = info.annotation
        args = getattr(annotation, "__args__", ())
        for candidate in (annotation, *args):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                inner = f"{path}[]." if "list" in str(annotation) else f"{path}."
                if "dict" in str(annotation):
                    inner = f"{path}.<key>."
                paths += _model_paths(candidate, inner)
    return paths


def test_node_config_reference_lists_every_key_with_its_default() -> None:
    text = docgen.node_config_markdown()
    for path in _model_paths(NodeConfig, ""):
        assert f"| `{path}` |" in text, path
    assert "| `server.port` | integer | `8080` |" in text
    assert "| `redis.url` | string (secret) or null | null |" in text
    assert "| `embedding.kind` | `local` or `remote` | `local` |" in text


def test_check_reports_missing_and_edited_pages(tmp_path: Path) -> None:
    assert docgen.check(tmp_path) == ["crds.md", "node-config.md"]
    docgen.write(tmp_path)
    assert docgen.check(tmp_path) == []
    page = tmp_path / "crds.md"
    page.write_text(page.read_text() + "edited\n")
    assert docgen.check(tmp_path) == ["crds.md"]
    assert docgen.main(["--check", "--output-dir", str(tmp_path)]) == 1
    assert docgen.main(["--output-dir", str(tmp_path)]) == 0
    assert docgen.main(["--check", "--output-dir", str(tmp_path)]) == 0


def test_committed_pages_are_current() -> None:
    assert docgen.check(Path(__file__).resolve().parents[2] / "docs" / "reference") == []
