"""Latency benchmark of the node's request path (`make bench-latency`).

Measures, inside one node process on embedded defaults, the time from a raw request body to
a cached answer: JSON decoding, validation, keys, policies and the tier lookups. The semantic
path includes embedding the query with the real model on every iteration (no embedding
cache), so it is what a never-seen paraphrase costs. Also measures the lookup overhead a miss
pays before going upstream (wall time, and CPU time per miss beyond the embedder's own CPU on
the same texts: `miss_cpu_ms_beyond_embedding`), the cost of judging semantic candidates
(guards and verifier, one candidate and a top-4 batch, for a never-seen request), and the
HTTP round trip over loopback for reference.

Under concurrency (`concurrency` in the JSON): the paraphrases that hit at concurrency 1 are
sent through HTTP by 1, 8 and 32 concurrent clients (misses go to an in-process stub
upstream), on the default deadlines; it counts how many still hit, semantic hits per second,
and why the others did not (embedder timeouts, shed calls, calls skipped by an open breaker),
with the embedder's queue wait and service time.

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
from cachefleet_node.core.planning import plan_request
from cachefleet_node.core.request import decode_json_object
from cachefleet_node.core.verifier import pair_diff
from cachefleet_node.demo.__main__ import load_workload
from cachefleet_node.demo.stub_upstream import create_stub_app
from cachefleet_node.embedders.base import Embedder
from cachefleet_node.embedders.local import OnnxEmbedder
from cachefleet_node.logging_setup import configure_logging
from cachefleet_node.runtime import NodeRuntime
from cachefleet_node.server.app import create_app
from cachefleet_node.tiers.l1_semantic import VectorMeta

__all__ = ["add_arguments", "main"]

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


async def _miss_cpu(
    router: Any, model: Embedder, bodies: list[bytes], count: int, miss_cpu_s: float
) -> dict[str, float]:
    """CPU milliseconds per miss (`miss_cpu_s` for `count` lookups cycling over `bodies`, every
    thread of the process: the embedder's, and Milvus Lite's, which runs in it), the
    embedder's CPU for the same texts, and the difference: what the cache costs a miss beyond
    the embedding."""
    texts = []
    for raw in bodies:
        _, plan = plan_request(router, {}, decode_json_object(raw), "default")
        assert plan.keys.semantic is not None  # the bench's namespace is semantic
        texts.append(plan.keys.semantic.text)
    started = time.process_time()
    for index in range(count):
        await model.embed([texts[index % len(texts)]])
    embedding_s = time.process_time() - started
    return {
        "miss_cpu_ms": round(1000 * miss_cpu_s / count, 3),
        "miss_cpu_ms_embedding": round(1000 * embedding_s / count, 3),
        "miss_cpu_ms_beyond_embedding": round(1000 * (miss_cpu_s - embedding_s) / count, 3),
    }


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


async def _serve(app: Any) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    """Run an ASGI app on a free loopback port of this event loop."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False)
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes no start event
        await asyncio.sleep(0.01)
    return server, task, server.servers[0].sockets[0].getsockname()[1]


def _sample(registry: Any, name: str, labels: dict[str, str] | None = None) -> float:
    return float(registry.get_sample_value(name, labels or {}) or 0.0)


def _embed_counters(registry: Any) -> dict[str, float]:
    """Counters of the embedder tier (absent ones read 0, so older nodes compare too)."""
    errors = "cachefleet_tier_errors_total"
    tier = {"tier": "embedder"}
    return {
        "timeouts": _sample(registry, errors, {**tier, "kind": "timeout"}),
        "errors": _sample(registry, errors, {**tier, "kind": "error"}),
        "breaker_open_skips": _sample(registry, errors, {**tier, "kind": "breaker-open"}),
        "shed_busy": sum(
            _sample(registry, "cachefleet_embed_shed_total", {**tier, "reason": reason})
            for reason in ("queue", "owner")
        ),
        "queue_s_sum": _sample(registry, "cachefleet_embed_queue_duration_seconds_sum", tier),
        "queue_n": _sample(registry, "cachefleet_embed_queue_duration_seconds_count", tier),
        "service_s_sum": _sample(registry, "cachefleet_embed_service_duration_seconds_sum", tier),
        "service_n": _sample(registry, "cachefleet_embed_service_duration_seconds_count", tier),
    }


def _buckets(registry: Any, name: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of the embedder tier's series of histogram `name`."""
    return [
        (float(sample.labels["le"]), sample.value)
        for metric in registry.collect()
        if metric.name == name
        for sample in metric.samples
        if sample.name.endswith("_bucket") and sample.labels.get("tier") == "embedder"
    ]


def _quantile_ms(
    before: list[tuple[float, float]], after: list[tuple[float, float]], quantile: float
) -> float | None:
    """Upper bound (ms) of the bucket holding `quantile` of the samples added in between."""
    counts = dict(before)
    added = [(bound, count - counts.get(bound, 0.0)) for bound, count in after]
    if not added or added[-1][1] == 0:
        return None
    total = added[-1][1]
    bound = next(bound for bound, count in added if count >= quantile * total)
    return round(bound * 1000, 3)


async def _concurrency_level(
    client: httpx.AsyncClient,
    url: str,
    bodies: list[bytes],
    concurrency: int,
    requests: int,
    runtime: NodeRuntime,
) -> dict[str, Any]:
    """`requests` semantic-hit bodies sent by `concurrency` clients; what came back."""
    registry = runtime.engine.metrics.registry
    before = _embed_counters(registry)
    queue_before = _buckets(registry, "cachefleet_embed_queue_duration_seconds")
    service_before = _buckets(registry, "cachefleet_embed_service_duration_seconds")
    opens_before = _breaker_opens(runtime)
    results: dict[str, int] = {}
    reasons: dict[str, int] = {}
    state = {"next": 0}

    async def client_loop() -> None:
        while state["next"] < requests:
            index = state["next"]
            state["next"] += 1
            try:  # no-store: a miss must not become an exact entry
                response = await client.post(
                    url,
                    content=bodies[index % len(bodies)],
                    headers={"content-type": "application/json", "cache-control": "no-store"},
                )
            except httpx.HTTPError as exc:  # counted, not fatal: the node is what is measured
                name = f"client-{type(exc).__name__}"
                results[name] = results.get(name, 0) + 1
                continue
            result = response.headers.get("x-cachefleet-cache", f"http-{response.status_code}")
            results[result] = results.get(result, 0) + 1
            for reason in filter(
                None, response.headers.get("x-cachefleet-bypass-reason", "").split(",")
            ):
                reasons[reason] = reasons.get(reason, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    after = _embed_counters(registry)
    queue_after = _buckets(registry, "cachefleet_embed_queue_duration_seconds")
    service_after = _buckets(registry, "cachefleet_embed_service_duration_seconds")
    delta = {key: after[key] - before[key] for key in after}
    hits = results.get("hit-semantic", 0)
    return {
        "concurrency": concurrency,
        "requests": requests,
        "seconds": round(elapsed, 3),
        "semantic_hits": hits,
        "hit_fraction": round(hits / requests, 4),
        "semantic_hits_per_s": round(hits / elapsed, 1),
        "results": results,
        "bypass_reasons": reasons,
        "embedder_timeouts": int(delta["timeouts"]),
        "embedder_errors": int(delta["errors"]),
        "breaker_open_skips": int(delta["breaker_open_skips"]),
        "breaker_opens": _breaker_opens(runtime) - opens_before,
        "shed_busy": int(delta["shed_busy"]),
        "queue_wait_mean_ms": _mean_ms(delta["queue_s_sum"], delta["queue_n"]),
        "queue_wait_p50_ms_upper_bound": _quantile_ms(queue_before, queue_after, 0.5),
        "queue_wait_p99_ms_upper_bound": _quantile_ms(queue_before, queue_after, 0.99),
        "service_mean_ms": _mean_ms(delta["service_s_sum"], delta["service_n"]),
        "service_p99_ms_upper_bound": _quantile_ms(service_before, service_after, 0.99),
    }


def _mean_ms(total_s: float, count: float) -> float | None:
    return round(1000 * total_s / count, 2) if count else None


def _breaker_opens(runtime: NodeRuntime) -> int:
    guard = getattr(runtime.engine, "_embed_guard", None)
    return int(getattr(getattr(guard, "breaker", None), "opens", 0))


async def run_concurrency(
    runtime: NodeRuntime,
    config: Any,
    bodies: list[bytes],
    levels: tuple[int, ...],
    requests: int,
) -> dict[str, Any]:
    """Semantic-hit bodies through HTTP at each concurrency level (misses go upstream)."""
    node, node_task, node_port = await _serve(create_app(config, runtime=runtime))
    url = f"http://127.0.0.1:{node_port}/v1/chat/completions"
    try:
        limits = httpx.Limits(max_connections=max(levels) * 2)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            for raw in bodies[:20]:
                await client.post(
                    url,
                    content=raw,
                    headers={"content-type": "application/json", "cache-control": "no-store"},
                )
            rows = [
                await _concurrency_level(client, url, bodies, level, requests, runtime)
                for level in levels
            ]
    finally:
        node.should_exit = True
        await node_task
    return {"deadlines": runtime.engine.config.deadlines.model_dump(), "levels": rows}


async def run(
    iterations: int,
    filler: int,
    levels: tuple[int, ...] = (1, 8, 32, 128),
    concurrency_requests: int = 600,
    concurrency_only: bool = False,
) -> dict[str, Any]:
    """Fill a node with the workload's canonical prompts, then time each path."""
    stub, stub_task, stub_port = await _serve(create_stub_app())  # where misses go
    try:
        if not concurrency_only:
            return await _run_node(
                iterations, filler, levels, concurrency_requests, False, stub_port
            )
        # The same run on a node with the embedder deadline of before queue and service time
        # were told apart, for comparison (same machine, same minute), then on the current one.
        legacy = await _run_node(
            iterations, filler, levels, concurrency_requests, True, stub_port, legacy=True
        )
        current = await _run_node(iterations, filler, levels, concurrency_requests, True, stub_port)
        return {
            "machine": current["machine"],
            "semantic_queries": current["semantic_queries"],
            "concurrency": current["concurrency"],
            "legacy_whole_call_deadline": legacy["concurrency"],
        }
    finally:
        stub.should_exit = True
        await stub_task


async def _run_node(
    iterations: int,
    filler: int,
    levels: tuple[int, ...],
    concurrency_requests: int,
    concurrency_only: bool,
    stub_port: int,
    *,
    legacy: bool = False,
) -> dict[str, Any]:
    workload = load_workload()
    canonical = [g["prompts"][0] for g in workload["groups"]]
    paraphrases = [p for g in workload["groups"] for p in g["prompts"][1:]]
    upstream = f"http://127.0.0.1:{stub_port}/v1"
    with tempfile.TemporaryDirectory() as data_dir:
        config = load_node_config(
            overrides={"data_dir": data_dir, "upstream": {"base_url": upstream}}
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
            if legacy:
                _legacy_embed_deadline(engine)
            if concurrency_only:
                return {
                    "machine": _machine(),
                    "semantic_queries": len(semantic_hits),
                    "concurrency": await run_concurrency(
                        runtime, config, semantic_hits, levels, concurrency_requests
                    ),
                }

            counter = {"exact": 0, "semantic": 0, "miss": 0}

            def cycling(name: str, bodies: list[bytes]) -> Callable[[], Awaitable[Any]]:
                async def call() -> None:
                    raw = bodies[counter[name] % len(bodies)]
                    counter[name] += 1
                    await lookup(raw)

                return call

            misses = iterations // 4
            inside: dict[str, Any] = {
                "exact_hit": _summary(await _timed(cycling("exact", exact_bodies), iterations)),
                "semantic_hit": _summary(
                    await _timed(cycling("semantic", semantic_hits), iterations)
                ),
            }
            miss_cpu = time.process_time()
            inside["miss_lookup_overhead"] = _summary(
                await _timed(cycling("miss", miss_bodies), misses)
            )
            miss_cpu = time.process_time() - miss_cpu
            inside.update(await _miss_cpu(router, model, miss_bodies, misses, miss_cpu))
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
            concurrency = await run_concurrency(
                runtime, config, semantic_hits, levels, concurrency_requests
            )
        finally:
            await runtime.close()

    return {
        "machine": _machine(),
        "entries": len(canonical),
        "filler_vectors_in_partition": filler,
        "semantic_queries": len(semantic_hits),
        "inside_node": inside,
        "embedding_only": embed_only,
        "verifier": verifier,
        "http_loopback": over_http,
        "concurrency": concurrency,
        "targets": {
            "exact_hit_p50_ms": 1.0,
            "semantic_hit_p50_ms": 10.0,
            "verifier_per_candidate_p50_ms": 3.0,
            "miss_cpu_ms_beyond_embedding": 2.0,
        },
    }


def _legacy_embed_deadline(engine: Any) -> None:
    """Make `engine` embed as before queue and service time were told apart: one deadline
    (`embedder_ms` on lookups, `write_ms` on write-backs) on the whole call, queue included,
    every timeout a breaker failure. For the comparison in `--concurrency-only` runs."""

    async def embed(guard: Any, embedder: Any, texts: list[str], queue_s: float) -> Any:
        background = queue_s == engine._write_deadline
        deadline = engine._write_deadline if background else engine._embed_deadline
        return await guard.call("embed", embedder.embed(texts), deadline)

    engine._embed = embed


def _machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }


def _print_concurrency(concurrency: dict[str, Any]) -> None:
    for row in concurrency["levels"]:
        print(
            f"concurrency {row['concurrency']:3d}: {row['hit_fraction']:.1%} still hit "
            f"({row['semantic_hits_per_s']} semantic hits/s), timeouts {row['embedder_timeouts']}"
            f", breaker opens {row['breaker_opens']} (skipped {row['breaker_open_skips']})"
            f", shed {row['shed_busy']}, queue wait mean {row['queue_wait_mean_ms']} ms"
            f" (p99 <= {row['queue_wait_p99_ms_upper_bound']} ms)"
        )


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `latency`."""
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument(
        "--filler", type=int, default=20_000, help="extra hot vectors in the searched partition"
    )
    parser.add_argument("--out", default="docs/benchmarks")
    parser.add_argument(
        "--concurrency", default="1,8,32,128", help="client counts of the concurrency section"
    )
    parser.add_argument(
        "--concurrency-requests", type=int, default=600, help="requests per concurrency level"
    )
    parser.add_argument(
        "--concurrency-only",
        action="store_true",
        help="only the concurrency section, with the former embedder deadline for comparison, "
        "written to latency-concurrency.json",
    )


def main(args: argparse.Namespace) -> int:
    """Run, write `latency.json` and `latency.png` (or `latency-concurrency.json`), print a
    summary."""
    configure_logging("warning")
    levels = tuple(int(item) for item in args.concurrency.split(","))
    result = asyncio.run(
        run(
            args.iterations,
            args.filler,
            levels,
            args.concurrency_requests,
            args.concurrency_only,
        )
    )
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.concurrency_only:
        (out_dir / "latency-concurrency.json").write_text(json.dumps(result, indent=2) + "\n")
        print("before (one deadline on the whole embed call, queue included):")
        _print_concurrency(result["legacy_whole_call_deadline"])
        print("now (queue and service time bounded apart):")
        _print_concurrency(result["concurrency"])
        print(f"written to {args.out}/latency-concurrency.json")
        return 0
    (out_dir / "latency.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(result, out_dir / "latency.png")
    inside = result["inside_node"]
    for name in ("exact_hit", "semantic_hit"):
        row = inside[name]
        print(f"{name:13s} p50 {row['p50_ms']:.3f} ms  p99 {row['p99_ms']:.3f} ms")
    print(f"miss overhead p50 {inside['miss_lookup_overhead']['p50_ms']:.3f} ms")
    print(
        f"miss CPU {inside['miss_cpu_ms']:.2f} ms, of which embedding "
        f"{inside['miss_cpu_ms_embedding']:.2f} ms: "
        f"{inside['miss_cpu_ms_beyond_embedding']:.2f} ms beyond the embedding"
    )
    for name, row in result["verifier"].items():
        print(f"guards + verifier, {name}: p50 {row['p50_ms']:.4f} ms  p99 {row['p99_ms']:.4f} ms")
    _print_concurrency(result["concurrency"])
    print(f"written to {args.out}/latency.json and latency.png")
    return 0
