"""`make demo`: a cache node on embedded defaults in front of a stub LLM, a replayed workload.

Starts the stub upstream and a `cachefleet-node serve` process (no Redis, Milvus Lite in a
local file), replays the built-in workload of paraphrased prompts, and prints hit rate,
latency per tier, wrong answers, tokens and dollars saved. Results go to `.demo/`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import numpy as np

__all__ = ["main"]

DEMO_MODEL = "gpt-4o"
#: `make demo` of the release before the verifier (commit 31557f1, threshold 0.82 + guards),
#: printed beside this run's figures.
PREVIOUS_RELEASE = {"commit": "31557f1", "hit_rate": 0.562, "wrong_hits": 0, "requests": 480}
_ANSWER_PREFIX = re.compile(r"^Answer to '(.*?)': ", re.DOTALL)


@dataclass
class Sample:
    """One replayed request and what came back."""

    group: str
    prompt: str
    stream: bool
    result: str
    tier: str | None
    latency_ms: float
    answered_prompt: str | None  # the prompt the served answer was generated for


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _say(message: str) -> None:
    print(f"==> {message}", flush=True)


def load_workload() -> dict[str, Any]:
    """The built-in workload: groups of paraphrases (and deliberate near-misses)."""
    text = resources.files("cachefleet_node.demo").joinpath("workload.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def build_requests(
    workload: dict[str, Any], seed: int, repeats: int
) -> list[tuple[str, str, str, bool]]:
    """(group, system prompt, user prompt, stream) in a seeded random order.

    Every paraphrase is asked once and the canonical phrasing `repeats` extra times; near-miss
    pairs share a system prompt so they compete in the same partition.
    """
    rng = random.Random(seed)
    systems = workload["system_prompts"]
    groups = workload["groups"]
    requests = []
    for group in groups:
        anchor = min(group["id"], group.get("near_miss_of") or group["id"])
        system = systems[sum(map(ord, anchor)) % len(systems)]
        prompts = list(group["prompts"]) + [group["prompts"][0]] * repeats
        for prompt in prompts:
            requests.append((group["id"], system, prompt, rng.random() < 0.2))
    rng.shuffle(requests)
    return requests


def _prompt_to_group(workload: dict[str, Any]) -> dict[str, str]:
    return {p: g["id"] for g in workload["groups"] for p in g["prompts"]}


async def _send(
    client: httpx.AsyncClient, url: str, group: str, system: str, prompt: str, stream: bool
) -> Sample:
    body = {
        "model": DEMO_MODEL,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}],
        "temperature": 0,
        "stream": stream,
    }
    started = time.perf_counter()
    response = await client.post(f"{url}/v1/chat/completions", json=body)
    latency = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    if stream:
        text = ""
        for block in response.text.split("\n\n"):
            if block.startswith("data: {"):
                for choice in json.loads(block[6:]).get("choices", []):
                    text += (choice.get("delta") or {}).get("content") or ""
    else:
        text = response.json()["choices"][0]["message"]["content"]
    match = _ANSWER_PREFIX.match(text)
    return Sample(
        group=group,
        prompt=prompt,
        stream=stream,
        result=response.headers.get("x-cachefleet-cache", "?"),
        tier=response.headers.get("x-cachefleet-tier"),
        latency_ms=latency,
        answered_prompt=match.group(1) if match else None,
    )


async def replay(
    url: str, requests: list[tuple[str, str, str, bool]], concurrency: int
) -> list[Sample]:
    """Send the requests with bounded concurrency, printing progress."""
    semaphore = asyncio.Semaphore(concurrency)
    done = 0
    samples: list[Sample] = []
    async with httpx.AsyncClient(timeout=60) as client:

        async def one(item: tuple[str, str, str, bool]) -> None:
            nonlocal done
            async with semaphore:
                samples.append(await _send(client, url, *item))
            done += 1
            if done % 50 == 0 or done == len(requests):
                hits = sum(s.result.startswith("hit") for s in samples)
                print(
                    f"    {done:4d}/{len(requests)} requests, hit rate so far {hits / done:.1%}",
                    flush=True,
                )

        await asyncio.gather(*(one(item) for item in requests))
    return samples


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def summarise(
    samples: list[Sample], workload: dict[str, Any], stats: dict[str, Any]
) -> dict[str, Any]:
    """Hit rates, wrong answers and latency by result."""
    owner = _prompt_to_group(workload)
    by_result: dict[str, list[float]] = {}
    for sample in samples:
        key = sample.result + (f" ({sample.tier})" if sample.tier else "")
        by_result.setdefault(key, []).append(sample.latency_ms)
    hits = [s for s in samples if s.result.startswith("hit")]
    wrong = [
        s
        for s in hits
        if s.answered_prompt is not None and owner.get(s.answered_prompt, s.group) != s.group
    ]
    misses = [s.latency_ms for s in samples if not s.result.startswith("hit")]
    namespace = next(iter(stats["namespaces"].values()))["node"]
    return {
        "requests": len(samples),
        "hit_rate": len(hits) / len(samples),
        "exact_hit_rate": sum(s.result == "hit-exact" for s in samples) / len(samples),
        "semantic_hit_rate": sum(s.result == "hit-semantic" for s in samples) / len(samples),
        "wrong_hits": len(wrong),
        "wrong_pairs": [
            {"asked": asked, "served_answer_for": answered, "count": count}
            for (asked, answered), count in Counter(
                (s.prompt, s.answered_prompt) for s in wrong
            ).most_common()
        ],
        "latency_ms": {
            key: {"count": len(v), "p50": _percentile(v, 50), "p99": _percentile(v, 99)}
            for key, v in sorted(by_result.items())
        },
        "hit_p50_ms": _percentile([s.latency_ms for s in hits], 50),
        "hit_p99_ms": _percentile([s.latency_ms for s in hits], 99),
        "miss_p50_ms": _percentile(misses, 50),
        "miss_p99_ms": _percentile(misses, 99),
        "tokens_saved": namespace["prompt_tokens_saved"] + namespace["completion_tokens_saved"],
        "dollars_saved": namespace["cost_saved_dollars"],
        "upstream_calls": namespace["misses"] + namespace["bypasses"],
        "previous_release": PREVIOUS_RELEASE,
    }


def print_report(summary: dict[str, Any], out: Path) -> None:
    """Human-readable report."""
    print()
    print("Cachefleet demo report")
    print("----------------------")
    print(f"requests                 {summary['requests']}")
    print(
        f"hit rate                 {summary['hit_rate']:.1%}  "
        f"(exact {summary['exact_hit_rate']:.1%}, semantic {summary['semantic_hit_rate']:.1%}; "
        f"previous release {PREVIOUS_RELEASE['commit']}: {PREVIOUS_RELEASE['hit_rate']:.1%})"
    )
    wrong = summary["wrong_hits"]
    print(
        f"wrong answers served     {wrong}  (hits whose answer belongs to another question; "
        f"previous release: {PREVIOUS_RELEASE['wrong_hits']} of {PREVIOUS_RELEASE['requests']})"
    )
    for pair in summary["wrong_pairs"][:3]:
        print(f"  {pair['count']}x asked {pair['asked']!r}")
        print(f"     served the answer to {pair['served_answer_for']!r}")
    print(f"upstream calls           {summary['upstream_calls']}")
    print(f"tokens saved             {summary['tokens_saved']}")
    print(f"dollars saved            ${summary['dollars_saved']:.4f}  (price table: {DEMO_MODEL})")
    print()
    print(
        f"{'latency by result (HTTP, client side)':40s} {'count':>6s} {'p50 ms':>9s} {'p99 ms':>9s}"
    )
    for key, row in summary["latency_ms"].items():
        print(f"  {key:38s} {row['count']:6d} {row['p50']:9.2f} {row['p99']:9.2f}")
    print(f"  {'all hits':38s} {'':6s} {summary['hit_p50_ms']:9.2f} {summary['hit_p99_ms']:9.2f}")
    misses = f"{summary['miss_p50_ms']:9.2f} {summary['miss_p99_ms']:9.2f}"
    print(f"  {'all misses (stub upstream)':38s} {'':6s} {misses}")
    print()
    print(f"results: {out / 'report.json'}, plot: {out / 'latency.png'}")


def plot(samples: list[Sample], path: Path) -> None:
    """Latency distribution per result, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5))
    bins = [float(b) for b in np.logspace(-0.5, 3.5, 60)]
    for result in ("hit-exact", "hit-semantic", "miss", "bypass"):
        values = [s.latency_ms for s in samples if s.result == result]
        if values:
            axis.hist(values, bins=bins, alpha=0.6, label=f"{result} ({len(values)})")
    axis.set_xscale("log")
    axis.set_xlabel("latency per request, ms (HTTP round trip)")
    axis.set_ylabel("requests")
    axis.set_title("Cachefleet demo: hits answer in milliseconds, misses wait for the LLM")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


async def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"cache node exited during start-up; see {log}")
            try:
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit(f"cache node not ready after 120 s; see {log}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _replay_and_collect(
    url: str,
    node: subprocess.Popen[bytes],
    log: Path,
    requests: list[tuple[str, str, str, bool]],
    concurrency: int,
) -> tuple[list[Sample], dict[str, Any]]:
    await _wait_ready(url, node, log)
    _say(
        f"replaying {len(requests)} requests ({concurrency} at a time, 20% streamed); "
        "each question comes in 4 phrasings"
    )
    samples = await replay(url, requests, concurrency)
    async with httpx.AsyncClient(timeout=10) as client:
        stats = (await client.get(f"{url}/v1/cache/stats")).json()
    return samples, stats


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start both processes, replay, report, stop them."""
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    workload = load_workload()
    requests = build_requests(workload, args.seed, args.repeats)
    stub_port, node_port = _free_port(), _free_port()
    python = sys.executable
    latency = f"{args.upstream_latency_ms:.0f} ms per answer"
    _say(f"starting the stub LLM upstream on 127.0.0.1:{stub_port} ({latency})")
    stub_argv = [python, "-m", "cachefleet_node.demo.stub_upstream", "--port", str(stub_port)]
    stub_argv += ["--latency-ms", str(args.upstream_latency_ms), "--token-delay-ms", "2"]
    node_argv = [python, "-m", "cachefleet_node.cli", "serve", "--port", str(node_port)]
    node_argv += ["--upstream", f"http://127.0.0.1:{stub_port}/v1", "--data-dir", str(out / "node")]
    node_log_path = out / "node.log"
    with (out / "stub.log").open("wb") as stub_log, node_log_path.open("wb") as node_log:
        stub = subprocess.Popen(stub_argv, stdout=stub_log, stderr=subprocess.STDOUT)  # noqa: S603
        _say(
            f"starting a cache node on 127.0.0.1:{node_port} (embedded defaults: in-process L1, "
            "SQLite entry store, Milvus Lite file)"
        )
        node = subprocess.Popen(node_argv, stdout=node_log, stderr=subprocess.STDOUT)  # noqa: S603
        url = f"http://127.0.0.1:{node_port}"
        try:
            samples, stats = asyncio.run(
                _replay_and_collect(url, node, node_log_path, requests, args.concurrency)
            )
        finally:
            _stop(node)
            _stop(stub)
    summary = summarise(samples, workload, stats)
    (out / "report.json").write_text(json.dumps(summary, indent=2))
    plot(samples, out / "latency.png")
    print_report(summary, out)
    return summary


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m cachefleet_node.demo`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", default=".demo", help="results directory (wiped first)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--repeats", type=int, default=2, help="extra asks of each canonical prompt"
    )
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--upstream-latency-ms", type=float, default=400.0)
    args = parser.parse_args(argv)
    if not os.environ.get("CACHEFLEET_EMBEDDING_MODEL_DIR"):
        print(
            "note: CACHEFLEET_EMBEDDING_MODEL_DIR is not set; the node will try to download "
            "the model from the hub",
            flush=True,
        )
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
