"""Scope guards: the same request for another audience, place or part, narrowed by a
qualifier that only one text has, or with the answer's shape set on one side only.

The first two look at texts that are the same words but for one stretch, the case where an
embedding scores highest while the answer changes:

- a stretch inside a prepositional phrase both texts share is filled otherwise ("explain
  it to a beginner programmer" / "... to a senior engineer", "things to do in Paris for a
  couple" / "... for a group of teenagers", "faster for lookups" / "faster for iteration");
- one text adds a qualifier before or after all the other's words: a phrase that opens with
  a preposition, a conjunction or a subordinator and names something ("how do I read a CSV
  file" / "... in R", "side effects of ibuprofen" / "... in children", "... without using
  GROUP BY", "..., excluding Earth"), or an adverb of manner ("... vertically");
- one text sets how the answer is shaped where the other leaves it open, anywhere in the
  text: the reader's level ("for beginners", "like I'm 5", "a 10-year-old"), the length
  ("briefly", "a detailed summary", "in 3 sentences", "a 1-page timeline"), the register
  ("in plain English", "mathematically", "a formal email") or the format ("as a table",
  "as JSON", "bullet points"). Two texts that both set a dimension are the `opposites`
  guard's to compare.

Rewordings stay hits: a stretch that is a synonym, an inflection, a misspelling or a short
form of the other ("in the US" / "in the United States", "to k8s" / "to Kubernetes"), a
qualifier of politeness only ("..., please", "... for me", "... by the way", "... or not"),
or a phrase moved rather than filled otherwise.
"""

from __future__ import annotations

import difflib
import itertools
from functools import lru_cache

from cachefleet_node.core.guards.features import TextFeatures
from cachefleet_node.core.guards.vocabulary import (
    ANSWER_SHAPE_HINTS,
    ANSWER_SHAPES,
    AUDIENCE_MARKERS,
    AUDIENCES,
    DETERMINERS,
    FUNCTION_WORDS,
    LENGTH_MARKERS,
    LENGTH_UNITS,
    NUMBER_WORDS,
    QUALIFIER_FILLERS,
    QUALIFIER_IDIOMS,
    QUALIFIER_OPENERS,
    SLOT_PREPOSITIONS,
)
from cachefleet_node.core.lexicon import are_synonyms, is_word, lemmas

__all__ = ["audience_added", "qualifier_added", "shape_added", "short_form", "slot_refilled"]

_SLOT_WORDS = 4  # words a refilled stretch may have on either side
_SLOT_REACH = 2  # shared words (a determiner, a modifier) between the preposition and it
_QUALIFIED_WORDS = 3  # words the shorter text needs for an addition to qualify something
_TYPO_RATIO = 0.8  # difflib ratio above which an unknown word misspells another


def _tokens(features: TextFeatures) -> tuple[str, ...]:
    """The words, number words as digits ("two" and "2" are one token), "an" as "a"."""
    return tuple(
        "a" if word == "an" else NUMBER_WORDS.get(word, word) for word in features.sequence
    )


def slot_refilled(a: TextFeatures, b: TextFeatures) -> bool:
    """The texts differ in one stretch each, inside a prepositional phrase both share, and
    the two stretches are not rewordings of each other."""
    left, right = _tokens(a), _tokens(b)
    changes = [
        op
        for op in difflib.SequenceMatcher(None, left, right, autojunk=False).get_opcodes()
        if op[0] != "equal"
    ]
    if len(changes) != 1 or changes[0][0] != "replace":
        return False
    _, i1, i2, j1, j2 = changes[0]
    mine = [word for word in left[i1:i2] if word not in FUNCTION_WORDS]
    theirs = [word for word in right[j1:j2] if word not in FUNCTION_WORDS]
    if not mine or not theirs or max(i2 - i1, j2 - j1) > _SLOT_WORDS:
        return False
    if not any(word.isalpha() for word in mine) or not any(word.isalpha() for word in theirs):
        return False  # a number for a number is the `numbers` guard's to judge
    if not _in_prepositional_phrase(left, i1):
        return False
    return not _rewording(tuple(mine), tuple(theirs))


def _in_prepositional_phrase(words: tuple[str, ...], at: int) -> bool:
    """A preposition opens the phrase that `words[at]` belongs to, with at most a couple of
    determiners or modifiers between ("in earths crust", "to a beginner programmer")."""
    reach = 0
    for before in range(at - 1, -1, -1):
        word = words[before]
        if word in SLOT_PREPOSITIONS:
            return True
        if word in DETERMINERS:
            continue
        if word in FUNCTION_WORDS or reach == _SLOT_REACH:
            return False
        reach += 1
    return False


def _rewording(mine: tuple[str, ...], theirs: tuple[str, ...]) -> bool:
    """Some word of one stretch is an inflection, synonym, misspelling or short form of a
    word of the other, or one stretch abbreviates the other ("us" / "united states")."""
    if _abbreviates(mine, theirs) or _abbreviates(theirs, mine):
        return True
    return any(_related(left, right) for left in mine for right in theirs)


def _abbreviates(short: tuple[str, ...], long: tuple[str, ...]) -> bool:
    return len(short) == 1 and len(long) > 1 and short[0] == "".join(word[0] for word in long)


def short_form(word: str, words: tuple[str, ...]) -> bool:
    """`word` abbreviates a run of `words` by their initials ("us": "united states") or is a
    short form of one of them ("k8s": "kubernetes", "db": "database")."""
    if len(word) < 2 or not word.isalnum():
        return False
    for at in range(len(words) - 1):
        if _abbreviates((word,), words[at : at + len(word)]):
            return True
    return any(_shortens(word, other) for other in words if len(other) > len(word))


def _shortens(short: str, long: str) -> bool:
    """A word of at most four letters, starting like `long`, whose letters `long` has in
    order (digits aside): "db" / "database", "k8s" / "kubernetes", "pkg" / "package"."""
    return 2 <= len(short) <= 4 and short[0] == long[0] and _subsequence(short, long)


@lru_cache(maxsize=65536)
def _related(left: str, right: str) -> bool:
    if left == right or lemmas(left) & lemmas(right) or are_synonyms(left, right):
        return True
    if left.isdigit() or right.isdigit():
        return False
    shorter, longer = sorted((left, right), key=len)
    if _shortens(shorter, longer):
        return True
    if is_word(left) and is_word(right):
        return False
    return (
        sorted(left) == sorted(right)
        or difflib.SequenceMatcher(None, left, right).ratio() >= _TYPO_RATIO
    )


def _subsequence(short: str, long: str) -> bool:
    letters = iter(long)
    return all(char in letters for char in short if not char.isdigit())


def qualifier_added(a: TextFeatures, b: TextFeatures) -> bool:
    """One text is all the other's words with a qualifier before or after them."""
    short, long = sorted((_tokens(a), _tokens(b)), key=len)
    if len(short) < _QUALIFIED_WORDS or len(long) == len(short):
        return False
    if long[: len(short)] == short:
        extra = long[len(short) :]
    elif long[-len(short) :] == short:
        extra = long[: -len(short)]
    else:
        return False
    if extra in QUALIFIER_IDIOMS:
        return False
    if len(extra) == 1:  # an adverb of manner: "center a div" / "... vertically"
        word = extra[0]
        return word.endswith("ly") and word not in QUALIFIER_FILLERS and is_word(word)
    return extra[0] in QUALIFIER_OPENERS and any(
        word not in FUNCTION_WORDS and word not in QUALIFIER_FILLERS for word in extra[1:]
    )


def audience_added(a: TextFeatures, b: TextFeatures) -> bool:
    """One text aims the request at people by age, condition or household ("symptoms of
    dehydration in an infant", "... for an elderly parent", "a trip with a toddler") and the
    other names no such people anywhere (an age, "a 16 year old", names one)."""
    mine, theirs = _audience(a.sequence), _audience(b.sequence)
    return (mine == _AIMED and theirs == _NO_ONE) or (theirs == _AIMED and mine == _NO_ONE)


_NO_ONE, _NAMED, _AIMED = range(3)
_AUDIENCE_REACH = 3  # words between the preposition and the audience ("for a newly wed couple")


@lru_cache(maxsize=4096)
def _audience(words: tuple[str, ...]) -> int:
    """Whether the words name no audience, name one, or aim the request at one after a
    preposition with at most a few modifiers between ("in an elderly parent")."""
    found = _NO_ONE
    for at, word in enumerate(words):
        if "".join(words[at : at + 2]) in AUDIENCES or words[at : at + 2] in _AGES:
            found = max(found, _NAMED)  # "grown-up", "a 16 year old"
        if word not in AUDIENCES or (word == "couple" and words[at + 1 : at + 2] == ("of",)):
            continue  # "a couple of days"
        found = max(found, _NAMED)
        for before in range(at - 1, max(-1, at - 2 - _AUDIENCE_REACH), -1):
            if words[before] in AUDIENCE_MARKERS:
                return _AIMED
            if words[before] in FUNCTION_WORDS and words[before] not in DETERMINERS:
                break
    return found


_AGES = frozenset({("year", "old"), ("years", "old"), ("year", "olds")})


def shape_added(a: TextFeatures, b: TextFeatures) -> bool:
    """One text sets how the answer is shaped — the reader's level, its length, register or
    format — where the other does not touch that dimension at all."""
    mine, theirs = _shapes(_tokens(a)), _shapes(_tokens(b))
    return any(
        (left == _SETS and right == _UNTOUCHED) or (right == _SETS and left == _UNTOUCHED)
        for left, right in zip(mine, theirs, strict=True)
    )


_UNTOUCHED, _HINTS, _SETS = range(3)
_COUNT_LEADS = frozenset("a just only exactly".split())  # "in just a single sentence"


@lru_cache(maxsize=4096)
def _shapes(words: tuple[str, ...]) -> tuple[int, ...]:
    """Per dimension of `ANSWER_SHAPES`: whether the words set it, only hint at it, or
    leave it untouched."""
    found = []
    for index, (terms, hints) in enumerate(zip(ANSWER_SHAPES, ANSWER_SHAPE_HINTS, strict=True)):
        sets = any(_holds(words, tuple(term.split())) for term in terms) or (
            index == 1 and _length_counted(words)
        )
        hinted = any(_holds(words, tuple(term.split())) for term in hints)
        found.append(_SETS if sets else _HINTS if hinted else _UNTOUCHED)
    return tuple(found)


def _length_counted(words: tuple[str, ...]) -> bool:
    """A count of a length unit after a length marker ("in 3 sentences"), or as a modifier
    in the singular, before the noun it measures ("a 1 page timeline"; not "1 line per
    commit")."""
    for at, (count, unit) in enumerate(itertools.pairwise(words)):
        if unit not in LENGTH_UNITS or not (count.isdigit() or count in {"one", "single"}):
            continue
        before = at - 1
        while before >= 0 and words[before] in _COUNT_LEADS:
            before -= 1
        if before >= 0 and words[before] in LENGTH_MARKERS:
            return True
        after = words[at + 2] if at + 2 < len(words) else ""
        if not unit.endswith("s") and after and after not in QUALIFIER_OPENERS | FUNCTION_WORDS:
            return True
    return False


def _holds(words: tuple[str, ...], phrase: tuple[str, ...]) -> bool:
    size = len(phrase)
    return any(words[at : at + size] == phrase for at in range(len(words) - size + 1))
