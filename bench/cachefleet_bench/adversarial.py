"""The adversarial pair set: near-miss traps and true paraphrases, our own wording.

`adversarial-pairs/*.jsonl` holds labelled pairs `(a, b)`: `a` is cached, `b` is asked. Paraphrases
(`para.*`, label 1) must be served from `a`'s entry; traps (`trap.*`, label 0) look almost
the same but need another answer. Classes:

- `para.reword`, `para.length`, `para.typo`, `para.reorder`, `para.intent` (a goal stated
  in other words, the counterpart of `trap.intent`);
- `trap.negation`, `trap.number` (prefix numbers 13/131, units, dates, versions, counts),
  `trap.entity`, `trap.scope` (audience, length, subject, quantifier), `trap.direction`
  (roles and directions swapped), `trap.constraint` (an added "without X"), `trap.intent`
  (the same topic, the opposite goal, in other words: enable / disable, keep / discard, add /
  remove, increase / decrease, start / cancel).

Pairs built from one base question share a `group`. The split is fixed by a hash of the
group: `frozen` (about half) is never used to train or tune anything — the verifier head, the
guards and the operating point are chosen on `dev` only — and is reported beside it. A row
may name its split (`"split": "dev"`): pairs written to tune on after the frozen split was
first run (`round8.jsonl`, `round9.jsonl`) are all `dev`, so the frozen split stays the
same set.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

__all__ = [
    "CLASSES",
    "AdversarialPair",
    "class_table",
    "load_pairs",
    "split_of",
]

CLASSES = (
    "para.reword",
    "para.length",
    "para.typo",
    "para.reorder",
    "para.intent",
    "trap.negation",
    "trap.number",
    "trap.entity",
    "trap.scope",
    "trap.direction",
    "trap.constraint",
    "trap.intent",
)


@dataclass(frozen=True, slots=True)
class AdversarialPair:
    """One labelled pair: `cached` is stored, `asked` is looked up."""

    id: str
    group: str
    domain: str
    cls: str
    paraphrase: bool
    cached: str
    asked: str
    split: str


def split_of(group: str) -> str:
    """`frozen` or `dev`, fixed by the group's hash (stable when pairs are added)."""
    return "frozen" if hashlib.sha256(group.encode()).digest()[0] % 2 else "dev"


def load_pairs(split: str | None = None) -> list[AdversarialPair]:
    """Every pair (or one split's), checked: known class, label matching the class, unique
    ids, non-empty texts that differ."""
    folder = resources.files("cachefleet_bench").joinpath("adversarial-pairs")
    pairs: list[AdversarialPair] = []
    seen: set[str] = set()
    for item in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if not item.name.endswith(".jsonl"):
            continue
        stem = item.name.removesuffix(".jsonl")
        for number, line in enumerate(item.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            row: dict[str, Any] = json.loads(line)
            where = f"{item.name}:{number}"
            if row["cls"] not in CLASSES:
                raise ValueError(f"{where}: unknown class {row['cls']!r}")
            paraphrase = row["cls"].startswith("para.")
            if int(row["label"]) != int(paraphrase):
                raise ValueError(f"{where}: label {row['label']} contradicts {row['cls']}")
            a, b = str(row["a"]).strip(), str(row["b"]).strip()
            if not a or not b or a == b:
                raise ValueError(f"{where}: texts must be non-empty and differ")
            pair_id = f"{stem}/{row['id']}"
            if pair_id in seen:
                raise ValueError(f"{where}: duplicate id {pair_id}")
            seen.add(pair_id)
            group = f"{stem}/{row['group']}"
            split_name = row.get("split") or split_of(group)
            if split_name not in ("dev", "frozen"):
                raise ValueError(f"{where}: unknown split {split_name!r}")
            pairs.append(
                AdversarialPair(
                    pair_id, group, row["domain"], row["cls"], paraphrase, a, b, split_name
                )
            )
    return [pair for pair in pairs if split is None or pair.split == split]


def _interval(values: np.ndarray, rounds: int, rng: np.random.Generator) -> list[float]:
    if len(values) == 0:
        return [0.0, 0.0]
    means = values[rng.integers(0, len(values), (rounds, len(values)))].mean(axis=1)
    return [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)]


def _of_class(cls: str) -> Callable[[AdversarialPair], bool]:
    return lambda pair: pair.cls == cls


def class_table(
    pairs: Sequence[AdversarialPair],
    served: np.ndarray,
    *,
    rounds: int = 1000,
    seed: int = 7,
) -> dict[str, Any]:
    """Share of pairs served, per class and for all traps / all paraphrases, with 95%
    bootstrap intervals (pairs resampled within each row)."""
    rng = np.random.default_rng(seed)
    rows: dict[str, Any] = {}
    selectors: dict[str, Callable[[AdversarialPair], bool]] = {
        "traps": lambda pair: not pair.paraphrase,
        "paraphrases": lambda pair: pair.paraphrase,
    }
    for cls in CLASSES:
        selectors[cls] = _of_class(cls)
    for name, selected in selectors.items():
        mask = np.array([selected(pair) for pair in pairs], dtype=bool)
        values = served[mask].astype(np.float64)
        rows[name] = {
            "pairs": int(mask.sum()),
            "served": round(float(values.mean()), 4) if len(values) else 0.0,
            "ci95": _interval(values, rounds, rng),
        }
    return rows
