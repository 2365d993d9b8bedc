"""The operator's API client against the alternatives, on a real apiserver.

    PYTHONPATH=e2e:tests .venv/bin/python e2e/bench_kube_client.py [--objects 300]

Clients: the operator's `KubeClient` (adapters/kube.py: the `kubernetes` package's REST client
on a thread pool), the package's asyncio client (`kubernetes.aio`), and httpx (the operator's
former transport). Each client server-side applies the same N ConfigMaps (8 in flight, field manager and force as
the operator sends them), twice (create, then an unchanged re-apply: the operator's steady
state), from the same credentials (`adapters/credentials.py`, which the `kubernetes` package
loads). Reported per client: wall time, applies per second, p50/p99 per apply, and the memory
its import adds to a fresh interpreter (RSS from /proc). Writes docs/benchmarks/kube-client.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cachefleet_operator.adapters.credentials import ClusterAccess, load_access
from cachefleet_operator.adapters.kube import KubeClient
from cluster import ControlPlane, Profile, locate
from operator_harness import ROOT

OUT = ROOT / "docs" / "benchmarks" / "kube-client.json"
MANAGER = "cachefleet-bench"
IN_FLIGHT = 8

Apply = Callable[[dict[str, Any]], Awaitable[Any]]


def log(message: str) -> None:
    print(f"[bench-kube-client] {message}", flush=True)


def configmap(namespace: str, index: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"bench-{index}", "namespace": namespace, "labels": {"i": str(index)}},
        "data": {"config.yaml": "x: 1\n" * 20},
    }


async def timed(apply: Apply, objects: list[dict[str, Any]]) -> dict[str, float]:
    gate = asyncio.Semaphore(IN_FLIGHT)
    latencies: list[float] = []

    async def one(obj: dict[str, Any]) -> None:
        async with gate:
            started = time.perf_counter()
            await apply(obj)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(one(obj) for obj in objects))
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "wall_s": round(wall, 3),
        "applies_per_s": round(len(objects) / wall, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
    }


async def kube_client(access: ClusterAccess) -> tuple[Apply, Callable[[], Awaitable[None]]]:
    kube = KubeClient(access)

    async def apply(obj: dict[str, Any]) -> Any:
        return await kube.apply(obj, field_manager=MANAGER)

    return apply, kube.aclose


async def httpx_client(access: ClusterAccess) -> tuple[Apply, Callable[[], Awaitable[None]]]:
    import httpx

    context = ssl.create_default_context(cafile=access.ca_file)
    client = httpx.AsyncClient(
        base_url=access.server,
        verify=context,
        headers={"Authorization": access.authorization() or "", "Accept": "application/json"},
        limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
    )

    async def apply(obj: dict[str, Any]) -> Any:
        meta = obj["metadata"]
        response = await client.patch(
            f"/api/v1/namespaces/{meta['namespace']}/configmaps/{meta['name']}",
            params={"fieldManager": MANAGER, "force": "true"},
            content=json.dumps(obj).encode(),
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        response.raise_for_status()
        return response.json()

    return apply, client.aclose


async def aio_client(kubeconfig: Path) -> tuple[Apply, Callable[[], Awaitable[None]]]:
    from kubernetes.aio import client, config

    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=str(kubeconfig), client_configuration=configuration, persist_config=False
    )
    api_client = client.ApiClient(configuration)
    core = client.CoreV1Api(api_client)

    async def apply(obj: dict[str, Any]) -> Any:
        meta = obj["metadata"]
        return await core.patch_namespaced_config_map(
            meta["name"],
            meta["namespace"],
            obj,
            field_manager=MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
        )

    return apply, api_client.close


def import_rss_kib(module: str) -> int:
    """RSS a fresh interpreter gains by importing `module` (kB, from /proc)."""
    code = (
        "import re\n"
        "def rss(): return int(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read())[1])\n"
        f"before = rss()\nimport {module}\nprint(rss() - before)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


async def run(objects: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with ControlPlane(Profile.API, binaries=locate()) as cluster:
        access = load_access(str(cluster.kubeconfig))
        clients = {
            "KubeClient (kubernetes REST client in threads)": lambda: kube_client(access),
            "kubernetes.aio": lambda: aio_client(cluster.kubeconfig),
            "httpx (the former transport)": lambda: httpx_client(access),
        }
        for index, (name, make) in enumerate(clients.items()):
            namespace = f"bench-{index}"
            cluster.kubectl("create", "namespace", namespace)
            docs = [configmap(namespace, i) for i in range(objects)]
            apply, close = await make()
            try:
                await timed(apply, docs[:20])  # connections and caches warm
                create = await timed(apply, docs)
                unchanged = await timed(apply, docs)
            finally:
                await close()
            results[name] = {"create": create, "reapply_unchanged": unchanged}
            log(f"{name}: create {create}, unchanged {unchanged}")
    imports = {
        "KubeClient (kubernetes REST client in threads)": import_rss_kib(
            "cachefleet_operator.adapters.kube"
        ),
        "kubernetes.aio": import_rss_kib("kubernetes.aio.client"),
        "httpx (the former transport)": import_rss_kib("httpx"),
    }
    for name, kib in imports.items():
        results[name]["import_rss_kib"] = kib
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory():
        results = asyncio.run(run(args.objects))
    report = {
        "objects": args.objects,
        "in_flight": IN_FLIGHT,
        "machine": f"{platform.machine()}, 2 shared cores",
        "recorded": time.strftime("%F"),
        "clients": results,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
