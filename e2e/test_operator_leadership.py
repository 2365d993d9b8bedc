"""Two operators, one leader: a Lease on the real kube-apiserver decides who acts."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from cluster import Cluster, Kubectl, wait_for
from operator_harness import (
    EXAMPLES,
    documents,
    in_namespace,
    install_crds,
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
