"""Labelled quality data sets, read by path (never copied into the repository).

- CLINC150 (`clinc150_dev.json`): `[text, intent]` rows; `train` warms the cache, `val` and
  `oos_val` are the queries. A hit is correct when the cached intent equals the query's;
  every hit on an out-of-scope (`oos`) query is wrong.
- Quora question pairs (`similiar_qqp_full.json.gz`, a gzipped tar holding one JSON array of
  `{text_a, text_b, label}`): `text_a` is stored, `text_b` looked up; label 1 should hit.

Subsets are seeded and stratified (per intent, per label) so a small CI run keeps the shape
of the full data.
"""

from __future__ import annotations

import json
import os
import random
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CLINC_FILE",
    "DATA_DIR_ENV",
    "OOS",
    "QQP_FILE",
    "ClincData",
    "QqpData",
    "default_data_dir",
    "load_clinc",
    "load_qqp",
    "quantities",
]

DATA_DIR_ENV = "CACHEFLEET_DATA_DIR"
CLINC_FILE = "clinc150_dev.json"
QQP_FILE = "similiar_qqp_full.json.gz"
OOS = "oos"

Rows = list[tuple[str, str]]


def default_data_dir() -> Path:
    """`$CACHEFLEET_DATA_DIR`, else `../shared/data` beside the working directory."""
    return Path(os.environ.get(DATA_DIR_ENV) or Path.cwd().parent / "shared" / "data")


@dataclass(frozen=True)
class ClincData:
    """Warm-up rows and query rows, each `(text, intent)`."""

    train: Rows
    queries: Rows

    @property
    def texts(self) -> list[str]:
        """Every distinct text, in a stable order (what gets embedded)."""
        return list(dict.fromkeys(t for t, _ in self.train + self.queries))


@dataclass(frozen=True)
class QqpData:
    """Question pairs `(text_a, text_b, label)`."""

    pairs: list[tuple[str, str, int]]

    @property
    def texts(self) -> list[str]:
        """Every distinct text, in a stable order."""
        return list(dict.fromkeys(t for a, b, _ in self.pairs for t in (a, b)))


def _check(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: set {DATA_DIR_ENV} or --data-dir to the folder holding it"
        )


def _per_label(rows: Rows, per_label: int | None, rng: random.Random) -> Rows:
    if per_label is None:
        return rows
    by_label: dict[str, Rows] = {}
    for row in rows:
        by_label.setdefault(row[1], []).append(row)
    kept: Rows = []
    for label in sorted(by_label):
        group = by_label[label]
        kept.extend(rng.sample(group, min(per_label, len(group))))
    return kept


def load_clinc(
    data_dir: Path,
    *,
    train_per_intent: int | None = None,
    val_per_intent: int | None = None,
    oos_queries: int | None = None,
    seed: int = 0,
) -> ClincData:
    """CLINC150 dev; `None` limits keep everything (the full run)."""
    path = data_dir / CLINC_FILE
    _check(path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    rng = random.Random(seed)
    train = _per_label([(t, i) for t, i in raw["train"]], train_per_intent, rng)
    val = _per_label([(t, i) for t, i in raw["val"]], val_per_intent, rng)
    oos = [(t, i) for t, i in raw["oos_val"]]
    if oos_queries is not None:
        oos = rng.sample(oos, min(oos_queries, len(oos)))
    return ClincData(train=train, queries=val + oos)


def load_qqp(data_dir: Path, *, pairs: int | None = None, seed: int = 0) -> QqpData:
    """Quora pairs; `pairs` keeps a seeded subset with the full set's label ratio."""
    path = data_dir / QQP_FILE
    _check(path)
    with tarfile.open(path) as archive:
        member = next(m for m in archive.getmembers() if m.isfile())
        handle = archive.extractfile(member)
        assert handle is not None
        raw = json.load(handle)
    rows = [(str(r["text_a"]), str(r["text_b"]), int(r["label"])) for r in raw]
    if pairs is not None and pairs < len(rows):
        rng = random.Random(seed)
        positives = [r for r in rows if r[2] == 1]
        negatives = [r for r in rows if r[2] == 0]
        take = round(pairs * len(positives) / len(rows))
        rows = rng.sample(positives, take) + rng.sample(negatives, pairs - take)
    return QqpData(pairs=rows)


_QUANTITY = re.compile(r"\d+(?:[.,:]\d+)*")
_QUANTITY_WORDS = frozenset(
    "one two three four five six seven eight nine ten eleven twelve fifteen twenty thirty "
    "forty fifty sixty seventy eighty ninety hundred thousand million".split()
)


def quantities(text: str) -> tuple[str, ...]:
    """The quantities a request states (digits and number words), sorted.

    Answer-level truth on CLINC: an intent label ignores slot values, but an answer cache
    that serves "transfer $100" for "transfer $400" serves a wrong answer. Deliberately
    simpler than (and independent of) the numbers guard.
    """
    lowered = text.lower()
    found = [m.replace(",", "") for m in _QUANTITY.findall(lowered)]
    found += [w for w in re.findall(r"[a-z]+", lowered) if w in _QUANTITY_WORDS]
    return tuple(sorted(found))
