"""Decisions per query and their measures: rates at a threshold, the best threshold for an
error target, bootstrap intervals, and the choice among settings."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from cachefleet_node.core.calibration import Calibration, choose_threshold

__all__ = [
    "SWEEP",
    "BoolArray",
    "Decisions",
    "FloatArray",
    "Setting",
    "best_setting",
    "ci95",
    "guard_effect",
    "held_out",
    "rule_row",
    "split_halves",
]

SWEEP = [round(x, 2) for x in np.arange(0.50, 1.0001, 0.01)]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Setting = tuple[tuple[str, ...], float, bool]  # enabled guards, lexical weight, verifier on


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


def ci95(values: Sequence[float]) -> list[float]:
    """The 2.5th and 97.5th percentiles, rounded."""
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
    return {key: ci95(values) for key, values in rows.items()}


def rule_row(decisions: Decisions, default: float | None, rounds: int, seed: int) -> dict[str, Any]:
    """One rule's figures: at its default threshold (if it has one) with intervals, its best
    hit ratios at 1% and 2% error with intervals, and the threshold sweep."""
    row: dict[str, Any] = {}
    if default is not None:
        row["default"] = decisions.at(default)
        row["default_ci95"] = _bootstrap(decisions, default, rounds, seed)
        row["default_within_1pct"] = row["default"]["error_rate"] <= 0.01
    b1, b2 = decisions.best(0.01), decisions.best(0.02)
    row["best_hit_ratio_at_1pct"] = b1.hit_ratio
    row["threshold_at_1pct"] = b1.threshold
    row["best_hit_ratio_at_2pct"] = b2.hit_ratio
    row["threshold_at_2pct"] = b2.threshold
    row["best_ci95"] = _bootstrap(decisions, None, rounds, seed)
    row["sweep"] = [decisions.at(t) for t in SWEEP]
    return row


def best_setting(
    settings: dict[Setting, Decisions], target_error: float
) -> tuple[Setting, Calibration]:
    """The setting (and threshold) with the largest hit ratio within the error target; the
    first listed on ties."""
    found = [(key, decisions.best(target_error)) for key, decisions in settings.items()]
    return max(found, key=lambda item: item[1].hit_ratio)


def split_halves(n: int, seed: int) -> tuple[BoolArray, BoolArray]:
    """A seeded two-way split of the queries."""
    first = np.zeros(n, dtype=bool)
    first[np.random.default_rng(seed).permutation(n)[: n // 2]] = True
    return first, ~first


def held_out(
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
        (guards, weight, verified), calibration = best_setting(tuned, target)
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


def guard_effect(before: Decisions, after: Decisions, threshold: float) -> dict[str, int]:
    """Wrong hits a guard removes and right hits it costs at one threshold."""
    hits_b, hits_a = before.sim >= threshold, after.sim >= threshold
    right_b, right_a = hits_b & before.correct, hits_a & after.correct
    wrong_b, wrong_a = hits_b & ~before.correct, hits_a & ~after.correct
    return {
        "false_hits_removed": int(wrong_b.sum() - wrong_a.sum()),
        "right_hits_lost": int(right_b.sum() - right_a.sum()),
    }
