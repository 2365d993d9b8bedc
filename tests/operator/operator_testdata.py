"""Objects for the operator's unit tests, built from the manifests in examples/."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from cachefleet_operator.api.v1alpha1 import ModelVersion, SemanticCache

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
INVALID = Path(__file__).parent / "invalid"
GOLDEN = Path(__file__).parent / "golden"
NAMESPACE = "inference"
CACHE_UID = "6f1c2a7e-0000-4000-8000-000000000001"


def documents(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document of a file."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def example(kind: str, name: str) -> dict[str, Any]:
    """The manifest of that kind and name in examples/."""
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in documents(path):
            if doc["kind"] == kind and doc["metadata"]["name"] == name:
                return doc
    raise LookupError(f"no {kind} {name} in {EXAMPLES}")


def as_read_from_the_api(doc: dict[str, Any]) -> dict[str, Any]:
    """The manifest with the metadata the API server adds (namespace, uid, generation)."""
    metadata = {**doc["metadata"], "namespace": NAMESPACE, "uid": CACHE_UID, "generation": 1}
    return {**doc, "metadata": metadata}


def cache(name: str = "chat", **spec_changes: Any) -> SemanticCache:
    """An example SemanticCache with top-level spec fields replaced (camelCase keys)."""
    doc = as_read_from_the_api(example("SemanticCache", name))
    return SemanticCache.model_validate({**doc, "spec": {**doc["spec"], **spec_changes}})


def model_version(name: str = "gpt-4o-mini", **spec_changes: Any) -> ModelVersion:
    """The example ModelVersion (or a renamed copy) with spec fields replaced."""
    doc = as_read_from_the_api(example("ModelVersion", "gpt-4o-mini"))
    doc["metadata"]["name"] = name
    return ModelVersion.model_validate({**doc, "spec": {**doc["spec"], **spec_changes}})


def expected_message(path: Path) -> str:
    """The `# expect:` line of an invalid-spec case."""
    match = re.search(r"^# expect: (.+)$", path.read_text(), re.MULTILINE)
    assert match, f"{path.name} has no '# expect:' line"
    return match.group(1).strip()
