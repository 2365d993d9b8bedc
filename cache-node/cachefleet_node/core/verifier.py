"""Verifier: a pair classifier that reads the query and the cached prompt together.

A bi-encoder score says how close two prompts are on average; it cannot say whether the one
word that differs decides the answer. The verifier runs after the threshold and the guards
and looks at the pair as a whole:

1. `pair_diff` aligns the two prompts word by word: lower case, WordNet lemmas ("codes" /
   "code"), misspellings of unknown words ("protien" / "protein"), WordNet synonyms ("buy" /
   "purchase", "kids" / "children"), abbreviations and number words ("u" / "you", "one" /
   "1"); fillers ("please", "quick question", "now") are not content. It keeps the content
   words each side has and the other lacks, how much of the whole word sequence lines up
   (`frame`) and in how many places it differs (`edits`);
2. `pair_features` turns the cosine and that alignment into a few numbers;
3. a logistic head (`VerifierHead`, `verifier_head.json`) maps them to the probability that
   the cached answer answers the query.

What it learns: two prompts that line up word for word except in one place, yet score only
0.9, differ in something that matters ("cats" / "dogs", "for beginners" / "for experts",
an added "without X"); two prompts that share few words yet score 0.85 are a rewording. The
head is trained by `make train-verifier` (bench/cachefleet_bench) on data whose licences allow
shipping it: our own adversarial pairs (the tuning split only) and CLINC150 (CC BY 3.0).
Everything here is pure, CPU-only and deterministic: no model inference beyond the cosine
the lookup already has, so it costs microseconds and behaves the same with local and GPU
embedders.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from cachefleet_node.core.guards import FUNCTION_WORDS, text_features
from cachefleet_node.core.lexicon import are_synonyms, is_word, lemmas

__all__ = [
    "FEATURE_NAMES",
    "FILLER_WORDS",
    "PairDiff",
    "VerifierHead",
    "pair_diff",
    "pair_features",
    "score_lift",
    "shipped_head",
    "verifier_score",
]

#: Words that carry no answer-changing content: function words, greetings, politeness,
#: question scaffolding, "now"-like adverbs.
FILLER_WORDS = FUNCTION_WORDS | frozenset(
    "hi hello hey thanks thank thx please pls plz kindly quick question help someone "
    "anyone tell show give let lets know need want wondering curious like im ive id ill "
    "whats hows wheres whos thats theres dont also really actually basically just so "
    "exactly possible way ways u ur yo ok okay go get am has have had per write explain "
    "describe find now currently current presently present yet still immediately right "
    "ever already soon quickly up out".split()
)

_ABBREVIATIONS = {
    "u": "you",
    "ur": "your",
    "r": "are",
    "pls": "please",
    "plz": "please",
    "thx": "thanks",
    "b/c": "because",
    "bc": "because",
    "abt": "about",
    "govt": "government",
    "info": "information",
    "yr": "year",
    "yrs": "years",
    "mins": "minutes",
    "hrs": "hours",
    "approx": "approximately",
    "vs": "versus",
    "thru": "through",
    "w": "with",
    "which": "what",
}
_NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve".split()
    )
}
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_TYPO_RATIO = 0.8  # difflib ratio above which an unknown word misspells a known one


def _spelt_out(word: str) -> str:
    """Abbreviations spelt out and number words as digits ("u" -> "you", "one" -> "1")."""
    word = _ABBREVIATIONS.get(word, word)
    return _NUMBER_WORDS.get(word, word)


@lru_cache(maxsize=65536)
def _canonical(word: str) -> str:
    """The form words are matched by: the word if WordNet knows it, else the longest of its
    lemmas ("codes" -> "code", "children" -> "child"), else without a plural `s`."""
    if word.isdigit() or word in FILLER_WORDS:
        return word
    found = lemmas(word)
    if word in found:
        return word
    if found:
        return max(found, key=lambda lemma: (len(lemma), lemma))
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def _words(text: str) -> list[str]:
    return [_spelt_out(word) for word in text_features(_THOUSANDS.sub("", text)).sequence]


def _typo_of(word: str, others: Sequence[str]) -> str | None:
    """The word of `others` that `word` misspells, if any: `word` is no English word, and
    the two differ by a letter or two or by swapped letters. Never for numbers."""
    if len(word) < 3 or any(char.isdigit() for char in word) or is_word(word):
        return None
    for other in others:
        if len(other) < 3 or any(char.isdigit() for char in other):
            continue
        if sorted(word) == sorted(other):
            return other
        if difflib.SequenceMatcher(None, word, other).ratio() >= _TYPO_RATIO:
            return other
    return None


@dataclass(frozen=True, slots=True)
class PairDiff:
    """What tells two prompts apart, word by word."""

    shared: int  # content words both have (typos and synonyms matched)
    synonyms: int  # of those, words matched as WordNet synonyms ("buy" / "purchase")
    only_query: tuple[str, ...]  # content words of the query the candidate lacks
    only_candidate: tuple[str, ...]  # and the other way round
    reordered: bool  # the shared content words come in another order
    frame: float  # how much of the whole word sequence (fillers too) lines up, in [0, 1]
    edits: int  # contiguous places where the word sequences differ

    @property
    def overlap(self) -> float:
        """Jaccard index of the content words (1.0 when neither has any)."""
        total = self.shared + len(self.only_query) + len(self.only_candidate)
        return self.shared / total if total else 1.0

    @property
    def unmatched(self) -> int:
        """Content words one side has and the other lacks."""
        return len(self.only_query) + len(self.only_candidate)


def _align(left: list[str], right: list[str]) -> tuple[list[str], list[str], int]:
    """The matching forms of both texts, where a word of `left` that misspells or means a
    word only `right` has takes that word's form; and the number of synonym matches."""
    right_forms = [_canonical(word) for word in right]
    right_set = set(right_forms)
    left_forms = [_canonical(word) for word in left]
    left_set = set(left_forms)
    unknown = [word for word, form in zip(right, right_forms, strict=True) if form not in left_set]
    meaningful = [word for word in unknown if _canonical(word) not in FILLER_WORDS]
    aligned, synonyms = [], 0
    for word, form in zip(left, left_forms, strict=True):
        if form not in right_set:
            typo = _typo_of(word, unknown)
            if typo is not None:
                form = _canonical(typo)
            elif form not in FILLER_WORDS:
                match = next((other for other in meaningful if are_synonyms(word, other)), None)
                if match is not None:
                    form, synonyms = _canonical(match), synonyms + 1
        aligned.append(form)
    return aligned, right_forms, synonyms


@lru_cache(maxsize=8192)
def pair_diff(query: str, candidate: str) -> PairDiff:
    """Align two prompts word by word (memoised)."""
    left, right, synonyms = _align(_words(query), _words(candidate))
    left_set, right_set = set(left), set(right)
    content_left = [word for word in left if word not in FILLER_WORDS]
    content_right = [word for word in right if word not in FILLER_WORDS]
    shared = set(content_left) & set(content_right)
    matcher = difflib.SequenceMatcher(None, left, right, autojunk=False)
    return PairDiff(
        shared=len(shared),
        synonyms=synonyms,
        only_query=tuple(w for w in dict.fromkeys(content_left) if w not in right_set),
        only_candidate=tuple(w for w in dict.fromkeys(content_right) if w not in left_set),
        reordered=[w for w in content_left if w in shared]
        != [w for w in content_right if w in shared],
        frame=matcher.ratio(),
        edits=sum(1 for tag, *_ in matcher.get_opcodes() if tag != "equal"),
    )


FEATURE_NAMES = (
    "bias",
    "cosine",
    "overlap",
    "cosine_x_overlap",
    "unmatched",
    "minimal_edit",
    "one_sided_addition",
    "reordered",
    "frame",
    "cosine_x_frame",
    "single_edit",
    "synonyms",
)


def pair_features(cosine: float, diff: PairDiff) -> list[float]:
    """The head's inputs, in `FEATURE_NAMES` order."""
    unmatched = diff.unmatched
    return [
        1.0,
        cosine,
        diff.overlap,
        cosine * diff.overlap,
        float(min(unmatched, 6)),
        1.0 if 0 < unmatched <= 2 else 0.0,
        1.0 if bool(diff.only_query) != bool(diff.only_candidate) else 0.0,
        1.0 if diff.reordered else 0.0,
        diff.frame,
        cosine * diff.frame,
        1.0 if diff.edits == 1 and unmatched > 0 else 0.0,
        float(min(diff.synonyms, 3)),
    ]


@dataclass(frozen=True, slots=True)
class VerifierHead:
    """A logistic head: probability = sigmoid(weights · standardised features)."""

    weights: tuple[float, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    trained_on: dict[str, Any]

    def probability(self, features: Sequence[float]) -> float:
        """The probability that the cached answer answers the query."""
        z = 0.0
        for value, weight, mean, scale in zip(
            features, self.weights, self.mean, self.scale, strict=True
        ):
            z += weight * (value - mean) / scale
        return 1.0 / (1.0 + math.exp(-max(min(z, 40.0), -40.0)))

    def to_json(self) -> dict[str, Any]:
        """The document `from_json` reads."""
        return {
            "features": list(FEATURE_NAMES),
            "weights": [round(x, 6) for x in self.weights],
            "mean": [round(x, 6) for x in self.mean],
            "scale": [round(x, 6) for x in self.scale],
            "trained_on": self.trained_on,
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> VerifierHead:
        """Parse and check a head document."""
        names = tuple(document["features"])
        if names != FEATURE_NAMES:
            raise ValueError(f"verifier head was trained on features {names}, not {FEATURE_NAMES}")
        head = cls(
            tuple(float(x) for x in document["weights"]),
            tuple(float(x) for x in document["mean"]),
            tuple(float(x) for x in document["scale"]),
            dict(document.get("trained_on", {})),
        )
        if not len(head.weights) == len(head.mean) == len(head.scale) == len(names):
            raise ValueError("verifier head: weights, mean and scale must match the features")
        if any(scale <= 0 for scale in head.scale):
            raise ValueError("verifier head: scales must be positive")
        return head


@lru_cache(maxsize=1)
def shipped_head() -> VerifierHead:
    """The head shipped with the node (`core/data/verifier_head.json`)."""
    text = resources.files("cachefleet_node.core").joinpath("data/verifier_head.json").read_text()
    return VerifierHead.from_json(json.loads(text))


def verifier_score(
    query: str, candidate: str, cosine: float, head: VerifierHead | None = None
) -> float:
    """The head's probability that `candidate`'s answer answers `query` (shipped head by
    default)."""
    return (head or shipped_head()).probability(pair_features(cosine, pair_diff(query, candidate)))


def score_lift(probability: Any, weight: float) -> Any:
    """How much the verifier moves a candidate's score compared with the threshold:
    `weight × (probability − 0.5)`, up for a confident verifier, down for a doubtful one.
    Works on floats and on numpy arrays alike."""
    return weight * (probability - 0.5)
