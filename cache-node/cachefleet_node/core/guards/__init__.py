"""Guards: cheap checks that veto a semantic candidate whose similarity cleared the threshold.

A sentence embedding averages over tokens, so two prompts that differ in one word that
decides the answer ("enable" / "disable", "Python 2" / "Python 3", "Lisbon" / "Barcelona")
still score as near-duplicates. A guard compares the query's fuzzy text with the cached
prompt and names a reason when such an *answer-determining* token differs:

- `negation`: one text is negated and the other is not (odd number of cues: not, never,
  n't, without, ...) and otherwise differs in a couple of words at most, compared by lemma
  ("and switch to it" / "without switching to it"), or one text asks to keep an action from
  happening ("stop the service from starting at boot") and the other asks for it plainly
  ("start the service at boot");
- `opposites`: the texts take opposite sides of a contrast (enable/disable, ascending/
  descending, install/uninstall, freeze/thaw, male/female, husband/wife, beginner/expert,
  brief/detailed, plain/technical, formal/playful, ...; a word and its un-/dis-/de-/anti-/
  non- form; one member of a closed class for another: Monday/Friday, summer/winter,
  daily/weekly, weekday/weekend, development/production, baby/child/teenager/adult/retiree,
  a language named in lower case), name the other side of a relation (donor/recipient,
  landlord/tenant, teacher/student, client/server, credit/debit, read/write access), swap a
  word for its WordNet antonym (good/bad, high/low) or for its counterpart by affix
  (hyper-/hypo-, up-/down-, over-/under-, in-/out-, -er/-ee, -ful/-less) or a verb's particle
  for its opposite ("turn the wifi on" / "... off", "turn it up" / "turn it down"; a verb and
  its particle may hold a short object between them: "take his rights away"), trade two things
  of up to three words around the same words, compared by lemma and person ("USD to EUR"
  / "EUR to USD", "is X faster than Y" / "is Y faster than X", "I owe my brother" / "my
  brother owes me") or around a non-symmetric operator ("P(A | B)" / "P(B | A)"), or trade
  the markers of a route's two ends ("to Maria from my wallet" / "from Maria to my wallet"),
  or ask for descending order where the other text sorts naming no order at all,
  or give a thing or an action both name to the other person while naming the speaker
  ("tell me my name" / "tell me your name", "what do you want to call me" / "... want me to
  call you");
- `numbers`: the numbers differ — compared exactly, so 13 is not 131 and 4 is not 429
  (digits, number words, ordinals, "one" when it counts something, versions, dates,
  amounts), a list of the same numbers comes in another order ("sort [5, 2, 9] as [2, 5,
  9]" / "as [9, 5, 2]"), the same number is bounded from the other side ("under 18" /
  "over 18", "fewer than 5" / "at least 5"), counts the other thing of the two both texts
  name ("5 miles in km" / "miles in 5 km") or measures another unit ("7 days" / "7
  hours"), a thing both count is counted by another number ("with two dice" / "with three
  dice"), or one text asks for several of what the other asks one of ("ten names" / "a
  name");
- `entities`: each text names something the other does not (capitalised names that do not
  start a sentence, ALL-CAPS tokens, code identifiers, quoted strings; a short form of the
  other's words is the same name: "US" / "United States", "k8s" / "Kubernetes"), or, in
  texts whose content words differ by one swap only, a name on one side stands where the
  other has another word ("a Roth IRA" / "a traditional IRA"); and the scope rules of
  `scope.py`: a prepositional phrase both texts share holds another audience, place or
  part ("for a pregnant woman" / "for a professional athlete"), or one text narrows the
  whole request with a qualifier the other lacks ("... in R", "... without using GROUP
  BY", "..., excluding Earth"), or one text sets how the answer is shaped — the reader's
  level, its length, register or format — where the other leaves it open ("summarize the
  plot" / "a detailed summary of the plot", "... in 3 sentences", "... as a table"), or
  one text aims the request at people by age, condition or household after a preposition
  and the other names no such people ("symptoms of dehydration" / "... in an infant", "...
  for an elderly parent").

Inside a sentence, two texts are told apart only by a *substitution*, never by a mere
addition: "S3 bucket" and "Amazon S3 bucket" still match; "Lisbon" and "Barcelona" do not.
Additions inside the request ("a recipe" / "a vegan recipe", "list causes" / "list 4
causes") are the verifier's to judge (`core/verifier.py`), with the whole pair in view.

The package holds one module per family: `features` (what is extracted from one text),
`vocabulary` (the closed word classes and contrasts), `polarity` (negation, contrasts,
antonyms, affixes), `direction` (swaps and routes), `quantities`, `names` and `scope`.
Everything here is pure and deterministic; text features are memoised per string, so a
check costs a few microseconds once the cached prompt has been seen.
"""

from __future__ import annotations

from collections.abc import Iterator

from cachefleet_node.core.guards.direction import (
    ends_swapped,
    operands_swapped,
    person_swapped,
    reversed_directions,
    swapped,
)
from cachefleet_node.core.guards.features import TextFeatures, text_features
from cachefleet_node.core.guards.names import entities_differ
from cachefleet_node.core.guards.polarity import (
    affix_swapped,
    antonym_swapped,
    descending_added,
    negation,
    opposite_sides,
    particle_swapped,
    prefixed_opposite,
    prevented,
)
from cachefleet_node.core.guards.quantities import numbers_differ
from cachefleet_node.core.guards.scope import (
    audience_added,
    qualifier_added,
    shape_added,
    slot_refilled,
)
from cachefleet_node.core.guards.vocabulary import FUNCTION_WORDS

__all__ = [
    "FUNCTION_WORDS",
    "GUARD_NAMES",
    "GuardChain",
    "TextFeatures",
    "text_features",
]

GUARD_NAMES = ("negation", "opposites", "numbers", "entities")


def _opposites(q: TextFeatures, c: TextFeatures) -> bool:
    return (
        opposite_sides(q.poles, c.poles)
        or antonym_swapped(q.sequence, c.sequence, q.poles & c.poles)
        or prefixed_opposite(q, c)
        or prefixed_opposite(c, q)
        or affix_swapped(q.words, c.words)
        or particle_swapped(q.sequence, c.sequence)
        or reversed_directions(q.directions, c.directions)
        or ends_swapped(q, c)
        or operands_swapped(q, c)
        or swapped(q.sequence, c.sequence)
        or person_swapped(q.sequence, c.sequence)
        or descending_added(q, c)
    )


def _entities(q: TextFeatures, c: TextFeatures) -> bool:
    return (
        entities_differ(q, c)
        or slot_refilled(q, c)
        or qualifier_added(q, c)
        or shape_added(q, c)
        or audience_added(q, c)
    )


def _negation(q: TextFeatures, c: TextFeatures) -> bool:
    return negation(q, c) or prevented(q, c)


_CHECKS = {
    "negation": _negation,
    "opposites": _opposites,
    "numbers": numbers_differ,
    "entities": _entities,
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
