"""Smoke tests of the local control plane: what only a real kube-apiserver (and controllers) do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cluster import (
    GPU_RESOURCE,
    GPU_TOLERATION,
    Cluster,
    Kubectl,
    KubectlError,
    NotOurs,
    wait_for,
)
from cluster.kube import write_kubeconfig
from cluster.storage import HOSTPATH_ROOT, STORAGE_CLASS
from cluster.versions import Versions

GROUP = "e2e.cachefleet.dev"
CEL_MESSAGE = "spec.minReplicas must not exceed spec.maxReplicas"

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"}
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "minReplicas": {"type": "integer", "minimum": 0},
                                    "maxReplicas": {"type": "integer", "default": 3},
                                },
                                "x-kubernetes-validations": [
                                    {
                                        "rule": "self.minReplicas <= self.maxReplicas",
                                        "message": CEL_MESSAGE,
                                    }
                                ],
                            },
                            "status": {
                                "type": "object",
                                "properties": {"phase": {"type": "string"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}


def widget(name: str, namespace: str, **spec: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def deployment(
    name: str, namespace: str, replicas: int, *, pod_spec: dict[str, Any] | None = None
) -> dict[str, Any]:
    spec = pod_spec or {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


# --- api profile ----------------------------------------------------------------------------


@pytest.mark.apiserver
def test_version_is_the_pinned_release(kube_api: Cluster) -> None:
    version = json.loads(kube_api.kubectl("get", "--raw", "/version"))
    assert version["gitVersion"] == Versions.load().kubernetes
    assert kube_api.kubectl("get", "--raw", "/readyz") == "ok"


@pytest.mark.apiserver
def test_crd_cel_rule_defaults_and_status_subresource(
    kube_api: Cluster, api_namespace: str
) -> None:
    kubectl = kube_api.kubectl
    kubectl.apply(WIDGET_CRD)

    def established() -> bool:
        status = kubectl.json("get", "crd", f"widgets.{GROUP}").get("status", {})
        return any(
            c["type"] == "Established" and c["status"] == "True"
            for c in status.get("conditions", [])
        )

    wait_for(established, timeout_s=60, what="the Widget CRD to be Established")

    # A valid object is stored with the schema default filled in.
    wait_for(
        lambda: kubectl.apply(widget("ok", api_namespace, minReplicas=1)),
        timeout_s=30,
        what="the Widget API to be served",
    )
    stored = kubectl.json("get", "widget", "ok", "-n", api_namespace)
    assert stored["spec"] == {"minReplicas": 1, "maxReplicas": 3}

    # An invalid one is rejected at admission with the CEL rule's message.
    with pytest.raises(KubectlError) as rejected:
        kubectl.apply(widget("bad", api_namespace, minReplicas=5, maxReplicas=2))
    assert CEL_MESSAGE in rejected.value.stderr
    assert kubectl.run("get", "widget", "bad", "-n", api_namespace, check=False).returncode != 0

    # status is a subresource: writes through it do not bump metadata.generation and
    # status sent to the main resource is ignored.
    generation = stored["metadata"]["generation"]
    kubectl(
        "patch", "widget", "ok", "-n", api_namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"phase": "Ready"}}),
    )  # fmt: skip
    kubectl(
        "patch", "widget", "ok", "-n", api_namespace, "--type=merge",
        "-p", json.dumps({"status": {"phase": "Hijacked"}}),
    )  # fmt: skip
    after = kubectl.json("get", "widget", "ok", "-n", api_namespace)
    assert after["status"] == {"phase": "Ready"}
    assert after["metadata"]["generation"] == generation
    table = kubectl("get", "widget", "ok", "-n", api_namespace)
    assert "PHASE" in table.splitlines()[0]
    assert "Ready" in table


@pytest.mark.apiserver
def test_server_side_apply_records_the_field_manager(kube_api: Cluster, api_namespace: str) -> None:
    kubectl = kube_api.kubectl
    kubectl.apply(deployment("web", api_namespace, 2), field_manager="cachefleet-operator")
    obj = kubectl.json("get", "deployment", "web", "-n", api_namespace, "--show-managed-fields")
    managers = {entry["manager"]: entry for entry in obj["metadata"]["managedFields"]}
    owner = managers["cachefleet-operator"]
    assert owner["operation"] == "Apply"
    assert "f:replicas" in owner["fieldsV1"]["f:spec"]

    # Another manager changing an owned field conflicts unless it forces ownership.
    with pytest.raises(KubectlError) as conflict:
        kubectl.apply(deployment("web", api_namespace, 5), field_manager="someone-else")
    assert "conflict" in conflict.value.stderr.lower()
    assert "cachefleet-operator" in conflict.value.stderr
    kubectl.apply(
        deployment("web", api_namespace, 5),
        field_manager="someone-else",
        extra=["--force-conflicts"],
    )
    obj = kubectl.json("get", "deployment", "web", "-n", api_namespace, "--show-managed-fields")
    replicas_owners = [
        e["manager"]
        for e in obj["metadata"]["managedFields"]
        if "f:replicas" in e["fieldsV1"].get("f:spec", {})
    ]
    assert replicas_owners == ["someone-else"]
    assert obj["spec"]["replicas"] == 5


@pytest.mark.apiserver
def test_rbac_denies_the_non_admin_until_a_role_grants_access(
    kube_api: Cluster, api_namespace: str
) -> None:
    admin, user = kube_api.kubectl, kube_api.user_kubectl
    denied = user.run("get", "configmaps", "-n", api_namespace, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
    assert f'User "{kube_api.user.user}"' in denied.stderr
    # The raw API answers 403 too.
    raw = user.run("get", "--raw", f"/api/v1/namespaces/{api_namespace}/configmaps", check=False)
    assert "(Forbidden)" in raw.stderr or "403" in raw.stderr

    admin.apply(
        [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "configmap-reader", "namespace": api_namespace},
                "rules": [
                    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "dev-reads-configmaps", "namespace": api_namespace},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "configmap-reader",
                },
                "subjects": [
                    {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "User",
                        "name": kube_api.user.user,
                    }
                ],
            },
        ]
    )
    wait_for(
        lambda: user.run("get", "configmaps", "-n", api_namespace, check=False).returncode == 0,
        timeout_s=30,
        what="the RoleBinding to take effect",
    )
    # Only what the Role grants: no writes, no other resources, no other namespaces.
    assert user("auth", "can-i", "list", "configmaps", "-n", api_namespace).strip() == "yes"
    for verb, resource, namespace in (
        ("create", "configmaps", api_namespace),
        ("list", "secrets", api_namespace),
        ("list", "configmaps", "kube-system"),
    ):
        answer = user.run("auth", "can-i", verb, resource, "-n", namespace, check=False)
        assert answer.stdout.strip() == "no", (verb, resource, namespace)
    created = user.run("create", "configmap", "nope", "-n", api_namespace, check=False)
    assert "forbidden" in created.stderr.lower()


@pytest.mark.apiserver
def test_fixture_refuses_foreign_kubeconfigs(
    kube_api: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    foreign = write_kubeconfig(
        tmp_path / "config",
        server=kube_api.server,
        ca_cert=kube_api.ca_cert,
        user="someone",
        token=kube_api.admin.token,
        nonce="not-ours",
    )
    with pytest.raises(NotOurs):
        kube_api.assert_ours(foreign)
    (tmp_path / "plain").write_text(kube_api.kubeconfig.read_text().replace(kube_api.nonce, ""))
    with pytest.raises(NotOurs):
        kube_api.assert_ours(tmp_path / "plain")
    # A KUBECONFIG in the caller's environment cannot redirect the helper.
    monkeypatch.setenv("KUBECONFIG", str(foreign))
    assert (
        Kubectl(kube_api.binaries.kubectl, kube_api.kubeconfig)("get", "--raw", "/readyz") == "ok"
    )


# --- full profile ---------------------------------------------------------------------------


@pytest.mark.cluster
def test_kwok_nodes_are_ready_and_gpu_nodes_advertise_gpus(kube_cluster: Cluster) -> None:
    nodes = kube_cluster.kubectl.json("get", "nodes")["items"]
    by_name = {n["metadata"]["name"]: n for n in nodes}
    assert set(kube_cluster.nodes) <= set(by_name)
    assert all(is_ready(by_name[name]) for name in kube_cluster.nodes)
    gpu_nodes = [n for n in nodes if GPU_RESOURCE in n["status"]["allocatable"]]
    assert gpu_nodes, "no node advertises nvidia.com/gpu"
    for node in gpu_nodes:
        assert int(node["status"]["allocatable"][GPU_RESOURCE]) >= 1
        taints = node["spec"].get("taints", [])
        assert any(t["key"] == GPU_RESOURCE and t["effect"] == "NoSchedule" for t in taints)


@pytest.mark.cluster
def test_deployment_pods_are_scheduled_on_kwok_nodes_and_ready(
    kube_cluster: Cluster, cluster_namespace: str
) -> None:
    kubectl = kube_cluster.kubectl
    kubectl.apply(deployment("web", cluster_namespace, 3), field_manager="cachefleet-operator")
    kubectl(
        "rollout", "status", "deployment/web", "-n", cluster_namespace, "--timeout=120s"
    )  # fmt: skip
    status = kubectl.json("get", "deployment", "web", "-n", cluster_namespace)["status"]
    assert status["readyReplicas"] == 3
    pods = kubectl.json("get", "pods", "-n", cluster_namespace, "-l", "app=web")["items"]
    assert len(pods) == 3
    cpu_nodes = {n for n in kube_cluster.nodes if n.startswith("kwok-cpu-")}
    for pod in pods:
        assert is_ready(pod)
        # Untolerated GPU taint: plain pods stay off the GPU nodes.
        assert pod["spec"]["nodeName"] in cpu_nodes
        assert pod["status"]["podIP"]


@pytest.mark.cluster
def test_gpu_pod_lands_on_a_gpu_node_only_with_the_toleration(
    kube_cluster: Cluster, cluster_namespace: str
) -> None:
    kubectl = kube_cluster.kubectl

    def gpu_pod(name: str, tolerate: bool) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "containers": [
                {
                    "name": "embedder",
                    "image": "registry.invalid/embedder:1",
                    "resources": {"limits": {GPU_RESOURCE: "1"}},
                }
            ]
        }
        if tolerate:
            spec["tolerations"] = [GPU_TOLERATION]
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": cluster_namespace},
            "spec": spec,
        }

    kubectl.apply([gpu_pod("embedder", True), gpu_pod("untolerated", False)])
    kubectl(
        "wait", "--for=condition=Ready", "pod/embedder", "-n", cluster_namespace, "--timeout=120s"
    )
    pod = kubectl.json("get", "pod", "embedder", "-n", cluster_namespace)
    node = kubectl.json("get", "node", pod["spec"]["nodeName"])
    assert int(node["status"]["allocatable"][GPU_RESOURCE]) >= 1
    assert node["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"

    def unschedulable() -> bool:
        other = kubectl.json("get", "pod", "untolerated", "-n", cluster_namespace)
        scheduled = [
            c for c in other["status"].get("conditions", []) if c["type"] == "PodScheduled"
        ]
        return bool(scheduled) and scheduled[0]["status"] == "False"

    wait_for(
        unschedulable, timeout_s=60, what="the untolerated GPU pod to be reported unschedulable"
    )
    assert not kubectl.json("get", "pod", "untolerated", "-n", cluster_namespace)["spec"].get(
        "nodeName"
    )


@pytest.mark.cluster
def test_deleting_an_owner_garbage_collects_its_children(
    kube_cluster: Cluster, cluster_namespace: str
) -> None:
    kubectl = kube_cluster.kubectl
    ns = cluster_namespace
    kubectl.apply(deployment("doomed", ns, 2))
    kubectl("rollout", "status", "deployment/doomed", "-n", ns, "--timeout=120s")
    owner = kubectl.json("create", "configmap", "owner", "-n", ns, "--from-literal=k=v")
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "child",
            "namespace": ns,
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": "owner",
                    "uid": owner["metadata"]["uid"],
                }
            ],
        },
    }
    kubectl.apply(child)

    kubectl("delete", "deployment", "doomed", "-n", ns, "--cascade=background", "--wait=false")
    kubectl("delete", "configmap", "owner", "-n", ns, "--wait=false")

    def collected() -> bool:
        left = kubectl.json("get", "replicasets,pods", "-n", ns, "-l", "app=doomed")["items"]
        child_left = kubectl.run("get", "configmap", "child", "-n", ns, check=False).returncode == 0
        return not left and not child_left

    wait_for(
        collected, timeout_s=120, what="ReplicaSets, Pods and the child ConfigMap to be collected"
    )


@pytest.mark.cluster
def test_claims_of_the_default_storage_class_bind_and_their_volumes_go_with_them(
    kube_cluster: Cluster, cluster_namespace: str
) -> None:
    """A claim without a class (as the operator's volumeClaimTemplates render it) gets the
    default StorageClass and a hostPath volume from kube-controller-manager; a StatefulSet's
    pod on it is scheduled and Ready; deleting the claim deletes the PV and its directory."""
    kubectl = kube_cluster.kubectl
    ns = cluster_namespace
    classes = kubectl.json("get", "storageclass")["items"]
    default = [
        c["metadata"]["name"]
        for c in classes
        if c["metadata"].get("annotations", {}).get("storageclass.kubernetes.io/is-default-class")
        == "true"
    ]
    assert default == [STORAGE_CLASS]
    container = {
        "name": "db",
        "image": "registry.invalid/db:1",
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    template = deployment("db", ns, 1, pod_spec={"containers": [container]})["spec"]["template"]
    kubectl.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": ns},
            "spec": {
                "replicas": 1,
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": template,
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "7Gi"}},
                        },
                    }
                ],
            },
        }
    )
    kubectl("wait", "--for=condition=Ready", "pod/db-0", "-n", ns, "--timeout=120s")
    claim = kubectl.json("get", "pvc", "data-db-0", "-n", ns)
    assert claim["spec"]["storageClassName"] == STORAGE_CLASS
    assert claim["status"]["phase"] == "Bound"
    volume = kubectl.json("get", "pv", claim["spec"]["volumeName"])
    assert volume["spec"]["capacity"]["storage"] == "7Gi"
    path = Path(volume["spec"]["hostPath"]["path"])
    assert path.parent == HOSTPATH_ROOT
    assert path.is_dir()

    kubectl("delete", "statefulset", "db", "-n", ns, "--wait=true")
    kubectl("delete", "pod", "db-0", "-n", ns, "--ignore-not-found", "--wait=true")
    kubectl("delete", "pvc", "data-db-0", "-n", ns, "--wait=true")
    wait_for(
        lambda: (
            kubectl.run("get", "pv", volume["metadata"]["name"], check=False).returncode != 0
            and not path.exists()
        ),
        timeout_s=60,
        what="the PV and its directory to be deleted with the claim",
    )
