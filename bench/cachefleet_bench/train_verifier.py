"""Train the verifier head: `python -m cachefleet_bench train-verifier` (`make train-verifier`).

Data (licences allow shipping the weights): the `dev` split of our own adversarial pairs
(`cachefleet_bench/adversarial-pairs/`, the `frozen` split is never read here) and CLINC150 `train`
(CC BY 3.0): each training query paired with its nearest other training queries (cosine
≥ 0.6), labelled right when the intents match and the quantities do (answer level). Only
pairs the verifier would see are used: cosine ≥ 0.6 and no guard veto.

The head is a logistic regression (L2, Newton steps) on `core/verifier.py`'s features; CLINC
pairs weigh `CLINC_WEIGHT` each against 1 for an adversarial pair. Five-fold cross-validation
over the dev groups gives out-of-fold scores, from which the operating point is chosen:
among `WEIGHTS` × `MIN_SCORES`, the one that serves the most dev paraphrases while serving
at most `MAX_DEV_TRAPS` of the dev traps at the namespace threshold, and keeps CLINC's hit
ratio at ≤ 1% error where it was before the verifier, both at the answer level (intent and
quantities must match, `CLINC_ANSWER_FLOOR`) and at the intent level (`CLINC_INTENT_FLOOR`);
points within `PARAPHRASE_TIE` of the most paraphrases tie, and the one serving the fewest
dev traps wins (then more paraphrases, more CLINC hits, the higher `min_score`). Writes
`core/data/verifier_head.json` with the choice and the cross-validated figures.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cachefleet_bench import NODE_DATA
from cachefleet_bench.adversarial import AdversarialPair, load_pairs
from cachefleet_bench.datasets import OOS, default_data_dir, load_clinc, quantities
from cachefleet_bench.vectors import VectorCache
from cachefleet_node.config import NamespaceConfig
from cachefleet_node.core.guards import GUARD_NAMES, GuardChain
from cachefleet_node.core.verifier import (
    FEATURE_NAMES,
    VerifierHead,
    pair_diff,
    pair_features,
    score_lift,
)

__all__ = ["OperatingPoint", "add_arguments", "fit_head", "main"]

OUTPUT = NODE_DATA / "verifier_head.json"
CLINC_WEIGHT = 0.05
CLINC_PAIRS = 8000
CLINC_NEIGHBOURS = 3
MIN_COSINE = 0.6  # pairs below never reach the verifier at any sensible threshold
L2 = 1.0
FOLDS = 5
WEIGHTS = (0.0, 0.025, 0.05, 0.075)
MIN_SCORES = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8)
#: A margin under the 3% the frozen split must meet: out-of-fold dev figures proved about two
#: points optimistic at the first frozen evaluation (docs/benchmarks/quality.md).
MAX_DEV_TRAPS = 0.015
#: Dev paraphrase shares closer than this (one dev pair is 0.4 points) are a tie, settled by
#: the fewer dev traps served, then more paraphrases, CLINC hits and the higher `min_score`.
PARAPHRASE_TIE = 0.005
#: CLINC150 answer-level hit ratio at <= 1% error of the release before the verifier
#: (threshold 0.82 + guards), docs/benchmarks/quality.md.
CLINC_ANSWER_FLOOR = 0.3332
#: The same at the intent level (the CLINC labels), the release before the verifier: 49.3%.
CLINC_INTENT_FLOOR = 0.493
FloatArray = npt.NDArray[np.float64]


def fit_head(x: FloatArray, y: FloatArray, weights: FloatArray, l2: float = L2) -> VerifierHead:
    """Weighted logistic regression on standardised features (column 0, the bias, is not
    scaled or penalised)."""
    assert FEATURE_NAMES[0] == "bias"
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    mean[0], scale[0] = 0.0, 1.0
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    beta = np.zeros(x.shape[1])
    penalty = np.diag(np.r_[0.0, np.full(x.shape[1] - 1, l2)])
    for _ in range(60):
        p = 1.0 / (1.0 + np.exp(-(z @ beta)))
        gradient = z.T @ (weights * (p - y)) + penalty @ beta
        hessian = (z * (weights * p * (1 - p))[:, None]).T @ z + penalty
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return VerifierHead(tuple(beta), tuple(mean), tuple(scale), {})


def _probabilities(head: VerifierHead, x: FloatArray) -> FloatArray:
    return np.array([head.probability(row) for row in x])


@dataclass(frozen=True)
class OperatingPoint:
    """`verifier.weight` and `verifier.min_score` for a namespace."""

    weight: float
    min_score: float


class _Features:
    """Features, cosines and guard verdicts of text pairs, embedded once."""

    def __init__(self, vectors: VectorCache, name: str, pairs: Sequence[tuple[str, str]]):
        texts = list(dict.fromkeys(t for pair in pairs for t in pair))
        table = vectors.embed(name, texts)
        row = {text: i for i, text in enumerate(texts)}
        left = table[[row[q] for q, _ in pairs]]
        right = table[[row[c] for _, c in pairs]]
        self.cosine = np.einsum("ij,ij->i", left, right).astype(np.float64)
        chain = GuardChain(GUARD_NAMES)
        self.vetoed = np.array([chain.reject_reason(q, c) is not None for q, c in pairs])
        diffs = [pair_diff(q, c) for q, c in pairs]
        self.frame = np.array([diff.frame for diff in diffs])
        self.x = np.array(
            [pair_features(float(cos), diff) for diff, cos in zip(diffs, self.cosine, strict=True)]
        )


def _served(
    features: _Features, p: FloatArray, point: OperatingPoint, t: float
) -> npt.NDArray[np.bool_]:
    score: FloatArray = features.cosine + score_lift(p, point.weight)
    served: npt.NDArray[np.bool_] = (score >= t) & ~features.vetoed & (p >= point.min_score)
    return served


def _clinc_best(
    features: _Features,
    p: FloatArray,
    right: npt.NDArray[np.bool_],
    point: OperatingPoint,
    k: int,
) -> float:
    """Largest hit ratio at <= 1% error: per query the best-scoring candidate among its top
    `k` that passes guards and verifier, queries ranked by that score."""
    n = len(features.cosine) // k
    score = features.cosine + score_lift(p, point.weight)
    allowed = ~features.vetoed & (p >= point.min_score)
    best = np.where(allowed, score, -np.inf).reshape(n, k)
    pick = best.argmax(axis=1)
    top = best[np.arange(n), pick]
    correct = right.reshape(n, k)[np.arange(n), pick] & np.isfinite(top)
    order = np.argsort(-top, kind="stable")
    wrong = np.cumsum(~correct[order])
    ok = np.nonzero((wrong <= 0.01 * n) & np.isfinite(top[order]))[0]
    return float((ok.max() + 1) / n) if len(ok) else 0.0


def _clinc_training_pairs(
    vectors: VectorCache, train: Sequence[tuple[str, str]], seed: int
) -> tuple[list[tuple[str, str]], FloatArray]:
    texts = list(dict.fromkeys(t for t, _ in train))
    intent = dict(train)
    table = vectors.embed("clinc-train", texts).astype(np.float32)
    pairs: list[tuple[str, str]] = []
    labels: list[float] = []
    for start in range(0, len(texts), 2000):
        block = table[start : start + 2000] @ table.T
        for i in range(block.shape[0]):
            block[i, start + i] = -1.0
        nearest = np.argsort(-block, axis=1)[:, :CLINC_NEIGHBOURS]
        for i, row in enumerate(nearest):
            query = texts[start + i]
            for j in row:
                if block[i, j] < MIN_COSINE:
                    continue
                other = texts[j]
                right = (
                    intent[query] == intent[other]
                    and intent[other] != OOS
                    and quantities(query) == quantities(other)
                )
                pairs.append((query, other))
                labels.append(float(right))
    keep = np.random.default_rng(seed).permutation(len(pairs))[:CLINC_PAIRS]
    keep.sort()
    return [pairs[i] for i in keep], np.array(labels)[keep]


def _folds(pairs: Sequence[AdversarialPair], seed: int) -> npt.NDArray[np.int64]:
    groups = sorted({pair.group for pair in pairs})
    order = np.random.default_rng(seed).permutation(len(groups))
    fold = {groups[i]: rank % FOLDS for rank, i in enumerate(order)}
    return np.array([fold[pair.group] for pair in pairs])


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Fit, choose the operating point, return the head document."""
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    model_dir = Path(args.model_dir or os.environ.get("CACHEFLEET_EMBEDDING_MODEL_DIR", ""))
    vectors = VectorCache(model_dir, Path(args.cache_dir).expanduser(), threads=args.threads)
    threshold = NamespaceConfig(name="defaults").similarity_threshold

    dev = load_pairs("dev")
    print(f"==> adversarial dev split: {len(dev)} pairs (the frozen split is not read)")
    adv = _Features(vectors, "adversarial", [(p.asked, p.cached) for p in dev])
    adv_y = np.array([float(p.paraphrase) for p in dev])
    adv_seen = ~adv.vetoed & (adv.cosine >= MIN_COSINE)

    clinc = load_clinc(data_dir)
    print(f"==> CLINC150: nearest-neighbour pairs among {len(clinc.train)} train queries")
    clinc_pairs, clinc_y = _clinc_training_pairs(vectors, clinc.train, args.seed)
    cl = _Features(vectors, "clinc-pairs", clinc_pairs)
    cl_seen = ~cl.vetoed & (cl.cosine >= MIN_COSINE)
    cl_x, cl_y = cl.x[cl_seen], clinc_y[cl_seen]

    def fit(mask: npt.NDArray[np.bool_]) -> VerifierHead:
        x = np.vstack([adv.x[mask], cl_x])
        y = np.r_[adv_y[mask], cl_y]
        w = np.r_[np.ones(int(mask.sum())), np.full(len(cl_y), CLINC_WEIGHT)]
        return fit_head(x, y, w)

    print(f"==> {FOLDS}-fold cross-validation over {len({p.group for p in dev})} dev groups")
    folds = _folds(dev, args.seed)
    out_of_fold = np.zeros(len(dev))
    for k in range(FOLDS):
        head = fit(adv_seen & (folds != k))
        out_of_fold[folds == k] = _probabilities(head, adv.x[folds == k])
    head = fit(adv_seen)

    print("==> CLINC150 val: top-4 candidates per query for the operating point")
    queries = clinc.queries
    stored = list(dict.fromkeys(t for t, _ in clinc.train))
    intent = dict(clinc.train)
    table = vectors.embed("clinc-stored", stored).astype(np.float32)
    asked = vectors.embed("clinc-queries", [t for t, _ in queries]).astype(np.float32)
    top = np.argsort(-(asked @ table.T), axis=1)[:, :4]
    candidates = [(q, stored[j]) for (q, _), row in zip(queries, top, strict=True) for j in row]
    cc = _Features(vectors, "clinc-candidates", candidates)
    right = np.array(
        [
            intent[stored[j]] == label and label != OOS
            for (_, label), row in zip(queries, top, strict=True)
            for j in row
        ]
    )
    right_answer = right & np.array(
        [
            quantities(query) == quantities(stored[j])
            for (query, _), row in zip(queries, top, strict=True)
            for j in row
        ]
    )
    cc_p = _probabilities(head, cc.x)

    table_rows = []
    for weight in WEIGHTS:
        for min_score in MIN_SCORES:
            point = OperatingPoint(weight, min_score)
            served = _served(adv, out_of_fold, point, threshold)
            traps = float(served[adv_y == 0].mean())
            paraphrases = float(served[adv_y == 1].mean())
            clinc_best = _clinc_best(cc, cc_p, right, point, 4)
            clinc_answer = _clinc_best(cc, cc_p, right_answer, point, 4)
            feasible = (
                traps <= MAX_DEV_TRAPS
                and clinc_answer >= CLINC_ANSWER_FLOOR
                and clinc_best >= CLINC_INTENT_FLOOR
            )
            table_rows.append(
                {
                    "weight": weight,
                    "min_score": min_score,
                    "dev_traps_served": round(traps, 4),
                    "dev_paraphrases_served": round(paraphrases, 4),
                    "clinc_hit_ratio_at_1pct": round(clinc_best, 4),
                    "clinc_answer_hit_ratio_at_1pct": round(clinc_answer, 4),
                    "feasible": feasible,
                }
            )
            print(
                f"    weight {weight:<5} min_score {min_score:<4}: dev traps {traps:.3f} "
                f"paraphrases {paraphrases:.3f}, CLINC hit@1% {clinc_best:.4f} "
                f"(answer level {clinc_answer:.4f})"
                f"{'' if feasible else '  (not feasible)'}"
            )
    feasible_rows = [row for row in table_rows if row["feasible"]]
    if not feasible_rows:
        raise SystemExit("no operating point meets the dev-trap and CLINC constraints")
    most = max(row["dev_paraphrases_served"] for row in feasible_rows)
    near = [row for row in feasible_rows if row["dev_paraphrases_served"] >= most - PARAPHRASE_TIE]
    pick = min(
        near,
        key=lambda row: (
            row["dev_traps_served"],
            -row["dev_paraphrases_served"],
            -row["clinc_hit_ratio_at_1pct"],
            -row["min_score"],
        ),
    )
    chosen = OperatingPoint(pick["weight"], pick["min_score"])
    print(f"==> chosen: weight {chosen.weight}, min_score {chosen.min_score}")
    document = head.to_json()
    document["trained_on"] = {
        "adversarial_dev_pairs": int(adv_seen.sum()),
        "clinc_pairs": len(cl_y),
        "clinc_weight": CLINC_WEIGHT,
        "l2": L2,
        "min_cosine": MIN_COSINE,
        "threshold": threshold,
        "operating_point": {"weight": chosen.weight, "min_score": chosen.min_score},
        "selection": table_rows,
    }
    return document


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `train-verifier`."""
    parser.add_argument("--data-dir", help="CLINC150 folder (default $CACHEFLEET_DATA_DIR)")
    parser.add_argument(
        "--model-dir", help="embedding model (default $CACHEFLEET_EMBEDDING_MODEL_DIR)"
    )
    parser.add_argument("--cache-dir", default="~/.cache/cachefleet/bench", help="embedding cache")
    parser.add_argument("--out", default=str(OUTPUT), help="where the head goes")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="ONNX threads (0: all cores)")


def main(args: argparse.Namespace) -> int:
    """Train and write the head."""
    started = time.monotonic()
    document = train(args)
    Path(args.out).write_text(json.dumps(document, indent=1) + "\n")
    print(f"written to {args.out} ({time.monotonic() - started:.0f} s)")
    return 0
