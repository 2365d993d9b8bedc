"""Polarity guards: negation, and the two sides of a contrast."""

from __future__ import annotations

from functools import lru_cache

from cachefleet_node.core.guards.features import TextFeatures, bare, word_poles
from cachefleet_node.core.guards.vocabulary import (
    AFFIX_STEM,
    AVERTING_WORDS,
    CONTRASTS,
    DETERMINERS,
    FUNCTION_WORDS,
    LIGHT_VERBS,
    NEGATION_CUES,
    OPPOSITE_PREFIXES,
    PARTICLE_PAIRS,
    PREFIX_PAIRS,
    PREVENTION_VERBS,
    SORT_VERBS,
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


def antonym_swapped(
    a: tuple[str, ...], b: tuple[str, ...], shared: frozenset[tuple[int, int]] = frozenset()
) -> bool:
    """A word only one text has is the WordNet antonym of a word only the other has ("good" /
    "bad", "high" / "low", "male" / "female"); a negated word ("without losing") does not
    count, nor a pair where one word takes a pole of a contrast both texts take (`shared`)
    and the other word is no member of that contrast: "lower my blood pressure" / "bring
    high blood pressure down" both decrease, whatever "high" says."""
    only_a = _plain_words(a) - set(b)
    only_b = _plain_words(b) - set(a)
    return any(
        are_antonyms(left, right)
        and not _said_on_both_sides(left, right, shared)
        and not _said_on_both_sides(right, left, shared)
        for left in only_a
        for right in only_b
    )


def _said_on_both_sides(word: str, other: str, shared: frozenset[tuple[int, int]]) -> bool:
    contrasts = {contrast for contrast, _ in word_poles(other)}
    return any(contrast not in contrasts for contrast, _ in word_poles(word) & shared)


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


_PREVENTION_GAP = 4  # words of the object between a prevention verb and "from"


@lru_cache(maxsize=65536)
def _prevented(sequence: tuple[str, ...]) -> frozenset[str]:
    """Lemmas of the verbs a text asks to keep from happening: "stop the service from
    starting" -> {"start"}, "keep my pipes from freezing" -> {"freeze"}."""
    found = set()
    for at, word in enumerate(sequence):
        if word not in PREVENTION_VERBS:
            continue
        for gap in range(_PREVENTION_GAP + 1):
            where = at + 1 + gap
            if where + 1 >= len(sequence):
                break
            if sequence[where] == "from" and sequence[where + 1].endswith("ing"):
                verb = bare(sequence[where + 1])
                if verb not in LIGHT_VERBS:
                    found.add(verb)
                break
    return frozenset(found)


def prevented(a: TextFeatures, b: TextFeatures) -> bool:
    """One text asks to keep an action from happening ("stop the service from starting at
    boot") and the other asks for that action plainly, the verb in its base form ("start
    the service at boot", "make Chrome open at login"): not negated, no prevention or
    avoidance word anywhere ("avoid freezing", "get my dog to stop barking" ask the same as
    "keep my dog from barking"). A text that tells of the action happening ("my puppy
    throws up", "excessive sweating") asks what to do about it, as the other does; light
    verbs ("keep it from getting itchy") say too little to tell."""
    return _prevents_what_other_does(a, b) or _prevents_what_other_does(b, a)


def _prevents_what_other_does(a: TextFeatures, b: TextFeatures) -> bool:
    stopped = _prevented(a.sequence)
    if not stopped or b.negated or b.words & AVERTING_WORDS:
        return False
    asked = {  # the base form only; a verb after "from" is no request ("keep it from dropping")
        word
        for at, word in enumerate(b.sequence)
        if word not in FUNCTION_WORDS and (at == 0 or b.sequence[at - 1] != "from")
    }
    return bool(stopped & asked)


def descending_added(a: TextFeatures, b: TextFeatures) -> bool:
    """Both texts put things in order and one asks for descending order where the other
    names no order at all ("sort a dict by value" / "... by value in descending order"):
    ascending is what a sort gives unless told otherwise."""
    return _descends_alone(a, b) or _descends_alone(b, a)


def _descends_alone(a: TextFeatures, b: TextFeatures) -> bool:
    return (
        (_ORDER, 1) in a.poles
        and (_ORDER, 0) not in a.poles
        and not any(contrast == _ORDER for contrast, _ in b.poles)
        and bool(a.words & SORT_VERBS)
        and bool(b.words & SORT_VERBS)
    )


_ORDER = next(index for index, poles in enumerate(CONTRASTS) if "descending" in poles[1])
