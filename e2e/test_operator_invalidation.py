"""`CacheInvalidation` end to end: the operator (a real subprocess, real kube-apiserver) runs a
one-shot purge through two real cache nodes (real Redis, Milvus Lite, the real model) with
tenants: dry run vs real, tenant scope, semantic scope, never twice, audit Events, failure.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster import Cluster, Kubectl, wait_for
from lifecycle_harness import (
    first_chat,
    lookup,
    milvus_process,
    model_version_manifest,
    node_fleet,
    shared_tier_manifests,
)
from operator_harness import (
    OperatorProcess,
    condition,
    events,
    install_crds,
    model_dir,
    redis_process,
    running_operator,
    stub_upstream,
    wait_event,
)

KEYS = {"team-a": "key-team-a", "team-b": "key-team-b", "ops": "key-ops"}
TENANTS = [{"name": "team-a"}, {"name": "team-b"}, {"name": "ops", "admin": True}]


@pytest.fixture(scope="module")
def kubectl(kube_api: Cluster) -> Kubectl:
    install_crds(kube_api.kubectl)
    return kube_api.kubectl


@pytest.fixture
def operator(
    kube_api: Cluster, kubectl: Kubectl, api_namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    with running_operator(kube_api, tmp_path, namespaces=[api_namespace]) as process:
        yield process


def invalidation(ns: str, name: str, cache: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "cachefleet.io/v1alpha1",
        "kind": "CacheInvalidation",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"cacheRef": {"name": cache}, **spec},
    }


def finished(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj: dict[str, Any] = kubectl.json("get", "cinv", name, "-n", ns)
        phase = obj.get("status", {}).get("phase")
        return obj if phase in ("Succeeded", "Failed") else None

    return wait_for(probe, timeout_s=60, what=f"CacheInvalidation {name} to finish")


def entries(url: str, namespace: str) -> int:
    from lifecycle_harness import get_json

    report = get_json(f"{url}/v1/cache/namespaces", key=KEYS["ops"])  # admin only
    return int((report["entries"] or {}).get(namespace, 0))


def test_dry_run_then_a_tenant_scoped_purge_then_a_semantic_one(
    kubectl: Kubectl, api_namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    ns, name = api_namespace, "shared"
    with (
        redis_process(tmp_path) as redis_url,
        milvus_process(tmp_path) as milvus,
        stub_upstream(tmp_path) as upstream,
    ):
        keys_secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "tenant-keys", "namespace": ns},
            "stringData": KEYS,
        }
        auth = {"auth": {"apiKeysSecretRef": {"name": "tenant-keys"}, "tenants": TENANTS}}
        kubectl.apply(
            [
                keys_secret,
                model_version_manifest(ns),
                *shared_tier_manifests(
                    ns, name, redis_url=redis_url, milvus_uri=milvus, upstream=upstream,
                    model_versions=["gpt-4o-mini"], extra_spec=auth,
                ),
            ]
        )  # fmt: skip
        wait_for(
            lambda: (
                kubectl.run("get", "configmap", f"{name}-node", "-n", ns, check=False).returncode
                == 0
            ),
            timeout_s=60,
            what="the node ConfigMap",
        )
        env = {f"CACHEFLEET_TENANT_KEY_{i}": KEYS[t["name"]] for i, t in enumerate(TENANTS)}
        with node_fleet(
            kubectl=kubectl, namespace=ns, cache=name, workdir=tmp_path, redis_url=redis_url,
            model_dir=model_dir(), env=env,
        ) as fleet:  # fmt: skip
            fleet.start()
            prompts_a = [f"team A asks about invoice {i} and its due date" for i in range(4)]
            prompts_b = ["How do I rotate my API keys?", "Where is the VPN config?", "Lunch menu?"]
            namespace = ""
            for index, prompt in enumerate(prompts_a):
                reply = first_chat(fleet.urls[index % 2], prompt, key=KEYS["team-a"])
                assert reply.cache in ("miss", "hit-exact"), reply.headers
                namespace = reply.namespace
            for index, prompt in enumerate(prompts_b):
                reply = first_chat(fleet.urls[index % 2], prompt, key=KEYS["team-b"])
                assert reply.cache in ("miss", "hit-exact"), reply.headers
            wait_for(lambda: entries(fleet.urls[0], namespace) == 7, timeout_s=30, what="7 entries")

            # Dry run: counts, removes nothing.
            kubectl.apply(invalidation(ns, "dry", name, scope={"tenant": "team-a"}, dryRun=True))
            dry = finished(kubectl, ns, "dry")
            assert dry["status"]["phase"] == "Succeeded"
            assert dry["status"]["removed"]["store"] == 4
            assert dry["status"]["dryRun"] is True
            assert condition(dry, "Complete")["reason"] == "DryRun"  # type: ignore[index]
            assert entries(fleet.urls[0], namespace) == 7
            wait_event(kubectl, ns, "dry", "DryRun")
            _, row = kubectl("get", "cinv", "dry", "-n", ns).splitlines()
            assert row.split()[:3] == ["dry", "Succeeded", "4"]  # REMOVED shows what it matched

            # The real thing: team-a's entries go, team-b's stay.
            kubectl.apply(invalidation(ns, "purge-a", name, scope={"tenant": "team-a"}))
            done = finished(kubectl, ns, "purge-a")
            status = done["status"]
            assert status["phase"] == "Succeeded", status
            assert status["removed"]["store"] == 4
            assert status["removed"]["vectors"] == 4
            assert [n["cacheNamespace"] for n in status["namespaces"]] == [namespace]
            assert status["startTime"] <= status["completionTime"]
            assert condition(done, "Complete")["status"] == "True"  # type: ignore[index]
            assert condition(done, "Failed")["status"] == "False"  # type: ignore[index]
            assert entries(fleet.urls[1], namespace) == 3
            for url in fleet.urls:
                for prompt in prompts_a:
                    assert lookup(url, prompt, key=KEYS["team-a"]).body["result"] == "miss"
                for prompt in prompts_b:
                    assert lookup(url, prompt, key=KEYS["team-b"]).body["result"] == "hit-exact"
            audit = wait_event(kubectl, ns, "purge-a", "Invalidated")
            assert "removed 4 entries" in audit["message"]
            assert "tenant team-a" in audit["message"]
            wait_for(
                lambda: [
                    e
                    for e in events(kubectl, ns, name)
                    if e["reason"] == "CacheInvalidation" and "purge-a" in e["message"]
                ],
                timeout_s=30,
                what="the audit Event on the SemanticCache",
            )
            header, row = kubectl("get", "cinv", "purge-a", "-n", ns).splitlines()
            assert header.split() == ["NAME", "PHASE", "REMOVED", "AGE"]
            assert row.split()[:3] == ["purge-a", "Succeeded", "4"]

            # It never runs again: a metadata change wakes it up, nothing happens.
            completed = status["completionTime"]
            kubectl("annotate", "cinv", "purge-a", "-n", ns, "audit/reviewed=yes")
            time.sleep(2.0)
            again = kubectl.json("get", "cinv", "purge-a", "-n", ns)["status"]
            assert again["completionTime"] == completed
            assert [e["reason"] for e in events(kubectl, ns, "purge-a")].count("Invalidated") == 1

            # Semantic scope: only entries close to the text, across tenants (admin).
            semantic = {"similarTo": {"text": "how can I rotate my api keys", "minSimilarity": 0.8}}
            kubectl.apply(invalidation(ns, "similar-dry", name, scope=semantic, dryRun=True))
            assert finished(kubectl, ns, "similar-dry")["status"]["removed"]["store"] == 1
            _, row = kubectl("get", "cinv", "similar-dry", "-n", ns).splitlines()
            assert row.split()[:3] == ["similar-dry", "Succeeded", "1"]
            kubectl.apply(
                invalidation(
                    ns, "similar", name,
                    scope={"similarTo": {"text": "how can I rotate my api keys", "minSimilarity": 0.8}},
                )
            )  # fmt: skip
            similar = finished(kubectl, ns, "similar")
            assert similar["status"]["phase"] == "Succeeded", similar["status"]
            assert similar["status"]["removed"]["store"] == 1
            assert lookup(fleet.urls[0], prompts_b[0], key=KEYS["team-b"]).body["result"] == "miss"
            assert lookup(fleet.urls[0], prompts_b[1], key=KEYS["team-b"]).body["result"] == (
                "hit-exact"
            )
            assert (
                operator.metric("cachefleet_operator_invalidations_total", result="succeeded") == 2
            )
            assert operator.metric("cachefleet_operator_invalidations_total", result="dry_run") == 2


def test_an_invalidation_of_a_missing_cache_fails_once(
    kubectl: Kubectl, api_namespace: str, operator: OperatorProcess
) -> None:
    ns = api_namespace
    kubectl.apply(invalidation(ns, "nowhere", "no-such-cache"))
    failed = finished(kubectl, ns, "nowhere")
    assert failed["status"]["phase"] == "Failed"
    found = condition(failed, "Failed")
    assert found is not None
    assert (found["status"], found["reason"]) == ("True", "CacheNotFound")
    assert "no-such-cache" in failed["status"]["message"]
    wait_event(kubectl, ns, "nowhere", "InvalidationFailed")
    _, row = kubectl("get", "cinv", "nowhere", "-n", ns).splitlines()
    assert row.split()[1] == "Failed"
    assert operator.metric("cachefleet_operator_invalidations_total", result="failed") == 1
