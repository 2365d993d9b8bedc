"""Rendered children: golden YAML per fleet shape, plus the properties every child must have.

Regenerate the goldens with CACHEFLEET_UPDATE_GOLDEN=1 after an intended change, and review
the diff.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import yaml
from operator_testdata import (
    CACHE_UID,
    EXAMPLES,
    GOLDEN,
    NAMESPACE,
    cache,
    documents,
    model_version,
)

from cachefleet_operator.api.v1alpha1 import SemanticCache
from cachefleet_operator.domain.manifests import CONFIG_HASH_ANNOTATION, Manifest, owner_reference
from cachefleet_operator.domain.nodeconfig import SpecError
from cachefleet_operator.domain.render import (
    MILVUS_CLUSTER,
    FleetView,
    owned_kinds,
    render_children,
)

CLAUDE = model_version("claude", model="claude-sonnet", version="4", requestModels=["claude-*"])
MANAGED_EXTERNAL = {
    "modelVersions": [{"name": "gpt-4o-mini"}, {"name": "claude"}],
    "exactTier": {"managed": {"maxMemory": "1Gi", "evictionPolicy": "allkeys-lru"}},
    "semanticTier": {
        "external": {
            "uri": "https://milvus.vector.svc:19530",
            "tokenSecretRef": {"name": "milvus", "key": "token"},
        }
    },
    "embedding": {"mode": "local"},
    "nodes": {"replicas": 3, "modelCacheClaimName": "hf-cache"},
    "auth": None,
    "deletionPolicy": "Delete",
    "imagePullSecrets": [{"name": "registry"}],
}


#: Milvus distributed through the Milvus Operator; the rest as in the GPU example.
MILVUS_OPERATOR = {
    "semanticTier": {
        "managed": {
            "engine": "milvusOperator",
            "persistence": {"size": "50Gi", "storageClassName": "fast-ssd"},
            "cluster": {"queryNodeReplicas": 3, "proxyReplicas": 2, "messageStream": "pulsar"},
        }
    },
    "deletionPolicy": "Delete",
}


def fleet(shape: str) -> tuple[SemanticCache, list[Any]]:
    if shape == "chat-gpu":
        return cache("chat"), [model_version()]
    if shape == "dev-embedded":
        return cache("dev"), [model_version()]
    if shape == "redis-cluster":
        return cache("shared"), [model_version()]
    if shape == "milvus-operator":
        return cache("chat", **MILVUS_OPERATOR), [model_version()]
    return cache("chat", **MANAGED_EXTERNAL), [model_version(), CLAUDE]


SHAPES = ["chat-gpu", "dev-embedded", "managed-external", "milvus-operator", "redis-cluster"]


class GoldenDumper(yaml.SafeDumper):
    """YAML for review: no anchors (shared objects would hide as `*id001`), text as blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text_block(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


GoldenDumper.add_representer(str, _text_block)


@pytest.mark.parametrize("shape", SHAPES)
def test_children_match_the_golden_file(shape: str) -> None:
    golden = GOLDEN / f"{shape}.yaml"
    children = render_children(*fleet(shape))
    text = yaml.dump_all(children, Dumper=GoldenDumper, sort_keys=False, width=100)
    if os.environ.get("CACHEFLEET_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"regenerate with CACHEFLEET_UPDATE_GOLDEN=1 ({golden})"


def kinds(children: list[Manifest]) -> list[str]:
    return [child["kind"] for child in children]


def find(children: list[Manifest], kind: str, name: str) -> Manifest:
    return next(c for c in children if c["kind"] == kind and c["metadata"]["name"] == name)


def pod_spec(workload: Manifest) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


@pytest.mark.parametrize("shape", SHAPES)
def test_every_child_is_labelled_owned_and_named(shape: str) -> None:
    the_cache, model_versions = fleet(shape)
    children = render_children(the_cache, model_versions)
    owned = {(kind.api_version, kind.kind) for kind in (*owned_kinds(), MILVUS_CLUSTER)}
    seen = set()
    for child in children:
        metadata = child["metadata"]
        assert (child["apiVersion"], child["kind"]) in owned
        assert metadata["namespace"] == NAMESPACE
        assert metadata["ownerReferences"] == [owner_reference(the_cache)]
        assert len(metadata["name"]) <= 52
        assert metadata["name"].startswith(f"{the_cache.metadata.name}-")
        labels = metadata["labels"]
        assert labels["app.kubernetes.io/instance"] == the_cache.metadata.name
        assert labels["app.kubernetes.io/part-of"] == "cachefleet"
        assert labels["app.kubernetes.io/managed-by"] == "cachefleet-operator"
        assert {"app.kubernetes.io/name", "app.kubernetes.io/component"} <= set(labels)
        key = (child["kind"], metadata["name"])
        assert key not in seen
        seen.add(key)
        if child["kind"] in ("Deployment", "StatefulSet"):
            selector = child["spec"]["selector"]["matchLabels"]
            assert selector.items() <= child["spec"]["template"]["metadata"]["labels"].items()
            spec = pod_spec(child)
            assert spec["automountServiceAccountToken"] is False
            for container in spec["containers"]:
                security = container["securityContext"]
                assert security["allowPrivilegeEscalation"] is False
                assert security["capabilities"] == {"drop": ["ALL"]}


def test_owner_reference_points_at_the_cache() -> None:
    assert owner_reference(cache()) == {
        "apiVersion": "cachefleet.io/v1alpha1",
        "kind": "SemanticCache",
        "name": "chat",
        "uid": CACHE_UID,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_gpu_fleet_children() -> None:
    children = render_children(*fleet("chat-gpu"))
    assert kinds(children) == [
        "ConfigMap", "Service", "StatefulSet",  # redis
        "ConfigMap", "Service", "StatefulSet",  # milvus
        "Deployment", "Service",  # embedding
        "ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler",
    ]  # fmt: skip
    embedding = pod_spec(find(children, "Deployment", "chat-embedding"))
    [container] = embedding["containers"]
    assert container["args"] == [
        "--model-id", "sentence-transformers/all-MiniLM-L6-v2", "--port", "8080",
    ]  # fmt: skip
    assert container["resources"]["limits"] == {"memory": "8Gi", "nvidia.com/gpu": 1}
    assert embedding["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert embedding["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    nodes = find(children, "Deployment", "chat-node")
    assert "replicas" not in nodes["spec"]  # the HorizontalPodAutoscaler owns it
    hpa = find(children, "HorizontalPodAutoscaler", "chat-node")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    assert find(children, "PodDisruptionBudget", "chat-node")["spec"]["minAvailable"] == 2
    redis = find(children, "StatefulSet", "chat-redis")
    claim = redis["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert redis["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
    conf = find(children, "ConfigMap", "chat-redis")["data"]["redis.conf"]
    assert "maxmemory 4294967296\n" in conf
    assert "appendonly yes\n" in conf


def test_gpu_model_id_override() -> None:
    doc = cache().to_api()
    doc["spec"]["embedding"]["gpu"]["modelID"] = "/models/all-MiniLM-L6-v2"
    children = render_children(SemanticCache.model_validate(doc), [model_version()])
    args = pod_spec(find(children, "Deployment", "chat-embedding"))["containers"][0]["args"]
    assert args[:2] == ["--model-id", "/models/all-MiniLM-L6-v2"]


def test_dev_fleet_has_only_the_nodes() -> None:
    children = render_children(*fleet("dev-embedded"))
    assert kinds(children) == ["ConfigMap", "Deployment", "Service"]  # one node: no PDB
    deployment = find(children, "Deployment", "dev-node")
    assert deployment["spec"]["replicas"] == 1
    [container] = pod_spec(deployment)["containers"]
    assert container["command"] == [
        "cachefleet-node", "serve", "--config", "/etc/cachefleet/node.yaml",
    ]  # fmt: skip
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert {
        "/etc/cachefleet",
        "/var/lib/cachefleet",
        "/var/cache/cachefleet/models",
        "/tmp",
    } <= mounts
    security = pod_spec(deployment)["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    env = {e["name"]: e for e in container["env"]}
    assert env["CACHEFLEET_REDIS__URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "dev-redis",
        "key": "url",
    }
    service = find(children, "Service", "dev-node")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "appProtocol": "http"}
    ]


def test_managed_redis_defaults_and_external_milvus() -> None:
    children = render_children(*fleet("managed-external"))
    assert "volumeClaimTemplates" not in find(children, "StatefulSet", "chat-redis")["spec"]
    redis = pod_spec(find(children, "StatefulSet", "chat-redis"))
    assert redis["containers"][0]["resources"] == {
        "requests": {"cpu": "100m", "memory": "1280Mi"},
        "limits": {"memory": "1280Mi"},
    }
    assert {"name": "data", "emptyDir": {}} in redis["volumes"]
    conf = find(children, "ConfigMap", "chat-redis")["data"]["redis.conf"]
    assert "maxmemory-policy allkeys-lru\n" in conf
    assert 'save ""\n' in conf
    nodes = pod_spec(find(children, "Deployment", "chat-node"))
    env = {e["name"]: e for e in nodes["containers"][0]["env"]}
    assert env["CACHEFLEET_REDIS__URL"] == {
        "name": "CACHEFLEET_REDIS__URL",
        "value": f"redis://chat-redis.{NAMESPACE}.svc:6379/0",
    }
    assert env["CACHEFLEET_MILVUS__TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "milvus",
        "key": "token",
    }
    assert not any(name.startswith("CACHEFLEET_TENANT_KEY_") for name in env)  # no auth
    assert nodes["imagePullSecrets"] == [{"name": "registry"}]
    assert {"name": "models", "persistentVolumeClaim": {"claimName": "hf-cache"}} in nodes[
        "volumes"
    ]
    assert not [c for c in children if c["metadata"]["name"] == "chat-milvus"]  # external


def test_no_secret_value_is_ever_rendered() -> None:
    secrets = [
        value
        for path in EXAMPLES.glob("*.yaml")
        for doc in documents(path)
        if doc["kind"] == "Secret"
        for value in doc["stringData"].values()
    ]
    assert secrets
    for shape in SHAPES:
        text = json.dumps(render_children(*fleet(shape)))
        for value in secrets:
            assert value not in text


def test_a_config_change_rolls_the_node_pods() -> None:
    def node_hash(the_cache: SemanticCache) -> str:
        deployment = find(render_children(the_cache, [model_version()]), "Deployment", "dev-node")
        return deployment["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]

    base = node_hash(cache("dev"))
    assert node_hash(cache("dev")) == base
    assert node_hash(cache("dev", policies={"similarityThreshold": 0.95})) != base
    assert node_hash(cache("dev", nodes={"replicas": 4})) == base  # not a config change


def test_a_namespace_switch_changes_the_config_map_but_does_not_roll_the_nodes() -> None:
    """The lifecycle switches running nodes in place; the ConfigMap follows for pods that
    start later, and the pods' config hash leaves the cache namespace out (no fleet restart)."""
    mv = model_version()

    def node_children(served: dict[str, str] | None) -> tuple[str, str]:
        fleet_view = (
            FleetView(served=served, embedding=(mv.spec.embedding_model, None))
            if served is not None
            else None
        )
        children = render_children(cache("dev"), [mv], fleet=fleet_view)
        deployment = find(children, "Deployment", "dev-node")
        config_map = find(children, "ConfigMap", "dev-node")
        return (
            deployment["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION],
            config_map["data"]["node.yaml"],
        )

    base_hash, base_config = node_children(None)
    switched_hash, switched_config = node_children({mv.metadata.name: "gpt-4o-mini-0123456789"})
    assert "gpt-4o-mini-0123456789" in switched_config
    assert switched_config != base_config
    assert switched_hash == base_hash
    # Anything else about the namespace still rolls the pods (the node reads it at start).
    moved = model_version(requestModels=["gpt-4o-mini"])
    deployment = find(render_children(cache("dev"), [moved]), "Deployment", "dev-node")
    assert deployment["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION] != (
        base_hash
    )


NEXT_MODEL = "BAAI/bge-small-en-v1.5"


def _migration_rolls(shape: str) -> tuple[list[str], list[str]]:
    """(node config hash, node.yaml) at each step of an embedding migration of a fleet shape:
    before, Preparing..Switching (next model named), done (the next model serves)."""
    the_cache, model_versions = fleet(shape)
    current = model_versions[0].spec.embedding_model
    served = {mv.metadata.name: f"{mv.metadata.name}-0123456789" for mv in model_versions}
    hashes, configs = [], []
    for embedding in ((current, None), (current, NEXT_MODEL), (NEXT_MODEL, None)):
        children = render_children(
            the_cache, model_versions, FleetView(served=served, embedding=embedding)
        )
        name = f"{the_cache.metadata.name}-node"
        deployment = find(children, "Deployment", name)
        hashes.append(
            deployment["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
        )
        configs.append(find(children, "ConfigMap", name)["data"]["node.yaml"])
    return hashes, configs


@pytest.mark.parametrize("shape", ["dev-embedded", "managed-external"])
def test_an_embedding_migration_with_in_node_embedding_rolls_no_node_pod(shape: str) -> None:
    """The nodes load and drop the next model live from the ConfigMap and already serve it
    when the file names it: the pod template never changes (Milvus Lite in an emptyDir keeps
    every vector)."""
    hashes, configs = _migration_rolls(shape)
    assert len(set(configs)) == 3  # the ConfigMap says each step
    assert "embedding_next" in configs[1]
    assert NEXT_MODEL in configs[1]
    assert "embedding_next" not in configs[2]
    assert NEXT_MODEL in configs[2]
    assert len(set(hashes)) == 1, hashes


def test_an_embedding_migration_with_gpu_embedding_rolls_the_node_pods_once_at_the_end() -> None:
    """Loading the next model is live; the end moves the nodes back onto the GPU pods (which
    now serve the new model): exactly one rollout, after the switch."""
    hashes, configs = _migration_rolls("chat-gpu")
    assert "embedding_next" in configs[1]
    assert hashes[0] == hashes[1] != hashes[2]
    the_cache, model_versions = fleet("chat-gpu")
    served = {mv.metadata.name: "x" for mv in model_versions}
    gpu = find(
        render_children(
            the_cache, model_versions, FleetView(served=served, embedding=(NEXT_MODEL, None))
        ),
        "Deployment",
        "chat-embedding",
    )
    assert NEXT_MODEL in gpu["spec"]["template"]["spec"]["containers"][0]["args"]


def test_a_change_of_embedding_mode_still_rolls_the_node_pods() -> None:
    local = find(render_children(cache("dev"), [model_version()]), "Deployment", "dev-node")
    gpu_cache = cache("dev", embedding={"mode": "gpu", "gpu": {"replicas": 1}})
    gpu = find(render_children(gpu_cache, [model_version()]), "Deployment", "dev-node")
    annotations = [
        d["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
        for d in (local, gpu)
    ]
    assert annotations[0] != annotations[1]


def test_rendering_is_deterministic_and_leaves_the_input_alone() -> None:
    the_cache, model_versions = fleet("chat-gpu")
    before = the_cache.model_dump()
    assert render_children(the_cache, model_versions) == render_children(the_cache, model_versions)
    assert the_cache.model_dump() == before


def test_unresolvable_specs_raise_spec_errors() -> None:
    with pytest.raises(SpecError) as missing:
        render_children(cache("dev"), [])
    assert missing.value.reason == "ModelVersionNotFound"
    without_uid = cache("dev")
    without_uid.metadata.uid = None
    with pytest.raises(ValueError, match="uid"):
        render_children(without_uid, [model_version()])


def test_owned_kinds_cover_everything_rendered() -> None:
    rendered = {
        (child["apiVersion"], child["kind"])
        for shape in SHAPES
        for child in render_children(*fleet(shape))
    }
    assert rendered == {(kind.api_version, kind.kind) for kind in (*owned_kinds(), MILVUS_CLUSTER)}


def test_children_share_no_mutable_objects() -> None:
    """A handler may patch one manifest without changing another by accident."""
    seen: set[int] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict | list):
            assert id(value) not in seen, "an object is shared between manifests"
            seen.add(id(value))
            for child in value.values() if isinstance(value, dict) else value:
                walk(child)

    rendered = [render_children(*fleet(shape)) for shape in SHAPES]  # alive: ids stay unique
    walk(rendered)


def test_an_external_redis_cluster_is_only_config_no_redis_workload() -> None:
    children = render_children(*fleet("redis-cluster"))
    assert not [c for c in children if c["metadata"]["name"] == "shared-redis"]
    node_yaml = find(children, "ConfigMap", "shared-node")["data"]["node.yaml"]
    redis = yaml.safe_load(node_yaml)["redis"]
    assert (redis["mode"], redis["nodes"]) == (
        "cluster",
        [
            "redis-cluster-1.redis-cluster.data.svc:6379",
            "redis-cluster-2.redis-cluster.data.svc:6379",
        ],
    )
    assert "replace-with-the-redis-password" not in node_yaml
    env = {
        e["name"]: e
        for e in pod_spec(find(children, "Deployment", "shared-node"))["containers"][0]["env"]
    }
    assert env["CACHEFLEET_REDIS__URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "shared-redis",
        "key": "url",
    }
