"""What the guards compare: the features of one text, extracted once and memoised."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from functools import lru_cache

from cachefleet_node.core.guards.vocabulary import (
    AMBIGUOUS_ORDINALS,
    BOUNDS,
    CONTRAST_POLES,
    CONTRASTS,
    DETERMINERS,
    FUNCTION_WORDS,
    GOAL_MARKERS,
    NEGATION_CUES,
    NOT_AFTER_ONE,
    NOT_NAMES,
    NUMBER_WORDS,
    ONE_AS_PRONOUN_AFTER,
    ORDINAL_AFTER,
    ORDINALS,
    UNITS,
)
from cachefleet_node.core.lexicon import is_word, lemmas

__all__ = ["TextFeatures", "bare", "far_from", "singular", "text_features"]

_TOKEN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_'’]*")
_NUMBER = re.compile(r"(?<![A-Za-z])\d+(?:[.,:/-]\d+)*")
_IDENTIFIER = re.compile(
    r"`[^`]+`"  # code spans
    r"|\b[A-Za-z_][A-Za-z0-9_]*(?:(?:\.|::|->)[A-Za-z_][A-Za-z0-9_]*)+(?:\(\))?"  # a.b, a::b
    r"|\b[a-z]+[A-Z][A-Za-z0-9]*\b"  # camelCase
    r"|\b[A-Za-z0-9]+_[A-Za-z0-9_]+\b"  # snake_case
    r"|(?<!\w)--?[a-z][a-z0-9-]+"  # --flags
    r"|\b[A-Za-z]+\(\)"  # call()
)
_QUOTED = re.compile(r"(?<!\w)[\"“'‘]([^\"”'’]{1,60})[\"”'’](?!\w)")
_ZERO_TAIL = re.compile(r":00$")
_NUMBER_LIST = re.compile(
    r"(?<![A-Za-z\d.])\d+(?:\.\d+)?(?:[\s,;]*(?:and\s+)?\d+(?:\.\d+)?)+(?![\d.])"
)
_SENTENCE_END = re.compile(r"[.!?:;]\s+|\n")
# "A to B", "from A to B", "A into B": A is the word before the connector, B the last word
# of the short noun phrase after it.
_DIRECTION = re.compile(
    r"\b([a-z]{3,})\s+(?:to|into|->|→)\s+((?:[a-z]+\s+){0,2}?[a-z]{3,})\b(?=\s*(?:[.,;:?!]|$|\s+(?:and|or|in|for|on|with|using|please)\b))"
)
_DIRECTION_SKIP = frozenset(
    "how want need way going have has had used able due back up down is are was be like "
    "try trying wants needs".split()
)


# Two operands around an operator that is not symmetric: "P(A | B)", "x ^ 2", "a -> b", "7 / 3".
_OPERATION = re.compile(
    r"(?<![\w.])([A-Za-z0-9_.]+)\s*(\||->|→|=>|<-|<=|>=|<|>|\^|÷|/|-)\s*([A-Za-z0-9_.]+)(?![\w(])"
)
_SPELLED_OPERATORS = frozenset("/ -".split())  # between words these are "or" and hyphens


@dataclass(frozen=True, slots=True)
class TextFeatures:
    """What the guards compare, extracted once per text."""

    negated: bool
    words: frozenset[str]
    sequence: tuple[str, ...]  # the words in order
    poles: frozenset[tuple[int, int]]  # (contrast index, pole index)
    numbers: frozenset[str]
    number_lists: frozenset[tuple[str, ...]]  # runs of numbers with only separators between
    counted: frozenset[tuple[str, str, int]]  # (number, the word after it, its position)
    measures: frozenset[tuple[str, str]]  # (number, the unit it measures): ("2", "hour")
    entities: frozenset[str]
    directions: frozenset[tuple[str, str]]
    operations: frozenset[tuple[str, str, str]]  # (left, operator, right): ("a", "|", "b")
    ends: frozenset[tuple[str, str]]  # ("from" or "to", a word of the phrase it marks)
    bounds: frozenset[tuple[str, str]]  # (number, "under" or "over"): "under 18" -> ("18", "under")


def _normalise(text: str) -> str:
    return text.replace("’", "'").replace("‘", "'")


_NON_HYPHEN = re.compile(r"\b([Nn]on)[- ](?=[A-Za-z])")


def _words(text: str) -> list[str]:
    """Lower-case words; "non-taxable" and "non taxable" are one word, "nontaxable"."""
    text = _NON_HYPHEN.sub(r"\1", _normalise(text))
    return [token.lower().replace("'", "") for token in _TOKEN.findall(text)]


def _negated(words: list[str]) -> bool:
    cues = sum(1 for word in words if word in NEGATION_CUES)
    # "... or not", "if not", "not sure": question tags and hedges, not negated requests
    cues -= sum(
        1
        for first, second in itertools.pairwise(words)
        if (first in {"or", "if"} and second in {"not", "no"}) or (first, second) == ("not", "sure")
    )
    return cues % 2 == 1


def _stems(word: str) -> set[str]:
    """The word and its bare forms: removes -> remove, added -> add, adding -> add."""
    forms = {word}
    for suffix in ("s", "es", "ed", "d", "ing"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            forms.add(word[: -len(suffix)])
    return forms


def _index_terms() -> tuple[
    dict[str, list[tuple[int, int]]], dict[str, list[tuple[int, int, tuple[str, ...]]]]
]:
    """The contrast terms by word: one-word terms, and phrases by their first word."""
    single: dict[str, list[tuple[int, int]]] = {}
    phrases: dict[str, list[tuple[int, int, tuple[str, ...]]]] = {}
    for contrast_index, poles in enumerate(CONTRASTS):
        for pole_index, pole in enumerate(poles):
            for term in pole:
                parts = tuple(term.split())
                if len(parts) == 1:
                    single.setdefault(term, []).append((contrast_index, pole_index))
                else:
                    phrases.setdefault(parts[0], []).append((contrast_index, pole_index, parts))
    return single, phrases


_SINGLE_TERMS, _PHRASE_TERMS = _index_terms()


def _poles(words: list[str]) -> frozenset[tuple[int, int]]:
    """The (contrast, pole) pairs a text takes. A term right after a negation cue takes the
    other side of a two-sided contrast: "without losing my work" keeps it."""
    found = set()
    for at, word in enumerate(words):
        hits = [hit for form in _stems(word) for hit in _SINGLE_TERMS.get(form, ())]
        hits += [
            (contrast_index, pole_index)
            for contrast_index, pole_index, parts in _PHRASE_TERMS.get(word, ())
            if tuple(words[at : at + len(parts)]) == parts or _split_verb(words, at, parts)
        ]
        negated = at > 0 and words[at - 1] in NEGATION_CUES
        for contrast_index, pole_index in hits:
            flips = len(CONTRASTS[contrast_index]) == 2 and contrast_index < len(CONTRAST_POLES)
            side = 1 - pole_index if negated and flips else pole_index
            found.add((contrast_index, side))
    return frozenset(found)


@lru_cache(maxsize=65536)
def word_poles(word: str) -> frozenset[tuple[int, int]]:
    """The (contrast, pole) pairs one word takes alone ("lower" -> the decrease side of the
    scale and the lower side of upper / lower)."""
    return _poles([word])


_PARTICLES = frozenset("on off up down away out back".split())
_PARTICLE_GAP = 3  # words an object may put between a verb and its particle


def _split_verb(words: list[str], at: int, parts: tuple[str, ...]) -> bool:
    """A verb and its particle around a short object: "turn the heating off", "take his
    admin rights away" (the object's words, not a preposition or a clause; the particle
    not opening a phrase: "turn left on Main Street")."""
    if len(parts) != 2 or parts[1] not in _PARTICLES:
        return False
    for gap in range(1, _PARTICLE_GAP + 1):
        between = words[at + 1 : at + 1 + gap]
        if len(between) < gap or any(
            word in FUNCTION_WORDS and word not in _OBJECT_WORDS for word in between
        ):
            return False
        if words[at + 1 + gap : at + 2 + gap] == [parts[1]]:
            after = words[at + 2 + gap : at + 3 + gap]
            return not after or after[0] in FUNCTION_WORDS  # "turn left on Main Street"
    return False


_OBJECT_WORDS = DETERMINERS | frozenset("it them him her me us".split())


def _number_lists(text: str) -> frozenset[tuple[str, ...]]:
    """Runs of two or more numbers separated only by commas, spaces or brackets: "[5, 2, 9]"."""
    return frozenset(
        tuple(_NUMBER.findall(run)) for run in _NUMBER_LIST.findall(text) if run.strip()
    )


_GLUED_VERSION = re.compile(r"([A-Za-z]{2,})(\d+\.\d+)")
_RANGE = re.compile(r"^(\d{1,4})-(\d{1,4})$")
_ONE_HYPHEN = re.compile(r"\bone-[a-z]")
_ORDINAL_HYPHEN = re.compile(r"\b(first|second)-(?=[a-z])")  # "first-year", "second-hand"


def _digit_numbers(text: str) -> set[str]:
    """Numbers written with digits, without thousands separators or zero minutes: "1,000" ->
    "1000", "3:00" -> "3" (as "3pm" is); "1.10" stays "1.10" (a version is not 1.1). A
    version glued to its name counts ("python3.12" as "python 3.12"), and a range "5-7"
    as its two ends ("5 to 7"; "2012-13" is a season, not a range)."""
    found: set[str] = set()
    for match in _NUMBER.findall(_GLUED_VERSION.sub(r"\1 \2", text)):
        value = _ZERO_TAIL.sub("", match.replace(",", ""))
        ends = _RANGE.match(value)
        if ends and int(ends[1]) < int(ends[2]):
            found.update(ends.groups())
        else:
            found.add(value)
    return found


def _counts_one(words: list[str], index: int) -> bool:
    """`one` at `index` counts something ("in one sentence"), not a pronoun ("a new one",
    "which one", "one of")."""
    following = words[index + 1] if index + 1 < len(words) else None
    before = words[index - 1] if index > 0 else None
    return (
        following is not None
        and following not in FUNCTION_WORDS
        and following not in NOT_AFTER_ONE
        and before not in ONE_AS_PRONOUN_AFTER
    )


def _is_ordinal(words: list[str], index: int) -> bool:
    """An ordinal word counts as its number; "second" only after "the"/"my"/...
    or before a superlative ("second highest"), not in "wait a second"."""
    word = words[index]
    if word not in ORDINALS:
        return False
    if word not in AMBIGUOUS_ORDINALS:
        return True
    before = words[index - 1] if index > 0 else ""
    after = words[index + 1] if index + 1 < len(words) else ""
    return before in ORDINAL_AFTER or (after.endswith("est") and len(after) > 4)


def _numbers(text: str, words: list[str]) -> frozenset[str]:
    values = _digit_numbers(text)
    values.update(NUMBER_WORDS[word] for word in words if word in NUMBER_WORDS)
    values.update(ORDINALS[word] for i, word in enumerate(words) if _is_ordinal(words, i))
    if any(word == "one" and _counts_one(words, i) for i, word in enumerate(words)):
        values.add("1")
    lowered = text.lower()
    if _ONE_HYPHEN.search(lowered):  # "a one-week extension", "a one-way ticket"
        values.add("1")
    values.update("1" if word == "first" else "2" for word in _ORDINAL_HYPHEN.findall(lowered))
    return frozenset(values)


_MEASURE = re.compile(
    r"(?<![\w.])(\d+(?:[.,]\d+)*(?![\d.,])|[a-z]+\b)(?=\s?-?\s?([a-z]+)\b(?!-[a-z]))"
)


def _measures(text: str) -> frozenset[tuple[str, str]]:
    """(number, unit) for every number followed by a unit: "2 hrs" -> ("2", "hour"), "a
    150-lb person" -> ("150", "pound"), "two weeks" -> ("2", "week")."""
    found = set()
    for number, unit in _MEASURE.findall(_normalise(text).lower()):
        value = number.replace(",", "") if number[0].isdigit() else NUMBER_WORDS.get(number)
        if value is not None and unit in UNITS:
            found.add((value, UNITS[unit]))
    return frozenset(found)


def _counted(words: list[str]) -> frozenset[tuple[str, str, int]]:
    found = set()
    for position, (word, following) in enumerate(itertools.pairwise(words)):
        number = word if word.isdigit() else NUMBER_WORDS.get(word)
        if number is not None and following not in FUNCTION_WORDS and not following.isdigit():
            found.add((number, following, position))
    return frozenset(found)


def far_from(sequence: tuple[str, ...], word: str, position: int) -> bool:
    """`word` occurs in the text, and nowhere within two words of `position`."""
    places = [index for index, other in enumerate(sequence) if other == word]
    return bool(places) and all(abs(index - position) > 2 for index in places)


def _entities(text: str) -> frozenset[str]:
    text = _normalise(text)
    found = {match.strip("`").lower() for match in _IDENTIFIER.findall(text)}
    found.update(match.strip().lower() for match in _QUOTED.findall(text))
    sentences = [part for part in _SENTENCE_END.split(text) if part.strip()]
    for sentence in sentences:
        tokens = _TOKEN.findall(sentence)
        capitalised = [t for t in tokens if t[0].isupper()]
        if len(tokens) >= 4 and len(capitalised) * 2 > len(tokens):
            continue  # Title Case Or SHOUTING: capitals carry no information
        for position, token in enumerate(tokens):
            lowered = token.lower().replace("'", "")
            if lowered.endswith("s") and token.endswith(("'s", "’s")):
                lowered = lowered[:-1]
            if lowered in NOT_NAMES or token.isdigit():
                continue
            shout = len(token) >= 2 and token.isupper()
            if shout or (token[0].isupper() and position > 0) or any(c.isdigit() for c in token):
                found.add(lowered)
    return frozenset(found)


def _directions(text: str) -> frozenset[tuple[str, str]]:
    lowered = _normalise(text).lower()
    found = set()
    for source, target in _DIRECTION.findall(lowered):
        target_word = target.split()[-1]
        if source in _DIRECTION_SKIP or target_word in _DIRECTION_SKIP:
            continue
        if source != target_word:
            found.add((source, target_word))
    return frozenset(found)


def _operations(text: str) -> frozenset[tuple[str, str, str]]:
    """Operands around a non-symmetric operator; "/" and "-" only between numbers or single
    letters ("7/3", "x-y"), not in "async/await" or "one-way"."""
    found = set()
    for left, operator, right in _OPERATION.findall(_normalise(text)):
        if left.lower() == right.lower():
            continue
        if operator in _SPELLED_OPERATORS and not all(
            side.replace(".", "").isdigit() or len(side) == 1 for side in (left, right)
        ):
            continue
        found.add((left.lower(), operator, right.lower()))
    return frozenset(found)


def _phrase_after(words: list[str], at: int) -> list[str]:
    """The content words of the noun phrase that starts at `at`: determiners skipped, up to
    three words, up to the next function word ("my savings account to" -> savings, account)."""
    while at < len(words) and words[at] in DETERMINERS:
        at += 1
    phrase: list[str] = []
    while at < len(words) and len(phrase) < 3 and words[at] not in FUNCTION_WORDS:
        phrase.append(words[at])
        at += 1
    return phrase


def _ends(words: list[str]) -> frozenset[tuple[str, str]]:
    """The words of the phrases marked as where something comes from ("from X") and where it
    goes ("to X", "into X"): the two ends of a route, a transfer or a message."""
    found: set[tuple[str, str]] = set()
    for at, word in enumerate(words):
        end = "from" if word == "from" else "to" if word in GOAL_MARKERS else None
        if end is not None:
            found.update((end, singular(part)) for part in _phrase_after(words, at + 1))
    return frozenset(found)


def _bounds(words: list[str]) -> frozenset[tuple[str, str]]:
    """(number, side) for every number bounded from above or below: "under 18", "fewer than
    5", "at most 3" -> "under"; "over 18", "more than 5", "at least 3" -> "over"."""
    found = set()
    for at, word in enumerate(words):
        number = word if word.isdigit() else NUMBER_WORDS.get(word)
        if number is None:
            continue
        for length in (3, 2, 1):
            side = BOUNDS.get(" ".join(words[max(at - length, 0) : at]))
            if side is not None and at >= length:
                found.add((number, side))
                break
    return frozenset(found)


@lru_cache(maxsize=16384)
def text_features(text: str) -> TextFeatures:
    """Features of one text (memoised: cached prompts recur)."""
    words = _words(text)
    return TextFeatures(
        negated=_negated(words),
        words=frozenset(words),
        sequence=tuple(words),
        poles=_poles(words),
        numbers=_numbers(text, words),
        number_lists=_number_lists(text),
        counted=_counted(words),
        measures=_measures(text),
        entities=_entities(text),
        directions=_directions(text),
        operations=_operations(text),
        ends=_ends(words),
        bounds=_bounds(words),
    )


def singular(word: str) -> str:
    """The word without a plural `s` where that leaves a word ("names" -> "name"; not
    "class", "bus", "https")."""
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3 and is_word(word[:-1]):
        return word[:-1]
    return word


@lru_cache(maxsize=65536)
def bare(word: str) -> str:
    """The shortest of a word and its WordNet lemmas ("switching" -> "switch", "packages" ->
    "package")."""
    return min((word, *lemmas(word)), key=lambda form: (len(form), form))
