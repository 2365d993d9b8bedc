"""The generated CRDs on a real kube-apiserver: install, defaults, CEL/schema rejections, columns.

Each file in tests/operator/invalid/ is one bad spec: its `# expect:` line is the text the
API server must answer with. A file with two documents is an update: the first is applied,
the second must be rejected (transition rules such as "epoch may only increase").
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from cachefleet_operator.api.v1alpha1 import CacheInvalidation, ModelVersion, SemanticCache
from cachefleet_operator.api.v1alpha1.semanticcache import HitRate
from cachefleet_operator.domain.conditions import ConditionUpdate, merge_conditions
from cachefleet_operator.domain.render import FIELD_MANAGER, render_children
from cluster import Cluster, Kubectl, KubectlError, wait_for

ROOT = Path(__file__).resolve().parents[1]
CRDS = ROOT / "crds"
EXAMPLES = ROOT / "examples"
INVALID = ROOT / "tests" / "operator" / "invalid"
CRD_NAMES = (
    "semanticcaches.cachefleet.io",
    "modelversions.cachefleet.io",
    "cacheinvalidations.cachefleet.io",
)


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def expected_message(path: Path) -> str:
    match = re.search(r"^# expect: (.+)$", path.read_text(), re.MULTILINE)
    assert match, f"{path.name} has no '# expect:' line"
    return match.group(1).strip()


def established(kubectl: Kubectl, crd: str) -> bool:
    conditions = kubectl.json("get", "crd", crd).get("status", {}).get("conditions", [])
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


def in_namespace(doc: dict[str, Any], namespace: str) -> dict[str, Any]:
    return {**doc, "metadata": {**doc["metadata"], "namespace": namespace}}


@pytest.fixture(scope="module")
def kubectl(kube_api: Cluster) -> Kubectl:
    """kubectl as the admin, with the CRDs installed and served."""
    kubectl = kube_api.kubectl
    kubectl("apply", "--server-side", "--field-manager=cachefleet-e2e", "-f", str(CRDS))
    for name in CRD_NAMES:  # (`kubectl wait` errors out while a new CRD has no status yet)
        wait_for(
            lambda name=name: established(kubectl, name), timeout_s=60, what=f"{name} Established"
        )
    wait_for(
        lambda: kubectl.run("get", "scache,mv,cinv", "-A", check=False).returncode == 0,
        timeout_s=30,
        what="the cachefleet.io resources to be served",
    )
    return kubectl


def test_crds_are_established_with_names_and_category(kubectl: Kubectl) -> None:
    for name in CRD_NAMES:
        crd = kubectl.json("get", "crd", name)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions["Established"] == "True"
        assert conditions["NamesAccepted"] == "True"
        assert crd["spec"]["names"]["categories"] == ["cachefleet"]
    resources = kubectl("api-resources", "--api-group=cachefleet.io", "-o", "wide")
    assert re.search(
        r"semanticcaches\s+scache\s+cachefleet.io/v1alpha1\s+true\s+SemanticCache", resources
    )
    assert re.search(
        r"modelversions\s+mv\s+cachefleet.io/v1alpha1\s+true\s+ModelVersion", resources
    )
    assert re.search(
        r"cacheinvalidations\s+cinv\s+cachefleet.io/v1alpha1\s+true\s+CacheInvalidation",
        resources,
    )


def test_examples_apply_and_get_the_models_defaults(kubectl: Kubectl, api_namespace: str) -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        kubectl("apply", "--server-side", "-n", api_namespace, "-f", str(path))
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in documents(path):
            if doc["kind"] not in ("SemanticCache", "ModelVersion"):
                continue
            model = SemanticCache if doc["kind"] == "SemanticCache" else ModelVersion
            stored = kubectl.json("get", doc["kind"], doc["metadata"]["name"], "-n", api_namespace)
            # The API server's defaults (from the CRD) are exactly the models' defaults.
            assert stored["spec"] == model.model_validate(doc).to_api()["spec"], path.name
            model.model_validate(stored)
    dev = kubectl.json("get", "scache", "dev", "-n", api_namespace)["spec"]
    assert dev["nodes"]["replicas"] == 1  # set in the example
    assert dev["policies"]["ttlSeconds"] == 86400  # defaulted
    assert dev["deletionPolicy"] == "Retain"
    assert dev["embedding"] == {"mode": "local"}
    assert "targets" not in dev  # optional objects stay unset
    assert "auth" not in dev


@pytest.mark.parametrize("case", sorted(INVALID.glob("*.yaml")), ids=lambda path: path.stem)
def test_invalid_spec_is_rejected_with_a_message(
    kubectl: Kubectl, api_namespace: str, case: Path
) -> None:
    *earlier, last = [in_namespace(doc, api_namespace) for doc in documents(case)]
    for doc in earlier:
        kubectl.apply(doc)
    with pytest.raises(KubectlError) as rejected:
        kubectl.apply(last)
    assert expected_message(case) in rejected.value.stderr
    if not earlier:
        name, kind = last["metadata"]["name"], last["kind"]
        assert kubectl.run("get", kind, name, "-n", api_namespace, check=False).returncode != 0


def test_printer_columns_show_the_status(kubectl: Kubectl, api_namespace: str) -> None:
    kubectl(
        "apply", "--server-side", "-n", api_namespace, "-f", str(EXAMPLES / "modelversion.yaml")
    )
    kubectl(
        "apply",
        "--server-side",
        "-n",
        api_namespace,
        "-f",
        str(EXAMPLES / "semanticcache-dev.yaml"),
    )
    cache = SemanticCache.model_validate(kubectl.json("get", "scache", "dev", "-n", api_namespace))
    conditions = merge_conditions(
        [],
        [
            ConditionUpdate("Ready", "False", "NodesNotReady", "Deployment dev-node: 0/1 ready"),
            ConditionUpdate("Reconciling", "True", "Progressing", "Deployment dev-node: 0/1 ready"),
        ],
        generation=cache.metadata.generation or 1,
        now=datetime.now(UTC),
    )
    status = cache.status.model_copy(
        update={
            "observed_generation": cache.metadata.generation,
            "conditions": conditions,
            "hit_rate": HitRate(overall="0.423", exact="0.300", semantic="0.123"),
            "model": "gpt-4o-mini@2024-07-18",
            "entries": 1234,
            "ready_nodes": 0,
        }
    )
    patch = {"status": json.loads(status.model_dump_json(by_alias=True, exclude_none=True))}
    kubectl(
        "patch", "scache", "dev", "-n", api_namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps(patch),
    )  # fmt: skip

    header, row = kubectl("get", "scache", "dev", "-n", api_namespace).splitlines()
    assert header.split() == ["NAME", "READY", "HIT-RATE", "MODEL", "ENTRIES", "AGE"]
    assert row.split()[:5] == ["dev", "False", "0.423", "gpt-4o-mini@2024-07-18", "1234"]
    header, row = kubectl("get", "scache", "dev", "-n", api_namespace, "-o", "wide").splitlines()
    assert header.split() == [
        "NAME", "READY", "HIT-RATE", "MODEL", "ENTRIES", "AGE", "REASON", "MESSAGE",
    ]  # fmt: skip
    assert row.split()[6:] == ["NodesNotReady", "Deployment", "dev-node:", "0/1", "ready"]

    kubectl(
        "patch", "mv", "gpt-4o-mini", "-n", api_namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"cacheNamespace": "gpt-4o-mini-a1a7439fc3"}}),
    )  # fmt: skip
    header, row = kubectl("get", "mv", "-n", api_namespace).splitlines()
    assert header.split() == ["NAME", "MODEL", "VERSION", "POLICY", "CACHE-NAMESPACE", "AGE"]
    assert row.split()[:5] == [
        "gpt-4o-mini", "gpt-4o-mini", "2024-07-18", "Rollover", "gpt-4o-mini-a1a7439fc3",
    ]  # fmt: skip
    # `kubectl get cachefleet` lists both kinds through the category.
    listed = kubectl("get", "cachefleet", "-n", api_namespace, "-o", "name")
    assert "semanticcache.cachefleet.io/dev" in listed
    assert "modelversion.cachefleet.io/gpt-4o-mini" in listed


def test_status_is_a_subresource_and_rejects_a_bad_condition(
    kubectl: Kubectl, api_namespace: str
) -> None:
    kubectl(
        "apply", "--server-side", "-n", api_namespace, "-f", str(EXAMPLES / "modelversion.yaml")
    )
    before = kubectl.json("get", "mv", "gpt-4o-mini", "-n", api_namespace)
    bad = {
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "Maybe",
                    "reason": "not one word",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ]
        }
    }
    result = kubectl.run(
        "patch", "mv", "gpt-4o-mini", "-n", api_namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps(bad), check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert 'status.conditions[0].status: Unsupported value: "Maybe"' in result.stderr
    assert "status.conditions[0].reason: Invalid value" in result.stderr
    after = kubectl.json("get", "mv", "gpt-4o-mini", "-n", api_namespace)
    assert after["metadata"]["generation"] == before["metadata"]["generation"]


def test_rendered_children_are_valid_kubernetes_objects(
    kubectl: Kubectl, api_namespace: str
) -> None:
    """Every child of every example fleet passes the API server's validation (dry run)."""
    for path in sorted(EXAMPLES.glob("*.yaml")):
        kubectl("apply", "--server-side", "-n", api_namespace, "-f", str(path))
    model_versions = [
        ModelVersion.model_validate(item)
        for item in kubectl.json("get", "mv", "-n", api_namespace)["items"]
    ]
    caches = kubectl.json("get", "scache", "-n", api_namespace)["items"]
    assert len(caches) == len(list(EXAMPLES.glob("semanticcache-*.yaml"))), caches
    for item in caches:
        cache = SemanticCache.model_validate(item)
        children = render_children(cache, model_versions)
        result = kubectl.apply(
            children, field_manager=FIELD_MANAGER, extra=["--dry-run=server", "--force-conflicts"]
        )
        assert result.count("serverside-applied (server dry run)") == len(children), result


def test_cache_invalidation_columns_and_immutable_spec(
    kubectl: Kubectl, api_namespace: str
) -> None:
    doc = {
        "apiVersion": "cachefleet.io/v1alpha1",
        "kind": "CacheInvalidation",
        "metadata": {"name": "purge-team-a", "namespace": api_namespace},
        "spec": {"cacheRef": {"name": "dev"}, "scope": {"tenant": "team-a", "olderThan": "2h"}},
    }
    kubectl.apply(doc)
    stored = kubectl.json("get", "cinv", "purge-team-a", "-n", api_namespace)
    parsed = CacheInvalidation.model_validate(stored)
    assert stored["spec"] == parsed.to_api()["spec"]
    assert stored["spec"]["dryRun"] is False  # defaulted by the CRD
    status = {"status": {"phase": "Succeeded", "removed": {"l1": 1, "store": 42, "vectors": 42}}}
    kubectl(
        "patch", "cinv", "purge-team-a", "-n", api_namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps(status),
    )  # fmt: skip
    header, row = kubectl("get", "cinv", "-n", api_namespace).splitlines()
    assert header.split() == ["NAME", "PHASE", "REMOVED", "AGE"]
    assert row.split()[:3] == ["purge-team-a", "Succeeded", "42"]
    header, row = kubectl("get", "cinv", "-n", api_namespace, "-o", "wide").splitlines()
    assert header.split() == ["NAME", "PHASE", "REMOVED", "AGE", "CACHE", "DRY-RUN"]
    assert row.split()[-2:] == ["dev", "false"]
    # Metadata may change (labels, annotations); the spec may not.
    kubectl("label", "cinv", "purge-team-a", "-n", api_namespace, "audit=done")
    edited = {**doc, "spec": {**doc["spec"], "dryRun": True}}
    with pytest.raises(KubectlError) as rejected:
        kubectl.apply(edited)
    assert "spec is immutable" in rejected.value.stderr
