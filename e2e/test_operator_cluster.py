"""The examples on the full local control plane: Ready on kwok nodes, then real traffic.

- `examples/semanticcache-gpu.yaml` (managed Redis and Milvus on volumes of the cluster's
  default StorageClass, GPU embedding pods, autoscaled nodes) becomes `Ready=True` on kwok's
  fake nodes: `kubectl wait` works, the GPU pods land on GPU nodes.
- `examples/semanticcache-dev.yaml` (external Redis from a Secret, Milvus Lite in the node):
  the node pods are kwok's, so a real `cachefleet-node` process runs the config the operator
  rendered, against a real redis-server and the stub upstream; the operator finds it through
  the (test/dev only) endpoints annotation, reports Ready and the hit rate in `kubectl get`.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from cluster import Cluster, Kubectl, wait_for
from operator_harness import (
    EXAMPLES,
    cache_node,
    chat,
    documents,
    in_namespace,
    install_crds,
    json_patch,
    model_dir,
    node_config_from_configmap,
    redis_process,
    running_operator,
    stub_upstream,
    wait_condition,
)

MV = documents(EXAMPLES / "modelversion.yaml")[0]
#: Prompts a chat client repeats (exact hits) and rephrases (semantic candidates).
PROMPTS = [
    "What is the capital of France?",
    "How do I reset my password?",
    "What's the capital city of France?",
    "How can I reset my password?",
]


@pytest.fixture(scope="module")
def kubectl(kube_cluster: Cluster) -> Kubectl:
    install_crds(kube_cluster.kubectl)
    return kube_cluster.kubectl


def pods(kubectl: Kubectl, namespace: str, component: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.json(
        "get", "pods", "-n", namespace, "-l", f"app.kubernetes.io/component={component}"
    )["items"]
    return items


def test_examples_become_ready_and_show_the_hit_rate(
    kube_cluster: Cluster,
    kubectl: Kubectl,
    cluster_namespace: str,
    tmp_path: Path,
) -> None:
    ns = cluster_namespace
    models = model_dir()
    with running_operator(
        kube_cluster,
        tmp_path,
        namespaces=[ns],
        extra=["--stats-interval=1"],
    ):
        # --- the production-shaped example on kwok nodes ---
        kubectl.apply(in_namespace(MV, ns))
        started = time.monotonic()
        kubectl("apply", "--server-side", "-n", ns, "-f", str(EXAMPLES / "semanticcache-gpu.yaml"))
        kubectl("wait", "--for=condition=Ready", "scache/chat", "-n", ns, "--timeout=180s")
        apply_to_ready = time.monotonic() - started
        print(f"\nchat (managed tiers, GPU embedding, autoscaled nodes): apply -> Ready in "
              f"{apply_to_ready:.1f}s")  # fmt: skip
        embedding = pods(kubectl, ns, "embedding")
        assert len(embedding) == 2
        assert all(p["spec"]["nodeName"].startswith("kwok-gpu-") for p in embedding)
        for component in ("node", "redis", "milvus"):
            assert all(
                not p["spec"]["nodeName"].startswith("kwok-gpu-")
                for p in pods(kubectl, ns, component)
            ), component
        chat_status = kubectl.json("get", "scache", "chat", "-n", ns)["status"]
        # Ready only at the declared minimum: the autoscaler (controller-manager's, 15 s
        # period) has scaled the node Deployment from its default of 1 to minReplicas (3)
        assert chat_status["readyNodes"] >= 3, chat_status
        conditions = {c["type"]: c["status"] for c in chat_status["conditions"]}
        expected = {
            "Ready": "True",
            "Reconciling": "False",
            "Stalled": "False",
            "ExactTierReady": "True",
            "SemanticTierReady": "True",
            "EmbeddingReady": "True",
            "NodesReady": "True",
        }
        assert expected.items() <= conditions.items(), conditions

        # --- the dev example: a real node process, real Redis, the stub upstream ---
        with redis_process(tmp_path) as redis_url, stub_upstream(tmp_path) as upstream:
            secret, cache = documents(EXAMPLES / "semanticcache-dev.yaml")
            secret = {**secret, "stringData": {"url": redis_url}}
            kubectl.apply([in_namespace(secret, ns), in_namespace(cache, ns)])
            wait_for(
                lambda: (
                    kubectl.run("get", "configmap", "dev-node", "-n", ns, check=False).returncode
                    == 0
                ),
                timeout_s=60,
                what="the dev node ConfigMap",
            )
            # Not Ready yet: no cache node has reported on the external Redis.
            wait_condition(kubectl, "scache", "dev", ns, "ExactTierReady", "Unknown")
            config = node_config_from_configmap(
                kubectl, ns, "dev", workdir=tmp_path, redis_url=redis_url, upstream=upstream,
                model_dir=models,
            )  # fmt: skip
            with cache_node(config, tmp_path, "dev-0") as node:
                json_patch(kubectl, "scache", "dev", ns,
                           {"metadata": {"annotations": {"cachefleet.io/node-endpoints": node}}})  # fmt: skip
                kubectl("wait", "--for=condition=Ready", "scache/dev", "-n", ns, "--timeout=60s")
                exact = kubectl.json("get", "scache", "dev", "-n", ns)
                assert (
                    next(c for c in exact["status"]["conditions"] if c["type"] == "ExactTierReady")[
                        "reason"
                    ]
                    == "Reachable"
                )

                results: list[str] = []

                def hit_rate_shown() -> str | None:
                    for prompt in PROMPTS:
                        results.append(chat(node, prompt)[0])
                    row = kubectl("get", "scache", "dev", "-n", ns).splitlines()[1].split()
                    shown = re.fullmatch(r"[01]\.[0-9]{2}", row[2]) and float(row[2]) > 0
                    return row[2] if shown else None  # 0.00 until the first round's
                    # write-backs land (the repeats of later rounds hit)

                wait_for(hit_rate_shown, timeout_s=90, interval_s=1.0,
                         what="a HIT-RATE above 0 in kubectl get scache")  # fmt: skip
                assert "hit-exact" in results
                status = kubectl.json("get", "scache", "dev", "-n", ns)["status"]
                print(
                    f"dev: results {sorted(set(results))}, status {json.dumps(status['hitRate'])}"
                )
                assert status["entries"] >= 2
                assert int(status["savings"]["tokens"]) > 0

                # A target above what the traffic achieves flips HitRateBelowTarget.
                json_patch(kubectl, "scache", "dev", ns, {"spec": {"targets": {"hitRate": 0.99}}})
                below = wait_condition(
                    kubectl, "scache", "dev", ns, "HitRateBelowTarget", "True", timeout_s=60
                )
                message = next(
                    c for c in below["status"]["conditions"] if c["type"] == "HitRateBelowTarget"
                )["message"]
                assert re.fullmatch(r"hit rate [01]\.[0-9]{2} < target 0\.99 over \S+", message)
                header = kubectl("get", "scache", "-n", ns).splitlines()[0]
                assert header.split()[:5] == ["NAME", "READY", "HIT-RATE", "MODEL", "ENTRIES"]
