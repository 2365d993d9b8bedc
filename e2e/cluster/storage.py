"""Volumes for the full profile: a default StorageClass served by kube-controller-manager.

kube-controller-manager runs with ``--enable-hostpath-provisioner``: its PersistentVolume
controller provisions a ``hostPath`` PV (``/tmp/hostpath_pv/<uuid>``, an empty directory made by
kube-controller-manager itself) for every claim of a StorageClass whose provisioner is
``kubernetes.io/host-path``, binds it, and deletes the directory when the claim goes
(``reclaimPolicy: Delete``). The class is the cluster's default, so claims without a
``storageClassName`` (the operator's managed Redis and Milvus) bind within a second, as on kind
or k3d. Nothing mounts the volumes: the pods are kwok's.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Any

from .kube import Kubectl, KubectlError

#: The default StorageClass's name (kind's is also `standard`).
STORAGE_CLASS = "standard"
HOSTPATH_PROVISIONER = "kubernetes.io/host-path"
#: Where kube-controller-manager's hostPath provisioner makes every volume (fixed upstream).
HOSTPATH_ROOT = Path("/tmp/hostpath_pv")
#: kube-controller-manager's flag that turns the provisioner on.
CONTROLLER_MANAGER_FLAG = "--enable-hostpath-provisioner=true"


def storage_class() -> dict[str, Any]:
    """The default StorageClass (created with the fake nodes)."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": HOSTPATH_PROVISIONER,
        "reclaimPolicy": "Delete",
        # The provisioner has no topology: bind at once, the scheduler then sees a bound claim.
        "volumeBindingMode": "Immediate",
    }


def remove_volume_dirs(kubectl: Kubectl) -> int:
    """Best effort, while the apiserver still runs: remove the (empty) directories of the
    PVs this cluster's provisioner made, which outlive a stop without a claim deletion.
    Only empty directories directly under HOSTPATH_ROOT; returns how many were removed."""
    try:
        items = Kubectl(kubectl.binary, kubectl.kubeconfig, timeout_s=10).json("get", "pv")["items"]
    except (KubectlError, OSError, subprocess.SubprocessError, ValueError, KeyError):
        return 0
    removed = 0
    for item in items:
        path = Path(str(item.get("spec", {}).get("hostPath", {}).get("path", "")))
        if path.parent != HOSTPATH_ROOT:
            continue
        with contextlib.suppress(OSError):
            os.rmdir(path)  # refuses a non-empty directory
            removed += 1
    return removed
