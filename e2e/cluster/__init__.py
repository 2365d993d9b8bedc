"""A real Kubernetes control plane for tests and local runs, built from Go modules (no Docker).

``ControlPlane(Profile.API)`` runs etcd + kube-apiserver; ``Profile.FULL`` adds
kube-controller-manager, kube-scheduler and kwok with fake CPU/GPU nodes. See docs/development.md.
"""

from .binaries import Binaries, BinariesUnavailable, locate
from .control_plane import Cluster, ControlPlane, Credentials, NotOurs, Profile, StartupError
from .kube import Kubectl, KubectlError, wait_for
from .nodes import GPU_RESOURCE, GPU_TAINT, GPU_TOLERATION, NodeSpec, default_nodes

__all__ = [
    "GPU_RESOURCE",
    "GPU_TAINT",
    "GPU_TOLERATION",
    "Binaries",
    "BinariesUnavailable",
    "Cluster",
    "ControlPlane",
    "Credentials",
    "Kubectl",
    "KubectlError",
    "NodeSpec",
    "NotOurs",
    "Profile",
    "StartupError",
    "default_nodes",
    "locate",
    "wait_for",
]
