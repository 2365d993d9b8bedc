"""examples/gitops: every file parses, the cachefleet objects are valid, the references hold.

The server-side dry run of the cachefleet objects is in e2e/test_gitops_examples.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cachefleet_operator.api.v1alpha1 import ModelVersion, SemanticCache

ROOT = Path(__file__).resolve().parents[1]
GITOPS = ROOT / "examples" / "gitops"
CHART = "charts/cachefleet"
FILES = sorted(GITOPS.rglob("*.yaml"))


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _all() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in FILES for doc in _documents(path)]


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in _all() if doc["kind"] == kind]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(GITOPS)))
def test_every_file_parses_into_kubernetes_objects(path: Path) -> None:
    documents = _documents(path)
    assert documents
    for doc in documents:
        assert {"apiVersion", "kind"} <= doc.keys(), path
        if doc["kind"] != "Kustomization" or "kustomize.config" not in doc["apiVersion"]:
            assert doc["metadata"]["name"], path


def test_cachefleet_objects_are_valid_api_objects() -> None:
    caches = [SemanticCache.model_validate(doc) for doc in _of_kind("SemanticCache")]
    versions = [ModelVersion.model_validate(doc) for doc in _of_kind("ModelVersion")]
    assert caches
    assert versions
    names = {mv.metadata.name for mv in versions}
    for cache in caches:  # every referenced ModelVersion is in the tree
        assert {ref.name for ref in cache.spec.model_versions} <= names


def test_model_versions_sync_before_caches() -> None:
    def wave(doc: dict[str, Any]) -> int:
        return int(doc["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])

    assert max(map(wave, _of_kind("ModelVersion"))) < min(map(wave, _of_kind("SemanticCache")))


def test_kustomize_directory_lists_exactly_its_manifests() -> None:
    directory = GITOPS / "cachefleet"
    (config,) = _documents(directory / "kustomization.yaml")
    listed = set(config["resources"])
    present = {p.name for p in directory.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


def _repo_path(path: str) -> Path:
    return ROOT / path.removeprefix("./")


def test_argo_cd_applications_point_at_paths_in_this_repository() -> None:
    paths = {app["spec"]["source"]["path"] for app in _of_kind("Application")}
    assert CHART in paths
    for path in paths:
        assert _repo_path(path).is_dir(), path
    assert (_repo_path(CHART) / "Chart.yaml").is_file()


def test_flux_objects_reference_each_other_and_real_paths() -> None:
    sources = {doc["metadata"]["name"] for doc in _of_kind("GitRepository")}
    kustomizations = _of_kind("Kustomization")
    flux = [k for k in kustomizations if k["apiVersion"].startswith("kustomize.toolkit.fluxcd.io")]
    names = {k["metadata"]["name"] for k in flux}
    for kustomization in flux:
        assert kustomization["spec"]["sourceRef"]["name"] in sources
        assert kustomization["spec"]["wait"] is True
        assert _repo_path(kustomization["spec"]["path"]).is_dir()
        for dependency in kustomization["spec"].get("dependsOn", []):
            assert dependency["name"] in names
    (release,) = _of_kind("HelmRelease")
    assert release["spec"]["chart"]["spec"]["chart"] == f"./{CHART}"
    assert release["spec"]["chart"]["spec"]["sourceRef"]["name"] in sources
