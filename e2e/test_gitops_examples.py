"""examples/gitops and tests/gitops fixtures against the real CRDs on a kube-apiserver.

- The cachefleet objects of examples/gitops pass `kubectl apply --dry-run=server` (schema,
  defaults, CEL rules); the Argo CD and Flux kinds are skipped, their CRDs are not installed.
- The recorded statuses the Argo CD health checks are tested on (tests/gitops/fixtures) are
  accepted by the status subresource, so they have the real CRD's shape.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster import Cluster, Kubectl, wait_for

ROOT = Path(__file__).resolve().parents[1]
GITOPS = ROOT / "examples" / "gitops"
FIXTURES = ROOT / "tests" / "gitops" / "fixtures"
CRD_NAMES = ("semanticcaches.cachefleet.io", "modelversions.cachefleet.io")
PLURALS = {"SemanticCache": "semanticcaches", "ModelVersion": "modelversions"}


@pytest.fixture(scope="module")
def kubectl(kube_api: Cluster) -> Kubectl:
    kubectl = kube_api.kubectl
    kubectl("apply", "--server-side", "--field-manager=cachefleet-e2e", "-f", str(ROOT / "crds"))
    wait_for(
        lambda: kubectl.run("get", "scache,mv", "-A", check=False).returncode == 0,
        timeout_s=60,
        what="the cachefleet.io resources to be served",
    )
    return kubectl


def _cachefleet_documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(GITOPS.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc and doc["apiVersion"].startswith("cachefleet.io/"):
                docs.append(doc)
    return docs


def test_example_objects_pass_a_server_side_dry_run(kubectl: Kubectl, api_namespace: str) -> None:
    docs = _cachefleet_documents()
    assert {doc["kind"] for doc in docs} == {"SemanticCache", "ModelVersion"}
    for doc in docs:
        placed = {**doc, "metadata": {**doc["metadata"], "namespace": api_namespace}}
        out = kubectl.apply(placed, extra=["--dry-run=server", "-o", "json"])
        applied = json.loads(out)
        assert applied["kind"] == doc["kind"]
        assert applied["spec"]  # defaults filled in by the API server
    # A dry run stores nothing.
    assert kubectl("get", "scache,mv", "-n", api_namespace, "-o", "name").strip() == ""


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.yaml")), ids=lambda p: p.name)
def test_recorded_status_fits_the_crd(kubectl: Kubectl, api_namespace: str, path: Path) -> None:
    obj = yaml.safe_load(path.read_text(encoding="utf-8"))
    name = obj["metadata"]["name"]
    created = {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {"name": name, "namespace": api_namespace},
        "spec": obj["spec"],
    }
    kubectl.create(created)
    if "status" not in obj:
        return
    kubectl(
        "patch", PLURALS[obj["kind"]], name, "-n", api_namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": obj["status"]}),
    )  # fmt: skip
    stored = kubectl.json("get", PLURALS[obj["kind"]], name, "-n", api_namespace)
    assert stored["status"] == obj["status"]
    kubectl("delete", PLURALS[obj["kind"]], name, "-n", api_namespace, "--wait=false")
