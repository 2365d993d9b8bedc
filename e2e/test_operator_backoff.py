"""Backoff on the real apiserver (issue 16, point 2): a rollover whose nodes cannot be reached
is retried with exponential backoff, not every 2 s; a spec change gets a pass at once.

The oracle is the apiserver's own count of server-side applies (`apiserver_request_total`,
verb APPLY) over a minute, not the operator's counters.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest

from cluster import Cluster, Kubectl, wait_for
from cluster.process import free_ports
from operator_harness import (
    EXAMPLES,
    documents,
    in_namespace,
    install_crds,
    json_patch,
    running_operator,
)

ENDPOINTS_ANNOTATION = "cachefleet.io/node-endpoints"
WINDOW_S = 60.0
#: Passes a failing object may make in its first minute: backoff 2, 4, 8, 16, 32 s (each up
#: to 20% shorter) is 5 retries after the first pass; one more for a stray child event.
MAX_PASSES_PER_MINUTE = 7


@pytest.fixture(scope="module")
def kubectl(kube_api: Cluster) -> Kubectl:
    install_crds(kube_api.kubectl)
    return kube_api.kubectl


def apiserver_applies(kubectl: Kubectl) -> int:
    """Server-side applies the apiserver has answered since it started (its /metrics)."""
    total = 0.0
    for line in kubectl("get", "--raw", "/metrics").splitlines():
        if line.startswith("apiserver_request_total{") and 'verb="APPLY"' in line:
            total += float(line.rpartition(" ")[2])
    return int(total)


def owned_children(kubectl: Kubectl, ns: str, uid: str) -> int:
    kinds = "configmaps,services,deployments,statefulsets,poddisruptionbudgets,serviceaccounts"
    items = kubectl.json("get", kinds, "-n", ns)["items"]
    return sum(
        1
        for item in items
        if any(ref.get("uid") == uid for ref in item["metadata"].get("ownerReferences") or [])
    )


def rollover_message(kubectl: Kubectl, ns: str) -> str:
    status = kubectl.json("get", "scache", "dev", "-n", ns).get("status", {})
    return " ".join(r.get("message") or "" for r in status.get("rollovers") or [])


def test_an_unreachable_fleet_is_retried_with_backoff_and_a_new_spec_resets_it(
    kube_api: Cluster, kubectl: Kubectl, api_namespace: str, tmp_path: Path
) -> None:
    ns = api_namespace
    closed = [f"http://127.0.0.1:{port}" for port in free_ports(2)]  # nothing listens there
    secret, cache = documents(EXAMPLES / "semanticcache-dev.yaml")
    cache = copy.deepcopy(cache)
    cache["metadata"].setdefault("annotations", {})[ENDPOINTS_ANNOTATION] = ",".join(closed)
    model_version = documents(EXAMPLES / "modelversion.yaml")[0]
    with running_operator(kube_api, tmp_path, namespaces=[ns]) as operator:
        kubectl.apply([in_namespace(doc, ns) for doc in (model_version, secret, cache)])
        wait_for(
            lambda: (
                kubectl.json("get", "scache", "dev", "-n", ns)
                .get("status", {})
                .get("activeNamespaces")
            ),
            timeout_s=60,
            what="the cache's first namespace",
        )
        uid = kubectl.json("get", "scache", "dev", "-n", ns)["metadata"]["uid"]
        children = owned_children(kubectl, ns, uid)
        assert children >= 3, children

        # A new version: the switch cannot reach any node.
        json_patch(kubectl, "mv", "gpt-4o-mini", ns, {"spec": {"version": "2099-01-01"}})
        wait_for(
            lambda: "no node accepted the switch" in rollover_message(kubectl, ns),
            timeout_s=60,
            what="the switch to fail",
        )
        before, started = apiserver_applies(kubectl), time.monotonic()
        time.sleep(WINDOW_S)
        applies = apiserver_applies(kubectl) - before
        elapsed = time.monotonic() - started
        retries = operator.metric(
            "cachefleet_operator_reconcile_retries_total",
            kind="SemanticCache",
            reason="SwitchNotVerified",
        )
        print(
            f"\n[backoff] {applies} applies in {elapsed:.0f}s with the fleet unreachable "
            f"({children} children a pass; {retries:.0f} retries so far)"
        )
        assert applies <= MAX_PASSES_PER_MINUTE * children, (applies, children)
        assert retries >= 3, retries  # it does retry, and says why
        log = operator.log.read_text()
        assert '"reconcile_retry"' in log
        assert '"SwitchNotVerified"' in log

        # The backoff has grown past 30 s by now; a spec change is looked at at once.
        generation = int(kubectl.json("get", "scache", "dev", "-n", ns)["metadata"]["generation"])
        json_patch(kubectl, "scache", "dev", ns, {"spec": {"nodes": {"replicas": 2}}})

        def observed() -> Any:
            status = kubectl.json("get", "scache", "dev", "-n", ns).get("status", {})
            return status.get("observedGeneration", 0) > generation

        changed = time.monotonic()
        wait_for(observed, timeout_s=15, what="a pass for the new spec")
        print(f"[backoff] new spec observed {time.monotonic() - changed:.1f}s after the change")
