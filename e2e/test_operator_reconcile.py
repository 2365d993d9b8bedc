"""The operator against a real kube-apiserver (api profile: no controllers, so no pods).

The operator runs as a real `cachefleet-operator` subprocess, watching one test namespace.
What is asserted is what a user sees: children with the operator's field manager, status and
`kubectl get` columns, pause, stalls with Events, ModelVersion edits reaching the rendered node
config, and the two deletion policies (Delete purges through a real cache node).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from cluster import Cluster, Kubectl, wait_for
from operator_harness import (
    EXAMPLES,
    FIELD_MANAGER,
    OperatorProcess,
    cache_node,
    chat,
    condition,
    documents,
    events,
    in_namespace,
    install_crds,
    json_patch,
    model_dir,
    node_config_from_configmap,
    node_json,
    redis_process,
    running_operator,
    stub_upstream,
    wait_condition,
    wait_event,
)

MV = documents(EXAMPLES / "modelversion.yaml")[0]
DEV = documents(EXAMPLES / "semanticcache-dev.yaml")  # [Secret, SemanticCache]
CHAT = documents(EXAMPLES / "semanticcache-gpu.yaml")  # [Secret, Secret, SemanticCache]


@pytest.fixture(scope="module")
def kubectl(kube_api: Cluster) -> Kubectl:
    install_crds(kube_api.kubectl)
    return kube_api.kubectl


@pytest.fixture
def operator(
    kube_api: Cluster, kubectl: Kubectl, api_namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """The operator watching the test namespace (node URLs from the annotation: no pods here)."""
    with running_operator(
        kube_api,
        tmp_path,
        namespaces=[api_namespace],
        extra=["--stats-interval=1", "--log-level=debug"],
    ) as process:
        yield process


def exists(kubectl: Kubectl, kind: str, name: str, namespace: str) -> bool:
    return kubectl.run("get", kind, name, "-n", namespace, check=False).returncode == 0


def get(kubectl: Kubectl, kind: str, name: str, namespace: str) -> dict[str, Any]:
    result: dict[str, Any] = kubectl.json(
        "get", kind, name, "-n", namespace, "--show-managed-fields"
    )
    return result


def apply_all(kubectl: Kubectl, namespace: str, docs: list[dict[str, Any]]) -> None:
    kubectl.apply([in_namespace(doc, namespace) for doc in docs])


def dev_children() -> list[tuple[str, str]]:
    return [("configmap", "dev-node"), ("deployment", "dev-node"), ("service", "dev-node")]


def test_a_cache_reconciles_to_children_owned_by_the_operator(
    kubectl: Kubectl, api_namespace: str, operator: OperatorProcess
) -> None:
    ns = api_namespace
    apply_all(kubectl, ns, [MV, *DEV, *CHAT])
    for name in ("dev", "chat"):
        wait_condition(kubectl, "scache", name, ns, "Ready", "False", reason="NodesNotReady"
                       if name == "dev" else "ExactTierNotReady")  # fmt: skip
    expected = [
        *dev_children(),
        ("configmap", "chat-redis"), ("service", "chat-redis"), ("statefulset", "chat-redis"),
        ("configmap", "chat-milvus"), ("service", "chat-milvus"), ("statefulset", "chat-milvus"),
        ("deployment", "chat-embedding"), ("service", "chat-embedding"),
        ("configmap", "chat-node"), ("deployment", "chat-node"), ("service", "chat-node"),
        ("poddisruptionbudget", "chat-node"), ("horizontalpodautoscaler", "chat-node"),
    ]  # fmt: skip
    caches = {name: get(kubectl, "scache", name, ns) for name in ("dev", "chat")}
    for kind, name in expected:
        child = get(kubectl, kind, name, ns)
        owner = caches[name.split("-")[0]]
        assert child["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "cachefleet.io/v1alpha1",
                "kind": "SemanticCache",
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ], (kind, name)
        managers = {(m["manager"], m["operation"]) for m in child["metadata"]["managedFields"]}
        assert (FIELD_MANAGER, "Apply") in managers, (kind, name, managers)
        assert child["metadata"]["labels"]["app.kubernetes.io/managed-by"] == FIELD_MANAGER

    status = caches["dev"]["status"]
    assert status["observedGeneration"] == caches["dev"]["metadata"]["generation"]
    assert status["model"] == "gpt-4o-mini@2024-07-18"
    [active] = status["activeNamespaces"]
    assert (active["modelVersion"], active["cacheNamespace"], active["version"]) == (
        "gpt-4o-mini",
        "gpt-4o-mini-a1a7439fc3",
        "2024-07-18",
    )
    assert status["readyNodes"] == 0
    assert condition(caches["dev"], "Reconciling")["status"] == "True"  # type: ignore[index]
    assert condition(caches["dev"], "Stalled")["status"] == "False"  # type: ignore[index]
    # The status subresource has one writer, by server-side apply.
    status_managers = [
        m for m in caches["dev"]["metadata"]["managedFields"] if m.get("subresource") == "status"
    ]
    assert [(m["manager"], m["operation"]) for m in status_managers] == [(FIELD_MANAGER, "Apply")]
    # Retain (the default) needs no finalizer.
    assert "finalizers" not in caches["dev"]["metadata"]

    header, row = kubectl("get", "scache", "dev", "-n", ns).splitlines()
    assert header.split() == ["NAME", "READY", "HIT-RATE", "MODEL", "ENTRIES", "AGE"]
    assert row.split()[:3] == ["dev", "False", "gpt-4o-mini@2024-07-18"]
    header, row = kubectl("get", "scache", "dev", "-n", ns, "-o", "wide").splitlines()
    assert header.split()[-2:] == ["REASON", "MESSAGE"]
    assert row.split()[-5:] == ["NodesNotReady", "Deployment", "dev-node:", "0/1", "ready"]
    header, row = kubectl("get", "mv", "-n", ns).splitlines()
    assert row.split()[4] == "gpt-4o-mini-a1a7439fc3"
    mv = get(kubectl, "mv", "gpt-4o-mini", ns)
    assert condition(mv, "Ready")["status"] == "True"  # type: ignore[index]
    assert mv["status"]["observedGeneration"] == 1
    assert operator.metric("cachefleet_operator_managed_caches", ready="False") == 2
    assert operator.metric("cachefleet_operator_reconciles_total", kind="SemanticCache",
                           result="success") >= 2  # fmt: skip


def test_deleted_children_come_back_and_spec_changes_converge(
    kubectl: Kubectl, api_namespace: str, operator: OperatorProcess
) -> None:
    ns = api_namespace
    apply_all(kubectl, ns, [MV, *DEV])
    wait_for(lambda: exists(kubectl, "deployment", "dev-node", ns), timeout_s=60, what="dev-node")
    for kind, name in dev_children():
        uid = get(kubectl, kind, name, ns)["metadata"]["uid"]
        kubectl("delete", kind, name, "-n", ns)
        wait_for(
            lambda kind=kind, name=name, uid=uid: (
                exists(kubectl, kind, name, ns)
                and get(kubectl, kind, name, ns)["metadata"]["uid"] != uid
            ),
            timeout_s=30,
            what=f"{kind}/{name} to be recreated",
        )
    # Drift in a field the operator owns is applied back.
    json_patch(kubectl, "deployment", "dev-node", ns, {"spec": {"replicas": 5}})
    wait_for(
        lambda: get(kubectl, "deployment", "dev-node", ns)["spec"]["replicas"] == 1,
        timeout_s=30,
        what="replicas restored to the spec's 1",
    )
    # A spec change converges: more nodes get a disruption budget, fewer prune it.
    json_patch(kubectl, "scache", "dev", ns, {"spec": {"nodes": {"replicas": 3}}})
    wait_for(
        lambda: (
            get(kubectl, "deployment", "dev-node", ns)["spec"]["replicas"] == 3
            and exists(kubectl, "pdb", "dev-node", ns)
        ),
        timeout_s=30,
        what="3 replicas and a PodDisruptionBudget",
    )
    json_patch(kubectl, "scache", "dev", ns, {"spec": {"nodes": {"replicas": 1}}})
    wait_for(lambda: not exists(kubectl, "pdb", "dev-node", ns), timeout_s=30, what="PDB pruned")
    wait_event(kubectl, ns, "dev", "Pruned")


def test_pause_stops_changes_and_says_so(
    kubectl: Kubectl, api_namespace: str, operator: OperatorProcess
) -> None:
    ns = api_namespace
    apply_all(kubectl, ns, [MV, *DEV])
    wait_for(lambda: exists(kubectl, "configmap", "dev-node", ns), timeout_s=60, what="dev-node")
    json_patch(kubectl, "scache", "dev", ns, {"spec": {"paused": True, "nodes": {"replicas": 4}}})
    generation = get(kubectl, "scache", "dev", ns)["metadata"]["generation"]
    paused = wait_condition(kubectl, "scache", "dev", ns, "Reconciling", "False", reason="Paused")
    assert paused["status"]["observedGeneration"] == generation  # it saw the edit...
    assert get(kubectl, "deployment", "dev-node", ns)["spec"]["replicas"] == 1  # ...and left it
    passes = operator.metric("cachefleet_operator_reconciles_total", kind="SemanticCache",
                             result="success")  # fmt: skip
    kubectl("delete", "configmap", "dev-node", "-n", ns)
    wait_for(
        lambda: (
            operator.metric(
                "cachefleet_operator_reconciles_total", kind="SemanticCache", result="success"
            )
            > passes
        ),
        timeout_s=30,
        what="a pass after the child was deleted",
    )
    assert not exists(kubectl, "configmap", "dev-node", ns)
    wait_event(kubectl, ns, "dev", "Paused")

    json_patch(kubectl, "scache", "dev", ns, {"spec": {"paused": False}})
    wait_for(
        lambda: (
            exists(kubectl, "configmap", "dev-node", ns)
            and get(kubectl, "deployment", "dev-node", ns)["spec"]["replicas"] == 4
        ),
        timeout_s=30,
        what="children converged after resuming",
    )
    wait_event(kubectl, ns, "dev", "Resumed")


def test_missing_model_version_and_secret_stall_with_a_reason_and_an_event(
    kubectl: Kubectl, api_namespace: str, operator: OperatorProcess
) -> None:
    ns = api_namespace
    secret, cache = DEV
    apply_all(kubectl, ns, [cache])  # neither the ModelVersion nor the Secret exist
    stalled = wait_condition(kubectl, "scache", "dev", ns, "Stalled", "True",
                             reason="ModelVersionNotFound")  # fmt: skip
    message = condition(stalled, "Stalled")["message"]  # type: ignore[index]
    assert "ModelVersion gpt-4o-mini not found" in message
    assert "Secret dev-redis (spec.exactTier.external.urlSecretRef) not found" in message
    assert condition(stalled, "Ready")["reason"] == "ModelVersionNotFound"  # type: ignore[index]
    assert not exists(kubectl, "deployment", "dev-node", ns)  # nothing applied while stalled
    wait_event(kubectl, ns, "dev", "ModelVersionNotFound")
    warnings = [e for e in events(kubectl, ns, "dev") if e["type"] == "Warning"]
    assert [e["reason"] for e in warnings] == ["ModelVersionNotFound"]
    assert operator.get("/healthz")[0] == 200  # a stall is not a crash

    apply_all(kubectl, ns, [MV])  # the index sends the cache through again at once
    wait_condition(kubectl, "scache", "dev", ns, "Stalled", "True", reason="SecretNotFound")
    apply_all(kubectl, ns, [secret])  # found on a retry (backoff)
    wait_condition(kubectl, "scache", "dev", ns, "Stalled", "False", timeout_s=90)
    wait_for(lambda: exists(kubectl, "deployment", "dev-node", ns), timeout_s=30, what="dev-node")
    wait_event(kubectl, ns, "dev", "Unstalled")

    # A Secret without the named key stalls too.
    broken = copy.deepcopy(secret)
    broken["stringData"] = {"other": "x"}
    kubectl("delete", "secret", "dev-redis", "-n", ns)
    apply_all(kubectl, ns, [broken])
    json_patch(kubectl, "scache", "dev", ns, {"spec": {"nodes": {"replicas": 2}}})
    wait_condition(kubectl, "scache", "dev", ns, "Stalled", "True", reason="SecretKeyNotFound")


def test_editing_a_model_version_moves_its_caches_without_touching_them(
    kubectl: Kubectl, api_namespace: str, operator: OperatorProcess
) -> None:
    ns = api_namespace
    apply_all(kubectl, ns, [MV, *DEV])
    wait_for(lambda: exists(kubectl, "configmap", "dev-node", ns), timeout_s=60, what="dev-node")
    before = get(kubectl, "scache", "dev", ns)
    old = get(kubectl, "mv", "gpt-4o-mini", ns)["status"]["cacheNamespace"]

    json_patch(kubectl, "mv", "gpt-4o-mini", ns, {"spec": {"version": "2025-01-31"}})
    new = wait_for(
        lambda: (
            (get(kubectl, "mv", "gpt-4o-mini", ns)["status"].get("cacheNamespace") or old) != old
            and get(kubectl, "mv", "gpt-4o-mini", ns)["status"]["cacheNamespace"]
        ),
        timeout_s=30,
        what="a new cache namespace",
    )

    def node_config() -> dict[str, Any]:
        data = get(kubectl, "configmap", "dev-node", ns)["data"]["node.yaml"]
        return dict(yaml.safe_load(data))

    wait_for(
        lambda: node_config()["namespaces"][0]["cache_namespace"] == new,
        timeout_s=30,
        what="the node ConfigMap to serve the new namespace",
    )
    after = wait_for(
        lambda: (
            (c := get(kubectl, "scache", "dev", ns))["status"]["model"] == "gpt-4o-mini@2025-01-31"
            and c
        ),
        timeout_s=30,
        what="status.model",
    )
    assert after["status"]["activeNamespaces"][0]["cacheNamespace"] == new
    # Nobody patched the SemanticCache: same generation, spec managed by the user only.
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    spec_managers = {
        m["manager"] for m in after["metadata"]["managedFields"] if m.get("subresource") != "status"
    }
    assert FIELD_MANAGER not in spec_managers
    wait_event(kubectl, ns, "gpt-4o-mini", "CacheNamespaceChanged")


def test_retain_has_no_finalizer_and_delete_purges_through_a_node(
    kubectl: Kubectl, api_namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    ns = api_namespace
    retained = copy.deepcopy(DEV[1])
    retained["metadata"]["name"] = "kept"
    apply_all(kubectl, ns, [MV, DEV[0], retained])
    wait_for(lambda: exists(kubectl, "configmap", "kept-node", ns), timeout_s=60, what="kept-node")
    assert "finalizers" not in get(kubectl, "scache", "kept", ns)["metadata"]
    kubectl("delete", "scache", "kept", "-n", ns, "--wait=true", "--timeout=30s")

    models = model_dir()
    with redis_process(tmp_path) as redis_url, stub_upstream(tmp_path) as upstream:
        purged = copy.deepcopy(DEV[1])
        purged["spec"]["deletionPolicy"] = "Delete"
        apply_all(kubectl, ns, [purged])
        wait_for(
            lambda: (
                exists(kubectl, "configmap", "dev-node", ns)
                and "cachefleet.io/finalizer"
                in get(kubectl, "scache", "dev", ns)["metadata"].get("finalizers", [])
            ),
            timeout_s=60,
            what="children and the finalizer",
        )
        config = node_config_from_configmap(
            kubectl, ns, "dev", workdir=tmp_path, redis_url=redis_url, upstream=upstream,
            model_dir=models,
        )  # fmt: skip
        with cache_node(config, tmp_path, "dev-0") as node:
            json_patch(kubectl, "scache", "dev", ns,
                       {"metadata": {"annotations": {"cachefleet.io/node-endpoints": node}}})  # fmt: skip
            assert chat(node, "What is the capital of France?")[0] == "miss"
            wait_for(  # the answer is written back in the background
                lambda: chat(node, "What is the capital of France?")[0] == "hit-exact",
                timeout_s=30,
                what="an exact hit",
            )
            namespace = get(kubectl, "mv", "gpt-4o-mini", ns)["status"]["cacheNamespace"]
            wait_for(
                lambda: (
                    node_json(f"{node}/v1/cache/stats")["namespaces"][namespace]["entries"] == 1
                ),
                timeout_s=30,
                what="the entry in the store",
            )
            kubectl("delete", "scache", "dev", "-n", ns, "--wait=true", "--timeout=60s")
            stats = node_json(f"{node}/v1/cache/stats")["namespaces"][namespace]
            assert stats["entries"] == 0
            # The fleet's state went too; whatever is left (or written later) expires.
            client = redis.Redis.from_url(redis_url, socket_timeout=10)
            try:
                keys = [key.decode() for key in client.scan_iter(match="*", count=1000)]
                assert [
                    key for key in keys if key.endswith((":ns:active", ":embedding:active"))
                ] == []
                assert [key for key in keys if client.ttl(key) < 0] == []
            finally:
                client.close()
            assert chat(node, "What is the capital of France?")[0] == "miss"
    purged_event = wait_event(kubectl, ns, "dev", "Purged")
    assert purged_event["message"] == f"purged cache namespaces {namespace} (1 removed)"
