"""Kubeconfigs of managed clusters (issue 16, point 7): an exec-plugin user, the way EKS
(`aws eks get-token`), GKE (`gke-gcloud-auth-plugin`) and AKS (`kubelogin`) write them, against
the real apiserver (its static token file holds the token the plugin prints).

The plugin is a script that prints an `ExecCredential` with a short expiry and counts its runs:
the operator (kopf's watches and the operator's own writes) reconciles with it, and runs it
again once the credential expired.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest

from cachefleet_operator.adapters.credentials import load_access
from cachefleet_operator.adapters.kube import CONFIGMAPS, KubeClient
from cluster import Cluster, Kubectl, wait_for
from operator_harness import EXAMPLES, documents, in_namespace, install_crds, running_operator

#: The credential the plugin prints lives this long; the `kubernetes` package renews one
#: 5 minutes before it expires, so it is used for RENEW_AFTER_S, then renewed on every use.
LIFETIME_S = 312
RENEW_AFTER_S = LIFETIME_S - 300

PLUGIN = """#!{python}
import datetime, json, os, sys
with open({calls!r}, "a") as log:
    log.write(os.environ.get("KUBERNETES_EXEC_INFO", "") + "\\n")
expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds={lifetime})
print(json.dumps({{
    "apiVersion": "client.authentication.k8s.io/v1",
    "kind": "ExecCredential",
    "status": {{"token": {token!r}, "expirationTimestamp": expiry.strftime("%Y-%m-%dT%H:%M:%SZ")}},
}}))
"""


def exec_kubeconfig(cluster: Cluster, workdir: Path) -> tuple[Path, Path]:
    """A copy of the admin kubeconfig whose user is an exec plugin; (kubeconfig, call log)."""
    calls = workdir / "plugin-calls.log"
    plugin = workdir / "get-token"
    plugin.write_text(
        PLUGIN.format(
            python=sys.executable,
            calls=str(calls),
            lifetime=LIFETIME_S,
            token=cluster.admin.token,
        )
    )
    plugin.chmod(0o700)
    config = json.loads(cluster.kubeconfig.read_text())
    config["users"] = [
        {
            "name": "exec-user",
            "user": {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": str(plugin),
                    "interactiveMode": "Never",
                }
            },
        }
    ]
    for context in config["contexts"]:
        context["context"]["user"] = "exec-user"
    path = workdir / "exec.kubeconfig"
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path, calls


def plugin_runs(calls: Path) -> int:
    return len(calls.read_text().splitlines()) if calls.exists() else 0


@pytest.fixture(scope="module")
def kubectl(kube_api: Cluster) -> Kubectl:
    install_crds(kube_api.kubectl)
    return kube_api.kubectl


async def test_the_client_renews_an_expired_exec_credential(
    kube_api: Cluster, api_namespace: str, tmp_path: Path
) -> None:
    path, calls = exec_kubeconfig(kube_api, tmp_path)
    access = load_access(str(path))
    assert plugin_runs(calls) == 1
    client = KubeClient(access)
    try:
        assert await client.list(CONFIGMAPS, api_namespace) is not None
        assert plugin_runs(calls) == 1  # still valid: not run again
        await asyncio.sleep(RENEW_AFTER_S + 1)  # into the renewal window
        assert await client.list(CONFIGMAPS, api_namespace) is not None
        assert plugin_runs(calls) >= 2
    finally:
        await client.aclose()


def test_the_operator_runs_on_an_exec_plugin_kubeconfig(
    kube_api: Cluster, kubectl: Kubectl, api_namespace: str, tmp_path: Path
) -> None:
    ns = api_namespace
    path, calls = exec_kubeconfig(kube_api, tmp_path)
    secret, cache = documents(EXAMPLES / "semanticcache-dev.yaml")
    model_version = documents(EXAMPLES / "modelversion.yaml")[0]
    with running_operator(kube_api, tmp_path, namespaces=[ns], kubeconfig=path) as operator:
        kubectl.apply([in_namespace(doc, ns) for doc in (model_version, secret, cache)])
        wait_for(
            lambda: (
                kubectl.run("get", "configmap", "dev-node", "-n", ns, check=False).returncode == 0
            ),
            timeout_s=60,
            what="children applied with the exec credential",
        )
        first = plugin_runs(calls)
        assert first >= 1
        time.sleep(RENEW_AFTER_S + 1)  # every credential handed out so far is due for renewal
        kubectl.apply([in_namespace(doc, ns) for doc in (cache,)])
        kubectl(
            "patch", "scache", "dev", "-n", ns, "--type=merge",
            "-p", json.dumps({"spec": {"nodes": {"replicas": 3}}}),
        )  # fmt: skip

        def scaled() -> bool:
            deployment = kubectl.json("get", "deployment", "dev-node", "-n", ns)
            return bool(deployment["spec"]["replicas"] == 3)

        wait_for(scaled, timeout_s=60, what="a write after the credential expired")
        assert plugin_runs(calls) > first, "the plugin was not run again after expiry"
        assert kube_api.admin.token not in operator.log.read_text()  # never logged
