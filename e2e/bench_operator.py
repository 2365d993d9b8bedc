"""Operator benchmark: memory with many SemanticCaches, and apply → Ready time.

    PYTHONPATH=e2e:tests .venv/bin/python e2e/bench_operator.py            # both parts
    PYTHONPATH=e2e:tests .venv/bin/python e2e/bench_operator.py --caches 200 --skip-ready

- memory (api profile): the operator (a real `cachefleet-operator` process) watches one
  namespace; N SemanticCaches (plus a ModelVersion and a Secret) are applied at once; the
  operator's RSS is sampled until every cache has been reconciled (status.observedGeneration)
  and the queue is idle. Each cache renders 3 children (dev example).
- ready (full profile): `examples/semanticcache-gpu.yaml` (managed Redis and Milvus on volumes,
  GPU embedding pods, autoscaled nodes) in a fresh namespace, timed from `kubectl apply` to
  `kubectl wait --for=condition=Ready` returning; several runs, median reported.

Writes docs/benchmarks/operator.json and docs/benchmarks/operator-rss.png.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from cluster import Cluster, ControlPlane, Profile, locate, wait_for
from operator_harness import (
    EXAMPLES,
    ROOT,
    documents,
    in_namespace,
    install_crds,
    start_operator,
)

OUT = ROOT / "docs" / "benchmarks"


def log(message: str) -> None:
    print(f"[bench-operator] {message}", flush=True)


def reconciled(cluster: Cluster, namespace: str) -> int:
    items = cluster.kubectl.json("get", "scache", "-n", namespace)["items"]
    return sum(1 for item in items if item.get("status", {}).get("observedGeneration") == 1)


def memory(caches: int, workdir: Path) -> dict[str, Any]:
    log(f"memory: api profile, {caches} SemanticCaches")
    with ControlPlane(Profile.API, binaries=locate()) as cluster:
        install_crds(cluster.kubectl)
        namespace = "bench"
        cluster.kubectl("create", "namespace", namespace)
        operator = start_operator(cluster, workdir, namespaces=[namespace])
        try:
            time.sleep(2)
            idle_rss = operator.rss_bytes()
            log(f"operator idle: RSS {idle_rss / 2**20:.1f} MiB")
            secret, cache = documents(EXAMPLES / "semanticcache-dev.yaml")
            objects = [in_namespace(documents(EXAMPLES / "modelversion.yaml")[0], namespace)]
            objects.append(in_namespace(secret, namespace))
            for index in range(caches):
                item = copy.deepcopy(in_namespace(cache, namespace))
                item["metadata"]["name"] = f"cache-{index:04d}"
                objects.append(item)
            started = time.monotonic()
            cluster.kubectl.apply(objects)
            applied = time.monotonic() - started
            log(f"applied {caches} caches in {applied:.1f}s")
            samples: list[tuple[float, float, int]] = []
            done = 0
            while done < caches:
                done = reconciled(cluster, namespace)
                rss = operator.rss_bytes()
                samples.append((time.monotonic() - started, rss / 2**20, done))
                log(
                    f"  t={samples[-1][0]:5.1f}s reconciled {done}/{caches}, RSS {rss / 2**20:.1f} MiB"
                )
                if time.monotonic() - started > 600:
                    raise TimeoutError("caches not reconciled within 10 minutes")
                time.sleep(1.0)
            all_reconciled = time.monotonic() - started
            wait_for(
                lambda: operator.metric("cachefleet_operator_queue_depth") == 0,
                timeout_s=120,
                what="an idle queue",
            )
            time.sleep(5)
            settled_rss = operator.rss_bytes()
            samples.append((time.monotonic() - started, settled_rss / 2**20, caches))
            passes = operator.metric(
                "cachefleet_operator_reconciles_total", kind="SemanticCache", result="success"
            )
            children = len(cluster.kubectl.json("get", "cm,deploy,svc", "-n", namespace)["items"])
            log(
                f"all {caches} reconciled after {all_reconciled:.1f}s; settled RSS "
                f"{settled_rss / 2**20:.1f} MiB; {passes:.0f} passes; {children} children"
            )
        finally:
            operator.stop()
    return {
        "caches": caches,
        "children": children,
        "idle_rss_mib": round(idle_rss / 2**20, 1),
        "settled_rss_mib": round(settled_rss / 2**20, 1),
        "peak_rss_mib": round(max(s[1] for s in samples), 1),
        "per_cache_kib": round((settled_rss - idle_rss) / caches / 1024, 1),
        "apply_s": round(applied, 2),
        "all_reconciled_s": round(all_reconciled, 1),
        "reconcile_passes": int(passes),
        "samples": [
            {"t_s": round(t, 1), "rss_mib": round(r, 1), "reconciled": d} for t, r, d in samples
        ],
    }


def ready(runs: int, workdir: Path) -> dict[str, Any]:
    log(f"ready: full profile, {runs} runs of examples/semanticcache-gpu.yaml")
    timings: list[float] = []
    with ControlPlane(Profile.FULL, binaries=locate()) as cluster:
        install_crds(cluster.kubectl)
        kubectl = cluster.kubectl
        for run in range(runs):
            namespace = f"ready-{run}"
            kubectl("create", "namespace", namespace)
            wait_for(
                lambda ns=namespace: (
                    kubectl.run("get", "sa", "default", "-n", ns, check=False).returncode == 0
                ),
                timeout_s=60,
                what="default ServiceAccount",
            )
            # The managed tiers' claims bind to the default StorageClass's volumes.
            operator = start_operator(cluster, workdir, namespaces=[namespace], name=f"op-{run}")
            try:
                kubectl.apply(in_namespace(documents(EXAMPLES / "modelversion.yaml")[0], namespace))
                started = time.monotonic()
                kubectl(
                    "apply",
                    "--server-side",
                    "-n",
                    namespace,
                    "-f",
                    str(EXAMPLES / "semanticcache-gpu.yaml"),
                )
                kubectl(
                    "wait",
                    "--for=condition=Ready",
                    "scache/chat",
                    "-n",
                    namespace,
                    "--timeout=300s",
                )
                timings.append(time.monotonic() - started)
                log(f"  run {run + 1}/{runs}: apply -> Ready in {timings[-1]:.2f}s")
            finally:
                operator.stop()
            # Free the fake GPUs (2 per run, 8 in the profile) for the next run.
            kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=180s")
    return {
        "example": "examples/semanticcache-gpu.yaml",
        "runs_s": [round(t, 2) for t in timings],
        "median_s": round(statistics.median(timings), 2),
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["memory"]["samples"]
    fig, left = plt.subplots(figsize=(7, 4))
    left.plot([s["t_s"] for s in samples], [s["rss_mib"] for s in samples], color="tab:blue")
    left.set_xlabel("seconds since kubectl apply")
    left.set_ylabel("operator RSS (MiB)", color="tab:blue")
    left.set_ylim(0, max(s["rss_mib"] for s in samples) * 1.15)
    left.axhline(result["memory"]["idle_rss_mib"], color="tab:blue", linestyle=":", linewidth=1)
    right = left.twinx()
    right.plot([s["t_s"] for s in samples], [s["reconciled"] for s in samples], color="tab:orange")
    right.set_ylabel("caches reconciled", color="tab:orange")
    left.set_title(f"cachefleet-operator with {result['memory']['caches']} SemanticCaches")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--caches", type=int, default=200)
    parser.add_argument("--ready-runs", type=int, default=5)
    parser.add_argument("--skip-ready", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--plot-only", action="store_true", help="redraw the PNG from the JSON")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    result: dict[str, Any] = {
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "operator.json"
    if args.plot_only:
        plot(json.loads(path.read_text()), args.out / "operator-rss.png")
        return
    if path.exists():  # a part that is skipped keeps its last result
        result = {**json.loads(path.read_text()), **result}
    with tempfile.TemporaryDirectory(prefix="cachefleet-bench-operator-") as tmp:
        if not args.skip_memory:
            result["memory"] = memory(args.caches, Path(tmp))
            path.write_text(json.dumps(result, indent=2) + "\n")
            plot(result, args.out / "operator-rss.png")
        if not args.skip_ready:
            result["ready"] = ready(args.ready_runs, Path(tmp))
            path.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {path} and {args.out / 'operator-rss.png'}")


if __name__ == "__main__":
    main()
