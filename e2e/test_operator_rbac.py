"""The RBAC of docs/operator.md is enough: the operator runs as a user granted only that Role.

(Issue 7 turns the same rules into the chart's Role/ClusterRole and proves it is not broader
than needed.)
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from cluster import Cluster, Kubectl, wait_for
from operator_harness import (
    EXAMPLES,
    documents,
    in_namespace,
    install_crds,
    json_patch,
    running_operator,
    wait_condition,
    wait_event,
)

#: The operator's rules, exactly as documented in docs/operator.md (RBAC).
RULES: list[dict[str, Any]] = [
    {"apiGroups": ["cachefleet.io"], "resources": ["semanticcaches"],
     "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": ["cachefleet.io"], "resources": ["semanticcaches/status"], "verbs": ["patch"]},
    {"apiGroups": ["cachefleet.io"], "resources": ["modelversions"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["cachefleet.io"], "resources": ["modelversions/status"], "verbs": ["patch"]},
    {"apiGroups": ["cachefleet.io"], "resources": ["cacheinvalidations"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["cachefleet.io"], "resources": ["cacheinvalidations/status"],
     "verbs": ["patch"]},
    {"apiGroups": [""], "resources": ["configmaps", "services"],
     "verbs": ["list", "watch", "create", "patch", "delete"]},
    {"apiGroups": ["apps"], "resources": ["statefulsets", "deployments"],
     "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"],
     "verbs": ["list", "watch", "create", "patch", "delete"]},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"],
     "verbs": ["list", "watch", "create", "patch", "delete"]},
    {"apiGroups": ["milvus.io"], "resources": ["milvuses"],
     "verbs": ["get", "create", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]  # fmt: skip


#: docs/operator.md, "Leader election": the Lease `cachefleet-operator` and nothing else.
LEADER_ELECTION_RULES = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
     "resourceNames": ["cachefleet-operator"], "verbs": ["get", "update"]},
]  # fmt: skip


def grant(kubectl: Kubectl, namespace: str, user: str, rules: list[dict[str, Any]]) -> None:
    """A Role `cachefleet-operator` with `rules` in `namespace`, bound to `user`."""
    kubectl.apply(
        [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "cachefleet-operator", "namespace": namespace},
                "rules": rules,
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "cachefleet-operator", "namespace": namespace},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "cachefleet-operator",
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
                ],
            },
        ]
    )


@pytest.fixture(scope="module")
def kubectl(kube_api: Cluster) -> Kubectl:
    install_crds(kube_api.kubectl)
    return kube_api.kubectl


def test_the_documented_role_is_enough(
    kube_api: Cluster, kubectl: Kubectl, api_namespace: str, tmp_path: Path
) -> None:
    ns = api_namespace
    user = kube_api.user
    # the Lease lives in the first watched namespace here (no $POD_NAMESPACE)
    grant(kubectl, ns, user.user, [*RULES, *LEADER_ELECTION_RULES])
    with running_operator(
        kube_api,
        tmp_path,
        namespaces=[ns],
        kubeconfig=user.kubeconfig,
        extra=["--purge-timeout=0s"],
    ) as operator:
        secret, cache = documents(EXAMPLES / "semanticcache-dev.yaml")
        cache = copy.deepcopy(cache)
        cache["spec"]["deletionPolicy"] = "Delete"
        model_version = documents(EXAMPLES / "modelversion.yaml")[0]
        kubectl.apply([in_namespace(doc, ns) for doc in (model_version, secret, cache)])
        wait_condition(kubectl, "scache", "dev", ns, "Ready", "False", reason="NodesNotReady")
        wait_condition(kubectl, "mv", "gpt-4o-mini", ns, "Ready", "True")
        wait_event(kubectl, ns, "gpt-4o-mini", "Resolved")
        assert (
            "cachefleet.io/finalizer"
            in kubectl.json("get", "scache", "dev", "-n", ns)["metadata"]["finalizers"]
        )
        json_patch(kubectl, "scache", "dev", ns, {"spec": {"nodes": {"replicas": 2}}})
        wait_for(
            lambda: kubectl.run("get", "pdb", "dev-node", "-n", ns, check=False).returncode == 0,
            timeout_s=30,
            what="a PodDisruptionBudget",
        )
        kubectl("delete", "configmap", "dev-node", "-n", ns)
        wait_for(
            lambda: kubectl.run("get", "cm", "dev-node", "-n", ns, check=False).returncode == 0,
            timeout_s=30,
            what="the ConfigMap back",
        )
        json_patch(kubectl, "scache", "dev", ns, {"spec": {"nodes": {"replicas": 1}}})
        wait_for(
            lambda: kubectl.run("get", "pdb", "dev-node", "-n", ns, check=False).returncode != 0,
            timeout_s=30,
            what="the PodDisruptionBudget pruned",
        )
        # No node to purge through and no time to wait: it lets go with a Warning.
        kubectl("delete", "scache", "dev", "-n", ns, "--wait=true", "--timeout=60s")
        wait_event(kubectl, ns, "dev", "PurgeFailed")
        log = operator.log.read_text()
    assert "Forbidden" not in log


def test_readyz_names_what_the_operator_may_not_list(
    kube_api: Cluster, kubectl: Kubectl, api_namespace: str, tmp_path: Path
) -> None:
    """Watching a namespace the operator holds no Role in: kopf keeps retrying, the process
    stays alive, and /readyz is 503 naming each kind and the namespace (not a silent 200)."""
    ns = api_namespace
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"{ns}-unbound"}})
    grant(kubectl, ns, kube_api.user.user, LEADER_ELECTION_RULES)
    with running_operator(
        kube_api,
        tmp_path,
        namespaces=[f"{ns}-unbound"],
        extra=[f"--lease-namespace={ns}"],  # it leads (its Role in `ns` grants the Lease)
        kubeconfig=kube_api.user.kubeconfig,
        wait_ready=False,
    ) as operator:
        wait_for(lambda: "cannot list" in operator.get("/readyz")[1], timeout_s=30, what="/readyz")
        code, body = operator.get("/readyz")
        answer = json.loads(body)
        assert code == 503, body
        assert answer["status"] == "not ready", body
        listed = " ".join(answer["problems"])
        for resource in (
            "semanticcaches.cachefleet.io",
            "modelversions.cachefleet.io",
            "configmaps",
            "statefulsets.apps",
            "horizontalpodautoscalers.autoscaling",
        ):
            assert f"cannot list {resource} in namespace {ns}-unbound (403 Forbidden)" in listed
        assert operator.get("/healthz")[0] == 200  # alive: a restart would not help


def test_readyz_names_a_lease_the_operator_may_not_take(
    kube_api: Cluster, kubectl: Kubectl, api_namespace: str, tmp_path: Path
) -> None:
    """No right to the Lease: the operator never acts, stays alive, and /readyz says why."""
    ns = api_namespace
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"{ns}-unbound"}})
    with running_operator(
        kube_api,
        tmp_path,
        namespaces=[ns],
        extra=[f"--lease-namespace={ns}-unbound"],
        kubeconfig=kube_api.user.kubeconfig,
        wait_ready=False,
    ) as operator:
        wait_for(lambda: "Lease" in operator.get("/readyz")[1], timeout_s=30, what="/readyz")
        code, body = operator.get("/readyz")
        assert code == 503, body
        problems = " ".join(json.loads(body)["problems"])
        assert f"Lease {ns}-unbound/cachefleet-operator" in problems, body
        assert "403" in problems, body
        assert operator.get("/healthz")[0] == 200
