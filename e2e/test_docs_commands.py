"""Commands of docs/quickstart.md and docs/operations.md, run verbatim on a kube-apiserver.

The api profile has no controllers and no operator, so this proves what the commands do to
the API (CRDs installed, the fleet objects created and listed, the namespace deleted, the
Argo CD ConfigMap patched), not that the fleet becomes Ready: that is
e2e/test_operator_cluster.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from cluster import Cluster, wait_for
from docs_commands import commands_of

ROOT = Path(__file__).resolve().parents[1]


def _run(cluster: Cluster, command: str) -> str:
    """One doc command through bash, with the test cluster's kubeconfig and the venv's kubectl."""
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    result = subprocess.run(
        ["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"{command}\n{result.stderr}"
    return result.stdout


def test_quickstart_fleet_commands(kube_api: Cluster) -> None:
    (install,) = commands_of("docs/quickstart.md", "kubectl apply --server-side -f crds/")
    # Other tests of this session installed the CRDs as the manager `cachefleet-e2e`; applying
    # as that manager too keeps the command from conflicting with them (a fresh cluster has
    # nobody to conflict with).
    _run(kube_api, f"{install} --field-manager=cachefleet-e2e")
    wait_for(
        lambda: kube_api.kubectl.run("get", "scache,mv", "-A", check=False).returncode == 0,
        timeout_s=60,
        what="the cachefleet.io resources to be served",
    )
    (apply,) = commands_of("docs/quickstart.md", "kubectl apply --server-side -k")
    out = _run(kube_api, apply)
    assert "namespace/team-chat serverside-applied" in out
    assert "semanticcache.cachefleet.io/chat serverside-applied" in out
    assert "modelversion.cachefleet.io/gpt-4o-mini serverside-applied" in out
    try:
        listed = [
            _run(kube_api, c) for c in commands_of("docs/quickstart.md", "kubectl get -n team-chat")
        ]
        assert len(listed) == 3
        both, wide, single = listed
        assert "semanticcache.cachefleet.io/chat" in both
        assert "modelversion.cachefleet.io/gpt-4o-mini" in both
        assert wide.split("\n")[0].split() == [
            "NAME", "READY", "HIT-RATE", "MODEL", "ENTRIES", "AGE", "REASON", "MESSAGE",
        ]  # fmt: skip
        assert single.split("\n")[1].split()[0] == "chat"
    finally:
        (delete,) = commands_of("docs/quickstart.md", "kubectl delete namespace team-chat")
        _run(kube_api, delete + " --wait=false")


def test_argocd_cm_patch_command(kube_api: Cluster) -> None:
    """The patch of docs/operations.md merges both health checks into an existing argocd-cm
    and keeps what was there."""
    kube_api.kubectl("create", "namespace", "argocd")
    try:
        kube_api.kubectl(
            "create",
            "configmap",
            "argocd-cm",
            "-n",
            "argocd",
            "--from-literal=url=https://argocd.example",
        )
        (patch,) = commands_of("docs/operations.md", "kubectl -n argocd patch configmap argocd-cm")
        _run(kube_api, patch)
        data = kube_api.kubectl.json("get", "configmap", "argocd-cm", "-n", "argocd")["data"]
        expected = yaml.safe_load((ROOT / "deploy/argocd/argocd-cm.yaml").read_text())["data"]
        assert data == {"url": "https://argocd.example", **expected}
    finally:
        kube_api.kubectl("delete", "namespace", "argocd", "--wait=false")
