"""The operator's Kubernetes adapter and node discovery against a real kube-apiserver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from cachefleet_operator.adapters.credentials import load_access
from cachefleet_operator.adapters.kube import (
    CONFIGMAPS,
    ENDPOINTSLICES,
    SEMANTICCACHES,
    ApiError,
    KubeClient,
)
from cachefleet_operator.domain.render import FIELD_MANAGER
from cachefleet_operator.services.discovery import NodeDiscovery
from cluster import Cluster, Kubectl
from operator_harness import EXAMPLES, documents, in_namespace, install_crds


@pytest.fixture(scope="module")
def kubectl(kube_api: Cluster) -> Kubectl:
    install_crds(kube_api.kubectl)
    return kube_api.kubectl


@pytest_asyncio.fixture
async def kube(kube_api: Cluster, kubectl: Kubectl) -> AsyncIterator[KubeClient]:
    client = KubeClient(load_access(str(kube_api.kubeconfig)))
    yield client
    await client.aclose()


def configmap(namespace: str, data: dict[str, str], **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "probe", "namespace": namespace, "labels": labels},
        "data": data,
    }


async def test_server_side_apply_is_idempotent_and_forces_ownership(
    kube: KubeClient, kubectl: Kubectl, api_namespace: str
) -> None:
    ns = api_namespace
    first = await kube.apply(configmap(ns, {"a": "1"}, app="x"), field_manager=FIELD_MANAGER)
    again = await kube.apply(configmap(ns, {"a": "1"}, app="x"), field_manager=FIELD_MANAGER)
    # An unchanged apply writes nothing: no new resourceVersion, so no watch event, no loop.
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    kubectl("patch", "configmap", "probe", "-n", ns, "--type=merge", "-p", '{"data":{"a":"2"}}')
    forced = await kube.apply(configmap(ns, {"a": "1"}, app="x"), field_manager=FIELD_MANAGER)
    assert forced["data"] == {"a": "1"}
    owners = {m["manager"] for m in forced["metadata"]["managedFields"]}
    assert FIELD_MANAGER in owners


async def test_get_list_delete(kube: KubeClient, api_namespace: str) -> None:
    ns = api_namespace
    assert await kube.get(CONFIGMAPS, ns, "probe") is None
    stored = await kube.apply(configmap(ns, {}, app="x"), field_manager=FIELD_MANAGER)
    other = {**configmap(ns, {}, app="y"), "metadata": {"name": "other", "namespace": ns,
                                                        "labels": {"app": "y"}}}  # fmt: skip
    await kube.apply(other, field_manager=FIELD_MANAGER)
    listed = await kube.list(CONFIGMAPS, ns, label_selector="app=x")
    assert [item["metadata"]["name"] for item in listed] == ["probe"]
    # The uid precondition protects a replacement that took the name meanwhile.
    assert not await kube.delete(
        CONFIGMAPS, ns, "probe", uid="00000000-0000-0000-0000-000000000000"
    )
    assert await kube.get(CONFIGMAPS, ns, "probe") is not None
    assert await kube.delete(CONFIGMAPS, ns, "probe", uid=stored["metadata"]["uid"])
    assert not await kube.delete(CONFIGMAPS, ns, "probe")


async def test_status_apply_and_events(
    kube: KubeClient, kubectl: Kubectl, api_namespace: str
) -> None:
    ns = api_namespace
    kubectl.apply([in_namespace(doc, ns) for doc in documents(EXAMPLES / "modelversion.yaml")])
    kubectl.apply([in_namespace(doc, ns) for doc in documents(EXAMPLES / "semanticcache-dev.yaml")])
    before = kubectl.json("get", "scache", "dev", "-n", ns)
    await kube.apply_status(
        SEMANTICCACHES, ns, "dev", {"readyNodes": 2, "entries": 5}, field_manager=FIELD_MANAGER
    )
    await kube.apply_status(
        SEMANTICCACHES, ns, "dev", {"readyNodes": 3}, field_manager=FIELD_MANAGER
    )
    after = kubectl.json("get", "scache", "dev", "-n", ns)
    # Fields the manager stopped setting are removed; the spec generation is untouched.
    assert after["status"] == {"readyNodes": 3}
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    await kube.post_event(after, type="Normal", reason="Probe", message="hello",
                          component=FIELD_MANAGER)  # fmt: skip
    items = kubectl.json("get", "events", "-n", ns)["items"]
    assert [(e["reason"], e["message"], e["involvedObject"]["uid"]) for e in items] == [
        ("Probe", "hello", after["metadata"]["uid"])
    ]


async def test_errors_say_what_the_server_said(kube_api: Cluster, api_namespace: str) -> None:
    client = KubeClient(load_access(str(kube_api.user.kubeconfig)))  # the non-admin identity
    try:
        with pytest.raises(ApiError) as denied:
            await client.list(CONFIGMAPS, api_namespace)
        assert denied.value.status == 403
        assert not denied.value.retryable
        assert "forbidden" in denied.value.message
    finally:
        await client.aclose()


async def test_nodes_are_discovered_from_the_services_endpoint_slices(
    kube: KubeClient, kubectl: Kubectl, api_namespace: str
) -> None:
    ns = api_namespace
    # Documentation-range addresses (nothing is sent to them: discovery only reads slices).
    for name, service, addresses in (
        ("dev-node-a", "dev-node", ["192.0.2.10", "192.0.2.11"]),
        ("other-a", "other-node", ["192.0.2.99"]),
    ):
        kubectl.apply(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": name,
                    "namespace": ns,
                    "labels": {"kubernetes.io/service-name": service},
                },
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": [
                    {"addresses": [address], "conditions": {"ready": address.endswith("10")}}
                    for address in addresses
                ],
            }
        )
    assert len(await kube.list(ENDPOINTSLICES, ns)) == 2
    default = NodeDiscovery(kube, from_annotation=False)
    annotation = "http://127.0.0.1:9"
    assert await default.endpoints(ns, "dev-node", annotation) == ["http://192.0.2.10:8080"]
    dev_only = NodeDiscovery(kube, from_annotation=True)
    assert await dev_only.endpoints(ns, "dev-node", annotation) == ["http://127.0.0.1:9"]
    assert await dev_only.endpoints(ns, "dev-node", None) == []
