"""Polarity guards: negation, and the two sides of a contrast."""

from __future__ import annotations

from functools import lru_cache

from cachefleet_node.core.guards.features import TextFeatures, bare
from cachefleet_node.core.guards.vocabulary import (
    AFFIX_STEM,
    DETERMINERS,
    FUNCTION_WORDS,
    NEGATION_CUES,
    OPPOSITE_PREFIXES,
    PARTICLE_PAIRS,
    PREFIX_PAIRS,
    SUFFIX_PAIRS,
)
from cachefleet_node.core.lexicon import are_antonyms, is_word


def opposite_sides(a: frozenset[tuple[int, int]], b: frozenset[tuple[int, int]]) -> bool:
    """Some contrast where each text takes a pole the other does not."""
    only_a = a - b
    only_b = b - a
    return any(ca == cb for ca, _ in only_a for cb, _ in only_b)


def prefixed_opposite(a: TextFeatures, b: TextFeatures) -> bool:
    """A word in one text whose un-/dis-/de-/anti-/non- form is in the other only, and not
    negated there ("non-stop" / "won't stop", "not perishable" / "non-perishable" agree)."""
    if b.negated and not a.negated:
        return False
    plain = _plain_words(b.sequence)
    for word in a.words - b.words:
        for prefix in OPPOSITE_PREFIXES:
            if word.startswith(prefix) and len(word) - len(prefix) >= 3:
                stem = word[len(prefix) :]
                if stem in plain and stem not in a.words:
                    return True
    return False


def _minimal_pair(a: TextFeatures, b: TextFeatures) -> bool:
    """The texts differ in at most a couple of words besides negation cues, words compared
    by their lemmas ("switch" / "switching": "create a branch and switch to it" / "... without
    switching to it")."""
    left = {bare(word) for word in a.words - NEGATION_CUES}
    right = {bare(word) for word in b.words - NEGATION_CUES}
    return len(left ^ right) <= max(2, len(left | right) // 5)


def negation(q: TextFeatures, c: TextFeatures) -> bool:
    return q.negated != c.negated and _minimal_pair(q, c)


def antonym_swapped(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """A word only one text has is the WordNet antonym of a word only the other has ("good" /
    "bad", "high" / "low", "male" / "female"); a negated word ("without losing") does not
    count."""
    only_a = _plain_words(a) - set(b)
    only_b = _plain_words(b) - set(a)
    return any(are_antonyms(left, right) for left in only_a for right in only_b)


def _plain_words(sequence: tuple[str, ...]) -> set[str]:
    """Content words not right after a negation cue."""
    return {
        word
        for at, word in enumerate(sequence)
        if word not in FUNCTION_WORDS and (at == 0 or sequence[at - 1] not in NEGATION_CUES)
    }


def particle_swapped(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """One text has a particle and the other only its opposite: "turn the wifi on" / "turn
    the wifi off", "turn up the heating" / "turn down the heating". A particle ends the text
    or comes before a determiner or a pronoun; a preposition before a noun ("on flight
    AB123", "missing off of") is not one."""
    mine, theirs = _particles(a), _particles(b)
    only_a, only_b = mine - theirs, theirs - mine
    return any(
        (first in only_a and second in only_b) or (second in only_a and first in only_b)
        for first, second in PARTICLE_PAIRS
    )


def _particles(sequence: tuple[str, ...]) -> set[str]:
    ends = {word for pair in PARTICLE_PAIRS for word in pair}
    return {
        word
        for at, word in enumerate(sequence)
        if word in ends and (at + 1 == len(sequence) or sequence[at + 1] in _BEFORE_OBJECT)
    }


_BEFORE_OBJECT = DETERMINERS | frozenset("it them him her me us you all".split())


@lru_cache(maxsize=65536)
def _affix_keys(word: str) -> frozenset[tuple[int, str, int]]:
    """(affix pair, stem, side) for every pair of opposite affixes the word carries one of:
    "download" -> (up/down, "load", 1)."""
    keys = set()
    for index, (first, second) in enumerate(PREFIX_PAIRS):
        for side, prefix in enumerate((first, second)):
            if word.startswith(prefix) and len(word) - len(prefix) >= AFFIX_STEM:
                keys.add((index, word[len(prefix) :], side))
    for index, (first, second) in enumerate(SUFFIX_PAIRS, len(PREFIX_PAIRS)):
        for side, suffix in enumerate((first, second)):
            if word.endswith(suffix) and len(word) - len(suffix) >= AFFIX_STEM:
                if suffix == "ee" and not is_word(word):
                    continue  # "transformee" is a typo, not the other end of "transformer"
                keys.add((index, word[: -len(suffix)], side))
    return frozenset(keys)


def affix_swapped(a: frozenset[str], b: frozenset[str]) -> bool:
    """A word only `a` has and a word only `b` has share a stem and differ by a pair of
    opposite prefixes or suffixes: "hypothyroidism" / "hyperthyroidism", "upload" /
    "download", "employer" / "employee", "stateful" / "stateless"."""
    theirs = {key for word in b - a if word not in FUNCTION_WORDS for key in _affix_keys(word)}
    if not theirs:
        return False
    return any(
        (index, stem, 1 - side) in theirs
        for word in a - b
        if word not in FUNCTION_WORDS
        for index, stem, side in _affix_keys(word)
    )
