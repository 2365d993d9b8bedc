"""Direction and role guards: two things trade places around the same words, or a thing
or an action passes from the speaker to the listener."""

from __future__ import annotations

from functools import lru_cache
from itertools import pairwise

from cachefleet_node.core.guards.features import TextFeatures
from cachefleet_node.core.guards.vocabulary import ARTICLES, FUNCTION_WORDS
from cachefleet_node.core.lexicon import lemmas


def reversed_directions(a: frozenset[tuple[str, str]], b: frozenset[tuple[str, str]]) -> bool:
    """The direction "A to B" here, "B to A" there ("convert USD to EUR" / "convert EUR to USD")."""
    return any((target, source) in b for source, target in a)


def ends_swapped(a: TextFeatures, b: TextFeatures) -> bool:
    """The two ends of a route trade their markers: what one text sends "from" the other
    sends "to", and the other way round ("to Maria from my wallet" / "from Maria to my
    wallet", "fly from Chicago to Denver" / "fly to Chicago from Denver"). Moving the two
    phrases around keeps the meaning ("from Paris to Rome" / "to Rome from Paris")."""
    a_from = {word for end, word in a.ends if end == "from"}
    a_to = {word for end, word in a.ends if end == "to"}
    b_from = {word for end, word in b.ends if end == "from"}
    b_to = {word for end, word in b.ends if end == "to"}
    now_to = (a_from & b_to) - a_to - b_from
    now_from = (a_to & b_from) - a_from - b_to
    return bool(now_to) and bool(now_from)


def operands_swapped(a: TextFeatures, b: TextFeatures) -> bool:
    """The operands of a non-symmetric operator trade places: "P(A | B)" / "P(B | A)",
    "2^10" / "10^2", "7/3" / "3/7"."""
    return any(
        (right, operator, left) in b.operations and (right, operator, left) not in a.operations
        for left, operator, right in a.operations - b.operations
    )


_SYMMETRIC = frozenset("and or vs versus plus times".split())
_LINKS = FUNCTION_WORDS | frozenset(
    "into onto than over under via per against toward towards minus given".split()
)
_SWAP_MIDDLE = 6  # words between the two things that trade places
_SWAP_ITEM = 3  # words each of the two things may have ("New York City")
_SHORT_TEXT = 5  # words below which a one-word link may be a compound ("flip a coin")
# Personal pronouns by case: "me" is who "I" is ("I owe him" / "he owes me").
_SUBJECT_CASE = {"me": "i", "him": "he", "her": "she", "us": "we", "them": "they"}
_PERSONS = frozenset("i you he she we they".split())
# Possessives and object pronouns by grammatical person. The speaker named as an object
# ("tell me your name") rules out the generic you of "how do I build your confidence"; a
# verb acting on "you" rules it out with a subject "I" too ("what may I call you").
_POSSESSOR = {"my": 1, "our": 1, "your": 2}
_OBJECT = {"me": 1, "us": 1, "you": 2}
_SPEAKER = {
    "of": frozenset("me myself us ourselves".split()),
    "to": frozenset("i me myself we us ourselves im ive".split()),
}


def person_swapped(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """A thing both texts name is the speaker's in one and the listener's in the other
    ("tell me my name" / "tell me your name"), or a verb both use acts on the speaker in one
    and on the listener in the other ("what do you want to call me" / "what do you want me
    to call you"), and the text that says "you" also names the speaker, so it cannot be the
    generic you: "how do I reset my password" / "how do you reset your password" stays a
    hit."""
    in_a, in_b = _persons(a), _persons(b)
    return _other_person(in_a, in_b, frozenset(b)) or _other_person(in_b, in_a, frozenset(a))


def _persons(words: tuple[str, ...]) -> dict[tuple[str, str], set[int]]:
    """("of", word) for a word after a possessive and ("to", word) for a word before an
    object pronoun, each with the persons it belongs to or acts on."""
    found: dict[tuple[str, str], set[int]] = {}
    for left, right in pairwise(words):
        if left in _POSSESSOR and right not in FUNCTION_WORDS:
            found.setdefault(("of", _lemma(right)), set()).add(_POSSESSOR[left])
        if right in _OBJECT and left not in FUNCTION_WORDS:
            found.setdefault(("to", _lemma(left)), set()).add(_OBJECT[right])
    return found


def _other_person(
    first: dict[tuple[str, str], set[int]],
    second: dict[tuple[str, str], set[int]],
    second_words: frozenset[str],
) -> bool:
    """Something only the speaker's in `first` is only the listener's in `second`, whose
    words name the speaker too."""
    return any(
        persons == {1} and second.get(key) == {2} and not _SPEAKER[key[0]].isdisjoint(second_words)
        for key, persons in first.items()
    )


def swapped(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Two things (up to three words each) trade places around the same words: "USD to EUR"
    / "EUR to USD", "is X faster than Y" / "is Y faster than X", "a 401 k into an IRA" /
    "an IRA into a 401 k", "I owe my brother" / "my brother owes me", "take ibuprofen after
    drinking" / "drink after taking ibuprofen". Words are compared by lemma and pronouns by
    person, articles are ignored; a clause moved as a whole keeps its inner order and does
    not count, nor does a symmetric link ("between A and B")."""
    short = len(a) < _SHORT_TEXT
    a = _swap_forms(a)
    b = _swap_forms(b)
    in_a, in_b = set(a), set(b)
    if [word for word in a if word in in_b] == [word for word in b if word in in_a]:
        return False  # the shared words come in the same order: nothing traded places
    at_a, at_b = _positions(a), _positions(b)
    for i in range(len(a)):
        for first_len in range(1, _SWAP_ITEM + 1):
            first = a[i : i + first_len]
            if len(first) < first_len or not in_b.issuperset(first) or not _names_something(first):
                continue
            for middle_len in range(1, _SWAP_MIDDLE + 1):
                start = i + first_len + middle_len
                middle = a[i + first_len : start]
                if len(middle) < middle_len or _SYMMETRIC.intersection(middle):
                    break  # a longer middle holds the same word
                if not in_b.issuperset(middle):
                    break
                if middle_len == 1 and middle[0] not in _LINKS and short:
                    continue  # "flip a coin" / "coin flip": a short command turned round
                for second_len in range(1, _SWAP_ITEM + 1):
                    second = a[start : start + second_len]
                    if (
                        len(second) < second_len
                        or second == first
                        or not in_b.issuperset(second)
                        or not _names_something(second)
                    ):
                        continue
                    turned = second + middle + first
                    if (
                        _occurs(turned, b, at_b)
                        and not _occurs(turned, a, at_a)
                        and not _occurs(first + middle + second, b, at_b)
                    ):
                        return True
    return False


def _positions(words: tuple[str, ...]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for at, word in enumerate(words):
        found.setdefault(word, []).append(at)
    return found


def _occurs(run: tuple[str, ...], words: tuple[str, ...], positions: dict[str, list[int]]) -> bool:
    """`run` stands in `words` as a contiguous stretch."""
    return any(words[at : at + len(run)] == run for at in positions.get(run[0], ()))


@lru_cache(maxsize=16384)
def _swap_forms(words: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(_SUBJECT_CASE.get(word) or _lemma(word) for word in words if word not in ARTICLES)


@lru_cache(maxsize=65536)
def _lemma(word: str) -> str:
    """The word's base form: of its other WordNet lemmas, the one that keeps most of its
    spelling ("codes" -> "code", not "cod"; "taking" -> "take"; "orders" -> "order")."""
    forms = lemmas(word) - {word}
    if not forms:
        return word
    return min(forms, key=lambda form: (-_shared_prefix(form, word), len(form), form))


def _shared_prefix(left: str, right: str) -> int:
    shared = 0
    for x, y in zip(left, right, strict=False):
        if x != y:
            break
        shared += 1
    return shared


def _names_something(item: tuple[str, ...]) -> bool:
    """A content word or a person: "my brother", "I"; not "to the"."""
    return any(word not in FUNCTION_WORDS or word in _PERSONS for word in item)
