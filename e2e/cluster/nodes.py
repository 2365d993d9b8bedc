"""Fake nodes for kwok: plain CPU nodes and GPU nodes advertising ``nvidia.com/gpu``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: kwok manages only nodes carrying this annotation (see the kwok flags in control_plane.py).
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
GPU_RESOURCE = "nvidia.com/gpu"
#: The taint GPU nodes carry, as on GKE/EKS GPU pools: only pods that tolerate it land there.
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
#: The toleration a GPU workload needs for GPU_TAINT.
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
FAKE_NODE_LABEL = "cachefleet.dev/fake-node"


@dataclass(frozen=True)
class NodeSpec:
    """One fake node's shape."""

    name: str
    cpu: str = "16"
    memory: str = "64Gi"
    pods: str = "110"
    gpus: int = 0
    gpu_product: str = "NVIDIA-L4"

    def manifest(self) -> dict[str, Any]:
        """The Node object (status included: kwok keeps what it is given)."""
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "kwok",
            FAKE_NODE_LABEL: "true",
        }
        resources = {"cpu": self.cpu, "memory": self.memory, "pods": self.pods}
        spec: dict[str, Any] = {}
        if self.gpus:
            labels |= {
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": self.gpu_product,
                "nvidia.com/gpu.count": str(self.gpus),
            }
            resources[GPU_RESOURCE] = str(self.gpus)
            spec["taints"] = [dict(GPU_TAINT)]
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": labels,
                "annotations": {
                    KWOK_ANNOTATION[0]: KWOK_ANNOTATION[1],
                    "node.alpha.kubernetes.io/ttl": "0",
                },
            },
            "spec": spec,
            "status": {"allocatable": dict(resources), "capacity": dict(resources)},
        }


def default_nodes(cpu_nodes: int = 3, gpu_nodes: int = 2, gpus_per_node: int = 4) -> list[NodeSpec]:
    """The full profile's fleet: a few CPU nodes and a few tainted GPU nodes."""
    return [NodeSpec(f"kwok-cpu-{i}") for i in range(cpu_nodes)] + [
        NodeSpec(f"kwok-gpu-{i}", cpu="32", memory="256Gi", gpus=gpus_per_node)
        for i in range(gpu_nodes)
    ]
