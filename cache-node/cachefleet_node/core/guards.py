"""Guards: cheap checks that veto a semantic candidate whose similarity cleared the threshold.

A sentence embedding averages over tokens, so two prompts that differ in one word that
decides the answer ("enable" / "disable", "Python 2" / "Python 3", "Lisbon" / "Barcelona")
still score as near-duplicates. A guard compares the query's fuzzy text with the cached
prompt and names a reason when such an *answer-determining* token differs:

- `negation`: one text is negated and the other is not (odd number of cues: not, never,
  n't, without, ...) and otherwise differs in a couple of words at most, compared by lemma
  ("and switch to it" / "without switching to it");
- `opposites`: the texts take opposite sides of a contrast (enable/disable, ascending/
  descending, install/uninstall, male/female, beginner/expert, brief/detailed, ...; a word
  and its un-/dis-/de-/anti-/non- form; one member of a closed class for another: Monday/
  Friday, summer/winter, daily/weekly, weekday/weekend, development/production), name the
  other end of an exchange (donor/recipient, landlord/tenant, credit/debit, read/write
  access), swap a word for its WordNet antonym (good/bad, high/low) or for its counterpart
  by affix (hyper-/hypo-, up-/down-, over-/under-, in-/out-, -er/-ee, -ful/-less), or trade
  two things around the same words ("USD to EUR" / "EUR to USD", "is X faster than Y" /
  "is Y faster than X", "a fox tricks a crow" / "a crow tricks a fox") or around a
  non-symmetric operator ("P(A | B)" / "P(B | A)", "2^10" / "10^2");
- `numbers`: the numbers differ — compared exactly, so 13 is not 131 and 4 is not 429
  (digits, number words, ordinals, "one" when it counts something, versions, dates,
  amounts), a list of the same numbers comes in another order ("sort [5, 2, 9] as [2, 5,
  9]" / "as [9, 5, 2]"), the same number counts the other thing of the two both texts name
  ("5 miles in km" / "miles in 5 km") or measures another unit ("7 days" / "7 hours",
  "150 lbs" / "150 kg"), a thing both count is counted by another number ("with two dice"
  / "with three dice"), or one text asks for several of what the other asks one of ("ten
  names" / "a name", "the last 3 commits" / "the last commit");
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

from cachefleet_node.core.lexicon import are_antonyms, is_word, lemmas

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
_CONTRAST_POLES = (
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
    "accept,approve,allow,permit|reject,decline,deny,block,disallow,forbid,prohibit,disable",
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
# Roles, ends of an exchange and kinds: a negation does not take a text to the other end
# ("without credit" is not "debit", "not remote" is not "local").
_ROLE_POLES = (
    "donor,donors,giver,givers|recipient,recipients",
    "absorb,absorbing,absorbed,absorption|release,releasing,released,emit,emitting,emitted,"
    "emission,emissions",
    "lend,lending,lender,lenders,lent|borrow,borrowing,borrowed,borrower,borrowers",
    "buyer,buyers,purchaser,purchasers|seller,sellers,vendor,vendors",
    "landlord,landlords|tenant,tenants,renter,renters",
    "creditor,creditors|debtor,debtors",
    "credit|debit",
    "profit,profits,gain,gains|loss,losses",
    "asset,assets|liability,liabilities",
    "read access,read only,read permission,read from,reading from"
    "|write access,write permission,write to,writing to",
    "local|remote",
    "domestic|international",
    "single,unmarried|married",
    "before|during",
    "during|after",
    "weekday,weekdays|weekend,weekends",
    "development,dev|staging|production,prod",
)
_CONTRASTS: tuple[tuple[frozenset[str], ...], ...] = tuple(
    tuple(frozenset(pole.split(",")) for pole in poles.split("|"))
    for poles in _CONTRAST_POLES + _ROLE_POLES
)

_OPPOSITE_PREFIXES = ("un", "dis", "de", "anti", "non")
# Prefixes and suffixes that trade a word for its counterpart around the same stem:
# hypothyroidism / hyperthyroidism, upload / download, employer / employee, stateful / stateless.
_PREFIX_PAIRS = (
    ("hyper", "hypo"),
    ("over", "under"),
    ("pre", "post"),
    ("in", "out"),
    ("in", "ex"),
    ("im", "ex"),
    ("intro", "extro"),
    ("up", "down"),
    ("on", "off"),
    ("inter", "intra"),
    ("max", "min"),
    ("micro", "macro"),
    ("sub", "super"),
    ("en", "de"),
    ("inc", "dec"),
    ("endo", "exo"),
    ("homo", "hetero"),
    ("mono", "poly"),
)
_SUFFIX_PAIRS = (("er", "ee"), ("or", "ee"), ("ful", "less"))
_AFFIX_STEM = 3  # letters the shared stem needs at least

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

# Ordinals count like their numbers ("third highest" / "3rd highest"); "second" only where it
# is one ("the second highest", not "wait a second"). "first" is left to `opposites`
# (first / last): "the first debate" is not a date.
_ORDINALS = {
    word: str(value)
    for value, word in enumerate(
        "_ _ second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth".split()
    )
    if word != "_"
}
_ORDINALS.update({"twentieth": "20", "hundredth": "100", "thousandth": "1000"})
_AMBIGUOUS_ORDINALS = frozenset({"second"})
_ORDINAL_AFTER = frozenset("the my your his her its our their".split())

# Units a number measures, by canonical name: "2 hrs" is "2 hours", "150 lbs" is not "150 kg".
_UNITS = {
    alias: unit
    for unit, aliases in {
        "second": "second seconds sec secs",
        "minute": "minute minutes min mins",
        "hour": "hour hours hr hrs",
        "day": "day days",
        "week": "week weeks wk wks",
        "month": "month months",
        "year": "year years yr yrs",
        "decade": "decade decades",
        "century": "century centuries",
        "milligram": "milligram milligrams mg",
        "gram": "gram grams g",
        "kilogram": "kilogram kilograms kg kgs kilo kilos",
        "pound": "pound pounds lb lbs",
        "ounce": "ounce ounces oz",
        "ton": "ton tons tonne tonnes",
        "millimeter": "millimeter millimeters millimetre millimetres mm",
        "centimeter": "centimeter centimeters centimetre centimetres cm",
        "meter": "meter meters metre metres",
        "kilometer": "kilometer kilometers kilometre kilometres km kms",
        "inch": "inch inches",
        "foot": "foot feet ft",
        "yard": "yard yards",
        "mile": "mile miles mi",
        "milliliter": "milliliter milliliters millilitre millilitres ml",
        "liter": "liter liters litre litres",
        "cup": "cup cups",
        "tablespoon": "tablespoon tablespoons tbsp",
        "teaspoon": "teaspoon teaspoons tsp",
        "gallon": "gallon gallons gal",
        "byte": "byte bytes",
        "bit": "bit bits",
        "kilobyte": "kilobyte kilobytes kb",
        "megabyte": "megabyte megabytes mb",
        "gigabyte": "gigabyte gigabytes gb",
        "terabyte": "terabyte terabytes tb",
        "word": "word words",
        "sentence": "sentence sentences",
        "paragraph": "paragraph paragraphs",
        "page": "page pages",
        "line": "line lines",
        "dollar": "dollar dollars usd",
        "euro": "euro euros eur",
        "cent": "cent cents",
        "yen": "yen jpy",
        "percent": "percent percentage",
        "degree": "degree degrees",
        "celsius": "celsius",
        "fahrenheit": "fahrenheit",
        "calorie": "calorie calories kcal cal",
        "mph": "mph",
        "kph": "kph kmh",
        "hertz": "hertz hz",
        "gigahertz": "gigahertz ghz",
        "megahertz": "megahertz mhz",
        "watt": "watt watts",
        "kilowatt": "kilowatt kilowatts kw",
        "volt": "volt volts",
    }.items()
    for alias in aliases.split()
}

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


def _normalise(text: str) -> str:
    return text.replace("’", "'").replace("‘", "'")


_NON_HYPHEN = re.compile(r"\b([Nn]on)[- ](?=[A-Za-z])")


def _words(text: str) -> list[str]:
    """Lower-case words; "non-taxable" and "non taxable" are one word, "nontaxable"."""
    text = _NON_HYPHEN.sub(r"\1", _normalise(text))
    return [token.lower().replace("'", "") for token in _TOKEN.findall(text)]


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


def _index_terms() -> tuple[
    dict[str, list[tuple[int, int]]], dict[str, list[tuple[int, int, tuple[str, ...]]]]
]:
    """The contrast terms by word: one-word terms, and phrases by their first word."""
    single: dict[str, list[tuple[int, int]]] = {}
    phrases: dict[str, list[tuple[int, int, tuple[str, ...]]]] = {}
    for contrast_index, poles in enumerate(_CONTRASTS):
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
            if tuple(words[at : at + len(parts)]) == parts
        ]
        negated = at > 0 and words[at - 1] in _NEGATION_CUES
        for contrast_index, pole_index in hits:
            flips = len(_CONTRASTS[contrast_index]) == 2 and contrast_index < len(_CONTRAST_POLES)
            side = 1 - pole_index if negated and flips else pole_index
            found.add((contrast_index, side))
    return frozenset(found)


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
        and following not in _NOT_AFTER_ONE
        and before not in _ONE_AS_PRONOUN_AFTER
    )


def _is_ordinal(words: list[str], index: int) -> bool:
    """An ordinal word counts as its number; "second" only after "the"/"my"/...
    or before a superlative ("second highest"), not in "wait a second"."""
    word = words[index]
    if word not in _ORDINALS:
        return False
    if word not in _AMBIGUOUS_ORDINALS:
        return True
    before = words[index - 1] if index > 0 else ""
    after = words[index + 1] if index + 1 < len(words) else ""
    return before in _ORDINAL_AFTER or (after.endswith("est") and len(after) > 4)


def _numbers(text: str, words: list[str]) -> frozenset[str]:
    values = _digit_numbers(text)
    values.update(_NUMBER_WORDS[word] for word in words if word in _NUMBER_WORDS)
    values.update(_ORDINALS[word] for i, word in enumerate(words) if _is_ordinal(words, i))
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
        value = number.replace(",", "") if number[0].isdigit() else _NUMBER_WORDS.get(number)
        if value is not None and unit in _UNITS:
            found.add((value, _UNITS[unit]))
    return frozenset(found)


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
    )


# ------------------------------------------------------------------------------- guards


def _opposite_sides(a: frozenset[tuple[int, int]], b: frozenset[tuple[int, int]]) -> bool:
    """Some contrast where each text takes a pole the other does not."""
    only_a = a - b
    only_b = b - a
    return any(ca == cb for ca, _ in only_a for cb, _ in only_b)


def _prefixed_opposite(a: TextFeatures, b: TextFeatures) -> bool:
    """A word in one text whose un-/dis-/de-/anti-/non- form is in the other only, and not
    negated there ("non-stop" / "won't stop", "not perishable" / "non-perishable" agree)."""
    if b.negated and not a.negated:
        return False
    plain = _plain_words(b.sequence)
    for word in a.words - b.words:
        for prefix in _OPPOSITE_PREFIXES:
            if word.startswith(prefix) and len(word) - len(prefix) >= 3:
                stem = word[len(prefix) :]
                if stem in plain and stem not in a.words:
                    return True
    return False


def _substituted(a: frozenset[str], b: frozenset[str]) -> bool:
    """Each side holds a name the other lacks (a name that prefixes another counts as it:
    "S3" / "S3-bucket"). Only for names: numbers compare exactly (13 is not 131)."""
    only_a = [x for x in a - b if not any(y.startswith(x) or x.startswith(y) for y in b)]
    only_b = [y for y in b - a if not any(x.startswith(y) or y.startswith(x) for x in a)]
    return bool(only_a) and bool(only_b)


def _minimal_pair(a: TextFeatures, b: TextFeatures) -> bool:
    """The texts differ in at most a couple of words besides negation cues, words compared
    by their lemmas ("switch" / "switching": "create a branch and switch to it" / "... without
    switching to it")."""
    left = {_bare(word) for word in a.words - _NEGATION_CUES}
    right = {_bare(word) for word in b.words - _NEGATION_CUES}
    return len(left ^ right) <= max(2, len(left | right) // 5)


@lru_cache(maxsize=65536)
def _bare(word: str) -> str:
    """The shortest of a word and its WordNet lemmas ("switching" -> "switch", "packages" ->
    "package")."""
    return min((word, *lemmas(word)), key=lambda form: (len(form), form))


def _reversed(a: frozenset[tuple[str, str]], b: frozenset[tuple[str, str]]) -> bool:
    return any((target, source) in b for source, target in a)


def _operands_swapped(a: TextFeatures, b: TextFeatures) -> bool:
    """The operands of a non-symmetric operator trade places: "P(A | B)" / "P(B | A)",
    "2^10" / "10^2", "7/3" / "3/7"."""
    return any(
        (right, operator, left) in b.operations and (right, operator, left) not in a.operations
        for left, operator, right in a.operations - b.operations
    )


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


@lru_cache(maxsize=65536)
def _affix_keys(word: str) -> frozenset[tuple[int, str, int]]:
    """(affix pair, stem, side) for every pair of opposite affixes the word carries one of:
    "download" -> (up/down, "load", 1)."""
    keys = set()
    for index, (first, second) in enumerate(_PREFIX_PAIRS):
        for side, prefix in enumerate((first, second)):
            if word.startswith(prefix) and len(word) - len(prefix) >= _AFFIX_STEM:
                keys.add((index, word[len(prefix) :], side))
    for index, (first, second) in enumerate(_SUFFIX_PAIRS, len(_PREFIX_PAIRS)):
        for side, suffix in enumerate((first, second)):
            if word.endswith(suffix) and len(word) - len(suffix) >= _AFFIX_STEM:
                if suffix == "ee" and not is_word(word):
                    continue  # "transformee" is a typo, not the other end of "transformer"
                keys.add((index, word[: -len(suffix)], side))
    return frozenset(keys)


def _affix_swapped(a: frozenset[str], b: frozenset[str]) -> bool:
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


def _opposites(q: TextFeatures, c: TextFeatures) -> bool:
    return (
        _opposite_sides(q.poles, c.poles)
        or _antonym_swapped(q.sequence, c.sequence)
        or _prefixed_opposite(q, c)
        or _prefixed_opposite(c, q)
        or _affix_swapped(q.words, c.words)
        or _reversed(q.directions, c.directions)
        or _operands_swapped(q, c)
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
        if number in features.numbers and not (before.isdigit() or before in _NUMBER_WORDS):
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
            if len(phrase) < length or _singular(phrase[-1]) == phrase[-1]:
                continue  # the counted noun is not a plural
            wanted = tuple(_singular(word) for word in phrase)
            for start, word in enumerate(b.sequence):
                if word in _ONE_OF and b.sequence[start + 1 : start + 1 + length] == wanted:
                    return True
    return False


def _numbers_differ(q: TextFeatures, c: TextFeatures) -> bool:
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
        _recounted(q, c)
        or _remeasured(q, c)
        or _renumbered(q, c)
        or _recounted_article(q, c)
        or _recounted_article(c, q)
    )


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
