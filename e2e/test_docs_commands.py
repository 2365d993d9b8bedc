"""The commands of docs/quickstart.md and docs/operations.md, run verbatim on a real cluster.

The quickstart runs top to bottom on a full profile of its own (`fresh_kube_cluster`, the
control plane `make cluster-up` starts, empty): every command of the page, in the page's
order, is either run through bash (with the cluster's kubeconfig and the PATH `make cluster-up`
prints: the virtualenv's kubectl and the built helm) or skipped for a reason in `PLAN`, and a
command the plan does not know fails the test. The SemanticCache `chat` with Redis and Milvus
run by the operator (volumes from the cluster's default StorageClass) must reach Ready through
the page's own `kubectl wait`; the time from `make cluster-up` to Ready is printed.
The page's other path, CRDs applied with kubectl first (the README), then `helm install`, is
the second test. Without the binaries these tests skip, and fail with CI=true.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from chart_harness import RELEASE, RELEASE_NAMESPACE
from cluster import Cluster, wait_for
from cluster.process import ManagedProcess, free_ports
from cluster.storage import STORAGE_CLASS
from docs_commands import commands_in, commands_of
from operator_harness import CRD_NAMES, OperatorProcess

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = "docs/quickstart.md"
VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Step:
    pattern: str  # regular expression, matched against the whole command
    action: str  # "cluster", "run", "operator", "ready", or "skip: WHY"


#: What the top-to-bottom test does with each command of the quickstart, first match wins.
PLAN: tuple[Step, ...] = (
    Step(r"(kind|k3d|eksctl) .*", "skip: another cluster (Docker or AWS)"),
    Step(r"docker build .*|kind load docker-image .*", "skip: no container runtime here"),
    Step(r"make cluster-up", "cluster"),
    Step(
        r"helm install .* --take-ownership",
        "skip: CRDs applied with kubectl first: test_helm_install_adopts_crds_applied_with_kubectl",
    ),
    Step(r"helm install cachefleet charts/cachefleet .*", "run"),
    Step(r"kubectl -n cachefleet-system rollout status deployment/cachefleet", "run"),
    Step(
        r"\.venv/bin/cachefleet-operator --all-namespaces --node-endpoints-from-annotation",
        "operator",
    ),
    Step(
        r"kubectl apply --server-side -f crds/",
        "skip: the chart's path; test_helm_install_adopts_crds_applied_with_kubectl",
    ),
    Step(
        r"\.venv/bin/cachefleet-operator --all-namespaces",
        "skip: the path without the chart, one operator is running already",
    ),
    Step(r"kubectl wait -n team-chat --for=condition=Ready scache/chat .*", "ready"),
    Step(
        r"kubectl apply --server-side -k examples/gitops/cachefleet|kubectl get -n team-chat .*"
        r"|kubectl delete namespace team-chat",
        "run",
    ),
    Step(
        r"kubectl -n team-chat port-forward .*|curl .*",
        "skip: needs node pods that serve (kwok's run nothing); tests/test_docs.py runs the "
        "curl commands against a real node",
    ),
)


def step_of(command: str) -> Step:
    found = next((s for s in PLAN if re.fullmatch(s.pattern, command)), None)
    assert found is not None, f"{QUICKSTART}: no plan for {command!r}: add a Step to PLAN"
    return found


class Shell:
    """Doc commands through bash, as a reader on `make cluster-up` runs them: the cluster's
    kubeconfig and the PATH it prints, private HOME and helm directories."""

    def __init__(self, cluster: Cluster, home: Path) -> None:
        cluster.assert_ours(cluster.kubeconfig)
        self.cluster = cluster
        path = os.pathsep.join(
            dict.fromkeys(
                str(p)
                for p in (VENV_BIN, cluster.binaries.kubectl.parent, cluster.binaries.helm.parent)
            )
        )
        inherited = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("KUBECONFIG", "HELM_", "CACHEFLEET_OPERATOR_"))
        }
        self.env = {
            **inherited,
            "HOME": str(home),
            "HELM_CACHE_HOME": str(home / "helm-cache"),
            "HELM_CONFIG_HOME": str(home / "helm-config"),
            "HELM_DATA_HOME": str(home / "helm-data"),
            "KUBECONFIG": str(cluster.kubeconfig),
            "PATH": f"{path}{os.pathsep}/usr/bin:/bin",
        }
        self.home = home

    def run(self, command: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=660,  # the quickstart's longest wait is --timeout=10m
        )
        if check:
            assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        return result

    def start_operator(self, command: str) -> OperatorProcess:
        """The quickstart's `.venv/bin/cachefleet-operator ...` as a process of this test (the
        virtualenv is this interpreter's), probes on a free loopback port; waits until it leads."""
        argv = shlex.split(command)
        argv[0] = str(VENV_BIN / Path(argv[0]).name)
        (port,) = free_ports(1)
        env = {
            **self.env,
            "CACHEFLEET_OPERATOR_HTTP_HOST": "127.0.0.1",
            "CACHEFLEET_OPERATOR_HTTP_PORT": str(port),
        }
        log = self.home / "operator.log"
        process = ManagedProcess("operator", argv, log, ports=[port], tie_to_parent=True, env=env)
        operator = OperatorProcess(process=process, http_port=port, log=log)

        def leads() -> bool:
            if process.exited() is not None:
                raise AssertionError(f"{command} exited:\n{operator.tail()}")
            return operator.get("/readyz")[0] == 200

        try:
            wait_for(leads, timeout_s=60, what=f"{command}: /readyz")
        except BaseException:
            operator.stop()
            raise
        return operator


def test_quickstart_top_to_bottom_reaches_ready(
    fresh_kube_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = fresh_kube_cluster
    kubectl = cluster.kubectl
    shell = Shell(cluster, tmp_path)
    commands = commands_in((ROOT / QUICKSTART).read_text(encoding="utf-8"))
    plan = [(command, step_of(command)) for command in commands]
    actions = [step.action for _, step in plan]
    for needed in ("cluster", "operator", "ready"):
        assert actions.count(needed) == 1, f"{QUICKSTART}: {actions.count(needed)} '{needed}' steps"
    assert actions.index("cluster") < actions.index("operator") < actions.index("ready")

    started = time.monotonic()
    operator: OperatorProcess | None = None
    outputs: dict[str, str] = {}
    ready_after: float | None = None
    try:
        for command, step in plan:
            if step.action.startswith("skip: ") or step.action == "cluster":
                print(f"\n[{step.action}] {command}")
                continue
            print(f"\n$ {command}")
            began = time.monotonic()
            if step.action == "operator":
                operator = shell.start_operator(command)
            else:
                outputs[command] = shell.run(command).stdout
                print(outputs[command].rstrip())
            print(f"({time.monotonic() - began:.1f}s)")
            if step.action == "ready":
                ready_after = time.monotonic() - started
                # What Ready stands on: the managed tiers' claims bound to the default class.
                claims = kubectl.json("get", "pvc", "-n", "team-chat")["items"]
                assert {c["metadata"]["name"] for c in claims} == {
                    "data-chat-redis-0",
                    "data-chat-milvus-0",
                }
                for claim in claims:
                    assert claim["status"]["phase"] == "Bound", claim["metadata"]["name"]
                    assert claim["spec"]["storageClassName"] == STORAGE_CLASS
    finally:
        if operator is not None:
            operator.stop()
    assert ready_after is not None

    applied = next(out for cmd, out in outputs.items() if " -k " in cmd)
    for line in (
        "namespace/team-chat serverside-applied",
        "modelversion.cachefleet.io/gpt-4o-mini serverside-applied",
        "semanticcache.cachefleet.io/chat serverside-applied",
    ):
        assert line in applied
    listed = [out for cmd, out in outputs.items() if cmd.startswith("kubectl get -n team-chat")]
    assert len(listed) == 3
    both, wide, single = listed
    assert "semanticcache.cachefleet.io/chat" in both
    assert "modelversion.cachefleet.io/gpt-4o-mini" in both
    assert wide.split("\n")[0].split() == [
        "NAME", "READY", "HIT-RATE", "MODEL", "ENTRIES", "AGE", "REASON", "MESSAGE",
    ]  # fmt: skip
    # After the wait: Ready, the model served.
    name, ready, model = single.split("\n")[1].split()[:3]
    assert (name, ready, model) == ("chat", "True", "gpt-4o-mini@2024-07-18")
    control_plane = cluster.startup_seconds["total"]
    print(
        f"\nquickstart: make cluster-up {control_plane:.1f}s + helm install to Ready "
        f"{ready_after:.1f}s = {control_plane + ready_after:.1f}s"
    )


def test_helm_install_adopts_crds_applied_with_kubectl(
    fresh_kube_cluster: Cluster, tmp_path: Path
) -> None:
    """The README's `kubectl apply --server-side -f crds/`, then the quickstart's `helm
    install`: refused as the quickstart says; its `--take-ownership` variant adopts the CRDs."""
    shell = Shell(fresh_kube_cluster, tmp_path)
    kubectl = fresh_kube_cluster.kubectl
    (apply,) = commands_of("README.md", "kubectl apply --server-side -f crds/")
    assert commands_of(QUICKSTART, "kubectl apply --server-side -f crds/") == [apply]
    shell.run(apply)
    install, adopt = commands_of(QUICKSTART, "helm install cachefleet charts/cachefleet")
    assert adopt == f"{install} --take-ownership"

    refused = shell.run(install, check=False)
    assert refused.returncode != 0
    assert "exists and cannot be imported into the current release" in refused.stderr
    assert "invalid ownership metadata" in refused.stderr
    assert "invalid ownership metadata" in (ROOT / QUICKSTART).read_text()

    shell.run(adopt)
    for name in CRD_NAMES:
        meta = kubectl.json("get", "crd", name)["metadata"]
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm", name
        assert meta["annotations"]["meta.helm.sh/release-name"] == RELEASE, name
        assert meta["annotations"]["meta.helm.sh/release-namespace"] == RELEASE_NAMESPACE, name
        assert meta["annotations"]["helm.sh/resource-policy"] == "keep", name
    (rollout,) = commands_of(QUICKSTART, "kubectl -n cachefleet-system rollout status")
    assert "successfully rolled out" in shell.run(rollout).stdout


def test_argocd_cm_patch_command(kube_api: Cluster, tmp_path: Path) -> None:
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
        Shell(kube_api, tmp_path).run(patch)
        data = kube_api.kubectl.json("get", "configmap", "argocd-cm", "-n", "argocd")["data"]
        expected = yaml.safe_load((ROOT / "deploy/argocd/argocd-cm.yaml").read_text())["data"]
        assert data == {"url": "https://argocd.example", **expected}
    finally:
        kube_api.kubectl("delete", "namespace", "argocd", "--wait=false")
