"""Per data set, what the node's rule sees: candidates with their similarity, guard vetoes
and verifier score (CLINC150 from the engine's own index; Quora and adversarial pairs
pairwise), and the measures taken on them."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from cachefleet_bench.adversarial import AdversarialPair, class_table, load_pairs
from cachefleet_bench.datasets import OOS, ClincData, QqpData, quantities
from cachefleet_bench.quality.decisions import BoolArray, Decisions, FloatArray, ci95
from cachefleet_bench.quality.engine import NO_VERIFIER, Bench
from cachefleet_bench.vectors import TableEmbedder
from cachefleet_node.config import VerifierConfig
from cachefleet_node.core.guards import GUARD_NAMES, GuardChain
from cachefleet_node.core.lexical import word_overlap
from cachefleet_node.core.verifier import score_lift, verifier_score
from cachefleet_node.engine import SEMANTIC_CANDIDATES
from cachefleet_node.tiers.l1_semantic import VectorMeta

__all__ = [
    "AdversarialRun",
    "ClincRun",
    "QqpRun",
    "adversarial_run",
    "adversarial_tables",
    "clinc_candidates",
    "qqp_rule",
    "qqp_run",
    "qqp_summary",
]


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


async def clinc_candidates(bench: Bench, embedder: TableEmbedder, data: ClincData) -> ClincRun:
    """The engine's top candidates for every query, with every guard's verdict on them."""
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
        prompts = [await _prompt(bench, c.meta) for c in found]
        candidates.append(
            [
                (
                    c.similarity,
                    bench.labels[c.meta.entry_id],
                    frozenset(chain.reasons(text, prompt)),
                    quantities(text) == quantities(prompt),
                    word_overlap(text, prompt),
                    verifier_score(text, prompt, c.similarity),
                )
                for c, prompt in zip(found, prompts, strict=True)
            ]
        )
    return ClincRun(list(data.queries), exact, candidates)


async def _prompt(bench: Bench, meta: VectorMeta) -> str:
    """A candidate's prompt: kept beside its vector, else read from its entry (as the engine
    does for vectors refilled from the durable tier)."""
    if meta.prompt is not None:
        return meta.prompt
    entry = await bench.engine.store.get(meta.namespace, meta.tenant, meta.entry_id)
    return "" if entry is None else entry.prompt or ""


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


def qqp_run(data: QqpData, embedder: TableEmbedder) -> QqpRun:
    """Cosine, guard vetoes and verifier score of every Quora pair."""
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


def qqp_rule(scores: FloatArray, label: BoolArray, threshold: float) -> dict[str, float]:
    """Hit rate on duplicates and false-hit rate of one fixed threshold."""
    hits = scores >= threshold
    return {
        "threshold": threshold,
        "hit_rate_duplicates": float(hits[label].mean()),
        "false_hit_rate": float(hits[~label].mean()),
    }


def qqp_summary(scores: FloatArray, label: BoolArray, rounds: int, seed: int) -> dict[str, Any]:
    """ROC-AUC and hit rate on duplicates at 1% and 5% false hits, with bootstrap intervals."""
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
    out["ci95"] = {key: ci95(values) for key, values in rows.items()}
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


def adversarial_run(embedder: TableEmbedder) -> AdversarialRun:
    """Cosine, guard vetoes and verifier score of every adversarial pair."""
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


def adversarial_tables(
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
