"""Model-version lifecycle end to end (issue 5): the operator as a real subprocess on a real
kube-apiserver, two real cache node processes (rendered from its ConfigMap) sharing a real
redis-server and a Milvus Lite server, the real embedding model, the stub upstream.

- Rollover: the switch is coherent (after status reports it, no answer comes from the old
  namespace on either node), the old namespace is purged after `retainFor` (Redis keys and
  Milvus rows checked directly), `kubectl get scache` shows the new version throughout; the
  switch time (ModelVersion edit → every node on the new namespace) is measured.
- Flush and Keep; rollback within retention; warm-up refills the most-hit prompts.
- Embedding-model change: thousands of entries re-embedded, the operator killed half-way and
  restarted, the same hit behaviour at the end; the throughput is measured. The nodes load
  the next model live (no rollout: the Deployment's generation and config hash stay), and
  after a later rollout with fresh node data dirs the hits are kept. With Milvus Lite in the
  nodes (`semanticTier.embedded`), the same: no rollout, every node keeps its vectors; a
  migration that would end with a rollout there (GPU embedding) is refused, visibly.

Set CACHEFLEET_RECORD_BENCHMARKS=1 to write the measurements to docs/benchmarks/lifecycle.json.
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster import Cluster, Kubectl, wait_for
from lifecycle_harness import (
    NodeFleet,
    active_namespace,
    chat,
    first_chat,
    lookup,
    milvus_rows,
    model_version_manifest,
    node_fleet,
    redis_keys,
    scache,
    shared_tier_manifests,
    store,
    stub_calls,
)
from operator_harness import (
    OperatorProcess,
    condition,
    events,
    install_crds,
    json_patch,
    model_dir,
    running_operator,
    start_operator,
    wait_event,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "benchmarks" / "lifecycle.json"
MV = "gpt-4o-mini"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
COPY = "cachefleet-test/all-minilm-l6-v2-copy"  # the same model files under another id


@pytest.fixture(scope="module")
def kubectl(kube_api: Cluster) -> Kubectl:
    install_crds(kube_api.kubectl)
    return kube_api.kubectl


@pytest.fixture
def operator(
    kube_api: Cluster, kubectl: Kubectl, api_namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    with running_operator(
        kube_api, tmp_path, namespaces=[api_namespace], extra=["--stats-interval=2"]
    ) as process:
        yield process


def record(section: str, values: dict[str, Any]) -> None:
    """Print a measurement; with CACHEFLEET_RECORD_BENCHMARKS=1 also keep it in the JSON."""
    print(f"\n[lifecycle] {section}: {json.dumps(values)}")
    if os.environ.get("CACHEFLEET_RECORD_BENCHMARKS") != "1":
        return
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[section] = {**values, "machine": "2 shared cores", "recorded": time.strftime("%F")}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def settled(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any] | None:
    """The cache once nothing rolls over and nothing waits for a purge."""
    obj = scache(kubectl, ns, name)
    status = obj.get("status", {})
    rolling = condition(obj, "RollingOver")
    if rolling and rolling["status"] == "False" and not status.get("retainedNamespaces"):
        return obj
    return None


def model_column(kubectl: Kubectl, ns: str, name: str) -> str:
    """The MODEL column of `kubectl get scache` (cut by the header's positions: HIT-RATE may
    be empty)."""
    header, row = kubectl("get", "scache", name, "-n", ns).splitlines()
    start = header.index("MODEL")
    end = header.index("ENTRIES")
    return row[start:end].strip()


def start_cache(
    kubectl: Kubectl,
    ns: str,
    name: str,
    *,
    redis_url: str,
    milvus: str,
    upstream: str,
    mv: dict[str, Any],
    extra_spec: dict[str, Any] | None = None,
) -> None:
    manifests = shared_tier_manifests(
        ns,
        name,
        redis_url=redis_url,
        milvus_uri=milvus,
        upstream=upstream,
        model_versions=[MV],
        extra_spec=extra_spec,
    )
    kubectl.apply([mv, *manifests])
    wait_for(
        lambda: (
            kubectl.run("get", "configmap", f"{name}-node", "-n", ns, check=False).returncode == 0
        ),
        timeout_s=60,
        what="the node ConfigMap",
    )


def fill(fleet: NodeFleet, prompts: list[str], namespace: str) -> None:
    """Each prompt through the proxy (a miss), until both nodes find it in the shared tier."""
    for index, prompt in enumerate(prompts):
        reply = first_chat(fleet.urls[index % len(fleet.urls)], prompt)
        # (a retried bypass may already have been written back: a hit then)
        assert (reply.status, reply.namespace) == (200, namespace), reply
        assert reply.cache in ("miss", "hit-exact"), reply
    for url in fleet.urls:
        for prompt in prompts:
            wait_for(
                lambda u=url, p=prompt: lookup(u, p).body["result"] == "hit-exact",
                timeout_s=30,
                what=f"{prompt!r} stored",
            )


# --- rollover -------------------------------------------------------------------------------


class Traffic:
    """Requests to both nodes in a loop: (start time, node, namespace header, cache result)."""

    def __init__(self, urls: list[str], prompts: list[str]) -> None:
        self.urls, self.prompts = urls, prompts
        self.samples: list[tuple[float, str, str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = random.Random(5)
        while not self._stop.is_set():
            url = rng.choice(self.urls)
            started = time.monotonic()
            reply = chat(url, rng.choice(self.prompts))
            if reply.status == 200:
                self.samples.append((started, url, reply.namespace, reply.cache))

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def test_rollover_is_coherent_and_purges_the_old_namespace_after_retention(
    kubectl: Kubectl,
    api_namespace: str,
    operator: OperatorProcess,
    tmp_path: Path,
    redis_url: str,
    milvus: str,
    upstream: str,
) -> None:
    ns, name = api_namespace, "chat"
    mv = model_version_manifest(ns, version="v1", rollover={"retainFor": "5s"})
    start_cache(kubectl, ns, name, redis_url=redis_url, milvus=milvus, upstream=upstream, mv=mv)
    prompts = [f"How do I configure feature {i} of the billing service?" for i in range(12)]
    with node_fleet(
        kubectl=kubectl, namespace=ns, cache=name, workdir=tmp_path, redis_url=redis_url,
        model_dir=model_dir(),
    ) as fleet:  # fmt: skip
        fleet.start()
        old = wait_for(lambda: active_namespace(kubectl, ns, name), timeout_s=30, what="status")
        wait_for(lambda: settled(kubectl, ns, name), timeout_s=30, what="RollingOver=False")
        assert condition(scache(kubectl, ns, name), "RollingOver")["reason"] == "Idle"  # type: ignore[index]
        fill(fleet, prompts, old)
        for url in fleet.urls:
            assert chat(url, prompts[0]).cache == "hit-exact"
        collection = fleet.namespaces()["embedding"]["active"]["collection"]
        assert any(f":{old}" in key for key in redis_keys(redis_url))
        assert milvus_rows(milvus, collection, old) > 0
        assert model_column(kubectl, ns, name) == "gpt-4o-mini@v1"

        with Traffic(fleet.urls, prompts) as traffic:
            time.sleep(1.0)
            edited = time.monotonic()
            json_patch(kubectl, "mv", MV, ns, {"spec": {"version": "v2"}})

            def all_switched() -> bool:
                return all(active[MV] != old for active in fleet.active())

            wait_for(all_switched, timeout_s=30, interval_s=0.02, what="every node switched")
            nodes_switched = time.monotonic()
            new = wait_for(
                lambda: (a := active_namespace(kubectl, ns, name)) != old and a,
                timeout_s=30,
                interval_s=0.05,
                what="the switch in status",
            )
            reported = time.monotonic()
            assert model_column(kubectl, ns, name) == "gpt-4o-mini@v2"
            wait_for(
                lambda: (
                    [
                        p["cacheNamespace"]
                        for p in kubectl.json("get", "mv", MV, "-n", ns)["status"].get(
                            "previousNamespaces", []
                        )
                    ]
                    == [old]
                ),
                timeout_s=10,
                what="the ModelVersion's previousNamespaces",
            )
            time.sleep(3.0)  # traffic after the switch was reported
        after = [s for s in traffic.samples if s[0] >= reported]
        assert len(after) >= 10, len(after)
        assert {s[2] for s in after} == {new}, "an answer came from the old namespace"
        assert {s[1] for s in after} == set(fleet.urls)
        for url in fleet.urls:
            for prompt in prompts:
                reply = chat(url, prompt)
                assert reply.namespace == new, (url, prompt, reply.headers)

        # MODEL shows the new version throughout, until and after the purge.
        def purged() -> dict[str, Any] | None:
            assert model_column(kubectl, ns, name) == "gpt-4o-mini@v2"
            return settled(kubectl, ns, name)

        done = wait_for(purged, timeout_s=60, interval_s=0.5, what="the old namespace purged")
        purge_seen = time.monotonic()
        rolled = condition(done, "RollingOver")
        assert rolled is not None
        assert rolled["reason"] == "Completed"
        wait_event(kubectl, ns, name, "Purged")
        for index in range(len(fleet.urls)):
            assert (fleet.namespaces(index)["entries"] or {}).get(old, 0) == 0
        assert [key for key in redis_keys(redis_url) if old in key] == []
        assert milvus_rows(milvus, collection, old) == 0
        assert milvus_rows(milvus, collection, new) > 0
        reasons = [e["reason"] for e in events(kubectl, ns, name)]
        for reason in ("RolloverStarted", "NamespaceSwitched", "Purged"):
            assert reason in reasons, reasons
        assert operator.metric("cachefleet_operator_rollovers_total", policy="Rollover") == 1
        assert operator.metric("cachefleet_operator_purged_entries_total", reason="retention") >= 12
        assert kubectl.json("get", "mv", MV, "-n", ns)["status"]["cacheNamespace"] == new
    record(
        "rollover",
        {
            "switch_s": round(nodes_switched - edited, 3),
            "switch_reported_in_status_s": round(reported - edited, 3),
            "purged_after_edit_s": round(purge_seen - edited, 1),
            "retain_for": "5s",
            "nodes": 2,
            "requests_after_switch": len(after),
            "answers_from_old_namespace_after_switch": 0,
        },
    )


def test_flush_purges_at_once_and_keep_keeps_the_namespace(
    kubectl: Kubectl,
    api_namespace: str,
    operator: OperatorProcess,
    tmp_path: Path,
    redis_url: str,
    milvus: str,
    upstream: str,
) -> None:
    ns, name = api_namespace, "flushed"
    mv = model_version_manifest(ns, version="v1", policy="Flush")
    start_cache(kubectl, ns, name, redis_url=redis_url, milvus=milvus, upstream=upstream, mv=mv)
    prompts = ["What is our refund window?", "Where do I download invoices?", "Who approves leave?"]
    with node_fleet(
        kubectl=kubectl, namespace=ns, cache=name, workdir=tmp_path, redis_url=redis_url,
        model_dir=model_dir(),
    ) as fleet:  # fmt: skip
        fleet.start()
        old = wait_for(lambda: active_namespace(kubectl, ns, name), timeout_s=30, what="status")
        fill(fleet, prompts, old)
        json_patch(kubectl, "mv", MV, ns, {"spec": {"version": "v2"}})
        new = wait_for(
            lambda: (a := active_namespace(kubectl, ns, name)) != old and a,
            timeout_s=30,
            what="the switch",
        )
        wait_for(lambda: settled(kubectl, ns, name), timeout_s=30, what="the flush")
        assert [key for key in redis_keys(redis_url) if old in key] == []
        assert (fleet.namespaces()["entries"] or {}).get(old, 0) == 0
        assert operator.metric("cachefleet_operator_purged_entries_total", reason="flush") == 3
        assert chat(fleet.urls[1], prompts[0]).namespace == new
        assert kubectl.json("get", "mv", MV, "-n", ns)["status"].get("previousNamespaces", []) == []
        wait_for(lambda: lookup(fleet.urls[0], prompts[0]).body["result"] == "hit-exact",
                 timeout_s=30, what="the new answer stored")  # fmt: skip

        # Keep: a new version declared answer-compatible: same namespace, still hits.
        json_patch(kubectl, "mv", MV, ns, {"spec": {"policy": "Keep", "version": "v3"}})
        wait_for(
            lambda: model_column(kubectl, ns, name) == "gpt-4o-mini@v3",
            timeout_s=30,
            what="MODEL v3",
        )
        assert active_namespace(kubectl, ns, name) == new
        assert kubectl.json("get", "mv", MV, "-n", ns)["status"]["cacheNamespace"] == new
        for url in fleet.urls:
            reply = chat(url, prompts[0])
            assert (reply.namespace, reply.cache) == (new, "hit-exact")
        wait_event(kubectl, ns, MV, "CacheNamespaceKept")
        assert "CacheNamespaceKept" in [e["reason"] for e in events(kubectl, ns, name)]
        assert settled(kubectl, ns, name) is not None


def test_rollback_within_retention_and_warm_up_of_the_top_prompts(
    kubectl: Kubectl,
    api_namespace: str,
    operator: OperatorProcess,
    tmp_path: Path,
    redis_url: str,
    milvus: str,
    upstream: str,
) -> None:
    ns, name = api_namespace, "warmed"
    rollover = {"retainFor": "10m", "warm": {"topN": 4, "ratePerSecond": 20}}
    mv = model_version_manifest(ns, version="v1", rollover=rollover)
    start_cache(kubectl, ns, name, redis_url=redis_url, milvus=milvus, upstream=upstream, mv=mv)
    hot = [f"Hot question number {i}: how do I reset the router?" for i in range(4)]
    cold = [f"Cold question number {i}: which cable is the uplink?" for i in range(4)]
    with node_fleet(
        kubectl=kubectl, namespace=ns, cache=name, workdir=tmp_path, redis_url=redis_url,
        model_dir=model_dir(),
    ) as fleet:  # fmt: skip
        fleet.start()
        old = wait_for(lambda: active_namespace(kubectl, ns, name), timeout_s=30, what="status")
        fill(fleet, hot + cold, old)
        for round_ in range(3):  # the hot prompts get hits, the cold ones none
            for prompt in hot:
                assert chat(fleet.urls[round_ % 2], prompt).cache == "hit-exact"
        time.sleep(2.5)  # nodes flush hit counts to Redis every second
        before = stub_calls(upstream)

        json_patch(kubectl, "mv", MV, ns, {"spec": {"version": "v2"}})
        new = wait_for(
            lambda: (a := active_namespace(kubectl, ns, name)) != old and a,
            timeout_s=30,
            what="the switch",
        )

        def warmed() -> dict[str, Any] | None:
            obj = scache(kubectl, ns, name)
            rolling = condition(obj, "RollingOver")
            return obj if rolling and rolling["status"] == "False" else None

        done = wait_for(warmed, timeout_s=60, what="the warm-up to finish")
        assert condition(done, "RollingOver")["reason"] == "Completed"  # type: ignore[index]
        assert stub_calls(upstream) - before == len(hot)  # exactly the top 4 replayed
        for url in fleet.urls:
            for prompt in hot:
                assert lookup(url, prompt).body["result"] == "hit-exact", prompt
            for prompt in cold:
                assert lookup(url, prompt).body["result"] == "miss", prompt
        assert "WarmupCompleted" in [e["reason"] for e in events(kubectl, ns, name)]
        retained = done["status"]["retainedNamespaces"]
        assert [r["cacheNamespace"] for r in retained] == [old]

        # Rollback within retention: the old namespace comes back with its entries, no warm-up.
        calls = stub_calls(upstream)
        json_patch(kubectl, "mv", MV, ns, {"spec": {"version": "v1"}})
        wait_for(lambda: active_namespace(kubectl, ns, name) == old, timeout_s=30, what="rollback")
        for url in fleet.urls:
            for prompt in hot + cold:
                reply = chat(url, prompt)
                assert (reply.namespace, reply.cache) == (old, "hit-exact"), prompt
        assert stub_calls(upstream) == calls
        back = wait_for(warmed, timeout_s=30, what="RollingOver=False")
        assert [r["cacheNamespace"] for r in back["status"]["retainedNamespaces"]] == [new]
        assert model_column(kubectl, ns, name) == "gpt-4o-mini@v1"
        reasons = [e["reason"] for e in events(kubectl, ns, name)]
        assert "RolledBack" in reasons
        assert "Purged" not in reasons
        assert wait_event(kubectl, ns, MV, "RolledBack")


def test_a_flush_on_one_cache_keeps_the_retained_rollback_target(
    kubectl: Kubectl,
    api_namespace: str,
    operator: OperatorProcess,
    tmp_path: Path,
    redis_url: str,
    milvus: str,
    upstream: str,
) -> None:
    """Issue 16, point 5: a per-cache Flush override purges the namespace it leaves, and only
    that one; the namespace retained before it stays until its own `retainFor`, and a rollback
    to it serves its answers."""
    ns, name = api_namespace, "retained"
    rollover = {"retainFor": "10m", "retainPrevious": 1}
    mv = model_version_manifest(ns, version="v1", rollover=rollover)
    start_cache(kubectl, ns, name, redis_url=redis_url, milvus=milvus, upstream=upstream, mv=mv)
    first = ["Which port does the admin console use?", "How long are backups kept?"]
    second = ["Who signs off a production change?"]
    with node_fleet(
        kubectl=kubectl, namespace=ns, cache=name, workdir=tmp_path, redis_url=redis_url,
        model_dir=model_dir(),
    ) as fleet:  # fmt: skip
        fleet.start()
        v1 = wait_for(lambda: active_namespace(kubectl, ns, name), timeout_s=30, what="status")
        fill(fleet, first, v1)
        json_patch(kubectl, "mv", MV, ns, {"spec": {"version": "v2"}})
        v2 = wait_for(
            lambda: (a := active_namespace(kubectl, ns, name)) != v1 and a,
            timeout_s=30,
            what="the switch to v2",
        )
        fill(fleet, second, v2)
        purge_after = wait_for(
            lambda: {
                r["cacheNamespace"]: r["purgeAfter"]
                for r in scache(kubectl, ns, name)["status"].get("retainedNamespaces", [])
            }.get(v1),
            timeout_s=30,
            what="v1 retained",
        )

        # This cache flushes on the next change; the ModelVersion still says Rollover.
        json_patch(
            kubectl, "scache", name, ns,
            {"spec": {"modelVersions": [{"name": MV, "policy": "Flush"}]}},
        )  # fmt: skip
        json_patch(kubectl, "mv", MV, ns, {"spec": {"version": "v3"}})
        wait_for(
            lambda: (a := active_namespace(kubectl, ns, name)) not in (v1, v2) and a,
            timeout_s=30,
            what="the switch to v3",
        )

        def flushed() -> list[dict[str, Any]] | None:
            obj = scache(kubectl, ns, name)
            retained = obj["status"].get("retainedNamespaces", [])
            rolling = condition(obj, "RollingOver")
            done = rolling and rolling["status"] == "False"
            return retained if done and v2 not in [r["cacheNamespace"] for r in retained] else None

        retained = wait_for(flushed, timeout_s=30, what="the flush of v2")
        assert [(r["cacheNamespace"], r["purgeAfter"]) for r in retained] == [(v1, purge_after)]
        assert [key for key in redis_keys(redis_url) if v2 in key] == []
        assert [key for key in redis_keys(redis_url) if v1 in key] != []

        # Back to v1 within its retention: its answers, no upstream call.
        calls = stub_calls(upstream)
        json_patch(kubectl, "mv", MV, ns, {"spec": {"version": "v1"}})
        wait_for(
            lambda: active_namespace(kubectl, ns, name) == v1, timeout_s=30, what="the rollback"
        )
        for url in fleet.urls:
            for prompt in first:
                reply = chat(url, prompt)
                assert (reply.namespace, reply.cache) == (v1, "hit-exact"), prompt
        assert stub_calls(upstream) == calls
        assert "RolledBack" in [e["reason"] for e in events(kubectl, ns, name)]


# --- embedding migration --------------------------------------------------------------------


def clinc() -> dict[str, list[list[str]]]:
    from node_harness import require

    data_dir = Path(os.environ.get("CACHEFLEET_DATA_DIR", ROOT.parent / "shared" / "data"))
    path = data_dir / "clinc150_dev.json"
    require(path.is_file(), f"CLINC150 data not found at {path} (CACHEFLEET_DATA_DIR)")
    result: dict[str, list[list[str]]] = json.loads(path.read_text())
    return result


def hit_behaviour(url: str, queries: list[str]) -> list[tuple[str, str | None]]:
    """(result, answer) of each query, by lookup (the upstream is never called)."""
    found = []
    for query in queries:
        body = lookup(url, query).body
        answer = None
        if body.get("response"):
            answer = body["response"]["choices"][0]["message"]["content"]
        found.append(("hit" if body["hit"] else "miss", answer))
    return found


def migration(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any] | None:
    status = scache(kubectl, ns, name).get("status", {})
    result: dict[str, Any] | None = (status.get("embedding") or {}).get("migration")
    return result


def node_deployment(kubectl: Kubectl, ns: str, name: str) -> tuple[int, str]:
    """(metadata.generation, pod-template config hash) of the node Deployment: either moves
    on every change of the pod template, that is on every rollout."""
    deployment = kubectl.json("get", "deployment", f"{name}-node", "-n", ns)
    annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
    return int(deployment["metadata"]["generation"]), str(
        annotations.get("cachefleet.io/config-hash", "")
    )


def nodes_without_next(fleet: NodeFleet) -> bool:
    """Every node dropped the other embedding space (taken live from the rewritten config)."""
    fleet.sync()
    return all(fleet.namespaces(i)["embedding"]["next"] is None for i in range(fleet.size))


# 3,000 entries re-embedded twice over on 2 cores: ~190-250 s with other work on the machine;
# the suite's 300 s default leaves no margin for a loaded CI machine.
@pytest.mark.timeout(900)
def test_embedding_change_reembeds_resumes_after_an_operator_kill_and_keeps_hits(
    kube_api: Cluster,
    kubectl: Kubectl,
    api_namespace: str,
    tmp_path: Path,
    redis_url: str,
    milvus: str,
    upstream: str,
) -> None:
    ns, name = api_namespace, "migrated"
    data = clinc()
    entries = 3000
    prompts = list(dict.fromkeys(text for text, _ in data["train"]))[:entries]
    queries = [text for text, _ in data["val"][::30]][:100]
    mv = model_version_manifest(ns, version="v1")
    extra = {
        "reembedding": {"ratePerSecond": 400, "batchSize": 200},
        "policies": {"thresholds": {MINILM: 0.82, COPY: 0.82}},
    }
    operator = start_operator(kube_api, tmp_path, namespaces=[ns], name="operator-1")
    try:
        start_cache(
            kubectl, ns, name, redis_url=redis_url, milvus=milvus, upstream=upstream, mv=mv,
            extra_spec=extra,
        )  # fmt: skip
        with node_fleet(
            kubectl=kubectl, namespace=ns, cache=name, workdir=tmp_path, redis_url=redis_url,
            model_dir=model_dir(),
        ) as fleet:  # fmt: skip
            fleet.start()
            namespace = wait_for(
                lambda: active_namespace(kubectl, ns, name), timeout_s=30, what="status"
            )
            filled = time.monotonic()
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(8) as pool:
                replies = list(
                    pool.map(
                        lambda item: store(
                            fleet.urls[item[0] % 2], item[1], f"answer {item[0]}: {item[1]}"
                        ),
                        enumerate(prompts),
                    )
                )
            assert all(r.status == 201 for r in replies), [r for r in replies if r.status != 201][
                :3
            ]
            collection = fleet.namespaces()["embedding"]["active"]["collection"]
            wait_for(
                lambda: milvus_rows(milvus, collection, namespace) >= len(prompts),
                timeout_s=300,
                interval_s=2,
                what=f"{len(prompts)} vectors in Milvus",
            )
            print(
                f"\n[lifecycle] filled {len(prompts)} entries in {time.monotonic() - filled:.0f}s"
            )
            before = hit_behaviour(fleet.urls[0], queries)
            hits_before = sum(1 for result, _ in before if result == "hit")
            assert 5 <= hits_before < len(queries), hits_before
            deployment_before = node_deployment(kubectl, ns, name)

            json_patch(kubectl, "mv", MV, ns, {"spec": {"embeddingModel": COPY}})

            def phase() -> str | None:
                fleet.sync()  # config files follow the ConfigMap; a new pod template rolls
                found = migration(kubectl, ns, name)
                return found["phase"] if found else None

            wait_for(lambda: phase() == "Reembedding", timeout_s=300, interval_s=0.5,
                     what="Reembedding")  # fmt: skip
            assert fleet.restarts == 0  # embedding_next loaded live
            assert "embedding_next" in fleet.rendered()
            assert condition(scache(kubectl, ns, name), "RollingOver")["reason"] in (  # type: ignore[index]
                "Reembedding",
                "Switching",
            )

            # Kill the operator half-way (SIGKILL: no chance to write anything more).
            def third() -> dict[str, Any] | None:
                found = migration(kubectl, ns, name)
                return found if found and found.get("processed", 0) >= entries // 3 else None

            at_kill = wait_for(third, timeout_s=120, interval_s=0.1, what="a third re-embedded")
            operator.process.popen.send_signal(signal.SIGKILL)
            operator.process.popen.wait(timeout=30)
            killed = time.monotonic()
            stalled = migration(kubectl, ns, name)
            assert stalled is not None
            assert stalled["phase"] == "Reembedding"
            assert stalled["processed"] < entries
            time.sleep(2.0)
            operator = start_operator(kube_api, tmp_path, namespaces=[ns], name="operator-2")
            restarted = time.monotonic()

            def finished() -> dict[str, Any] | None:
                fleet.sync()
                obj = scache(kubectl, ns, name)
                status = obj.get("status", {})
                embedding = status.get("embedding") or {}
                if embedding.get("model") == COPY and not embedding.get("migration"):
                    return obj
                return None

            done = wait_for(finished, timeout_s=300, interval_s=0.5, what="the migration")
            wait_for(lambda: nodes_without_next(fleet), timeout_s=60,
                     what="nodes on the final config")  # fmt: skip
            # Not one rollout during the whole migration.
            assert fleet.restarts == 0
            assert node_deployment(kubectl, ns, name) == deployment_before
            final_config = fleet.rendered()
            assert "embedding_next" not in final_config
            assert COPY in final_config
            assert condition(done, "RollingOver")["reason"] == "Completed"  # type: ignore[index]
            assert active_namespace(kubectl, ns, name) == namespace  # same namespace
            assert done["status"]["embedding"]["space"]
            reasons = [e["reason"] for e in events(kubectl, ns, name)]
            for reason in ("EmbeddingMigrationStarted", "Reembedding", "Reembedded",
                           "EmbeddingSwitched"):  # fmt: skip
                assert reason in reasons, reasons
            for index in range(2):
                embedding = fleet.namespaces(index)["embedding"]
                assert embedding["active"]["model_id"] == COPY
                assert embedding["next"] is None
            new_collection = fleet.namespaces()["embedding"]["active"]["collection"]
            assert new_collection != collection
            assert milvus_rows(milvus, new_collection, namespace) >= len(prompts)
            after = hit_behaviour(fleet.urls[1], queries)
            # Same hits and misses, answered with an entry of the same intent (a hit may pick
            # another of several near-identical training prompts: the in-process index before,
            # Milvus after).
            assert [result for result, _ in after] == [result for result, _ in before]
            intent = dict(data["train"])

            def intents(found: list[tuple[str, str | None]]) -> list[str | None]:
                return [intent.get(a.split(": ", 1)[1]) if a else None for _, a in found]

            assert intents(after) == intents(before)
            assert operator.metric("cachefleet_operator_reembedded_entries_total") > 0

            # A later rollout (an image upgrade, a drain): new processes, empty data dirs.
            # Nothing of the migration lived there: same hits, on the new model.
            fleet.rollout()
            for index in range(2):
                embedding = fleet.namespaces(index)["embedding"]
                assert embedding["active"]["model_id"] == COPY
                assert embedding["next"] is None
            after_rollout = hit_behaviour(fleet.urls[0], queries)
            assert [r for r, _ in after_rollout] == [r for r, _ in before]
            assert intents(after_rollout) == intents(before)
    finally:
        if operator.process.popen.poll() is None:
            operator.stop()
    batches = fleet.node_log_lines('"reembed_batch"')
    processed = sum(int(b.get("processed", 0)) for b in batches)
    seconds = sum(float(b.get("duration_s", 0)) for b in batches)
    record(
        "reembedding",
        {
            "entries": len(prompts),
            "batches": len(batches),
            "entries_reembedded_by_nodes": processed,
            "node_throughput_entries_per_s": round(processed / seconds, 1) if seconds else None,
            "median_batch_entries_per_s": round(
                statistics.median(float(b["entries_per_s"]) for b in batches), 1
            )
            if batches
            else None,
            "operator_rate_limit_per_s": 400,
            "status_rate_per_s_incl_restart": at_kill.get("rate"),
            "processed_when_killed": at_kill.get("processed"),
            "operator_down_s": round(restarted - killed, 1),
            "node_rollouts_during_migration": 0,
            "hit_behaviour_unchanged": True,
            "queries": len(queries),
            "hits": hits_before,
        },
    )


def test_embedding_migration_on_embedded_milvus_restarts_no_node_and_keeps_the_vectors(
    kube_api: Cluster,
    kubectl: Kubectl,
    api_namespace: str,
    tmp_path: Path,
    redis_url: str,
    upstream: str,
    operator: OperatorProcess,
) -> None:
    """`semanticTier.embedded`: each node's vectors live in Milvus Lite in its data dir, an
    emptyDir. The migration restarts no node (a rollout here would start them on empty data
    dirs, as the harness does), every node re-embeds its own copy, and every node keeps its
    hits on the new model."""
    ns, name = api_namespace, "lite"
    data = clinc()
    prompts = list(dict.fromkeys(text for text, _ in data["train"]))[:2000]
    queries = [text for text, _ in data["val"][::30]][:100]
    mv = model_version_manifest(ns, version="v1")
    extra = {
        "semanticTier": {"embedded": {}},
        "reembedding": {"ratePerSecond": 400, "batchSize": 200},
        "policies": {"thresholds": {MINILM: 0.82, COPY: 0.82}},
    }
    start_cache(
        kubectl, ns, name, redis_url=redis_url, milvus="", upstream=upstream, mv=mv,
        extra_spec=extra,
    )  # fmt: skip
    with node_fleet(
        kubectl=kubectl, namespace=ns, cache=name, workdir=tmp_path, redis_url=redis_url,
        model_dir=model_dir(),
    ) as fleet:  # fmt: skip
        fleet.start()
        assert "uri:" not in fleet.rendered()  # Milvus Lite under each node's data dir
        wait_for(lambda: active_namespace(kubectl, ns, name), timeout_s=30, what="status")
        from concurrent.futures import ThreadPoolExecutor

        # Written through node 0: the entries are in the shared Redis, the vectors only in
        # node 0's Milvus Lite (node 1 finds none of them semantically).
        with ThreadPoolExecutor(4) as pool:
            replies = list(
                pool.map(
                    lambda item: store(fleet.urls[0], item[1], f"answer {item[0]}: {item[1]}"),
                    enumerate(prompts),
                )
            )
        assert all(r.status == 201 for r in replies)
        seen: list[list[tuple[str, str | None]]] = []

        def stable() -> list[tuple[str, str | None]] | None:
            """The hit behaviour once the vector writes (in the background) are all in."""
            seen.append(hit_behaviour(fleet.urls[0], queries))
            return seen[-1] if len(seen) > 1 and seen[-1] == seen[-2] else None

        before = wait_for(stable, timeout_s=120, interval_s=1, what="stable hits")
        assert 3 <= sum(1 for result, _ in before if result == "hit") < len(queries)
        deployment_before = node_deployment(kubectl, ns, name)

        json_patch(kubectl, "mv", MV, ns, {"spec": {"embeddingModel": COPY}})

        def finished() -> dict[str, Any] | None:
            fleet.sync()  # a rollout would restart the nodes on FRESH data dirs
            obj = scache(kubectl, ns, name)
            embedding = obj.get("status", {}).get("embedding") or {}
            if embedding.get("model") == COPY and not embedding.get("migration"):
                return obj
            return None

        wait_for(finished, timeout_s=300, interval_s=0.5, what="the migration")
        wait_for(lambda: nodes_without_next(fleet), timeout_s=60, what="the final config")
        reasons = [e["reason"] for e in events(kubectl, ns, name)]
        assert "EmbeddingSwitched" in reasons, reasons
        intent = dict(data["train"])

        def intents(found: list[tuple[str, str | None]]) -> list[str | None]:
            return [intent.get(a.split(": ", 1)[1]) if a else None for _, a in found]

        for index, url in enumerate(fleet.urls):
            assert fleet.namespaces(index)["embedding"]["active"]["model_id"] == COPY
            # Each node re-embedded every stored prompt (from the shared Redis) into the new
            # collection in its own Milvus Lite: node 0 kept its hits, node 1 now has them too.
            after = hit_behaviour(url, queries)
            assert [r for r, _ in after] == [r for r, _ in before], (index, fleet.restarts)
            assert intents(after) == intents(before), index
        # Not one rollout (which would have started the nodes on empty data dirs).
        assert fleet.restarts == 0
        assert node_deployment(kubectl, ns, name) == deployment_before
        print(f"\n[lifecycle] embedded migration of {len(prompts)} entries: 0 node rollouts")


def test_embedding_migration_that_would_roll_embedded_milvus_nodes_is_refused(
    kubectl: Kubectl, api_namespace: str, redis_url: str, upstream: str, operator: OperatorProcess
) -> None:
    """GPU embedding with Milvus Lite in the nodes: the migration would end with a rollout
    (back onto the GPU pods) that empties every node's data dir, so it is not started:
    Stalled/`EmbeddingMigrationRefused` with the fix, a Warning Event, nothing changed."""
    ns, name = api_namespace, "lite-gpu"
    mv = model_version_manifest(ns, version="v1")
    start_cache(
        kubectl, ns, name, redis_url=redis_url, milvus="", upstream=upstream, mv=mv,
        extra_spec={
            "semanticTier": {"embedded": {}},
            "embedding": {"mode": "gpu", "gpu": {"replicas": 1}},
        },
    )  # fmt: skip
    wait_for(
        lambda: (scache(kubectl, ns, name).get("status", {}).get("embedding") or {}).get("model"),
        timeout_s=30,
        what="status.embedding",
    )
    config_before = kubectl.json("get", "configmap", f"{name}-node", "-n", ns)["data"]
    deployment_before = node_deployment(kubectl, ns, name)

    json_patch(kubectl, "mv", MV, ns, {"spec": {"embeddingModel": COPY}})

    def refused() -> dict[str, Any] | None:
        stalled = condition(scache(kubectl, ns, name), "Stalled")
        return stalled if stalled and stalled["reason"] == "EmbeddingMigrationRefused" else None

    stalled = wait_for(refused, timeout_s=30, what="the refusal")
    assert stalled["status"] == "True"
    for words in ("semanticTier.embedded", "rollout", "semanticTier.managed", "mode local"):
        assert words in stalled["message"], stalled["message"]
    event = wait_event(kubectl, ns, name, "EmbeddingMigrationRefused")
    assert event["type"] == "Warning"
    status = scache(kubectl, ns, name)["status"]
    assert status["embedding"]["model"] == MINILM
    assert not status["embedding"].get("migration")
    assert kubectl.json("get", "configmap", f"{name}-node", "-n", ns)["data"] == config_before
    assert node_deployment(kubectl, ns, name) == deployment_before

    # Back to the model it serves: the refusal is over.
    json_patch(kubectl, "mv", MV, ns, {"spec": {"embeddingModel": MINILM}})
    wait_for(
        lambda: (condition(scache(kubectl, ns, name), "Stalled") or {}).get("status") == "False",
        timeout_s=30,
        what="Stalled=False",
    )
