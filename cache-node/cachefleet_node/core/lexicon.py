"""Synonyms and antonyms from WordNet 3.0, for the verifier's word alignment.

The table (`data/wordnet-lexicon.json.gz`, built by `make lexicon` from Debian's
`wordnet-base`) keeps the most frequent senses of single-word lemmas. Two words are
synonyms when one of their lemmas shares a sense with one of the other's ("buy" /
"purchased", "kids" / "children"), antonyms when WordNet marks their lemmas as opposites
("male" / "female"). Lemmas come from WordNet's irregular forms and its suffix rules
(the way its `morphy` does it). Loaded once, on first use; lookups are memoised.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from importlib import resources

__all__ = ["are_antonyms", "are_synonyms", "is_word", "lemmas"]

# WordNet's detachment rules (noun, verb and adjective endings), most specific first.
_SUFFIX_RULES = (
    ("ies", "y"),
    ("ses", "s"),
    ("xes", "x"),
    ("zes", "z"),
    ("ches", "ch"),
    ("shes", "sh"),
    ("men", "man"),
    ("es", "e"),
    ("es", ""),
    ("ed", "e"),
    ("ed", ""),
    ("ing", "e"),
    ("ing", ""),
    ("er", ""),
    ("est", ""),
    ("er", "e"),
    ("est", "e"),
    ("s", ""),
)


class _Lexicon:
    def __init__(self) -> None:
        raw = resources.files("cachefleet_node.core").joinpath("data/wordnet-lexicon.json.gz")
        document = json.loads(gzip.decompress(raw.read_bytes()))
        self.synsets: dict[str, frozenset[int]] = {
            lemma: frozenset(ids) for lemma, ids in document["synsets"].items()
        }
        self.antonyms = frozenset((left, right) for left, right in document["antonyms"])
        self.exceptions: dict[str, str] = document["exceptions"]
        self.known = frozenset(document["words"])


@lru_cache(maxsize=1)
def _lexicon() -> _Lexicon:
    return _Lexicon()


@lru_cache(maxsize=65536)
def lemmas(word: str) -> frozenset[str]:
    """The WordNet lemmas a lower-case word can be a form of (empty when none is known)."""
    lexicon = _lexicon()
    found = set()
    if word in lexicon.known:
        found.add(word)
    base = lexicon.exceptions.get(word)
    if base is not None:
        found.add(base)
    for suffix, replacement in _SUFFIX_RULES:
        if word.endswith(suffix) and len(word) > len(suffix) + 1:
            candidate = word[: -len(suffix)] + replacement
            if candidate in lexicon.known:
                found.add(candidate)
    return frozenset(found)


@lru_cache(maxsize=65536)
def are_synonyms(left: str, right: str) -> bool:
    """Whether two lower-case words share a frequent WordNet sense."""
    synsets = _lexicon().synsets
    empty: frozenset[int] = frozenset()
    mine = {sense for lemma in lemmas(left) for sense in synsets.get(lemma, empty)}
    return any(not mine.isdisjoint(synsets.get(lemma, empty)) for lemma in lemmas(right))


@lru_cache(maxsize=65536)
def are_antonyms(left: str, right: str) -> bool:
    """Whether WordNet marks a lemma of one word as the opposite of a lemma of the other."""
    pairs = _lexicon().antonyms
    return any((min(a, b), max(a, b)) in pairs for a in lemmas(left) for b in lemmas(right))


@lru_cache(maxsize=65536)
def is_word(word: str) -> bool:
    """Whether a lower-case word is an English word WordNet knows, or its plural or verb
    form (comparatives are not tried: "beter" is no form of "bet")."""
    lexicon = _lexicon()
    if word in lexicon.known or word in lexicon.exceptions:
        return True
    return any(
        word.endswith(suffix)
        and len(word) > len(suffix) + 1
        and word[: -len(suffix)] + replacement in lexicon.known
        for suffix, replacement in _SUFFIX_RULES
        if suffix not in ("er", "est")
    )
