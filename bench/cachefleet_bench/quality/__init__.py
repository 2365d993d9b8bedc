"""Semantic-correctness harness: `python -m cachefleet_bench quality` (`make bench-quality`).

Runs the node's real decision path — the ONNX embedder's vectors, the request's partition
(`compute_keys` via `plan_request`), the in-process ANN (`SemanticIndex`, HNSW past 8k rows),
the threshold and the guards of `core/guards/` — on labelled public data:

- CLINC150: warm a `CacheEngine` with `train`, query `val` + `oos_val`. The top candidates
  the engine's own index returns are recorded once per query; every threshold/guard setting
  is then evaluated from them (the engine serves the first candidate that passes the guards,
  and stops at the first one below the threshold). The chosen setting is replayed through
  `CacheEngine.lookup` and must agree with the analysis request by request.
- Shuffled stream: the same texts in random order through an empty engine (store on miss),
  cumulative error vs requests.
- Quora question pairs: each pair is a partition holding `text_a`; `text_b` is looked up.
- Peers on the same vectors: GPTCache 0.1.44 (the package itself) and RedisVL's default rule.

Guards are switched on where their vetoes remove at least as many wrong hits as right ones
(CLINC + QQP + the adversarial dev split at the operating point); the threshold is then the
lowest one whose CLINC error rate stays within 1%. Writes `quality.json` and PNG plots.

`run` takes the steps of `steps.py` in order; `runs.py` holds what the rule sees per data
set, `decisions.py` the measures, `engine.py` the real engine, `report.py` the output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from cachefleet_bench.quality import steps
from cachefleet_bench.quality.report import plots, report, strip

__all__ = ["SUBSETS", "add_arguments", "main", "run"]

# name -> (clinc train per intent, clinc val per intent, oos queries, qqp pairs, bootstrap)
SUBSETS: dict[str, tuple[int | None, int | None, int | None, int | None, int]] = {
    "smoke": (4, 2, 20, 300, 50),
    "ci": (20, 5, 40, 2000, 200),
    "full": (None, None, None, None, 1000),
}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole harness; returns the result document."""
    train_k, val_k, oos_k, qqp_k, rounds = SUBSETS[args.subset]
    if args.qqp_pairs is not None:
        qqp_k = args.qqp_pairs or None
    rounds = args.bootstrap or rounds
    inputs = steps.load_inputs(args, (train_k, val_k, oos_k, qqp_k))
    with tempfile.TemporaryDirectory(prefix="cachefleet-quality-") as tmp:
        workdir = Path(tmp)
        bench, clinc_run = await steps.record_clinc(inputs, workdir)
        qqp_run, adversarial_run = steps.judge_pairs(inputs)
        choice = steps.choose_defaults(clinc_run, qqp_run, adversarial_run)
        clinc = await steps.evaluate_clinc(bench, inputs, clinc_run, choice, rounds, args.seed)
        adversarial = await steps.evaluate_adversarial(
            inputs, adversarial_run, choice, rounds, args.seed, workdir
        )
        qqp = steps.evaluate_qqp(inputs.qqp, qqp_run, choice, rounds, args.seed)
        stream = None
        if not args.skip_stream:
            stream = await steps.stream(inputs, choice, args.seed, workdir)
    return {
        "subset": args.subset,
        "seed": args.seed,
        "model": {"dir": inputs.model_dir.name, "onnx_sha256": inputs.vectors.model_sha},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "clinc": clinc,
        "qqp": qqp,
        "adversarial": adversarial,
        "guards": {"operating_threshold": choice.operating_threshold, "effects": choice.effects},
        "chosen": choice.document(),
        "stream": stream,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `quality`."""
    parser.add_argument("--subset", choices=sorted(SUBSETS), default="full")
    parser.add_argument(
        "--data-dir",
        help="folder with the data sets (default $CACHEFLEET_DATA_DIR or ../shared/data)",
    )
    parser.add_argument(
        "--model-dir", help="embedding model (default $CACHEFLEET_EMBEDDING_MODEL_DIR)"
    )
    parser.add_argument("--cache-dir", default="~/.cache/cachefleet/bench", help="embedding cache")
    parser.add_argument("--out", default="docs/benchmarks", help="where quality.json and plots go")
    parser.add_argument("--qqp-pairs", type=int, help="Quora pairs to use (0: all)")
    parser.add_argument("--bootstrap", type=int, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="ONNX threads (0: all cores)")
    parser.add_argument("--skip-stream", action="store_true", help="skip the shuffled stream")


def main(args: argparse.Namespace) -> int:
    """Run, write `quality.json` and the plots, print a summary."""
    started = time.monotonic()
    args.cache_dir = str(Path(args.cache_dir).expanduser())
    result = asyncio.run(run(args))
    result["seconds"] = round(time.monotonic() - started, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plots(result, out)
    (out / "quality.json").write_text(json.dumps(strip(result), indent=1) + "\n")
    report(result)
    print(f"written to {out / 'quality.json'} and PNG plots ({result['seconds']} s)")
    return 0
