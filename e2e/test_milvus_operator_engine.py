"""`semanticTier.managed.engine: milvusOperator` against a real kube-apiserver (api profile).

No Milvus Operator runs here: the test installs a minimal `milvuses.milvus.io` CRD of its own
(any spec, a status subresource) and plays the Milvus Operator's part by writing the
`Milvus`'s status. Asserted, in order, on one cache: without the CRD the fleet is Stalled with
`MilvusOperatorMissing` (and a Warning Event) while the rest of its children are applied and
the operator stays ready; once the CRD is served the `Milvus` is created (owned by the cache,
mode cluster) and the nodes are pointed at its Service; a Healthy status makes the semantic
tier ready, an Unhealthy one takes it back; switching to `engine: standalone` prunes it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster import Cluster, Kubectl, wait_for
from operator_harness import (
    EXAMPLES,
    OperatorProcess,
    condition,
    documents,
    in_namespace,
    install_crds,
    json_patch,
    running_operator,
    wait_condition,
    wait_event,
)

MILVUS = "milvuses.v1beta1.milvus.io"
#: The Milvus Operator's CRD reduced to what the operator relies on: the kind, served at
#: milvus.io/v1beta1, with a status subresource.
TEST_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "milvuses.milvus.io"},
    "spec": {
        "group": "milvus.io",
        "scope": "Namespaced",
        "names": {
            "kind": "Milvus",
            "listKind": "MilvusList",
            "plural": "milvuses",
            "singular": "milvus",
        },
        "versions": [
            {
                "name": "v1beta1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


@pytest.fixture(scope="module")
def kubectl(kube_api: Cluster) -> Iterator[Kubectl]:
    install_crds(kube_api.kubectl)
    yield kube_api.kubectl
    # The control plane is shared by the session: leave no Milvus CRD behind.
    kube_api.kubectl.run("delete", "crd", "milvuses.milvus.io", "--ignore-not-found", check=False)


@pytest.fixture
def operator(
    kube_api: Cluster, kubectl: Kubectl, api_namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    with running_operator(
        kube_api, tmp_path, namespaces=[api_namespace], extra=["--stats-interval=1"]
    ) as process:
        yield process


def install_test_crd(kubectl: Kubectl) -> None:
    kubectl.apply(TEST_CRD)

    def established() -> bool:
        conditions = kubectl.json("get", "crd", "milvuses.milvus.io")["status"].get("conditions")
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions or [])

    wait_for(established, timeout_s=60, what="the test Milvus CRD Established")


def node_milvus_uri(kubectl: Kubectl, namespace: str) -> str:
    configmap = kubectl.json("get", "configmap", "dev-node", "-n", namespace)
    return str(yaml.safe_load(configmap["data"]["node.yaml"])["milvus"]["uri"])


def milvus_status(kubectl: Kubectl, namespace: str, status: dict[str, Any]) -> None:
    """Write the `Milvus`'s status, as the Milvus Operator would."""
    kubectl(
        "patch", MILVUS, "dev-milvus-cluster", "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": status}),
    )  # fmt: skip


def test_a_milvus_operator_fleet_from_missing_crd_to_healthy_and_back_to_standalone(
    kubectl: Kubectl, api_namespace: str, operator: OperatorProcess
) -> None:
    ns = api_namespace
    kubectl.run("delete", "crd", "milvuses.milvus.io", "--ignore-not-found", "--wait=true")
    model_version = documents(EXAMPLES / "modelversion.yaml")[0]
    secret, cache = documents(EXAMPLES / "semanticcache-dev.yaml")
    cache = copy.deepcopy(cache)
    cache["spec"]["semanticTier"] = {"managed": {"engine": "milvusOperator"}}
    kubectl.apply([in_namespace(doc, ns) for doc in (model_version, secret, cache)])

    # No CRD: a clear condition and Event, the rest of the fleet applied, the operator ready.
    stalled = wait_condition(kubectl, "scache", "dev", ns, "Stalled", "True",
                             reason="MilvusOperatorMissing")  # fmt: skip
    assert "the Milvus Operator is not installed" in condition(stalled, "Stalled")["message"]  # type: ignore[index]
    for condition_type in ("Ready", "SemanticTierReady"):
        found = condition(stalled, condition_type)
        assert found is not None
        assert (found["status"], found["reason"]) == ("False", "MilvusOperatorMissing")
    wait_event(kubectl, ns, "dev", "MilvusOperatorMissing")
    assert kubectl.run("get", "deployment", "dev-node", "-n", ns, check=False).returncode == 0
    assert kubectl.run("get", "statefulset", "dev-milvus", "-n", ns, check=False).returncode != 0
    assert operator.get("/readyz")[0] == 200
    assert operator.process.exited() is None

    # The CRD appears: the next retry creates the Milvus, owned by the cache.
    install_test_crd(kubectl)
    milvus = wait_for(
        lambda: (
            json.loads(result.stdout)
            if (result := kubectl.run("get", MILVUS, "dev-milvus-cluster", "-n", ns, "-o", "json",
                                      check=False)).returncode == 0
            else None
        ),
        timeout_s=90,
        what="the Milvus created",
    )  # fmt: skip
    owner = kubectl.json("get", "scache", "dev", "-n", ns)
    assert milvus["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "cachefleet.io/v1alpha1",
            "kind": "SemanticCache",
            "name": "dev",
            "uid": owner["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert milvus["spec"]["mode"] == "cluster"
    assert milvus["spec"]["dependencies"]["msgStreamType"] == "woodpecker"
    wait_condition(kubectl, "scache", "dev", ns, "Stalled", "False", timeout_s=30)
    wait_condition(kubectl, "scache", "dev", ns, "SemanticTierReady", "False",
                   reason="Progressing", timeout_s=30)  # fmt: skip
    assert node_milvus_uri(kubectl, ns) == f"http://dev-milvus-cluster-milvus.{ns}.svc:19530"

    # The Milvus Operator reports it Healthy: the semantic tier is ready (no pods here, so
    # the fleet as a whole waits for its nodes).
    generation = milvus["metadata"]["generation"]
    milvus_status(kubectl, ns, {
        "status": "Healthy",
        "observedGeneration": generation,
        "conditions": [{"type": "MilvusReady", "status": "True", "reason": "ReasonMilvusHealthy"}],
    })  # fmt: skip
    healthy = wait_condition(kubectl, "scache", "dev", ns, "SemanticTierReady", "True",
                             reason="Healthy", timeout_s=60)  # fmt: skip
    assert (
        condition(healthy, "SemanticTierReady")["message"] == "Milvus dev-milvus-cluster: Healthy"
    )  # type: ignore[index]
    wait_condition(kubectl, "scache", "dev", ns, "Ready", "False", reason="NodesNotReady")

    # Unhealthy later: read again at the next poll, with the Milvus Operator's reason.
    milvus_status(kubectl, ns, {
        "status": "Unhealthy",
        "observedGeneration": generation,
        "conditions": [{"type": "MilvusReady", "status": "False",
                        "reason": "MilvusComponentNotHealthy", "message": "querynode down"}],
    })  # fmt: skip
    unhealthy = wait_condition(kubectl, "scache", "dev", ns, "SemanticTierReady", "False",
                               reason="MilvusUnhealthy", timeout_s=60)  # fmt: skip
    assert (
        "MilvusComponentNotHealthy: querynode down"
        in (
            condition(unhealthy, "SemanticTierReady")["message"]  # type: ignore[index]
        )
    )

    # Back to the standalone engine: the Milvus is pruned, the StatefulSet comes.
    json_patch(kubectl, "scache", "dev", ns,
               {"spec": {"semanticTier": {"managed": {"engine": "standalone"}}}})  # fmt: skip
    wait_for(
        lambda: (
            kubectl.run("get", MILVUS, "dev-milvus-cluster", "-n", ns, check=False).returncode != 0
        ),
        timeout_s=60,
        what="the Milvus pruned",
    )
    assert kubectl.run("get", "statefulset", "dev-milvus", "-n", ns, check=False).returncode == 0
    pruned = wait_event(kubectl, ns, "dev", "Pruned")
    assert pruned["message"] == "deleted Milvus dev-milvus-cluster: no longer in the spec"
    wait_for(
        lambda: node_milvus_uri(kubectl, ns) == f"http://dev-milvus.{ns}.svc:19530",
        timeout_s=30,
        what="the nodes pointed back at the standalone Milvus",
    )
