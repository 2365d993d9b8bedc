"""Helm and the chart (`charts/cachefleet`) for tests and the cluster demo.

The helm binary is the one `make k8s-bins` builds next to the control plane (e2e/cluster,
`Binaries.helm`); helm runs with its own config, cache and data directories and an explicit
kubeconfig, so it never reads or writes the caller's `~/.config/helm` or `~/.kube`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cluster import Cluster, Kubectl, locate
from cluster.kube import write_kubeconfig

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "cachefleet"
RELEASE = "cachefleet"
RELEASE_NAMESPACE = "cachefleet-system"


def helm_binary() -> Path:
    """The helm built by `make k8s-bins`; raises `cluster.BinariesUnavailable` with the reason."""
    return locate().helm


class HelmError(RuntimeError):
    def __init__(self, args: Sequence[str], result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        self.result = result


@dataclass(frozen=True)
class Helm:
    """helm with private state directories, bound to one kubeconfig (or none: render only)."""

    binary: Path
    home: Path
    kubeconfig: Path | None = None
    kubectl: Path | None = None

    def env(self) -> dict[str, str]:
        home = self.home
        env = {
            "HOME": str(home),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
            "PATH": os.pathsep.join(
                str(p.parent) for p in (self.binary, self.kubectl) if p is not None
            )
            + f"{os.pathsep}/usr/bin:/bin",
        }
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    def run(
        self, *args: str, check: bool = True, timeout_s: float = 300
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binary), *args]
        if self.kubeconfig is not None:
            argv.append(f"--kubeconfig={self.kubeconfig}")
        result = subprocess.run(
            argv, capture_output=True, text=True, env=self.env(), timeout=timeout_s, check=False
        )
        if check and result.returncode != 0:
            raise HelmError(args, result)
        return result

    def template(
        self,
        *,
        chart: Path = CHART,
        values: Sequence[Path] = (),
        set_values: Sequence[str] = (),
        release: str = RELEASE,
        namespace: str = RELEASE_NAMESPACE,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        args = ["template", release, str(chart), "--namespace", namespace]
        for path in values:
            args += ["--values", str(path)]
        for item in set_values:
            args += ["--set", item]
        return self.run(*args, check=check)

    def for_cluster(self, cluster: Cluster) -> Helm:
        """The same helm bound to a control plane's admin kubeconfig (checked to be ours)."""
        cluster.assert_ours(cluster.kubeconfig)
        return Helm(self.binary, self.home, cluster.kubeconfig, cluster.binaries.kubectl)


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(docs: Sequence[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"{len(matches)} {kind} {name or ''} in the rendered chart"
    return matches[0]


def service_account_kubeconfig(
    cluster: Cluster, namespace: str, name: str, path: Path, *, duration: str = "2h"
) -> Path:
    """A kubeconfig with a token of a ServiceAccount (TokenRequest API, `kubectl create
    token`), marked as this control plane's, so `Kubectl` accepts it."""
    token = cluster.kubectl("create", "token", name, "-n", namespace, f"--duration={duration}")
    return write_kubeconfig(
        path,
        server=cluster.server,
        ca_cert=cluster.ca_cert,
        user=f"system:serviceaccount:{namespace}:{name}",
        token=token.strip(),
        nonce=cluster.nonce,
    )


def as_kubectl(cluster: Cluster, kubeconfig: Path) -> Kubectl:
    cluster.assert_ours(kubeconfig)
    return Kubectl(cluster.binaries.kubectl, kubeconfig)
