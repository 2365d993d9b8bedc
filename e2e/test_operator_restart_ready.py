"""Ready across operator restarts, and Ready only at the fleet's declared minimum (issue 16,
point 4), on the real kube-apiserver (api profile: no controllers, so the test plays the
Deployment controller and the HorizontalPodAutoscaler by writing their fields).

- A cache on an external Redis (a real redis-server, checked by a real cache node process
  named in the endpoints annotation) is Ready; the operator is stopped with SIGTERM and started
  again, then SIGKILLed and started again. Every write of the cache is watched: `Ready` never
  leaves True, its `lastTransitionTime` stays, and no new `Ready` Event is posted.
- A cache with `nodes.autoscaling.minReplicas: 3` whose Deployment has 1 ready replica (what
  it has until the HorizontalPodAutoscaler scales it up) is not Ready (`NodesNotReady`, the
  message naming 1 ready of 3), and becomes Ready when 3 are.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cluster import Cluster, Kubectl, wait_for
from operator_harness import (
    EXAMPLES,
    OperatorProcess,
    cache_node,
    condition,
    documents,
    events,
    in_namespace,
    install_crds,
    json_patch,
    model_dir,
    node_config_from_configmap,
    redis_process,
    start_operator,
    stub_upstream,
    wait_condition,
)

MV = documents(EXAMPLES / "modelversion.yaml")[0]
DEV = documents(EXAMPLES / "semanticcache-dev.yaml")  # [Secret, SemanticCache]
IDENTITY = "cachefleet-operator-0"  # a restarted container of the same pod keeps its name
READY = '{.status.conditions[?(@.type=="Ready")]'


@pytest.fixture(scope="module")
def kubectl(kube_api: Cluster) -> Kubectl:
    install_crds(kube_api.kubectl)
    return kube_api.kubectl


def operator(cluster: Cluster, workdir: Path, ns: str, name: str) -> OperatorProcess:
    return start_operator(
        cluster,
        workdir,
        namespaces=[ns],
        name=name,
        extra=["--stats-interval=1", f"--identity={IDENTITY}"],
    )


def workload_ready(
    kubectl: Kubectl, kind: str, name: str, ns: str, *, ready: int, replicas: int | None = None
) -> None:
    """Write what the workload controller would: `ready` of `replicas` replicas ready."""
    obj = kubectl.json("get", kind, name, "-n", ns)
    total = replicas if replicas is not None else int(obj["spec"].get("replicas", 1))
    status = {
        "observedGeneration": obj["metadata"]["generation"],
        "replicas": total,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "updatedReplicas": total,
    }
    kubectl(
        "patch", kind, name, "-n", ns, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip


class ReadyWatch:
    """`kubectl get scache -w`: the Ready condition of every stored version of the cache."""

    def __init__(self, kubectl: Kubectl, ns: str, name: str) -> None:
        template = (
            "{.metadata.resourceVersion}|" + READY + ".status}|" + READY + ".reason}|"
            + READY + ".lastTransitionTime}|{.status.readyNodes}{\"\\n\"}"
        )  # fmt: skip
        home = kubectl.kubeconfig.parent
        argv = [
            str(kubectl.binary), f"--kubeconfig={kubectl.kubeconfig}",
            f"--cache-dir={home / '.kube-cache'}", "get", "scache", name, "-n", ns,
            "--watch", "-o", f"jsonpath={template}",
        ]  # fmt: skip
        self._process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={"KUBECONFIG": str(kubectl.kubeconfig), "PATH": "/usr/bin:/bin", "HOME": str(home)},
        )
        self.seen: list[tuple[str, str, str, str, str]] = []
        self.at: list[float] = []  # when each was seen (monotonic)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        wait_for(lambda: self.seen, timeout_s=30, what="the watch's first object")

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            parts = line.rstrip("\n").split("|")
            if len(parts) == 5:
                self.at.append(time.monotonic())
                self.seen.append((parts[0], parts[1], parts[2], parts[3], parts[4]))

    def stop(self) -> list[tuple[str, str, str, str, str]]:
        self._process.terminate()
        self._process.wait(timeout=10)
        self._thread.join(timeout=10)
        return self.seen

    def seconds(self, wanted: Callable[[tuple[str, str, str, str, str]], bool]) -> float:
        """How long the stored versions matching `wanted` were what clients read."""
        ends = [*self.at[1:], time.monotonic()]
        return sum(
            end - start
            for item, start, end in zip(self.seen, self.at, ends, strict=True)
            if wanted(item)
        )


def ready_events(kubectl: Kubectl, ns: str, name: str) -> int:
    return sum(
        int(e.get("count") or 1) for e in events(kubectl, ns, name) if e["reason"] == "Ready"
    )


def settle_after_start(process: OperatorProcess) -> None:
    """Until the new operator has reconciled the cache and collected its node a few times."""
    wait_for(
        lambda: (
            process.metric("cachefleet_operator_reconciles_total", kind="SemanticCache",
                           result="success") >= 1
            and process.metric("cachefleet_operator_stats_collections_total", result="ok") >= 3
        ),
        timeout_s=60,
        what="the restarted operator to reconcile and collect",
    )  # fmt: skip
    time.sleep(2)


def test_ready_stays_true_over_operator_restarts(
    kube_api: Cluster, kubectl: Kubectl, api_namespace: str, tmp_path: Path
) -> None:
    ns = api_namespace
    models = model_dir()
    first = operator(kube_api, tmp_path, ns, "op-first")
    running = [first]
    try:
        with redis_process(tmp_path) as redis_url, stub_upstream(tmp_path) as upstream:
            secret, cache = DEV
            secret = {**secret, "stringData": {"url": redis_url}}
            kubectl.apply([in_namespace(MV, ns), in_namespace(secret, ns), in_namespace(cache, ns)])
            wait_for(
                lambda: kubectl.run("get", "deployment", "dev-node", "-n", ns,
                                    check=False).returncode == 0,
                timeout_s=60,
                what="the dev node Deployment",
            )  # fmt: skip
            config = node_config_from_configmap(
                kubectl, ns, "dev", workdir=tmp_path, redis_url=redis_url, upstream=upstream,
                model_dir=models,
            )  # fmt: skip
            with cache_node(config, tmp_path, "dev-0") as node:
                json_patch(kubectl, "scache", "dev", ns,
                           {"metadata": {"annotations": {"cachefleet.io/node-endpoints": node}}})  # fmt: skip
                workload_ready(kubectl, "deployment", "dev-node", ns, ready=1)
                ready = condition(
                    wait_condition(kubectl, "scache", "dev", ns, "Ready", "True", timeout_s=60),
                    "Ready",
                )
                assert ready is not None
                settle_after_start(first)
                baseline_events = ready_events(kubectl, ns, "dev")
                assert baseline_events == 1

                watch = ReadyWatch(kubectl, ns, "dev")
                # SIGTERM, as Kubernetes stops a pod; a new process starts
                assert running.pop().stop() == 0
                second = operator(kube_api, tmp_path, ns, "op-second")
                running.append(second)
                settle_after_start(second)
                # SIGKILL: no shutdown at all
                killed = running.pop()
                killed.process.popen.send_signal(signal.SIGKILL)
                killed.process.popen.wait()
                third = operator(kube_api, tmp_path, ns, "op-third")
                running.append(third)
                settle_after_start(third)
                seen = watch.stop()
                not_true = watch.seconds(lambda item: item[1] != "True")
                new_events = ready_events(kubectl, ns, "dev") - baseline_events
                print(f"\nReady as stored over two restarts: {seen}; not True for "
                      f"{not_true:.2f} s; {new_events} new Ready Events")  # fmt: skip

                assert seen, "the watch saw nothing"
                flaps = [item for item in seen if item[1] != "True"]
                assert not flaps, f"Ready left True over a restart: {seen}"
                assert {item[3] for item in seen} == {ready["lastTransitionTime"]}, seen
                assert new_events == 0, [
                    (e["reason"], e["message"]) for e in events(kubectl, ns, "dev")
                ]
                # the carried-over conditions are confirmed by the new operator's observation
                final = kubectl.json("get", "scache", "dev", "-n", ns)
                exact = condition(final, "ExactTierReady")
                assert exact is not None
                assert exact["reason"] == "Reachable", exact
    finally:
        for process in running:
            assert process.stop() == 0, process.tail()


def test_autoscaled_nodes_are_ready_only_at_min_replicas(
    kube_api: Cluster, kubectl: Kubectl, api_namespace: str, tmp_path: Path
) -> None:
    ns = api_namespace
    cache: dict[str, Any] = {
        "apiVersion": "cachefleet.io/v1alpha1",
        "kind": "SemanticCache",
        "metadata": {"name": "scaled", "namespace": ns},
        "spec": {
            "modelVersions": [{"name": "gpt-4o-mini"}],
            "exactTier": {"managed": {}},
            "semanticTier": {"embedded": {}},
            "nodes": {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 6}},
            "upstream": {"baseURL": "http://llm-stub.default.svc:9000/v1"},
        },
    }
    process = operator(kube_api, tmp_path, ns, "op-scaled")
    try:
        kubectl.apply([in_namespace(MV, ns), cache])
        wait_for(
            lambda: all(
                kubectl.run("get", kind, name, "-n", ns, check=False).returncode == 0
                for kind, name in (("statefulset", "scaled-redis"), ("deployment", "scaled-node"),
                                   ("hpa", "scaled-node"))
            ),
            timeout_s=60,
            what="the children",
        )  # fmt: skip
        deployment = kubectl.json("get", "deployment", "scaled-node", "-n", ns)
        # no replicas in the operator's apply: the HorizontalPodAutoscaler owns the count, and
        # until it acts the Deployment runs the API server's default of 1
        assert deployment["spec"]["replicas"] == 1
        workload_ready(kubectl, "statefulset", "scaled-redis", ns, ready=1)
        workload_ready(kubectl, "deployment", "scaled-node", ns, ready=1)
        watch = ReadyWatch(kubectl, ns, "scaled")
        wait_for(
            lambda: kubectl.json("get", "scache", "scaled", "-n", ns)
            .get("status", {})
            .get("readyNodes") == 1,
            timeout_s=30,
            what="the operator to see 1 ready node",
        )  # fmt: skip
        time.sleep(4)  # several passes (children's watch events, the stats interval)
        ready = condition(kubectl.json("get", "scache", "scaled", "-n", ns), "Ready")
        assert ready is not None
        assert ready["status"] == "False", ready
        assert ready["reason"] == "NodesNotReady", ready
        assert ready["message"].endswith("1/1 ready, minimum 3"), ready

        # the autoscaler's first pass: 3 replicas, then they become ready one by one
        kubectl("scale", "deployment", "scaled-node", "-n", ns, "--replicas=3")
        for count in (2, 3):
            workload_ready(kubectl, "deployment", "scaled-node", ns, ready=count, replicas=3)
            if count < 3:
                time.sleep(2)
        wait_condition(kubectl, "scache", "scaled", ns, "Ready", "True", timeout_s=30)
        # a scale-up above the minimum keeps the fleet Ready while the new pods start
        kubectl("scale", "deployment", "scaled-node", "-n", ns, "--replicas=5")
        workload_ready(kubectl, "deployment", "scaled-node", ns, ready=3, replicas=5)
        wait_condition(kubectl, "scache", "scaled", ns, "Reconciling", "True", timeout_s=30)
        time.sleep(2)
        workload_ready(kubectl, "deployment", "scaled-node", ns, ready=5, replicas=5)
        wait_condition(kubectl, "scache", "scaled", ns, "Reconciling", "False", timeout_s=30)
        seen = watch.stop()
        too_few_s = watch.seconds(lambda item: item[1] == "True" and int(item[4] or 0) < 3)
        print(f"\nReady as stored while the nodes scaled: {seen}; "
              f"Ready=True with fewer than 3 nodes for {too_few_s:.2f} s")  # fmt: skip
        too_few = [item for item in seen if item[1] == "True" and int(item[4] or 0) < 3]
        assert not too_few, f"Ready=True with fewer nodes than minReplicas: {seen}"
        first_ready = next(i for i, item in enumerate(seen) if item[1] == "True")
        assert all(item[1] == "True" for item in seen[first_ready:]), seen
        assert ready_events(kubectl, ns, "scaled") == 1
    finally:
        assert process.stop() == 0, process.tail()
