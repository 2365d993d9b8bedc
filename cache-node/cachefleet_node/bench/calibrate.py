"""`cachefleet-node bench calibrate`: a namespace threshold from labelled samples.

Input: JSON lines, one per request, `{"similarity": 0.87, "correct": true}` for a request
whose best guard-passing candidate had that similarity (and whether serving it would have
been right), or `{"similarity": null}` for a request without a candidate. The shadow-mode
log lines (`shadow_hit`) and the quality harness produce such samples. Prints the lowest
threshold whose error rate (wrong answers per request) meets the target, with the hit ratio
and false-hit rate it implies, as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cachefleet_node.core.calibration import choose_threshold

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `bench calibrate`."""
    parser.add_argument("samples", help="JSON lines: {similarity, correct} per request")
    parser.add_argument("--target-error-rate", type=float, default=0.01)
    parser.add_argument("--min-threshold", type=float, default=0.5)
    parser.add_argument("--max-threshold", type=float, default=1.0)


def main(args: argparse.Namespace) -> int:
    """Read the samples, print the calibration."""
    samples: list[tuple[float, bool]] = []
    requests = 0
    for number, line in enumerate(Path(args.samples).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            similarity = row["similarity"]
            requests += 1
            if similarity is not None:
                samples.append((float(similarity), bool(row["correct"])))
        except (ValueError, KeyError, TypeError) as exc:
            print(f"cachefleet-node: {args.samples}:{number}: bad sample ({exc})", file=sys.stderr)
            return 2
    if requests == 0:
        print(f"cachefleet-node: {args.samples}: no samples", file=sys.stderr)
        return 2
    result = choose_threshold(
        samples,
        requests,
        args.target_error_rate,
        floor=args.min_threshold,
        ceiling=args.max_threshold,
    )
    print(
        json.dumps(
            {
                "target_error_rate": args.target_error_rate,
                "threshold": result.threshold,
                "hit_ratio": result.hit_ratio,
                "error_rate": result.error_rate,
                "false_hit_rate": result.false_hit_rate,
                "samples": result.samples,
                "requests": result.requests,
            },
            indent=2,
        )
    )
    return 0
