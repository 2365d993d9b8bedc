"""Guards: cheap checks that veto a semantic candidate whose similarity cleared the threshold.

A sentence embedding averages over tokens, so two prompts that differ in one word that
decides the answer ("enable" / "disable", "Python 2" / "Python 3", "Lisbon" / "Barcelona")
still score as near-duplicates. A guard compares the query's fuzzy text with the cached
prompt and names a reason when such an *answer-determining* token differs:

- `negation`: one text is negated and the other is not (odd number of cues: not, never,
  n't, without, ...);
- `opposites`: the texts take opposite sides of a contrast (enable/disable, ascending/
  descending, install/uninstall, male/female, beginner/expert, brief/detailed, ...; a word
  and its un-/dis-/de-/anti- form; one member of a closed class for another: Monday/Friday,
  summer/winter, daily/weekly), swap a word for its WordNet antonym (good/bad, high/low),
  or trade two things around the same words ("USD to EUR" / "EUR to USD", "is X faster
  than Y" / "is Y faster than X", "a fox tricks a crow" / "a crow tricks a fox");
- `numbers`: the numbers differ — compared exactly, so 13 is not 131 and 4 is not 429
  (digits, number words, "one" when it counts something, versions, dates, amounts), a
  list of the same numbers comes in another order ("sort [5, 2, 9] as [2, 5, 9]" / "as
  [9, 5, 2]"), or the same number counts the other thing of the two both texts name ("5
  miles in km" / "miles in 5 km");
- `entities`: each text names something the other does not (capitalised names that do not
  start a sentence, ALL-CAPS tokens, code identifiers, quoted strings), or, in texts whose
  content words differ by one swap only, a name on one side stands where the other has
  another word ("a Roth IRA" / "a traditional IRA": the shared neighbour "IRA" anchors
  the slot).

Two texts are told apart only by a *substitution*, never by a mere addition: "S3 bucket" and
"Amazon S3 bucket" still match; "Lisbon" and "Barcelona" do not. Additions that change the
answer ("a recipe" / "a vegan recipe", "list causes" / "list 4 causes") are the verifier's
to judge (`core/verifier.py`), with the whole pair in view.

Everything here is pure and deterministic; text features are memoised per string, so a
check costs a few microseconds once the cached prompt has been seen.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from cachefleet_node.core.lexicon import are_antonyms

__all__ = [
    "FUNCTION_WORDS",
    "GUARD_NAMES",
    "GuardChain",
    "TextFeatures",
    "text_features",
]

GUARD_NAMES = ("negation", "opposites", "numbers", "entities")


# ------------------------------------------------------------------------------ lexicon

_NEGATION_CUES = frozenset(
    "not no never nothing nobody none nowhere neither nor without cannot cant dont doesnt "
    "didnt isnt arent wasnt werent wont wouldnt shouldnt couldnt hasnt havent hadnt mustnt "
    "aint".split()
)

# Contrasts: each is a tuple of poles, each pole a set of words (or two-word phrases) that
# take the same side. A text "takes" every pole it mentions.
_CONTRASTS: tuple[tuple[frozenset[str], ...], ...] = tuple(
    tuple(frozenset(pole.split(",")) for pole in poles.split("|"))
    for poles in (
        # what an operation does to a thing: bring it into being / switch it on, or the reverse
        "create,creating,created,install,installing,installed,enable,enabling,enabled,"
        "activate,activating,activated,insert,turn on,switch on,set up,sign up,subscribe"
        "|list all,list the,list every,list my,show,view,display,print out"
        "|delete,deleting,deleted,remove,removing,removed,uninstall,uninstalling,disable,"
        "disabling,disabled,deactivate,deactivating,erase,wipe,purge,destroy,turn off,"
        "switch off,get rid,unsubscribe",
        "keep,keeping,kept,save,retain,preserve|discard,throw away,lose,losing,wipe,delete,"
        "deleting,remove,removing",
        "start,begin,resume,restart|pause,suspend|stop,terminate,quit",
        "ascending,increasing order,smallest to largest,lowest to highest"
        "|descending,decreasing order,largest to smallest,highest to lowest",
        "increase,raise,louder,faster|decrease,reduce,quieter,slower",
        "upload,uploading|download,downloading",
        "import|export",
        "push|pull",
        "buy,buying,purchase|sell,selling",
        "deposit|withdraw,withdrawal",
        "send,sending,sent|receive,receiving,received",
        "encode|decode",
        "before|after",
        "first|last",
        "left|right",
        "upper,uppercase|lower,lowercase",
        "soft,runny|hard,firm",
        "hot|cold",
        "true,correct|false,incorrect,wrong",
        "positive|negative",
        "even|odd",
        "inner|outer",
        "public|private",
        "horizontal|vertical",
        "input|output",
        "incoming,inbound|outgoing,outbound",
        "best|worst",
        "better|worse",
        "largest,biggest|smallest",
        "accept,approve,allow|reject,decline,deny,block",
        "include|exclude",
        "confirm|cancel",
        "derivative,differentiate|integral,integrate,antiderivative",
        "plus|minus,subtract",
        "multiply,multiplied|divide,divided",
        "login,log in,sign in|logout,log out,sign out",
        "open|close",
        "lock|unlock",
        "freeze|unfreeze",
        "male,males,man,men,boy,boys,masculine|female,females,woman,women,girl,girls,feminine",
        "adult,adults,grown-up,grown-ups|child,children,kid,kids,toddler,toddlers",
        "beginner,beginners,novice,novices,newbie,newbies|expert,experts,advanced",
        "brief,briefly,short,concise,summary|detailed,in detail,in depth",
        "formal|informal,casual",
        "cheap,cheapest,cheaper|expensive,priciest,pricier",
        # closed classes: every member is a pole of its own
        "monday|tuesday|wednesday|thursday|friday|saturday|sunday",
        "spring|summer|autumn|winter",
        "morning|afternoon|evening|night",
        "yesterday|today|tomorrow",
        "hourly|daily|weekly|monthly|yearly,annually,annual",
        "per hour,an hour|per day,a day|per week,a week|per month,a month|per year,a year",
        "north,northern|south,southern|east,eastern|west,western",
        "minimum,min|average,mean|median|maximum,max",
    )
)

_OPPOSITE_PREFIXES = ("un", "dis", "de", "anti", "non")

# "one" is left out here: it is mostly a pronoun ("a new one"); `_counts_one` tells when it
# counts something ("in one sentence").
_NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate(
        "zero _ two three four five six seven eight nine ten eleven twelve thirteen "
        "fourteen fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
    if word != "_"
}
_NUMBER_WORDS.update(
    {
        "thirty": "30",
        "forty": "40",
        "fifty": "50",
        "sixty": "60",
        "seventy": "70",
        "eighty": "80",
        "ninety": "90",
        "hundred": "100",
        "thousand": "1000",
        "million": "1000000",
        "billion": "1000000000",
        "dozen": "12",
        "half": "0.5",
        "twice": "2",
    }
)

#: Words that say nothing about what is asked (also the lexical score's stop list).
FUNCTION_WORDS = frozenset(
    "a an the to of in on for is are am was were be been i im my me you your we our what how "
    "can could do does did please and or it its with at by this that these those from "
    "there here will would should shall may might must just about".split()
)

# Words before "one" that make it a pronoun, and words after it that do not make it a count.
_ONE_AS_PRONOUN_AFTER = frozenset(
    "a the this that which each every any no another only new old right wrong same other last "
    "first next no-one someone anyone everyone".split()
)
_NOT_AFTER_ONE = frozenset("another more else".split())

# Words that start questions or are capitalised for grammar, not because they name something.
_NOT_NAMES = frozenset("i i'm i've i'd i'll ok okay".split())

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
    entities: frozenset[str]
    directions: frozenset[tuple[str, str]]


def _normalise(text: str) -> str:
    return text.replace("’", "'").replace("‘", "'")


def _words(text: str) -> list[str]:
    return [token.lower().replace("'", "") for token in _TOKEN.findall(_normalise(text))]


def _negated(words: list[str]) -> bool:
    cues = sum(1 for word in words if word in _NEGATION_CUES)
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


def _poles(words: list[str]) -> frozenset[tuple[int, int]]:
    """The (contrast, pole) pairs a text takes. A term right after a negation cue takes the
    other side of a two-sided contrast: "without losing my work" keeps it."""
    forms = [_stems(word) for word in words]
    found = set()
    for contrast_index, poles in enumerate(_CONTRASTS):
        for pole_index, pole in enumerate(poles):
            for term in pole:
                parts = term.split()
                for at in range(len(words) - len(parts) + 1):
                    if len(parts) == 1:
                        if term not in forms[at]:
                            continue
                    elif words[at : at + len(parts)] != parts:
                        continue
                    negated = at > 0 and words[at - 1] in _NEGATION_CUES
                    side = 1 - pole_index if negated and len(poles) == 2 else pole_index
                    found.add((contrast_index, side))
    return frozenset(found)


def _number_lists(text: str) -> frozenset[tuple[str, ...]]:
    """Runs of two or more numbers separated only by commas, spaces or brackets: "[5, 2, 9]"."""
    return frozenset(
        tuple(_NUMBER.findall(run)) for run in _NUMBER_LIST.findall(text) if run.strip()
    )


def _digit_numbers(text: str) -> set[str]:
    """Numbers written with digits, without thousands separators or zero minutes: "1,000" ->
    "1000", "3:00" -> "3" (as "3pm" is); "1.10" stays "1.10" (a version is not 1.1)."""
    return {_ZERO_TAIL.sub("", match.replace(",", "")) for match in _NUMBER.findall(text)}


def _counts_one(words: list[str], index: int) -> bool:
    """`one` at `index` counts something ("in one sentence"), not a pronoun ("a new one",
    "which one", "one of")."""
    following = words[index + 1] if index + 1 < len(words) else None
    before = words[index - 1] if index > 0 else None
    return (
        following is not None
        and following not in FUNCTION_WORDS
        and following not in _NOT_AFTER_ONE
        and before not in _ONE_AS_PRONOUN_AFTER
    )


def _numbers(text: str, words: list[str]) -> frozenset[str]:
    values = _digit_numbers(text)
    values.update(_NUMBER_WORDS[word] for word in words if word in _NUMBER_WORDS)
    if any(word == "one" and _counts_one(words, i) for i, word in enumerate(words)):
        values.add("1")
    return frozenset(values)


def _counted(words: list[str]) -> frozenset[tuple[str, str, int]]:
    found = set()
    for position, (word, following) in enumerate(itertools.pairwise(words)):
        number = word if word.isdigit() else _NUMBER_WORDS.get(word)
        if number is not None and following not in FUNCTION_WORDS and not following.isdigit():
            found.add((number, following, position))
    return frozenset(found)


def _far_from(sequence: tuple[str, ...], word: str, position: int) -> bool:
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
            if lowered in _NOT_NAMES or token.isdigit():
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
        entities=_entities(text),
        directions=_directions(text),
    )


# ------------------------------------------------------------------------------- guards


def _opposite_sides(a: frozenset[tuple[int, int]], b: frozenset[tuple[int, int]]) -> bool:
    """Some contrast where each text takes a pole the other does not."""
    only_a = a - b
    only_b = b - a
    return any(ca == cb for ca, _ in only_a for cb, _ in only_b)


def _prefixed_opposite(a: frozenset[str], b: frozenset[str]) -> bool:
    """A word in one text whose un-/dis-/de-/anti-/non- form is in the other only."""
    for word in a - b:
        for prefix in _OPPOSITE_PREFIXES:
            if word.startswith(prefix) and len(word) - len(prefix) >= 3:
                stem = word[len(prefix) :]
                if stem in b and stem not in a:
                    return True
    return False


def _substituted(a: frozenset[str], b: frozenset[str]) -> bool:
    """Each side holds a name the other lacks (a name that prefixes another counts as it:
    "S3" / "S3-bucket"). Only for names: numbers compare exactly (13 is not 131)."""
    only_a = [x for x in a - b if not any(y.startswith(x) or x.startswith(y) for y in b)]
    only_b = [y for y in b - a if not any(x.startswith(y) or y.startswith(x) for x in a)]
    return bool(only_a) and bool(only_b)


def _minimal_pair(a: TextFeatures, b: TextFeatures) -> bool:
    """The texts differ in at most a couple of words besides negation cues."""
    left = a.words - _NEGATION_CUES
    right = b.words - _NEGATION_CUES
    return len(left ^ right) <= max(2, len(left | right) // 5)


def _reversed(a: frozenset[tuple[str, str]], b: frozenset[tuple[str, str]]) -> bool:
    return any((target, source) in b for source, target in a)


_SYMMETRIC = frozenset("and or vs versus plus times".split())
_ARTICLES = frozenset("a an the".split())
_LINKS = FUNCTION_WORDS | frozenset(
    "into onto than over under via per against toward towards minus given".split()
)
_SWAP_MIDDLE = 6  # words between the two things that trade places
_SHORT_TEXT = 6  # words (articles aside) below which a one-word link may be a compound


def _singular(word: str) -> str:
    return word[:-1] if word.endswith("s") and not word.endswith("ss") and len(word) > 3 else word


def _swapped(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Two things (a word or two each) trade places around the same words: "USD to EUR" /
    "EUR to USD", "is X faster than Y" / "is Y faster than X", "a 401 k into an IRA" / "an
    IRA into a 401 k". Articles are ignored; a clause moved as a whole keeps its inner order
    and does not count, nor does a symmetric link ("between A and B")."""
    a = tuple(_singular(word) for word in a if word not in _ARTICLES)
    b = tuple(_singular(word) for word in b if word not in _ARTICLES)
    in_b = set(b)
    a_text = " " + " ".join(a) + " "
    b_text = " " + " ".join(b) + " "
    n = len(a)
    for i in range(n):
        for first_len in (1, 2):
            first = a[i : i + first_len]
            if (
                len(first) < first_len
                or not in_b.issuperset(first)
                or all(word in FUNCTION_WORDS for word in first)
            ):
                continue
            for middle_len in range(1, _SWAP_MIDDLE + 1):
                start = i + first_len + middle_len
                middle = a[i + first_len : start]
                if len(middle) < middle_len or _SYMMETRIC.intersection(middle):
                    break  # a longer middle holds the same word
                if not in_b.issuperset(middle):
                    break
                if middle_len == 1 and middle[0] not in _LINKS and n < _SHORT_TEXT:
                    continue  # "flip coin" / "coin flip": a short command turned round
                for second_len in (1, 2):
                    second = a[start : start + second_len]
                    if (
                        len(second) < second_len
                        or second == first
                        or not in_b.issuperset(second)
                        or all(word in FUNCTION_WORDS for word in second)
                    ):
                        continue
                    swapped = " " + " ".join((*second, *middle, *first)) + " "
                    kept = " " + " ".join((*first, *middle, *second)) + " "
                    if swapped in b_text and swapped not in a_text and kept not in b_text:
                        return True
    return False


def _negation(q: TextFeatures, c: TextFeatures) -> bool:
    return q.negated != c.negated and _minimal_pair(q, c)


def _antonym_swapped(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
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
        if word not in FUNCTION_WORDS and (at == 0 or sequence[at - 1] not in _NEGATION_CUES)
    }


def _opposites(q: TextFeatures, c: TextFeatures) -> bool:
    return (
        _opposite_sides(q.poles, c.poles)
        or _antonym_swapped(q.sequence, c.sequence)
        or _prefixed_opposite(q.words, c.words)
        or _prefixed_opposite(c.words, q.words)
        or _reversed(q.directions, c.directions)
        or _swapped(q.sequence, c.sequence)
    )


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
        and _far_from(c.sequence, thing, other_at)
        and _far_from(q.sequence, other_thing, at)
        for number, thing, at in q.counted
        for other_number, other_thing, other_at in c.counted
    )


def _numbers_differ(q: TextFeatures, c: TextFeatures) -> bool:
    """Different numbers, a list of the same numbers in another order ("[5, 2] -> [2, 5]"),
    or the same number counting another thing."""
    if q.numbers - c.numbers and c.numbers - q.numbers:
        return True
    reordered = any(
        sorted(mine) == sorted(theirs)
        for mine in q.number_lists - c.number_lists
        for theirs in c.number_lists - q.number_lists
    )
    if reordered:
        return True
    return _recounted(q, c)


def _slot_filled_otherwise(a: TextFeatures, b: TextFeatures) -> bool:
    """In texts whose content words differ by one swap only, a name only `a` has stands next
    to a content word both share, and in `b` that neighbour sits beside the word `a` lacks:
    "Roth IRA" / "traditional IRA"."""
    if len((a.words ^ b.words) - FUNCTION_WORDS) > 2:
        return False
    for name in a.entities - b.entities:
        if any(other.startswith(name) or name.startswith(other) for other in b.entities):
            continue
        for index, word in enumerate(a.sequence):
            if word != name:
                continue
            for step in (1, -1):
                anchor_at = index + step
                if not 0 <= anchor_at < len(a.sequence):
                    continue
                anchor = a.sequence[anchor_at]
                if anchor in FUNCTION_WORDS or anchor not in b.words:
                    continue
                for other_at, other in enumerate(b.sequence):
                    slot = other_at - step
                    if other != anchor or not 0 <= slot < len(b.sequence):
                        continue
                    filler = b.sequence[slot]
                    if filler not in a.words and filler not in FUNCTION_WORDS:
                        return True
    return False


def _entities_differ(q: TextFeatures, c: TextFeatures) -> bool:
    return (
        _substituted(q.entities, c.entities)
        or _slot_filled_otherwise(q, c)
        or _slot_filled_otherwise(c, q)
    )


_CHECKS = {
    "negation": _negation,
    "opposites": _opposites,
    "numbers": _numbers_differ,
    "entities": _entities_differ,
}


class GuardChain:
    """The enabled guards of a namespace; the first veto wins."""

    def __init__(self, enabled: tuple[str, ...]) -> None:
        unknown = set(enabled) - set(GUARD_NAMES)
        if unknown:
            raise ValueError(f"unknown guards: {sorted(unknown)}")
        self.enabled = tuple(name for name in GUARD_NAMES if name in enabled)

    def reject_reason(self, query: str, candidate: str) -> str | None:
        """The first enabled guard that tells the texts apart, or None."""
        return next(self.reasons(query, candidate), None)

    def reasons(self, query: str, candidate: str) -> Iterator[str]:
        """Every enabled guard that tells the texts apart, in `GUARD_NAMES` order."""
        if not self.enabled or query == candidate:
            return
        q = text_features(query)
        c = text_features(candidate)
        for name in self.enabled:
            if _CHECKS[name](q, c):
                yield name
