"""Memory of the in-process tiers against their budget, measured by the OS (process RSS).

Four scenarios, each in a fresh process (RSS never shrinks back, so runs must not share
one): `exact` fills the exact tier with distinct chat completions; `partitions` fills the
semantic tier with one vector per partition (every entry its own system prompt); `mixed`
does both into one shared budget; `partition` puts every vector (distinct, random, unit)
into one partition, which gets graphs built in the background, and waits for the last one at
the end. Each samples, as entries are put, the bytes the tiers count and the growth of the
process's RSS over its start. Writes `docs/benchmarks/memory.json` and `memory.png`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from cachefleet_node.core.entry import CacheEntry
from cachefleet_node.memory import MemoryBudget, read_rss
from cachefleet_node.tiers.l1_exact import ByteBoundedLRU
from cachefleet_node.tiers.l1_semantic import SemanticIndex, VectorMeta

__all__ = ["SCENARIOS", "add_arguments", "main", "run_scenario", "sample_entry"]

SCENARIOS = ("exact", "partitions", "mixed", "partition")
MIB = 1024 * 1024
NOW = 1_800_000_000.0
_WORDS = (
    "reset password account settings security email link valid minutes support check spam "
    "folder contact open choose click receive arrive router factory network device restart "
    "invoice billing plan upgrade refund order shipping tracking delivery address update"
).split()


def sample_entry(i: int) -> CacheEntry:
    """A distinct, realistically sized exact entry: a ~700-byte chat.completion answering a
    ~40-word prompt, its ~250-byte canonical request."""
    rng = np.random.default_rng(i)
    words = [_WORDS[int(w)] for w in rng.integers(0, len(_WORDS), 120)]
    prompt = f"question {i}: " + " ".join(words[:40])
    answer = {
        "id": f"chatcmpl-{i:012d}",
        "object": "chat.completion",
        "created": 1_733_550_000 + i,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": " ".join(words[40:]).capitalize()},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 52, "completion_tokens": 96, "total_tokens": 148},
        "system_fingerprint": "fp_0123456789",
    }
    request = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are the support assistant of Example Corp."},
            {"role": "user", "content": prompt},
        ],
    }
    return CacheEntry(
        entry_id=f"{i:064x}",
        namespace="support",
        tenant="acme",
        model="gpt-4o-mini",
        created_at=NOW,
        expires_at=NOW + 86_400,
        answers=(orjson.dumps(answer),),
        prompt=prompt,
        request=orjson.dumps(request),
        prompt_tokens=52,
        completion_tokens=96,
    )


def run_scenario(scenario: str, entries: int, budget_bytes: int, dim: int) -> dict[str, Any]:
    """Fill the tiers as `scenario` says (in this process) and sample RSS against the budget."""
    budget = MemoryBudget(budget_bytes)
    exact = ByteBoundedLRU(budget)
    semantic = SemanticIndex(dim, max_entries=10 * entries, budget=budget)
    rng = np.random.default_rng(0)
    vectors = _unit(rng, 1024, dim)
    every = max(1, entries // 40)
    start_rss = read_rss()
    started = time.perf_counter()
    samples = []

    def sample(put: int) -> None:
        samples.append(
            {
                "entries_put": put,
                "exact_held": len(exact),
                "vectors_held": len(semantic),
                "counted_bytes": budget.used_bytes,
                "rss_growth_bytes": read_rss() - start_rss,
            }
        )

    for i in range(entries):
        entry = sample_entry(i)
        if scenario in ("exact", "mixed"):
            exact.put(entry)
        if scenario in ("partitions", "mixed"):
            meta = VectorMeta.of(entry)
            semantic.add(f"partition-{i}", vectors[i % len(vectors)], meta)
        if scenario == "partition":
            if i % len(vectors) == 0:
                vectors = _unit(rng, len(vectors), dim)
            semantic.add("one", vectors[i % len(vectors)], VectorMeta.of(entry))
        if (i + 1) % every == 0 or i + 1 == entries:
            sample(i + 1)
    while semantic.building:  # the last graph, swapped in by a search once built
        time.sleep(0.1)
        semantic.search("one", vectors[0], 1, NOW)
    if scenario == "partition":
        sample(entries)
    last = samples[-1]
    held = last["exact_held"] + last["vectors_held"]
    return {
        "scenario": scenario,
        "entries_put": entries,
        "budget_bytes": budget_bytes,
        "dim": dim,
        "seconds": round(time.perf_counter() - started, 2),
        "counted_bytes_per_item": round(last["counted_bytes"] / held) if held else None,
        "rss_bytes_per_item": round(last["rss_growth_bytes"] / held) if held else None,
        "peak_rss_growth_over_budget": round(
            max(s["rss_growth_bytes"] for s in samples) / budget_bytes, 3
        ),
        "samples": samples,
    }


def _unit(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    unit: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit


def _in_fresh_process(scenario: str, entries: int, budget_bytes: int, dim: int) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        result: dict[str, Any] = pool.apply(run_scenario, (scenario, entries, budget_bytes, dim))
    return result


def _plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    for axis, result in zip(axes[0], results, strict=True):
        x = [s["entries_put"] for s in result["samples"]]
        axis.plot(x, [s["rss_growth_bytes"] / MIB for s in result["samples"]], label="RSS growth")
        axis.plot(x, [s["counted_bytes"] / MIB for s in result["samples"]], label="counted")
        axis.axhline(result["budget_bytes"] / MIB, color="grey", linestyle="--", label="budget")
        axis.set_title(result["scenario"])
        axis.set_xlabel("distinct entries put")
        axis.set_ylabel("MiB")
        axis.legend()
    figure.suptitle("In-process tiers: process RSS against the L1 budget")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `memory`."""
    parser.add_argument("--entries", type=int, default=100_000, help="distinct entries put")
    parser.add_argument("--budget-mib", type=int, default=64, help="the L1 budget")
    parser.add_argument("--dim", type=int, default=384, help="embedding dimensions")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--out", default="docs/benchmarks")


def main(args: argparse.Namespace) -> int:
    """Run each scenario in a fresh process, write `memory.json` and `memory.png`."""
    results = []
    for scenario in args.scenarios.split(","):
        result = _in_fresh_process(scenario, args.entries, args.budget_mib * MIB, args.dim)
        results.append(result)
        print(
            f"{scenario}: {result['entries_put']} put, RSS growth "
            f"{result['samples'][-1]['rss_growth_bytes'] / MIB:.1f} MiB for a "
            f"{args.budget_mib} MiB budget (peak x{result['peak_rss_growth_over_budget']}), "
            f"{result['rss_bytes_per_item']} B/item by RSS, {result['counted_bytes_per_item']} "
            f"counted, {result['seconds']} s"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"machine": platform.platform(), "python": platform.python_version()}
    (out / "memory.json").write_text(json.dumps({**report, "results": results}, indent=2) + "\n")
    _plot(results, out / "memory.png")
    return 0
