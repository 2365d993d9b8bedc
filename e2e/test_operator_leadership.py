"""Two operators, one leader: a Lease on the real kube-apiserver decides who acts.

Issue 16, point 1, on a real fleet as well: with two operators a warm-up of N prompts makes
exactly N upstream calls, and a leader SIGKILLed in the middle of a rollover's warm-up is
replaced by the standby, which finishes it (still N calls: a replayed batch skips what is
already stored).
"""

from __future__ import annotations

import json
import signal
import time
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
    model_version_manifest,
    node_fleet,
    scache,
    shared_tier_manifests,
    stub_calls,
)
from operator_harness import (
    EXAMPLES,
    OperatorProcess,
    condition,
    documents,
    events,
    in_namespace,
    install_crds,
    json_patch,
    model_dir,
    start_operator,
    wait_condition,
)


@pytest.fixture(scope="module")
def kubectl(kube_api: Cluster) -> Kubectl:
    install_crds(kube_api.kubectl)
    return kube_api.kubectl


def holder(kubectl: Kubectl, ns: str) -> str | None:
    lease = kubectl.json("get", "lease", "cachefleet-operator", "-n", ns)
    return lease["spec"].get("holderIdentity")


def test_one_operator_acts_and_a_standby_takes_over_when_it_dies(
    kube_api: Cluster, kubectl: Kubectl, api_namespace: str, tmp_path: Path
) -> None:
    ns = api_namespace
    first = start_operator(
        kube_api, tmp_path, namespaces=[ns], name="op-1", extra=["--identity=op-1"]
    )
    second = start_operator(
        kube_api,
        tmp_path,
        namespaces=[ns],
        name="op-2",
        extra=["--identity=op-2"],
        wait_ready=False,
    )
    try:
        assert holder(kubectl, ns) == "op-1"
        # the standby says so, in its log and on /readyz (the pod is not ready, not failing)
        code, body = second.get("/readyz")
        assert code == 503
        assert "standing by: op-1 leads" in json.loads(body)["problems"][0]
        assert second.get("/healthz")[0] == 200
        wait_for(lambda: "standing_by" in second.log.read_text(), timeout_s=10, what="standby log")

        # the leader reconciles; the standby never touches the objects
        model_version = documents(EXAMPLES / "modelversion.yaml")[0]
        kubectl.apply([in_namespace(model_version, ns)])
        wait_condition(kubectl, "mv", "gpt-4o-mini", ns, "Ready", "True")
        assert "gpt-4o-mini" not in second.log.read_text()  # the standby never handled it

        # SIGKILL: no release; the standby waits out the lease (15 s) and leads
        killed = time.monotonic()
        first.process.popen.send_signal(signal.SIGKILL)
        first.process.popen.wait()
        wait_for(lambda: second.get("/readyz")[0] == 200, timeout_s=45, what="takeover")
        takeover_s = time.monotonic() - killed
        assert holder(kubectl, ns) == "op-2"
        assert takeover_s < 15 + 2 * 2 + 5, takeover_s  # lease + two retry periods + slack
        print(f"takeover after SIGKILL of the leader: {takeover_s:.1f} s")

        # the new leader acts: a change reaches status again
        kubectl(
            "patch", "mv", "gpt-4o-mini", "-n", ns, "--type=merge", "-p",
            '{"spec": {"version": "2026-12-02"}}',
        )  # fmt: skip
        wait_for(
            lambda: (
                kubectl.json("get", "mv", "gpt-4o-mini", "-n", ns)["status"].get(
                    "observedGeneration"
                )
                == 2
            ),
            timeout_s=30,
            what="the new leader to reconcile",
        )
    finally:
        first.stop()
        assert second.stop() == 0, second.tail()
    # a leader stopped with SIGTERM gives the lease up at once
    assert holder(kubectl, ns) is None


def test_a_stopped_leader_hands_over_at_once(
    kube_api: Cluster, kubectl: Kubectl, api_namespace: str, tmp_path: Path
) -> None:
    ns = api_namespace
    first = start_operator(
        kube_api, tmp_path, namespaces=[ns], name="op-a", extra=["--identity=op-a"]
    )
    second = start_operator(
        kube_api,
        tmp_path,
        namespaces=[ns],
        name="op-b",
        extra=["--identity=op-b"],
        wait_ready=False,
    )
    try:
        stopped = time.monotonic()
        assert first.stop() == 0, first.tail()
        wait_for(lambda: second.get("/readyz")[0] == 200, timeout_s=20, what="handover")
        assert time.monotonic() - stopped < 10  # no lease expiry to wait for
        assert holder(kubectl, ns) == "op-b"
    finally:
        assert second.stop() == 0, second.tail()


# --- issue 16, point 1: two operators on a real fleet -----------------------------------------
#
# A real fleet (two cache node processes rendered from the operator's ConfigMap, a real
# redis-server, a Milvus Lite server, the stub upstream that counts its calls) and two operator
# processes on the same Lease: a rollover with warm-up replays the top N prompts exactly once,
# and when the leader is SIGKILLed half-way through the warm-up the standby finishes it.

MV = "gpt-4o-mini"
HOT = 12  # N: prompts replayed by the warm-up (`warm.topN`)
COLD = 4  # never hit: not in the top N, never replayed


def rollover(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any] | None:
    """The rollover in progress in status (None when there is none)."""
    for item in scache(kubectl, ns, name).get("status", {}).get("rollovers", []):
        if item["modelVersion"] == MV:
            return dict(item)
    return None


def rolled_over(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any] | None:
    """The cache once RollingOver is False again."""
    obj = scache(kubectl, ns, name)
    rolling = condition(obj, "RollingOver")
    return obj if rolling and rolling["status"] == "False" else None


def two_operators(
    kube_api: Cluster, tmp_path: Path, ns: str, names: tuple[str, str]
) -> tuple[OperatorProcess, OperatorProcess]:
    """Two operator processes on one Lease watching `ns`: the first leads, the second stands
    by (checked)."""
    extra = ["--stats-interval=2", f"--lease-namespace={ns}", "--lease-name=fleet-leader"]
    leader = start_operator(
        kube_api, tmp_path, namespaces=[ns], name=names[0], extra=[*extra, f"--identity={names[0]}"]
    )
    try:
        standby = start_operator(
            kube_api,
            tmp_path,
            namespaces=[ns],
            name=names[1],
            extra=[*extra, f"--identity={names[1]}"],
            wait_ready=False,
        )
    except Exception:
        leader.stop()
        raise
    try:
        wait_for(
            lambda: "standing_by" in standby.log.read_text(),
            timeout_s=30,
            what="the standby's log",
        )
        assert standby.get("/readyz")[0] == 503
        assert fleet_leader(kube_api.kubectl, ns) == names[0]
    except Exception:
        standby.stop()
        leader.stop()
        raise
    return leader, standby


def fleet_leader(kubectl: Kubectl, ns: str) -> str | None:
    lease = kubectl.json("get", "lease", "fleet-leader", "-n", ns)
    return lease["spec"].get("holderIdentity")


def start_fleet_cache(
    kubectl: Kubectl, ns: str, name: str, *, redis_url: str, milvus: str, upstream: str,
    rate_per_second: float,
) -> None:  # fmt: skip
    """A ModelVersion with warm-up of the top N, and a cache on the shared tiers."""
    rollover_settings = {
        "retainFor": "10m",
        "warm": {"topN": HOT, "ratePerSecond": rate_per_second},
    }
    mv = model_version_manifest(ns, version="v1", rollover=rollover_settings)
    manifests = shared_tier_manifests(
        ns, name, redis_url=redis_url, milvus_uri=milvus, upstream=upstream, model_versions=[MV]
    )
    kubectl.apply([mv, *manifests])
    wait_for(
        lambda: (
            kubectl.run("get", "configmap", f"{name}-node", "-n", ns, check=False).returncode == 0
        ),
        timeout_s=60,
        what="the node ConfigMap",
    )


def fill_hot_and_cold(fleet: NodeFleet, namespace: str) -> tuple[list[str], list[str]]:
    """HOT + COLD prompts through the proxy (misses: the upstream answers), then hits on the
    hot ones only, so the ranking's top N is exactly the hot prompts."""
    hot = [f"Hot question {i}: how do I rotate the API key of project {i}?" for i in range(HOT)]
    cold = [f"Cold question {i}: which rack holds switch {i}?" for i in range(COLD)]
    for index, prompt in enumerate(hot + cold):
        reply = first_chat(fleet.urls[index % len(fleet.urls)], prompt)
        assert (reply.status, reply.namespace) == (200, namespace), reply
        assert reply.cache in ("miss", "hit-exact"), reply
    for url in fleet.urls:
        for prompt in hot + cold:
            wait_for(
                lambda u=url, p=prompt: lookup(u, p).body["result"] == "hit-exact",
                timeout_s=30,
                what=f"{prompt!r} stored",
            )
    for round_ in range(2):
        for prompt in hot:
            assert chat(fleet.urls[round_ % 2], prompt).cache == "hit-exact"
    time.sleep(2.5)  # nodes flush hit counts to Redis every second
    return hot, cold


def warm_batches(fleet: NodeFleet, since: int) -> list[dict[str, Any]]:
    """The nodes' `warm_batch` log lines after the first `since` of them."""
    return fleet.node_log_lines('"warm_batch"')[since:]


def reasons_about(kubectl: Kubectl, ns: str, name: str) -> list[str]:
    return sorted(e["reason"] for e in events(kubectl, ns, name))


def test_two_operators_warm_up_n_prompts_with_exactly_n_upstream_calls(
    kube_api: Cluster,
    kubectl: Kubectl,
    api_namespace: str,
    tmp_path: Path,
    redis_url: str,
    milvus: str,
    upstream: str,
) -> None:
    ns, name = api_namespace, "pair"
    leader, standby = two_operators(kube_api, tmp_path, ns, ("op-lead", "op-stand"))
    try:
        start_fleet_cache(
            kubectl, ns, name, redis_url=redis_url, milvus=milvus, upstream=upstream,
            rate_per_second=20,
        )  # fmt: skip
        with node_fleet(
            kubectl=kubectl, namespace=ns, cache=name, workdir=tmp_path, redis_url=redis_url,
            model_dir=model_dir(),
        ) as fleet:  # fmt: skip
            fleet.start()
            old = wait_for(lambda: active_namespace(kubectl, ns, name), timeout_s=60, what="status")
            hot, cold = fill_hot_and_cold(fleet, old)
            before = stub_calls(upstream)
            batches_before = len(fleet.node_log_lines('"warm_batch"'))

            json_patch(kubectl, "mv", MV, ns, {"spec": {"version": "v2"}})
            done = wait_for(
                lambda: (
                    active_namespace(kubectl, ns, name) != old and rolled_over(kubectl, ns, name)
                ),
                timeout_s=120,
                what="the rollover with warm-up to finish",
            )
            new = active_namespace(kubectl, ns, name)
            assert condition(done, "RollingOver")["reason"] == "Completed"  # type: ignore[index]
            time.sleep(3.0)  # a second operator acting would call the upstream meanwhile
            calls = stub_calls(upstream) - before
            assert calls == HOT, f"{calls} upstream calls for a warm-up of {HOT} prompts"
            batches = warm_batches(fleet, batches_before)
            assert sum(int(b["stored"]) for b in batches) == HOT, batches
            assert sum(int(b["skipped"]) for b in batches) == 0, batches
            for url in fleet.urls:
                for prompt in hot:
                    assert lookup(url, prompt).body["result"] == "hit-exact", prompt
                for prompt in cold:
                    assert lookup(url, prompt).body["result"] == "miss", prompt
            # one set of Events: one rollover, one switch, one warm-up
            reasons = reasons_about(kubectl, ns, name)
            for reason in ("RolloverStarted", "NamespaceSwitched", "WarmupCompleted"):
                assert reasons.count(reason) == 1, reasons
            assert fleet_leader(kubectl, ns) == "op-lead"
            assert leader.metric("cachefleet_operator_rollovers_total", policy="Rollover") == 1
            # only the leader did any work: the standby never saw the cache
            assert name in leader.log.read_text()
            standby_log = standby.log.read_text()
            assert name not in standby_log, standby.tail()
            assert str(new) not in standby_log, standby.tail()
            assert standby.get("/readyz")[0] == 503
            print(
                f"\n[leadership] two operators, warm-up topN={HOT}: {calls} upstream calls, "
                f"{len(batches)} warm batches, events {reasons}"
            )
    finally:
        assert leader.stop() == 0, leader.tail()
        assert standby.stop() == 0, standby.tail()


def test_the_standby_finishes_a_rollover_when_the_leader_is_killed_mid_warm_up(
    kube_api: Cluster,
    kubectl: Kubectl,
    api_namespace: str,
    tmp_path: Path,
    redis_url: str,
    milvus: str,
    upstream: str,
) -> None:
    ns, name = api_namespace, "handover"
    leader, standby = two_operators(kube_api, tmp_path, ns, ("op-first", "op-second"))
    try:
        # 0.5 prompts/s: batches of 2 prompts, the warm-up of 12 takes about 20 s — a window
        # to kill the leader in.
        start_fleet_cache(
            kubectl, ns, name, redis_url=redis_url, milvus=milvus, upstream=upstream,
            rate_per_second=0.5,
        )  # fmt: skip
        with node_fleet(
            kubectl=kubectl, namespace=ns, cache=name, workdir=tmp_path, redis_url=redis_url,
            model_dir=model_dir(),
        ) as fleet:  # fmt: skip
            fleet.start()
            old = wait_for(lambda: active_namespace(kubectl, ns, name), timeout_s=60, what="status")
            hot, cold = fill_hot_and_cold(fleet, old)
            before = stub_calls(upstream)
            batches_before = len(fleet.node_log_lines('"warm_batch"'))

            json_patch(kubectl, "mv", MV, ns, {"spec": {"version": "v2"}})

            def warming() -> dict[str, Any] | None:
                record = rollover(kubectl, ns, name)
                if not record or record["phase"] != "Warming":
                    return None
                processed = (record.get("warm") or {}).get("processed", 0)
                return record if 0 < processed < HOT else None

            at_kill = wait_for(warming, timeout_s=120, interval_s=0.1, what="the warm-up under way")
            assert name not in standby.log.read_text(), standby.tail()  # it only stood by
            leader.process.popen.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            leader.process.popen.wait(timeout=30)
            calls_at_kill = stub_calls(upstream) - before
            stalled = rollover(kubectl, ns, name)
            assert stalled is not None
            assert stalled["phase"] == "Warming", stalled
            new = stalled["toNamespace"]

            # the standby leads within the lease duration (15 s) and a few retry periods
            wait_for(lambda: standby.get("/readyz")[0] == 200, timeout_s=90, what="the takeover")
            takeover_s = time.monotonic() - killed
            assert fleet_leader(kubectl, ns) == "op-second"

            def progressed() -> bool:
                record = rollover(kubectl, ns, name)
                return (
                    record is None
                    or (record.get("warm") or {}).get("processed", 0) > stalled["warm"]["processed"]
                )

            wait_for(progressed, timeout_s=120, what="the warm-up to go on")
            resumed_s = time.monotonic() - killed
            done = wait_for(
                lambda: rolled_over(kubectl, ns, name),
                timeout_s=180,
                what="the standby to finish the rollover",
            )
            finished_s = time.monotonic() - killed
            assert condition(done, "RollingOver")["reason"] == "Completed"  # type: ignore[index]
            assert active_namespace(kubectl, ns, name) == new
            time.sleep(3.0)
            calls = stub_calls(upstream) - before
            batches = warm_batches(fleet, batches_before)
            stored = sum(int(b["stored"]) for b in batches)
            skipped = sum(int(b["skipped"]) for b in batches)
            # Warm-up is idempotent: a batch replayed by the new leader skips what the killed
            # one stored, so every hot prompt reached the upstream exactly once.
            assert calls == HOT, f"{calls} upstream calls for a warm-up of {HOT} prompts"
            assert stored == HOT, batches
            for url in fleet.urls:
                for prompt in hot:
                    assert lookup(url, prompt).body["result"] == "hit-exact", prompt
                for prompt in cold:
                    assert lookup(url, prompt).body["result"] == "miss", prompt
            reasons = reasons_about(kubectl, ns, name)
            for reason in ("RolloverStarted", "NamespaceSwitched", "WarmupCompleted"):
                assert reasons.count(reason) == 1, reasons
            warmed_event = next(
                e for e in events(kubectl, ns, name) if e["reason"] == "WarmupCompleted"
            )
            assert f"{HOT}/{HOT} prompts replayed" in warmed_event["message"], warmed_event
            assert name in standby.log.read_text()
            print(
                f"\n[leadership] SIGKILL of the leader mid warm-up "
                f"(status {at_kill['warm']}, {calls_at_kill} upstream calls so far): "
                f"standby led after {takeover_s:.1f} s, warm-up went on after {resumed_s:.1f} s, "
                f"rollover Completed after {finished_s:.1f} s; upstream calls {calls} for "
                f"topN={HOT} ({stored} stored, {skipped} skipped in {len(batches)} batches); "
                f"event: {warmed_event['message']!r}"
            )
    finally:
        if leader.process.popen.poll() is None:
            leader.stop()
        assert standby.stop() == 0, standby.tail()
