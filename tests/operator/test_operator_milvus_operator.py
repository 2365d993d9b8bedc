"""`semanticTier.managed.engine: milvusOperator`: the `Milvus` rendered for the Milvus Operator,
where the nodes look for it, and how its status becomes the fleet's conditions.

The real operator against a real kube-apiserver (CRD missing, then a test CRD): e2e/
test_operator_milvus_operator.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from operator_testdata import NAMESPACE, cache, model_version

from cachefleet_operator.api.v1alpha1 import SemanticCache
from cachefleet_operator.domain.conditions import (
    ConditionType,
    ConditionUpdate,
    MilvusClusterState,
    WorkloadState,
    milvus_cluster_state,
    semantic_cache_conditions,
)
from cachefleet_operator.domain.naming import (
    CHILD_NAME_MAX_LENGTH,
    Component,
    milvus_operator_service,
)
from cachefleet_operator.domain.render import MILVUS_CLUSTER, render_children
from cachefleet_operator.domain.status import (
    TierHealth,
    expected_workloads,
    observe_cache,
    semantic_cache_status,
)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def operator_cache(name: str = "dev", **managed: Any) -> SemanticCache:
    """The dev example with a Milvus of the Milvus Operator as its semantic tier."""
    return cache(name, semanticTier={"managed": {"engine": "milvusOperator", **managed}})


def the_milvus(children: list[dict[str, Any]]) -> dict[str, Any]:
    [milvus] = [c for c in children if c["kind"] == MILVUS_CLUSTER.kind]
    return milvus


def milvus_object(status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "milvus.io/v1beta1",
        "kind": "Milvus",
        "metadata": {"name": "dev-milvus-cluster", "generation": generation},
    }
    if status is not None:
        obj["status"] = status
    return obj


def nodes_ready() -> WorkloadState:
    return WorkloadState("Deployment", "dev-node", exists=True, desired=1, ready=1, updated=1)


def conditions(milvus: MilvusClusterState) -> dict[str, ConditionUpdate]:
    observed = observe_cache(
        operator_cache(),
        {Component.NODE: nodes_ready()},
        health=TierHealth(redis=True, collected=True),
        milvus_cluster=milvus,
    )
    return {c.type: c for c in semantic_cache_conditions(observed)}


def test_the_default_engine_is_standalone_so_existing_fleets_render_as_before() -> None:
    plain = cache("dev", semanticTier={"managed": {}})
    explicit = cache("dev", semanticTier={"managed": {"engine": "standalone"}})
    assert plain.spec.semantic_tier.managed is not None
    assert plain.spec.semantic_tier.managed.engine == "standalone"
    assert render_children(plain, [model_version()]) == render_children(explicit, [model_version()])
    kinds = {(c["kind"], c["metadata"]["name"]) for c in render_children(plain, [model_version()])}
    assert ("StatefulSet", "dev-milvus") in kinds
    assert not any(kind == MILVUS_CLUSTER.kind for kind, _ in kinds)


def test_the_milvus_replaces_the_standalone_children_and_the_nodes_use_its_service() -> None:
    the_cache = operator_cache()
    children = render_children(the_cache, [model_version()])
    names = {(c["kind"], c["metadata"]["name"]) for c in children}
    assert ("Milvus", "dev-milvus-cluster") in names
    assert not {("StatefulSet", "dev-milvus"), ("Service", "dev-milvus")} & names
    # nothing the Milvus Operator derives from the name meets a standalone child
    assert (
        not {("ConfigMap", "dev-milvus-cluster"), ("Service", "dev-milvus-cluster-milvus")} & names
    )
    milvus = the_milvus(children)
    assert milvus["apiVersion"] == "milvus.io/v1beta1"
    assert milvus["spec"]["mode"] == "cluster"
    assert milvus["metadata"]["ownerReferences"][0]["uid"] == the_cache.metadata.uid
    node_config = next(
        c for c in children if c["kind"] == "ConfigMap" and c["metadata"]["name"] == "dev-node"
    )
    milvus_config = yaml.safe_load(node_config["data"]["node.yaml"])["milvus"]
    assert milvus_config["uri"] == f"http://dev-milvus-cluster-milvus.{NAMESPACE}.svc:19530"
    assert [ref.kind for ref in expected_workloads(the_cache)] == ["Deployment"]  # the nodes


def test_defaults_retain_dependencies_and_run_woodpecker_on_a_20gi_minio() -> None:
    milvus = the_milvus(render_children(operator_cache(), [model_version()]))
    dependencies = milvus["spec"]["dependencies"]
    assert dependencies["msgStreamType"] == "woodpecker"
    assert set(dependencies) == {"etcd", "storage", "msgStreamType"}
    assert dependencies["etcd"] == {"inCluster": {"deletionPolicy": "Retain", "pvcDeletion": False}}
    assert dependencies["storage"]["inCluster"]["values"] == {
        "mode": "standalone",
        "persistence": {"size": "20Gi"},
    }
    components = milvus["spec"]["components"]
    assert components["resources"] == {
        "requests": {"cpu": "500m", "memory": "2Gi"},
        "limits": {"memory": "4Gi"},
    }
    assert [components[c]["replicas"] for c in ("proxy", "queryNode", "dataNode")] == [1, 1, 1]
    assert "imagePullSecrets" not in components


def test_spec_fields_reach_the_milvus() -> None:
    doc = operator_cache(
        image="registry.example/milvus:v2.6.16",
        resources={"requests": {"cpu": "2", "memory": "8Gi"}},
        cluster={"dataNodeReplicas": 2, "messageStream": "kafka"},
    ).to_api()
    doc["spec"]["imagePullSecrets"] = [{"name": "registry"}]
    milvus = the_milvus(render_children(SemanticCache.model_validate(doc), [model_version()]))
    components = milvus["spec"]["components"]
    assert components["image"] == "registry.example/milvus:v2.6.16"
    assert components["resources"] == {"requests": {"cpu": "2", "memory": "8Gi"}}
    assert components["imagePullSecrets"] == [{"name": "registry"}]
    assert components["dataNode"] == {"replicas": 2}
    dependencies = milvus["spec"]["dependencies"]
    assert dependencies["msgStreamType"] == "kafka"
    assert dependencies["kafka"] == {
        "inCluster": {"deletionPolicy": "Retain", "pvcDeletion": False}
    }


def test_the_cluster_section_needs_the_milvus_operator_engine() -> None:
    with pytest.raises(ValueError, match=r"semanticTier\.managed\.cluster is for engine"):
        cache("dev", semanticTier={"managed": {"cluster": {"proxyReplicas": 2}}})


def test_service_names_stay_dns_labels_for_long_cache_names() -> None:
    name = "a" * 63
    service = milvus_operator_service(name)
    assert len(service) <= CHILD_NAME_MAX_LENGTH + len("-milvus") <= 63
    assert service.endswith("-milvus-cluster-milvus")


def test_reading_the_milvus_status() -> None:
    assert milvus_cluster_state("dev-milvus-cluster", None) == MilvusClusterState(
        "dev-milvus-cluster", True
    )
    not_installed = milvus_cluster_state("dev-milvus-cluster", None, installed=False)
    assert not not_installed.installed
    assert not not_installed.available
    healthy = milvus_cluster_state(
        "dev-milvus-cluster",
        milvus_object(
            {
                "status": "Healthy",
                "observedGeneration": 2,
                "conditions": [{"type": "MilvusReady", "status": "True", "reason": "Ready"}],
            },
            generation=2,
        ),
    )
    assert healthy.available
    assert healthy.settled
    assert healthy.describe() == "Milvus dev-milvus-cluster: Healthy"
    behind = milvus_cluster_state(
        "dev-milvus-cluster",
        milvus_object({"status": "Healthy", "observedGeneration": 1}, generation=2),
    )
    assert behind.available
    assert not behind.settled
    unhealthy = milvus_cluster_state(
        "dev-milvus-cluster",
        milvus_object(
            {
                "status": "Unhealthy",
                "conditions": [
                    {
                        "type": "MilvusReady",
                        "status": "False",
                        "reason": "MilvusComponentNotHealthy",
                        "message": "querynode not ready",
                    }
                ],
            }
        ),
    )
    assert not unhealthy.available
    assert unhealthy.describe() == (
        "Milvus dev-milvus-cluster: Unhealthy (MilvusComponentNotHealthy: querynode not ready)"
    )
    assert milvus_cluster_state("dev-milvus-cluster", milvus_object(None)).status == ""


@pytest.mark.parametrize(
    ("milvus", "status", "reason"),
    [
        (
            MilvusClusterState("dev-milvus-cluster", installed=False),
            "False",
            "MilvusOperatorMissing",
        ),
        (MilvusClusterState("dev-milvus-cluster", installed=True), "False", "NotCreated"),
        (MilvusClusterState("dev-milvus-cluster", True, exists=True), "False", "Progressing"),
        (MilvusClusterState("dev-milvus-cluster", True, True, "Pending"), "False", "Progressing"),
        (
            MilvusClusterState("dev-milvus-cluster", True, True, "Unhealthy"),
            "False",
            "MilvusUnhealthy",
        ),
        (MilvusClusterState("dev-milvus-cluster", True, True, "Stopped"), "False", "MilvusStopped"),
        (MilvusClusterState("dev-milvus-cluster", True, True, "Weird!"), "False", "Progressing"),
        (MilvusClusterState("dev-milvus-cluster", True, True, "Healthy"), "True", "Healthy"),
    ],
)
def test_the_semantic_tier_follows_the_milvus(
    milvus: MilvusClusterState, status: str, reason: str
) -> None:
    found = conditions(milvus)
    tier = found[ConditionType.SEMANTIC_TIER_READY]
    assert (tier.status, tier.reason) == (status, reason)
    ready = found[ConditionType.READY]
    if status == "True":
        assert (ready.status, ready.reason) == ("True", "Ready")
    else:
        assert (ready.status, ready.reason) == ("False", "SemanticTierNotReady")
        assert "Milvus dev-milvus-cluster" in ready.message


def test_a_healthy_milvus_behind_its_spec_keeps_the_fleet_reconciling() -> None:
    behind = MilvusClusterState(
        "dev-milvus-cluster", True, True, "Healthy", generation_observed=False
    )
    found = conditions(behind)
    assert found[ConditionType.SEMANTIC_TIER_READY].status == "True"
    assert found[ConditionType.READY].status == "True"
    reconciling = found[ConditionType.RECONCILING]
    assert (reconciling.status, reconciling.reason) == ("True", "Progressing")
    assert "Milvus dev-milvus-cluster: Healthy" in reconciling.message


def test_not_read_is_not_created_in_the_status() -> None:
    the_cache = operator_cache()
    observed = observe_cache(the_cache, {}, health=TierHealth(redis=True, collected=True))
    status = semantic_cache_status(the_cache, [model_version()], observed, report=None, now=NOW)
    [tier] = [c for c in status.conditions if c.type == ConditionType.SEMANTIC_TIER_READY]
    assert (tier.status, tier.reason) == ("False", "NotCreated")
