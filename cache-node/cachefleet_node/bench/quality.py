"""Semantic-correctness harness: `cachefleet-node bench quality` (`make bench-quality`).

Runs the node's real decision path — the ONNX embedder's vectors, the request's partition
(`compute_keys` via `plan_request`), the in-process ANN (`SemanticIndex`, HNSW past 8k rows),
the threshold and the guards of `core/guards.py` — on labelled public data:

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
(CLINC + QQP at the operating point); the threshold is then the lowest one whose CLINC error
rate stays within 1%. Writes `quality.json` and PNG plots.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import platform
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cachefleet_node.bench.adversarial import AdversarialPair, class_table, load_pairs
from cachefleet_node.bench.datasets import OOS, ClincData, QqpData, default_data_dir, quantities
from cachefleet_node.bench.datasets import load_clinc as _load_clinc
from cachefleet_node.bench.datasets import load_qqp as _load_qqp
from cachefleet_node.bench.peers import (
    GPTCACHE_DEFAULT_THRESHOLD,
    GPTCACHE_MAX_DISTANCE,
    REDISVL_DEFAULT_DISTANCE,
    GptCachePeer,
    top1_cosine,
)
from cachefleet_node.bench.vectors import TableEmbedder, VectorCache
from cachefleet_node.config import GuardsConfig, NamespaceConfig, NodeConfig, VerifierConfig
from cachefleet_node.core.calibration import Calibration, choose_threshold
from cachefleet_node.core.guards import GUARD_NAMES, GuardChain
from cachefleet_node.core.lexical import word_overlap
from cachefleet_node.core.request import decode_json_object
from cachefleet_node.core.verifier import score_lift, verifier_score
from cachefleet_node.engine import SEMANTIC_CANDIDATES, CacheEngine, LookupPlan
from cachefleet_node.metrics import NodeMetrics
from cachefleet_node.server.planning import plan_request
from cachefleet_node.tiers.entry_store import LocalEntryStore

__all__ = ["SUBSETS", "main", "run"]

SYSTEM = "You are the assistant of a bank and travel app. Answer the user's request."
MODEL = "gpt-4o-mini"
TARGET_ERROR = 0.01
#: Settings of `lexical_weight` compared at the peers' error rates (0: cosine only).
LEXICAL_WEIGHTS = (0.0, 0.1, 0.2, 0.3)
SWEEP = [round(x, 2) for x in np.arange(0.50, 1.0001, 0.01)]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# name -> (clinc train per intent, clinc val per intent, oos queries, qqp pairs, bootstrap)
SUBSETS: dict[str, tuple[int | None, int | None, int | None, int | None, int]] = {
    "smoke": (4, 2, 20, 300, 50),
    "ci": (20, 5, 40, 2000, 200),
    "full": (None, None, None, None, 1000),
}


def _say(message: str) -> None:
    print(f"==> {message}", flush=True)


# --------------------------------------------------------------------------- engine


def _body(text: str, system: str = SYSTEM) -> bytes:
    return json.dumps(
        {
            "model": MODEL,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": text}],
            "temperature": 0,
        }
    ).encode()


def _completion(answer: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
    }


#: The verifier off: the settings compared with the peers before it existed.
NO_VERIFIER = VerifierConfig(enabled=False)


def _namespace(
    threshold: float,
    guards: GuardsConfig,
    name: str = "bench",
    lexical_weight: float = 0.0,
    verifier: VerifierConfig = NO_VERIFIER,
) -> NamespaceConfig:
    return NamespaceConfig(
        name=name,
        similarity_threshold=threshold,
        min_threshold=min(0.5, threshold),
        guards=guards,
        lexical_weight=lexical_weight,
        verifier=verifier,
    )


class Bench:
    """A real `CacheEngine` (embedded store, in-process ANN) over table-backed vectors."""

    def __init__(self, embedder: TableEmbedder, data_dir: Path, ns: NamespaceConfig) -> None:
        config = NodeConfig(data_dir=str(data_dir), namespaces=[ns])
        self.engine = CacheEngine(
            config,
            embedder=embedder,
            store=LocalEntryStore(data_dir / "entries.sqlite3"),
            vectors=None,
            redis=None,
            metrics=NodeMetrics(),
        )
        self.labels: dict[str, str] = {}  # entry id -> answer label

    def plan(
        self, text: str, ns: NamespaceConfig | None = None, system: str = SYSTEM
    ) -> LookupPlan:
        """The plan the proxy would build for this prompt (`system`: the system prompt, part
        of the partition)."""
        body = decode_json_object(_body(text, system))
        _, plan = plan_request(self.engine.router, {}, body, "default")
        return plan if ns is None else dataclasses.replace(plan, ns=ns)

    async def store(self, text: str, label: str, vector: Any = None, system: str = SYSTEM) -> None:
        """Write an answer through every tier, as a miss would."""
        plan = self.plan(text, system=system)
        await self.engine.remember(plan, _completion(label), vector)
        self.labels[plan.keys.exact] = label

    async def lookup(
        self, text: str, ns: NamespaceConfig, system: str = SYSTEM
    ) -> tuple[str | None, Any]:
        """(served label or None, outcome) through `CacheEngine.lookup`."""
        outcome = await self.engine.lookup(self.plan(text, ns, system))
        if outcome.hit and outcome.entry is not None:
            return self.labels.get(outcome.entry.entry_id), outcome
        return None, outcome

    async def close(self) -> None:
        """Release the store."""
        await self.engine.close()


# --------------------------------------------------------------------------- metrics


@dataclasses.dataclass
class Decisions:
    """One decision per query: similarity of the served candidate (-inf: none) and its truth."""

    sim: FloatArray
    correct: BoolArray
    oos: BoolArray

    def samples(self) -> list[tuple[float, bool]]:
        """(similarity, correct) of queries that have a candidate."""
        return [(float(s), bool(c)) for s, c in zip(self.sim, self.correct, strict=True) if s > -1]

    def at(self, threshold: float) -> dict[str, float]:
        """Hit ratio, error rate, precision, OOS false-hit rate at one threshold."""
        hits = self.sim >= threshold
        wrong = hits & ~self.correct
        n_hits = int(hits.sum())
        return {
            "threshold": round(float(threshold), 4),
            "hit_ratio": float(hits.mean()),
            "error_rate": float(wrong.mean()),
            "precision": float((hits & self.correct).sum() / n_hits) if n_hits else 1.0,
            "oos_false_hit_rate": float(hits[self.oos].mean()) if self.oos.any() else 0.0,
        }

    def best(self, target_error: float) -> Calibration:
        """Largest hit ratio whose error rate is within the target."""
        return choose_threshold(self.samples(), len(self.sim), target_error)

    def subset(self, mask: BoolArray) -> Decisions:
        """The decisions of some queries only."""
        return Decisions(self.sim[mask], self.correct[mask], self.oos[mask])


def _best_hit(sim: FloatArray, correct: BoolArray, target: float) -> float:
    order = np.argsort(-sim, kind="stable")
    s = sim[order]
    wrong = np.cumsum(~correct[order] & (s > -1))
    n = len(sim)
    ok = (wrong / n <= target) & (s > -1)
    cut = np.append(s[1:] < s[:-1], True)  # a threshold can only sit below a tie group
    valid = np.nonzero(ok & cut)[0]
    return float((valid.max() + 1) / n) if len(valid) else 0.0


def _ci(values: Sequence[float]) -> list[float]:
    return [
        round(float(np.percentile(values, 2.5)), 4),
        round(float(np.percentile(values, 97.5)), 4),
    ]


def _bootstrap(
    decisions: Decisions, threshold: float | None, rounds: int, seed: int
) -> dict[str, Any]:
    """95% intervals: metrics at a fixed threshold, or the best hit ratio at error <= 1%/2%."""
    rng = np.random.default_rng(seed)
    n = len(decisions.sim)
    rows: dict[str, list[float]] = {}
    for _ in range(rounds):
        idx = rng.integers(0, n, n)
        sim, correct = decisions.sim[idx], decisions.correct[idx]
        if threshold is None:
            rows.setdefault("best_hit_ratio_at_1pct", []).append(_best_hit(sim, correct, 0.01))
            rows.setdefault("best_hit_ratio_at_2pct", []).append(_best_hit(sim, correct, 0.02))
        else:
            hits = sim >= threshold
            rows.setdefault("hit_ratio", []).append(float(hits.mean()))
            rows.setdefault("error_rate", []).append(float((hits & ~correct).mean()))
    return {key: _ci(values) for key, values in rows.items()}


# --------------------------------------------------------------------------- CLINC


@dataclasses.dataclass
class ClincRun:
    """Per-query candidates from the engine's index, and guard verdicts on them."""

    queries: list[tuple[str, str]]
    exact: list[str | None]  # label of an exact hit
    # (sim, label, vetoing guards, same quantities as the query, word overlap, verifier)
    candidates: list[list[tuple[float, str, frozenset[str], bool, float, float]]]

    def decide(
        self,
        guards: Sequence[str],
        *,
        answer_level: bool = False,
        lexical_weight: float = 0.0,
        verifier: VerifierConfig = NO_VERIFIER,
    ) -> Decisions:
        """The engine's rule: exact hit, else the candidate no enabled guard vetoes and the
        verifier does not refuse with the highest score (similarity + lexical_weight × word
        overlap + verifier.weight × (verifier score - 0.5); the first one on ties).

        `answer_level`: a hit is right only if the intent matches *and* the quantities do.
        """
        enabled = set(guards)
        sim = np.full(len(self.queries), -2.0)
        correct = np.zeros(len(self.queries), dtype=bool)
        for i, (_, label) in enumerate(self.queries):
            if self.exact[i] is not None:
                sim[i], correct[i] = 1.0, self.exact[i] == label
                continue
            for similarity, served, vetoes, same_quantities, overlap, p in self.candidates[i]:
                score = similarity + lexical_weight * overlap
                if verifier.enabled:
                    if p < verifier.min_score:
                        continue
                    score += score_lift(p, verifier.weight)
                if not vetoes & enabled and score > sim[i]:
                    right = served == label and (same_quantities or not answer_level)
                    sim[i], correct[i] = score, right
        oos = np.array([label == OOS for _, label in self.queries])
        return Decisions(sim, correct & ~oos, oos)


def _guards_config(enabled: Sequence[str]) -> GuardsConfig:
    return GuardsConfig(**{name: name in enabled for name in GUARD_NAMES})


async def _agreement(
    bench: Bench, queries: Sequence[tuple[str, str]], decisions: Decisions, ns: NamespaceConfig
) -> float:
    """Share of queries on which `CacheEngine.lookup` with `ns` does what the analysis says
    (hit or miss, and a right or wrong answer)."""
    agree = 0
    for i, (text, label) in enumerate(queries):
        served, _ = await bench.lookup(text, ns)
        hit = bool(decisions.sim[i] >= ns.similarity_threshold)
        predicted_right = bool(decisions.correct[i])
        agree += (served is not None) == hit and (
            not hit or (served == label and label != OOS) == predicted_right
        )
    return agree / len(queries)


Setting = tuple[tuple[str, ...], float, bool]  # enabled guards, lexical weight, verifier on


def _best_setting(
    settings: dict[Setting, Decisions], target_error: float
) -> tuple[Setting, Calibration]:
    """The setting (and threshold) with the largest hit ratio within the error target; the
    first listed on ties."""
    found = [(key, decisions.best(target_error)) for key, decisions in settings.items()]
    return max(found, key=lambda item: item[1].hit_ratio)


def _halves(n: int, seed: int) -> tuple[BoolArray, BoolArray]:
    """A seeded two-way split of the queries."""
    first = np.zeros(n, dtype=bool)
    first[np.random.default_rng(seed).permutation(n)[: n // 2]] = True
    return first, ~first


def _held_out(
    settings: dict[Setting, Decisions],
    peer: Decisions,
    peer_threshold: float,
    halves: tuple[BoolArray, BoolArray],
) -> list[dict[str, Any]]:
    """Tune setting and threshold at the peer's error rate on one half; on the other half,
    Cachefleet at that threshold against the peer's default rule."""
    rows = []
    for tune, test in (halves, halves[::-1]):
        target = peer.subset(tune).at(peer_threshold)["error_rate"]
        tuned = {key: decisions.subset(tune) for key, decisions in settings.items()}
        (guards, weight, verified), calibration = _best_setting(tuned, target)
        ours = settings[(guards, weight, verified)].subset(test).at(calibration.threshold)
        theirs = peer.subset(test).at(peer_threshold)
        rows.append(
            {
                "setting": {"guards": list(guards), "lexical_weight": weight, "verifier": verified},
                "threshold": calibration.threshold,
                "cachefleet": {"hit_ratio": ours["hit_ratio"], "error_rate": ours["error_rate"]},
                "peer": {"hit_ratio": theirs["hit_ratio"], "error_rate": theirs["error_rate"]},
            }
        )
    return rows


async def _clinc_candidates(bench: Bench, embedder: TableEmbedder, data: ClincData) -> ClincRun:
    chain = GuardChain(GUARD_NAMES)
    engine = bench.engine
    now = time.time()
    exact: list[str | None] = []
    candidates = []
    for text, _ in data.queries:
        plan = bench.plan(text)
        exact.append(bench.labels.get(plan.keys.exact))
        assert plan.keys.semantic is not None
        found = engine.l1_semantic.search(
            plan.keys.semantic.partition, embedder.vector(text), SEMANTIC_CANDIDATES, now
        )
        candidates.append(
            [
                (
                    c.similarity,
                    bench.labels[c.meta.entry_id],
                    frozenset(chain.reasons(text, c.meta.prompt)),
                    quantities(text) == quantities(c.meta.prompt),
                    word_overlap(text, c.meta.prompt),
                    verifier_score(text, c.meta.prompt, c.similarity),
                )
                for c in found
            ]
        )
    return ClincRun(list(data.queries), exact, candidates)


def _guard_effect(before: Decisions, after: Decisions, threshold: float) -> dict[str, int]:
    hits_b, hits_a = before.sim >= threshold, after.sim >= threshold
    right_b, right_a = hits_b & before.correct, hits_a & after.correct
    wrong_b, wrong_a = hits_b & ~before.correct, hits_a & ~after.correct
    return {
        "false_hits_removed": int(wrong_b.sum() - wrong_a.sum()),
        "right_hits_lost": int(right_b.sum() - right_a.sum()),
    }


# --------------------------------------------------------------------------- QQP


@dataclasses.dataclass
class QqpRun:
    """Pairwise cosine and guard vetoes."""

    sim: FloatArray
    label: BoolArray
    vetoes: list[frozenset[str]]
    verifier: FloatArray  # the verifier's score of each pair

    def scores(self, guards: Sequence[str], verifier: VerifierConfig = NO_VERIFIER) -> FloatArray:
        """The score (similarity, with the verifier's term when it is on), or -1 where an
        enabled guard vetoes the pair or the verifier refuses it."""
        enabled = set(guards)
        blocked = np.array([bool(v & enabled) for v in self.vetoes])
        score = self.sim
        if verifier.enabled:
            blocked |= self.verifier < verifier.min_score
            score = self.sim + score_lift(self.verifier, verifier.weight)
        return np.where(blocked, -1.0, score)


def _qqp_run(data: QqpData, embedder: TableEmbedder) -> QqpRun:
    chain = GuardChain(GUARD_NAMES)
    a = np.stack([embedder.vector(x) for x, _, _ in data.pairs])
    b = np.stack([embedder.vector(y) for _, y, _ in data.pairs])
    sim = np.einsum("ij,ij->i", a, b).astype(np.float64)
    vetoes = [frozenset(chain.reasons(y, x)) for x, y, _ in data.pairs]
    verifier = np.array(
        [verifier_score(y, x, float(s)) for (x, y, _), s in zip(data.pairs, sim, strict=True)]
    )
    return QqpRun(sim, np.array([bool(label) for _, _, label in data.pairs]), vetoes, verifier)


def _auc(scores: FloatArray, label: BoolArray) -> float:
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse]
    n1, n0 = int(label.sum()), int((~label).sum())
    return float((ranks[label].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _tpr_at_fpr(scores: FloatArray, label: BoolArray, fpr: float) -> tuple[float, float]:
    negatives = np.sort(scores[~label])[::-1]
    allowed = math.floor(fpr * len(negatives))
    cut = negatives[allowed] if allowed < len(negatives) else -np.inf
    return float((scores[label] > cut).mean()), float(cut)


def _qqp_rule(scores: FloatArray, label: BoolArray, threshold: float) -> dict[str, float]:
    hits = scores >= threshold
    return {
        "threshold": threshold,
        "hit_rate_duplicates": float(hits[label].mean()),
        "false_hit_rate": float(hits[~label].mean()),
    }


def _qqp_summary(scores: FloatArray, label: BoolArray, rounds: int, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {"roc_auc": round(_auc(scores, label), 4)}
    for fpr in (0.01, 0.05):
        tpr, cut = _tpr_at_fpr(scores, label, fpr)
        out[f"hit_rate_at_fhr_{round(fpr * 100)}pct"] = round(tpr, 4)
        out[f"threshold_at_fhr_{round(fpr * 100)}pct"] = round(cut, 4)
    rng = np.random.default_rng(seed)
    rows: dict[str, list[float]] = {}
    for _ in range(rounds):
        idx = rng.integers(0, len(scores), len(scores))
        s, y = scores[idx], label[idx]
        rows.setdefault("roc_auc", []).append(_auc(s, y))
        for fpr in (0.01, 0.05):
            rows.setdefault(f"hit_rate_at_fhr_{round(fpr * 100)}pct", []).append(
                _tpr_at_fpr(s, y, fpr)[0]
            )
    out["ci95"] = {key: _ci(values) for key, values in rows.items()}
    return out


# --------------------------------------------------------------------------- adversarial


@dataclasses.dataclass
class AdversarialRun:
    """Cosine, guard vetoes and verifier score of every adversarial pair."""

    pairs: list[AdversarialPair]
    sim: FloatArray
    vetoes: list[frozenset[str]]
    verifier: FloatArray

    def served(
        self, threshold: float, guards: Sequence[str], verifier: VerifierConfig = NO_VERIFIER
    ) -> BoolArray:
        """Which pairs the engine's rule serves (each pair alone in its partition)."""
        enabled = set(guards)
        allowed = np.array([not v & enabled for v in self.vetoes], dtype=bool)
        score = self.sim
        if verifier.enabled:
            allowed &= self.verifier >= verifier.min_score
            score = self.sim + score_lift(self.verifier, verifier.weight)
        return allowed & (score >= threshold)

    def split(self, name: str) -> BoolArray:
        """The pairs of one split."""
        return np.array([pair.split == name for pair in self.pairs], dtype=bool)


def _adversarial_run(embedder: TableEmbedder) -> AdversarialRun:
    pairs = load_pairs()
    chain = GuardChain(GUARD_NAMES)
    cached = np.stack([embedder.vector(pair.cached) for pair in pairs])
    asked = np.stack([embedder.vector(pair.asked) for pair in pairs])
    sim = np.einsum("ij,ij->i", cached, asked).astype(np.float64)
    vetoes = [frozenset(chain.reasons(pair.asked, pair.cached)) for pair in pairs]
    verifier = np.array(
        [
            verifier_score(pair.asked, pair.cached, float(cos))
            for pair, cos in zip(pairs, sim, strict=True)
        ]
    )
    return AdversarialRun(pairs, sim, vetoes, verifier)


def _adversarial_tables(
    run: AdversarialRun, rules: dict[str, BoolArray], rounds: int, seed: int
) -> dict[str, Any]:
    """Per split, per rule: served shares per class with bootstrap intervals."""
    tables: dict[str, Any] = {}
    for split in ("dev", "frozen"):
        mask = run.split(split)
        pairs = [pair for pair, keep in zip(run.pairs, mask, strict=True) if keep]
        tables[split] = {
            rule: class_table(pairs, served[mask], rounds=rounds, seed=seed)
            for rule, served in rules.items()
        }
    return tables


async def _adversarial_agreement(
    embedder: TableEmbedder, run: AdversarialRun, ns: NamespaceConfig, workdir: Path
) -> float:
    """Replay every pair through `CacheEngine` (cached prompt stored, asked prompt looked
    up, each pair in its own partition through its system prompt): the share of pairs where
    the engine serves exactly when the analysis says it does."""
    bench = Bench(embedder, workdir / "adversarial", ns)
    expected = run.served(ns.similarity_threshold, _enabled(ns.guards), ns.verifier)
    agree = 0
    try:
        for pair, serve in zip(run.pairs, expected, strict=True):
            system = f"{SYSTEM} (pair {pair.id})"
            await bench.store(pair.cached, pair.id, embedder.vector(pair.cached), system=system)
            served, _ = await bench.lookup(pair.asked, ns, system=system)
            agree += (served == pair.id) == bool(serve)
    finally:
        await bench.close()
    return agree / len(run.pairs)


def _enabled(guards: GuardsConfig) -> tuple[str, ...]:
    return tuple(name for name in GUARD_NAMES if getattr(guards, name))


# --------------------------------------------------------------------------- stream


async def _stream(
    embedder: TableEmbedder,
    rows: list[tuple[str, str]],
    ns: NamespaceConfig,
    peer_vectors: tuple[Sequence[str], Any],
    workdir: Path,
) -> dict[str, Any]:
    """Replay rows in order from an empty cache; cumulative wrong answers per policy."""
    bench = Bench(embedder, workdir / "stream", ns)
    gpt = GptCachePeer(*peer_vectors)
    redis_store = np.zeros((len(rows), embedder.dim), dtype=np.float32)
    redis_labels: list[str] = []
    wrong = {"cachefleet": 0, "redisvl": 0, "gptcache": 0}
    hits = dict.fromkeys(wrong, 0)
    curves: dict[str, list[int]] = {key: [] for key in wrong}
    started = time.monotonic()
    try:
        for i, (text, label) in enumerate(rows):
            served, outcome = await bench.lookup(text, ns)
            if outcome.hit:
                hits["cachefleet"] += 1
                wrong["cachefleet"] += label == OOS or served != label
            else:
                await bench.store(text, label, outcome.vector)
            vector = embedder.vector(text)
            count = len(redis_labels)
            scores = redis_store[:count] @ vector
            best = int(scores.argmax()) if count else -1
            if count and 1 - float(scores[best]) <= REDISVL_DEFAULT_DISTANCE:
                hits["redisvl"] += 1
                wrong["redisvl"] += label == OOS or redis_labels[best] != label
            else:
                redis_store[count] = vector
                redis_labels.append(label)
            answer = gpt.get(text) if gpt.real else None
            if answer is not None:
                hits["gptcache"] += 1
                wrong["gptcache"] += label == OOS or answer != label
            elif gpt.real:
                gpt.put(text, label)
            for key in wrong:
                curves[key].append(wrong[key])
            if (i + 1) % 2000 == 0 or i + 1 == len(rows):
                rate = (i + 1) / max(time.monotonic() - started, 1e-9)
                print(f"    stream: {i + 1}/{len(rows)} requests ({rate:.0f}/s)", flush=True)
    finally:
        await bench.close()
    n = len(rows)
    policies = ["cachefleet", "redisvl"] + (["gptcache"] if gpt.real else [])
    return {
        "requests": n,
        "policies": {
            key: {"hit_ratio": hits[key] / n, "error_rate": wrong[key] / n} for key in policies
        },
        "cumulative_wrong": {key: curves[key] for key in policies},
    }


# --------------------------------------------------------------------------- run


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole harness; returns the result document."""
    train_k, val_k, oos_k, qqp_k, rounds = SUBSETS[args.subset]
    if args.qqp_pairs is not None:
        qqp_k = args.qqp_pairs or None
    rounds = args.bootstrap or rounds
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    model_dir = Path(args.model_dir or os.environ.get("CACHEFLEET_EMBEDDING_MODEL_DIR", ""))
    cache_dir = Path(args.cache_dir)
    vectors = VectorCache(model_dir, cache_dir, threads=args.threads)

    _say(f"loading CLINC150 and Quora pairs from {data_dir} (subset: {args.subset})")
    clinc = _load_clinc(
        data_dir,
        train_per_intent=train_k,
        val_per_intent=val_k,
        oos_queries=oos_k,
        seed=args.seed,
    )
    qqp = _load_qqp(data_dir, pairs=qqp_k, seed=args.seed)
    _say(f"embedding {len(clinc.texts)} CLINC texts and {len(qqp.texts)} Quora texts once")
    clinc_texts = clinc.texts
    clinc_embedder = TableEmbedder(vectors, clinc_texts, vectors.embed("clinc", clinc_texts))
    qqp_texts = qqp.texts
    qqp_embedder = TableEmbedder(vectors, qqp_texts, vectors.embed("qqp", qqp_texts))
    adversarial_pairs = load_pairs()
    adversarial_texts = list(
        dict.fromkeys(t for pair in adversarial_pairs for t in (pair.cached, pair.asked))
    )
    _say(f"embedding {len(adversarial_texts)} texts of {len(adversarial_pairs)} adversarial pairs")
    adversarial_embedder = TableEmbedder(
        vectors, adversarial_texts, vectors.embed("adversarial", adversarial_texts)
    )

    with tempfile.TemporaryDirectory(prefix="cachefleet-quality-") as tmp:
        workdir = Path(tmp)
        _say(f"warming a cache engine with {len(clinc.train)} CLINC train prompts")
        bench = Bench(clinc_embedder, workdir / "warm", _namespace(0.8, GuardsConfig()))
        for i, (text, label) in enumerate(clinc.train):
            await bench.store(text, label, clinc_embedder.vector(text))
            if (i + 1) % 5000 == 0:
                print(f"    stored {i + 1}/{len(clinc.train)}", flush=True)
        _say(f"recording the engine's top-{SEMANTIC_CANDIDATES} candidates per query")
        run_ = await _clinc_candidates(bench, clinc_embedder, clinc)

        _say("Quora pairs: cosine, guard and verifier verdicts")
        qqp_run = _qqp_run(qqp, qqp_embedder)
        _say("adversarial pairs: cosine, guard and verifier verdicts")
        adversarial = _adversarial_run(adversarial_embedder)
        dev = adversarial.split("dev")
        trap = np.array([not pair.paraphrase for pair in adversarial.pairs])

        # ---- guard choice and threshold
        none = run_.decide(())
        every = run_.decide(GUARD_NAMES)
        t0 = every.best(TARGET_ERROR).threshold
        effects: dict[str, Any] = {}
        chosen: list[str] = []
        qqp_base = qqp_run.scores(()) >= t0
        for name in GUARD_NAMES:
            clinc_effect = _guard_effect(none, run_.decide((name,)), t0)
            vetoed = qqp_base & ~(qqp_run.scores((name,)) >= t0)
            qqp_effect = {
                "false_hits_removed": int((vetoed & ~qqp_run.label).sum()),
                "right_hits_lost": int((vetoed & qqp_run.label).sum()),
            }
            adv_vetoed = dev & adversarial.served(t0, ()) & ~adversarial.served(t0, (name,))
            adversarial_effect = {  # the dev split only: the frozen one is never tuned on
                "false_hits_removed": int((adv_vetoed & trap).sum()),
                "right_hits_lost": int((adv_vetoed & ~trap).sum()),
            }
            parts = (clinc_effect, qqp_effect, adversarial_effect)
            removed = sum(part["false_hits_removed"] for part in parts)
            lost = sum(part["right_hits_lost"] for part in parts)
            effects[name] = {
                "clinc": clinc_effect,
                "qqp": qqp_effect,
                "adversarial_dev": adversarial_effect,
                "enabled": removed >= lost,
            }
            if removed >= lost:
                chosen.append(name)
        guards_only = run_.decide(chosen)
        best1, best2 = guards_only.best(0.01), guards_only.best(0.02)
        threshold = math.ceil(best1.threshold * 100) / 100
        # The verifier's operating point was chosen by `bench train-verifier` (dev split and
        # CLINC); it ships as the node's default.
        verifier = VerifierConfig()
        ours = run_.decide(chosen, verifier=verifier)
        _say(
            f"chosen: guards {chosen or 'none'}, threshold {threshold} "
            f"(raw {best1.threshold:.4f}), verifier min_score {verifier.min_score}, "
            f"weight {verifier.weight}"
        )

        # ---- the real path at the chosen setting
        guards_config = _guards_config(chosen)
        chosen_ns = _namespace(threshold, guards_config, name="bench-chosen", verifier=verifier)
        _say("replaying every query through CacheEngine.lookup at the chosen setting")
        agree = await _agreement(bench, clinc.queries, ours, chosen_ns)

        # ---- peers
        _say("peers: RedisVL default rule and GPTCache on the same vectors")
        train_texts = list(dict.fromkeys(t for t, _ in clinc.train))
        last_label = dict(clinc.train)
        stored = np.stack([clinc_embedder.vector(t) for t in train_texts])
        queries = np.stack([clinc_embedder.vector(t) for t, _ in clinc.queries])
        top_index, top_sim = top1_cosine(queries, stored)
        oos = np.array([label == OOS for _, label in clinc.queries])
        top_right = (
            np.array(
                [
                    last_label[train_texts[j]] == label
                    for j, (_, label) in zip(top_index, clinc.queries, strict=True)
                ]
            )
            & ~oos
        )
        redisvl = Decisions(top_sim.astype(np.float64), top_right, oos)
        gpt = GptCachePeer(clinc_texts, clinc_embedder.vectors)
        gpt_agree = None
        if gpt.real:
            gpt.warm([t for t, _ in clinc.train], [label for _, label in clinc.train])
            ranks, rights = [], []
            gpt_agree = 0
            for text, label in clinc.queries:
                ranked = gpt.rank(text)
                rank, answer = ranked if ranked is not None else (-1.0, "")
                ranks.append((rank - 2) / 2)  # on unit vectors: rank = 4 - (2 - 2 cos)
                rights.append(answer == label and label != OOS)
                got = gpt.get(text)
                gpt_agree += (got is not None) == (
                    rank >= GPTCACHE_MAX_DISTANCE * GPTCACHE_DEFAULT_THRESHOLD
                )
            gptcache = Decisions(np.array(ranks), np.array(rights), oos)
        else:
            gptcache = redisvl
        gpt_default_cos = 1 - GPTCACHE_MAX_DISTANCE * (1 - GPTCACHE_DEFAULT_THRESHOLD) / 2

        def rule_row(decisions: Decisions, default: float | None) -> dict[str, Any]:
            row: dict[str, Any] = {}
            if default is not None:
                row["default"] = decisions.at(default)
                row["default_ci95"] = _bootstrap(decisions, default, rounds, args.seed)
                row["default_within_1pct"] = row["default"]["error_rate"] <= 0.01
            b1, b2 = decisions.best(0.01), decisions.best(0.02)
            row["best_hit_ratio_at_1pct"] = b1.hit_ratio
            row["threshold_at_1pct"] = b1.threshold
            row["best_hit_ratio_at_2pct"] = b2.hit_ratio
            row["threshold_at_2pct"] = b2.threshold
            row["best_ci95"] = _bootstrap(decisions, None, rounds, args.seed)
            row["sweep"] = [decisions.at(t) for t in SWEEP]
            return row

        clinc_rules = {
            "cachefleet": {**rule_row(ours, threshold), "guards": chosen},
            "cachefleet_no_verifier": rule_row(guards_only, threshold),
            "cachefleet_no_guards": rule_row(none, threshold),
            "redisvl_default_rule": rule_row(redisvl, 1 - REDISVL_DEFAULT_DISTANCE),
            "gptcache_default_rule": {
                **rule_row(gptcache, gpt_default_cos),
                "implementation": gpt.implementation,
                "get_agrees_with_rank_rule": gpt_agree,
            },
        }
        # Answer-level truth: the peers serve the nearest entry, so one top-1 array serves both.
        top_same_quantities = np.array(
            [
                quantities(text) == quantities(train_texts[j])
                for j, (text, _) in zip(top_index, clinc.queries, strict=True)
            ]
        )
        ours_answer = run_.decide(chosen, answer_level=True, verifier=verifier)
        answer_level = {
            "cachefleet": rule_row(ours_answer, threshold),
            "cachefleet_no_verifier": rule_row(run_.decide(chosen, answer_level=True), threshold),
            "cachefleet_no_guards": rule_row(run_.decide((), answer_level=True), threshold),
            "redisvl_default_rule": rule_row(
                Decisions(redisvl.sim, redisvl.correct & top_same_quantities, oos),
                1 - REDISVL_DEFAULT_DISTANCE,
            ),
            "gptcache_default_rule": rule_row(
                Decisions(gptcache.sim, gptcache.correct & top_same_quantities, oos),
                gpt_default_cos,
            ),
        }
        answer_settings: dict[Setting, Decisions] = {
            (tuple(guards), weight, False): run_.decide(
                guards, answer_level=True, lexical_weight=weight
            )
            for guards in (chosen, [])
            for weight in LEXICAL_WEIGHTS
        }
        answer_settings[(tuple(chosen), 0.0, True)] = ours_answer
        for peer in ("redisvl_default_rule", "gptcache_default_rule"):
            peer_default = answer_level[peer]["default"]
            (guards_at, weight_at, verified_at), ours_at = _best_setting(
                answer_settings, peer_default["error_rate"]
            )
            answer_level[peer]["equal_error_rate"] = {
                "peer_hit_ratio": peer_default["hit_ratio"],
                "peer_error_rate": peer_default["error_rate"],
                "cachefleet_hit_ratio": ours_at.hit_ratio,
                "cachefleet_threshold": ours_at.threshold,
                "cachefleet_setting": {
                    "guards": list(guards_at),
                    "lexical_weight": weight_at,
                    "verifier": verified_at,
                },
                "shipped_setting_hit_ratio": ours_answer.best(peer_default["error_rate"]).hit_ratio,
            }

        # Cachefleet at each peer's error rate: its best setting (guards as chosen or off,
        # lexical weight, or the shipped setting with the verifier), and a held-out check
        # (setting and threshold tuned on one half of the queries, judged against the peer
        # on the other half).
        settings: dict[Setting, Decisions] = {
            (tuple(guards), weight, False): run_.decide(guards, lexical_weight=weight)
            for guards in (chosen, [])
            for weight in LEXICAL_WEIGHTS
        }
        settings[(tuple(chosen), 0.0, True)] = ours
        halves = _halves(len(clinc.queries), args.seed)
        equal_error = {}
        recall_agreement = None
        peers = {
            "redisvl_default_rule": (redisvl, 1 - REDISVL_DEFAULT_DISTANCE),
            "gptcache_default_rule": (gptcache, gpt_default_cos),
        }
        for peer, (peer_decisions, peer_threshold) in peers.items():
            peer_default = clinc_rules[peer]["default"]
            target = peer_default["error_rate"]
            (guards_at, weight_at, verified_at), ours_at = _best_setting(settings, target)
            shipped_at = ours.best(target)
            equal_error[peer] = {
                "peer_hit_ratio": peer_default["hit_ratio"],
                "peer_error_rate": target,
                "cachefleet_hit_ratio": ours_at.hit_ratio,
                "cachefleet_threshold": ours_at.threshold,
                "cachefleet_setting": {
                    "guards": list(guards_at),
                    "lexical_weight": weight_at,
                    "verifier": verified_at,
                },
                "shipped_setting_hit_ratio": shipped_at.hit_ratio,
                "shipped_setting_threshold": shipped_at.threshold,
                "held_out": _held_out(settings, peer_decisions, peer_threshold, halves),
            }
            if peer == "gptcache_default_rule":
                _say(
                    f"replaying every query through CacheEngine.lookup at GPTCache's error rate "
                    f"(guards {list(guards_at) or 'off'}, lexical weight {weight_at}, "
                    f"verifier {'on' if verified_at else 'off'}, "
                    f"threshold {ours_at.threshold:.4f})"
                )
                recall_ns = _namespace(
                    ours_at.threshold,
                    _guards_config(guards_at),
                    name="bench-recall",
                    lexical_weight=weight_at,
                    verifier=verifier if verified_at else NO_VERIFIER,
                )
                recall_agreement = await _agreement(
                    bench, clinc.queries, settings[(guards_at, weight_at, verified_at)], recall_ns
                )
        await bench.close()

        # ---- adversarial pairs
        _say("adversarial pairs: served per class, every rule, both splits")
        adversarial_rules = {
            "cachefleet": adversarial.served(threshold, chosen, verifier),
            "cachefleet_no_verifier": adversarial.served(threshold, chosen),
            "cosine_only": adversarial.served(threshold, ()),
            "redisvl_default_rule": adversarial.sim >= 1 - REDISVL_DEFAULT_DISTANCE,
            "gptcache_default_rule": adversarial.sim >= gpt_default_cos,
        }
        _say("replaying every adversarial pair through CacheEngine at the chosen setting")
        adversarial_agreement = await _adversarial_agreement(
            adversarial_embedder, adversarial, chosen_ns, workdir
        )

        # ---- QQP
        _say("Quora pairs: hit rate on duplicates at false-hit rate <= 1% / 5%, ROC-AUC")
        qqp_rules = {
            "cachefleet": {
                **_qqp_summary(
                    qqp_run.scores(chosen, verifier),
                    qqp_run.label,
                    max(rounds // 5, 50),
                    args.seed,
                ),
                "at_chosen_threshold": _qqp_rule(
                    qqp_run.scores(chosen, verifier), qqp_run.label, threshold
                ),
            },
            "cachefleet_no_verifier": _qqp_summary(
                qqp_run.scores(chosen), qqp_run.label, max(rounds // 5, 50), args.seed
            ),
            "cosine_only": _qqp_summary(
                qqp_run.scores(()), qqp_run.label, max(rounds // 5, 50), args.seed
            ),
            "redisvl_default_rule": _qqp_rule(
                qqp_run.sim, qqp_run.label, 1 - REDISVL_DEFAULT_DISTANCE
            ),
            "gptcache_default_rule": _qqp_rule(qqp_run.sim, qqp_run.label, gpt_default_cos),
        }

        # ---- stream
        stream = None
        if not args.skip_stream:
            rows = list(clinc.train) + list(clinc.queries)
            random.Random(args.seed).shuffle(rows)
            _say(f"shuffled stream of {len(rows)} requests from an empty cache")
            stream = await _stream(
                clinc_embedder,
                rows,
                _namespace(threshold, guards_config, name="bench-stream", verifier=verifier),
                (clinc_texts, clinc_embedder.vectors),
                workdir,
            )

    return {
        "subset": args.subset,
        "seed": args.seed,
        "model": {"dir": model_dir.name, "onnx_sha256": vectors.model_sha},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "clinc": {
            "train": len(clinc.train),
            "queries": len(clinc.queries),
            "oos_queries": int(oos.sum()),
            "rules": clinc_rules,
            "equal_error_rate": equal_error,
            "answer_level": answer_level,
            "lexical_weights_at_1pct": {
                f"guards {'+'.join(guards) or 'off'}, weight {weight}"
                f"{', verifier' if verified else ''}": decisions.best(TARGET_ERROR).hit_ratio
                for (guards, weight, verified), decisions in settings.items()
            },
            "engine_agreement": agree,
            "engine_agreement_at_gptcache_error_rate": recall_agreement,
        },
        "qqp": {
            "pairs": len(qqp.pairs),
            "duplicates": int(qqp_run.label.sum()),
            "rules": qqp_rules,
        },
        "adversarial": {
            "pairs": len(adversarial.pairs),
            "by_split": {split: int(adversarial.split(split).sum()) for split in ("dev", "frozen")},
            "rules": _adversarial_tables(adversarial, adversarial_rules, rounds, args.seed),
            "engine_agreement": adversarial_agreement,
        },
        "guards": {"operating_threshold": t0, "effects": effects},
        "chosen": {
            "similarity_threshold": threshold,
            "guards": {name: name in chosen for name in GUARD_NAMES},
            "verifier": verifier.model_dump(),
            "target_error_rate": TARGET_ERROR,
            "raw_threshold": best1.threshold,
            "best_2pct_threshold": best2.threshold,
        },
        "stream": stream,
    }


# --------------------------------------------------------------------------- output


def _plots(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rules = result["clinc"]["rules"]
    names = {
        "cachefleet": "Cachefleet (threshold + guards + verifier)",
        "cachefleet_no_verifier": "threshold + guards",
        "cachefleet_no_guards": "cosine threshold only",
        "redisvl_default_rule": "RedisVL rule",
        "gptcache_default_rule": "GPTCache rule",
    }
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    for key, label in names.items():
        sweep = rules[key]["sweep"]
        hit = [row["hit_ratio"] for row in sweep]
        left.plot(hit, [row["precision"] for row in sweep], label=label)
        right.plot(hit, [row["error_rate"] for row in sweep], label=label)
        default = rules[key].get("default")
        if default is not None and key != "cachefleet_no_guards":
            left.scatter([default["hit_ratio"]], [default["precision"]], marker="o")
            right.scatter([default["hit_ratio"]], [default["error_rate"]], marker="o")
    right.axhline(0.01, color="grey", linestyle=":", linewidth=1)
    left.set(xlabel="hit ratio", ylabel="hit precision", title="CLINC150: precision vs hit ratio")
    right.set(
        xlabel="hit ratio",
        ylabel="error rate (wrong hits / requests)",
        title="CLINC150: error rate vs hit ratio (dots: defaults)",
    )
    right.set_ylim(0, 0.06)
    left.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "quality_clinc.png", dpi=110)
    plt.close(figure)

    tables = result["adversarial"]["rules"]["frozen"]
    classes = [row for row in tables["cachefleet"] if row not in ("traps", "paraphrases")]
    figure, axis = plt.subplots(figsize=(12, 4.8))
    width = 0.8 / len(ADVERSARIAL_RULES)
    for k, (rule, label) in enumerate(ADVERSARIAL_RULES.items()):
        values = [tables[rule][row]["served"] for row in classes]
        axis.bar(np.arange(len(classes)) + k * width, values, width, label=label)
    axis.set_xticks(np.arange(len(classes)) + 0.4 - width / 2, classes, rotation=20)
    axis.set(
        ylabel="share served from cache",
        title="Adversarial pairs, frozen split: paraphrases should be served, traps must not",
        ylim=(0, 1.3),
    )
    axis.legend(fontsize=8, loc="upper center", ncol=3)
    figure.tight_layout()
    figure.savefig(out / "quality_adversarial.png", dpi=110)
    plt.close(figure)

    stream = result.get("stream")
    if stream:
        figure, axis = plt.subplots(figsize=(8, 4.5))
        for key, curve in stream["cumulative_wrong"].items():
            axis.plot(
                range(1, len(curve) + 1),
                curve,
                label=f"{names.get(key + '_default_rule', names.get(key, key))}",
            )
        axis.set(
            xlabel="requests (shuffled, from an empty cache)",
            ylabel="wrong answers served",
            title="CLINC150 stream: cumulative wrong answers",
        )
        axis.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(out / "quality_stream.png", dpi=110)
        plt.close(figure)


def _strip(result: dict[str, Any]) -> dict[str, Any]:
    """The JSON document: stream curves thinned to 200 points."""
    stream = result.get("stream")
    if stream:
        n = stream["requests"]
        step = max(1, n // 200)
        stream["cumulative_wrong"] = {
            key: curve[step - 1 :: step] for key, curve in stream["cumulative_wrong"].items()
        }
        stream["curve_step"] = step
    return result


def _report(result: dict[str, Any]) -> None:
    rules = result["clinc"]["rules"]
    print()
    print(f"CLINC150 ({result['clinc']['queries']} queries, {result['clinc']['train']} cached)")
    print(
        f"{'rule':32s} {'default hit':>11s} {'default err':>11s} "
        f"{'best hit@1%':>11s} {'best hit@2%':>11s}"
    )
    for key, row in rules.items():
        default = row.get("default", {})
        print(
            f"{key:32s} {default.get('hit_ratio', 0):11.3f} {default.get('error_rate', 0):11.4f} "
            f"{row['best_hit_ratio_at_1pct']:11.3f} {row['best_hit_ratio_at_2pct']:11.3f}"
        )
    for peer, row in result["clinc"]["equal_error_rate"].items():
        setting = row["cachefleet_setting"]
        print(
            f"at {peer}'s error rate {row['peer_error_rate']:.4f}: "
            f"peer {row['peer_hit_ratio']:.3f}, "
            f"Cachefleet {row['cachefleet_hit_ratio']:.3f} (guards {setting['guards'] or 'off'}, "
            f"lexical weight {setting['lexical_weight']}; shipped setting "
            f"{row['shipped_setting_hit_ratio']:.3f})"
        )
        for half in row["held_out"]:
            print(
                f"    held-out half: Cachefleet {half['cachefleet']['hit_ratio']:.3f} hits at "
                f"{half['cachefleet']['error_rate']:.4f} error vs peer "
                f"{half['peer']['hit_ratio']:.3f} at {half['peer']['error_rate']:.4f}"
            )
    print("answer level (intent and quantities must match):")
    for key, row in result["clinc"]["answer_level"].items():
        default = row.get("default", {})
        print(
            f"  {key:30s} {default.get('hit_ratio', 0):11.3f} {default.get('error_rate', 0):11.4f} "
            f"{row['best_hit_ratio_at_1pct']:11.3f} {row['best_hit_ratio_at_2pct']:11.3f}"
        )
        if "equal_error_rate" in row:
            eq = row["equal_error_rate"]
            print(
                f"    at its error rate {eq['peer_error_rate']:.4f}: peer "
                f"{eq['peer_hit_ratio']:.3f}, Cachefleet {eq['cachefleet_hit_ratio']:.3f} "
                f"(lexical weight {eq['cachefleet_setting']['lexical_weight']}; shipped setting "
                f"{eq['shipped_setting_hit_ratio']:.3f})"
            )
    print(f"engine agreement with the analysis: {result['clinc']['engine_agreement']:.4f}")
    recall = result["clinc"]["engine_agreement_at_gptcache_error_rate"]
    if recall is not None:
        print(f"  ... at the GPTCache-error-rate setting: {recall:.4f}")
    qqp = result["qqp"]["rules"]
    print(
        f"QQP ({result['qqp']['pairs']} pairs): Cachefleet hit@FHR1% "
        f"{qqp['cachefleet']['hit_rate_at_fhr_1pct']:.3f} hit@FHR5% "
        f"{qqp['cachefleet']['hit_rate_at_fhr_5pct']:.3f} AUC {qqp['cachefleet']['roc_auc']:.3f}"
    )
    _report_adversarial(result["adversarial"])
    chosen = result["chosen"]
    print(
        f"chosen defaults: threshold {chosen['similarity_threshold']}, guards {chosen['guards']}, "
        f"verifier {chosen['verifier']}"
    )


ADVERSARIAL_RULES = {
    "cachefleet": "Cachefleet (threshold + guards + verifier)",
    "cachefleet_no_verifier": "threshold + guards",
    "cosine_only": "cosine threshold only",
    "redisvl_default_rule": "RedisVL rule (cos >= 0.90)",
    "gptcache_default_rule": "GPTCache rule (cos >= 0.60)",
}


def _report_adversarial(adversarial: dict[str, Any]) -> None:
    """Served share per class and rule, frozen split first (never tuned on)."""
    for split in ("frozen", "dev"):
        tables = adversarial["rules"][split]
        rules = list(ADVERSARIAL_RULES)
        print(
            f"adversarial pairs, {split} split ({adversarial['by_split'][split]} pairs): "
            "share served (traps must not be, paraphrases should be)"
        )
        print(f"  {'class':16s} {'n':>4s} " + " ".join(f"{rule[:14]:>14s}" for rule in rules))
        for row in tables["cachefleet"]:
            cells = " ".join(f"{tables[rule][row]['served']:14.3f}" for rule in rules)
            print(f"  {row:16s} {tables['cachefleet'][row]['pairs']:4d} {cells}")
    print(f"  engine agreement with the analysis: {adversarial['engine_agreement']:.4f}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `bench quality`."""
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
    _plots(result, out)
    (out / "quality.json").write_text(json.dumps(_strip(result), indent=1) + "\n")
    _report(result)
    print(f"written to {out / 'quality.json'} and PNG plots ({result['seconds']} s)")
    return 0
