"""Number guards: other numbers, or the same number counting or measuring another thing."""

from __future__ import annotations

from cachefleet_node.core.guards.features import TextFeatures, far_from, singular
from cachefleet_node.core.guards.vocabulary import NUMBER_WORDS


def _recounted(q: TextFeatures, c: TextFeatures) -> bool:
    """A number that counts one thing here and another there, each text naming the other
    thing away from the number ("5 miles in kilometers" / "miles in 5 kilometers"; not
    "2000 rupee notes" / "rupee 2000 notes")."""
    mine = {(number, thing) for number, thing, _ in q.counted}
    theirs = {(number, thing) for number, thing, _ in c.counted}
    return any(
        number == other_number
        and thing != other_thing
        and (number, thing) not in theirs
        and (other_number, other_thing) not in mine
        and far_from(c.sequence, thing, other_at)
        and far_from(q.sequence, other_thing, at)
        for number, thing, at in q.counted
        for other_number, other_thing, other_at in c.counted
    )


def _remeasured(q: TextFeatures, c: TextFeatures) -> bool:
    """The same number measures one unit here and another there ("7 days" / "7 hours",
    "150 lbs" / "150 kg", "in two sentences" / "in two paragraphs")."""
    mine = q.measures - c.measures
    theirs = c.measures - q.measures
    return any(
        number == other_number and unit != other_unit
        for number, unit in mine
        for other_number, other_unit in theirs
    )


def _renumbered(q: TextFeatures, c: TextFeatures) -> bool:
    """A word both texts count is counted by other numbers: "with two fair dice" / "with
    three fair dice", "2 out of 5" / "5 out of 5" (the other numbers being the same)."""
    mine, theirs = _counts(q), _counts(c)
    for thing, numbers in mine.items():
        other = theirs.get(thing)
        if not other or not numbers - other or not other - numbers:
            continue
        if (numbers - other) - c.numbers or (other - numbers) - q.numbers:
            return True  # a number one text counts the thing with is not in the other at all
    return False


def _counts(features: TextFeatures) -> dict[str, set[str]]:
    """The numbers that count each word: only whole numbers of the text ("1,000 notes" is
    1000, not 000), and not the last of a run ("tier 2 2016 exam" counts no exam)."""
    found: dict[str, set[str]] = {}
    for number, thing, at in features.counted:
        before = features.sequence[at - 1] if at > 0 else ""
        if number in features.numbers and not (before.isdigit() or before in NUMBER_WORDS):
            found.setdefault(thing, set()).add(number)
    return found


#: Words that ask for one of a thing: "a name", "the last commit", "the next year".
_ONE_OF = frozenset("a an one single last next previous".split())


def _recounted_article(a: TextFeatures, b: TextFeatures) -> bool:
    """`a` counts several of a thing `b` asks one of: "ten names for a podcast" / "a name
    for a podcast", "three short haikus" / "a short haiku", "the last 3 commits" / "the
    last commit"."""
    for number, _, at in a.counted:
        if number in ("1", "0") or number in b.numbers:
            continue
        for length in (1, 2):
            phrase = a.sequence[at + 1 : at + 1 + length]
            if len(phrase) < length or singular(phrase[-1]) == phrase[-1]:
                continue  # the counted noun is not a plural
            wanted = tuple(singular(word) for word in phrase)
            for start, word in enumerate(b.sequence):
                if word in _ONE_OF and b.sequence[start + 1 : start + 1 + length] == wanted:
                    return True
    return False


def _bounds_flipped(q: TextFeatures, c: TextFeatures) -> bool:
    """The same number bounds from above here and from below there: "workers under 18" /
    "workers over 18", "fewer than 5 errors" / "at least 5 errors"."""
    theirs = c.bounds - q.bounds
    return any(
        number == other and side != other_side
        for number, side in q.bounds - c.bounds
        for other, other_side in theirs
    )


def numbers_differ(q: TextFeatures, c: TextFeatures) -> bool:
    """Different numbers, a list of the same numbers in another order ("[5, 2] -> [2, 5]"),
    the same number counting another thing or measuring another unit, a thing counted by
    other numbers, or several of a thing against one."""
    if q.numbers - c.numbers and c.numbers - q.numbers:
        return True
    reordered = any(
        sorted(mine) == sorted(theirs)
        for mine in q.number_lists - c.number_lists
        for theirs in c.number_lists - q.number_lists
    )
    if reordered:
        return True
    return (
        _bounds_flipped(q, c)
        or _recounted(q, c)
        or _remeasured(q, c)
        or _renumbered(q, c)
        or _recounted_article(q, c)
        or _recounted_article(c, q)
    )
