"""Latency benchmark of the node's request path (`make bench-latency`).

Measures, inside one node process on embedded defaults, the time from a raw request body to
a cached answer: JSON decoding, validation, keys, policies and the tier lookups. The semantic
path includes embedding the query with the real model on every iteration (no embedding
cache), so it is what a never-seen paraphrase costs. Also measures the lookup overhead a miss
pays before going upstream, the cost of judging semantic candidates (guards and verifier,
one candidate and a top-4 batch, for a never-seen request), and the HTTP round trip over
loopback for reference.

Writes `docs/benchmarks/latency.json` and `latency.png`. Timings are for the machine they
ran on; compare them within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import uvicorn

from cachefleet_node.config import NamespaceConfig, load_node_config
from cachefleet_node.core.judging import CandidateJudge
from cachefleet_node.core.request import decode_json_object
from cachefleet_node.core.verifier import pair_diff
from cachefleet_node.demo.__main__ import load_workload
from cachefleet_node.embedders.local import OnnxEmbedder
from cachefleet_node.logging_setup import configure_logging
from cachefleet_node.runtime import NodeRuntime
from cachefleet_node.server.app import create_app
from cachefleet_node.server.planning import plan_request
from cachefleet_node.tiers.l1_semantic import VectorMeta

__all__ = ["main"]

SYSTEM = "You are a concise technical assistant."


def _body(prompt: str) -> bytes:
    return orjson.dumps(
        {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": prompt},
            ],
            "temperature": 0,
        }
    )


def _completion(prompt: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"An answer about: {prompt} " * 8},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 30, "completion_tokens": 120, "total_tokens": 150},
    }


def _summary(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 4),
        "p90_ms": round(float(np.percentile(ordered, 90)), 4),
        "p99_ms": round(float(np.percentile(ordered, 99)), 4),
        "mean_ms": round(statistics.fmean(ordered), 4),
    }


async def _timed(fn: Callable[[], Awaitable[Any]], iterations: int) -> list[float]:
    samples = []
    for _ in range(iterations):
        started = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _verifier_samples(pairs: list[tuple[str, str]], iterations: int, batch: int) -> list[float]:
    """Milliseconds to judge `batch` candidates of one never-seen request (guards, alignment
    and head; the cached prompts' word features stay memoised, as in a running node)."""
    judge = CandidateJudge(NamespaceConfig(name="bench"))
    samples = []
    for i in range(iterations):
        query = f"{pairs[i % len(pairs)][0]} (variant {i})"
        candidates = [pairs[(i + k) % len(pairs)][1] for k in range(batch)]
        pair_diff.cache_clear()
        started = time.perf_counter()
        for candidate in candidates:
            judge.judge(query, candidate, 0.9)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _fill_partition(engine: Any, plan: Any, count: int) -> None:
    """Crowd the benchmark's partition with `count` random hot vectors (never hit), so the
    in-process ANN searches a realistically full partition (HNSW past 8,192 rows)."""
    semantic = plan.keys.semantic
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(count, engine.embedder.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    now = time.time()
    for index, vector in enumerate(vectors):
        meta = VectorMeta(f"filler-{index}", plan.namespace, plan.tenant, "", now, now + 86_400)
        engine.l1_semantic.add(semantic.partition, vector, meta)


async def run(iterations: int, filler: int) -> dict[str, Any]:
    """Fill a node with the workload's canonical prompts, then time each path."""
    workload = load_workload()
    canonical = [g["prompts"][0] for g in workload["groups"]]
    paraphrases = [p for g in workload["groups"] for p in g["prompts"][1:]]
    with tempfile.TemporaryDirectory() as data_dir:
        config = load_node_config(
            overrides={"data_dir": data_dir, "upstream": {"base_url": "http://127.0.0.1:9/v1"}}
        )
        model = await OnnxEmbedder.from_config(
            config.embedding
        )  # no embedding cache: every query embeds
        runtime = NodeRuntime(config)
        await runtime.start(model)
        engine = runtime.engine
        router = engine.router
        try:
            for prompt in canonical:
                _, plan = plan_request(router, {}, decode_json_object(_body(prompt)), "default")
                await engine.remember(plan, _completion(prompt), None)
            _fill_partition(engine, plan, filler)

            async def lookup(raw: bytes) -> str:
                body = decode_json_object(raw)
                _, plan = plan_request(router, {}, body, "default")
                outcome = await engine.lookup(plan)
                return outcome.result

            exact_bodies = [_body(p) for p in canonical]
            semantic_hits = []
            for prompt in paraphrases:  # keep the paraphrases that do hit
                if await lookup(_body(prompt)) == "hit-semantic":
                    semantic_hits.append(_body(prompt))
            miss_bodies = [
                _body(f"{p} -- unrelated request number {i}") for i, p in enumerate(canonical)
            ]
            for raw in exact_bodies[:20] + semantic_hits[:20]:
                await lookup(raw)  # warm-up

            counter = {"exact": 0, "semantic": 0, "miss": 0}

            def cycling(name: str, bodies: list[bytes]) -> Callable[[], Awaitable[Any]]:
                async def call() -> None:
                    raw = bodies[counter[name] % len(bodies)]
                    counter[name] += 1
                    await lookup(raw)

                return call

            inside = {
                "exact_hit": _summary(await _timed(cycling("exact", exact_bodies), iterations)),
                "semantic_hit": _summary(
                    await _timed(cycling("semantic", semantic_hits), iterations)
                ),
                "miss_lookup_overhead": _summary(
                    await _timed(cycling("miss", miss_bodies), iterations // 4)
                ),
            }
            workload_pairs = [
                (paraphrase, g["prompts"][0])
                for g in workload["groups"]
                for paraphrase in g["prompts"][1:]
            ]
            verifier = {
                "one_candidate": _summary(_verifier_samples(workload_pairs, iterations, 1)),
                "top_4_candidates": _summary(_verifier_samples(workload_pairs, iterations, 4)),
            }
            embed_only = _summary(
                await _timed(
                    lambda: model.embed([f"one short sentence number {time.perf_counter()}"]),
                    iterations,
                )
            )

            server = uvicorn.Server(
                uvicorn.Config(
                    create_app(config, runtime=runtime),
                    host="127.0.0.1",
                    port=0,
                    log_config=None,
                    access_log=False,
                )
            )
            task = asyncio.create_task(server.serve())
            while not server.started:  # noqa: ASYNC110 - uvicorn exposes no start event
                await asyncio.sleep(0.01)
            port = server.servers[0].sockets[0].getsockname()[1]
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            async with httpx.AsyncClient() as client:

                def http(bodies: list[bytes]) -> Callable[[], Awaitable[Any]]:
                    state = {"i": 0}

                    async def call() -> None:
                        state["i"] += 1
                        response = await client.post(
                            url,
                            content=bodies[state["i"] % len(bodies)],
                            headers={"content-type": "application/json"},
                        )
                        assert response.headers["x-cachefleet-cache"].startswith("hit")

                    return call

                over_http = {
                    "exact_hit": _summary(await _timed(http(exact_bodies), iterations // 2)),
                    "semantic_hit": _summary(await _timed(http(semantic_hits), iterations // 2)),
                }
            server.should_exit = True
            await task
        finally:
            await runtime.close()

    return {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        },
        "entries": len(canonical),
        "filler_vectors_in_partition": filler,
        "semantic_queries": len(semantic_hits),
        "inside_node": inside,
        "embedding_only": embed_only,
        "verifier": verifier,
        "http_loopback": over_http,
        "targets": {
            "exact_hit_p50_ms": 1.0,
            "semantic_hit_p50_ms": 10.0,
            "verifier_per_candidate_p50_ms": 3.0,
        },
    }


def _plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [
        ("exact hit (in node)", result["inside_node"]["exact_hit"]),
        ("semantic hit (in node)", result["inside_node"]["semantic_hit"]),
        ("embed one sentence", result["embedding_only"]),
        ("guards + verifier, 1 candidate", result["verifier"]["one_candidate"]),
        ("guards + verifier, top 4", result["verifier"]["top_4_candidates"]),
        ("miss: lookup overhead", result["inside_node"]["miss_lookup_overhead"]),
        ("exact hit (HTTP)", result["http_loopback"]["exact_hit"]),
        ("semantic hit (HTTP)", result["http_loopback"]["semantic_hit"]),
    ]
    figure, axis = plt.subplots(figsize=(8, 4))
    labels = [r[0] for r in rows]
    p50 = [r[1]["p50_ms"] for r in rows]
    p99 = [r[1]["p99_ms"] for r in rows]
    y = np.arange(len(rows))
    axis.barh(y + 0.2, p50, height=0.4, label="p50")
    axis.barh(y - 0.2, p99, height=0.4, label="p99")
    axis.set_yticks(y, labels)
    axis.set_xscale("log")
    axis.set_xlabel("milliseconds (log scale)")
    axis.axvline(1.0, color="grey", linestyle=":", linewidth=1)
    axis.axvline(10.0, color="grey", linestyle="--", linewidth=1)
    axis.set_title("Cache node request path latency")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    """Entry point: `python -m cachefleet_node.bench.latency`."""
    parser = argparse.ArgumentParser(description="Cache node latency benchmark")
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument(
        "--filler", type=int, default=20_000, help="extra hot vectors in the searched partition"
    )
    parser.add_argument("--out", default="docs/benchmarks")
    args = parser.parse_args(argv)
    configure_logging("warning")
    result = asyncio.run(run(args.iterations, args.filler))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "latency.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(result, out_dir / "latency.png")
    inside = result["inside_node"]
    for name in ("exact_hit", "semantic_hit"):
        row = inside[name]
        print(f"{name:13s} p50 {row['p50_ms']:.3f} ms  p99 {row['p99_ms']:.3f} ms")
    print(f"miss overhead p50 {inside['miss_lookup_overhead']['p50_ms']:.3f} ms")
    for name, row in result["verifier"].items():
        print(f"guards + verifier, {name}: p50 {row['p50_ms']:.4f} ms  p99 {row['p99_ms']:.4f} ms")
    print(f"written to {args.out}/latency.json and latency.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
