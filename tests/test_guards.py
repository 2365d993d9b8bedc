"""Guards against confident wrong answers: a labelled trap set of our own wording."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cachefleet_node.config import GuardsConfig, NamespaceConfig, VerifierConfig
from cachefleet_node.core.guards import GUARD_NAMES, GuardChain
from cachefleet_node.core.judging import CandidateJudge

# (query, cached prompt, the guard that must veto)
MUST_NOT_MATCH = [
    (
        "Sort these invoices in ascending order by date",
        "Sort these invoices in descending order by date",
        "opposites",
    ),
    (
        "How do I show all the cron jobs of a user?",
        "How do I delete all the cron jobs of a user?",
        "opposites",
    ),
    (
        "How do I lock the screen from the terminal?",
        "How do I unlock the screen from the terminal?",
        "opposites",
    ),
    ("Convert 12 pounds to kilograms", "Convert 12 kilograms to pounds", "opposites"),
    (
        "Translate good night from German to Italian",
        "Translate good night from Italian to German",
        "opposites",
    ),
    (
        "Is it safe to drink tap water in Oslo?",
        "Is it not safe to drink tap water in Oslo?",
        "negation",
    ),
    (
        "Why does my laptop charge when it is off?",
        "Why doesn't my laptop charge when it is off?",
        "negation",
    ),
    (
        "What changed between Java 17 and Java 21?",
        "What changed between Java 11 and Java 17?",
        "numbers",
    ),
    ("Book a table for 4 people at 7pm", "Book a table for 6 people at 7pm", "numbers"),
    ("What was the inflation rate in 2019?", "What was the inflation rate in 2021?", "numbers"),
    (
        "Give me a packing list for three days of hiking",
        "Give me a packing list for five days of hiking",
        "numbers",
    ),
    ("What is the population of Lyon?", "What is the population of Marseille?", "entities"),
    (
        "How do I call `json.dumps` with sorted keys?",
        "How do I call `yaml.dump` with sorted keys?",
        "entities",
    ),
    (
        "Summarise the plot of 'Dune' in two lines",
        "Summarise the plot of 'Emma' in two lines",
        "entities",
    ),
    (
        "What does the HTTP status GONE mean?",
        "What does the HTTP status CONFLICT mean?",
        "entities",
    ),
    (
        "My list is [4, 8, 1]; how do I get [1, 4, 8]?",
        "My list is [4, 8, 1]; how do I get [8, 4, 1]?",
        "numbers",
    ),
    (
        "How long to boil an egg for a runny yolk?",
        "How long to boil an egg for a firm yolk?",
        "opposites",
    ),
    (
        "How can I switch on dark mode in the settings?",
        "How can I switch off dark mode in the settings?",
        "opposites",
    ),
    ("Steps to enable SSH login for root", "Steps to disable SSH login for root", "opposites"),
    # the same number counting the other of the two things both texts name
    ("How many ounces are in 8 cups?", "How many cups are in 8 ounces?", "numbers"),
    (
        "My recipe needs 2 tablespoons of oil; how many teaspoons is that?",
        "My recipe needs 2 teaspoons of oil; how many tablespoons is that?",
        "numbers",
    ),
    # a name on one side where the other has a different word in the same slot
    (
        "Is a Roth 401k better for young workers?",
        "Is a traditional 401k better for young workers?",
        "entities",
    ),
    (
        "How do I cancel my Netflix subscription?",
        "How do I cancel my gym subscription?",
        "entities",
    ),
]

# Reported from outside (issue 13): a number that prefixes another is another number.
MUST_NOT_MATCH += [
    ("List 4 causes of HTTP status 500", "List 4 causes of HTTP status 429", "numbers"),
    (
        "What is the capital of country number 13 in the list?",
        "What is the capital of country number 131 in the list?",
        "numbers",
    ),
    (
        "Can I raise my credit limit to 500 dollars",
        "Can I raise my credit limit to 5000 dollars",
        "numbers",
    ),
    ("What's new in Python 3.1?", "What's new in Python 3.10?", "numbers"),
    (
        "Summarize the French revolution in three sentences",
        "Summarize the French revolution in one sentence",
        "numbers",
    ),
    ("Describe a typical female lion", "Describe a typical male lion", "opposites"),
    ("Explain recursion for experts", "Explain recursion for beginners", "opposites"),
    (
        "Which cooking oils are bad for deep frying?",
        "Which cooking oils are good for deep frying?",
        "opposites",
    ),
    ("Is Java faster than Go?", "Is Go faster than Java?", "opposites"),
    (
        "How do I roll over an IRA into a 401(k)?",
        "How do I roll over a 401(k) into an IRA?",
        "opposites",
    ),
    (
        "Is weight gain a cause of hypothyroidism?",
        "Is hypothyroidism a cause of weight gain?",
        "opposites",
    ),
    (
        "Write a short fable in which a crow tricks a fox.",
        "Write a short fable in which a fox tricks a crow.",
        "opposites",
    ),
    (
        "Replace all underscores with spaces in a string",
        "Replace all spaces with underscores in a string",
        "opposites",
    ),
    (
        "Do I have anything on my calendar next Sunday?",
        "Do I have anything on my calendar next Tuesday?",
        "opposites",
    ),
]

# A negated term takes the other side ("without losing" keeps); deleting is discarding.
MUST_NOT_MATCH += [
    (
        "I committed too early. How do I take the commit back without losing my work?",
        "How can I undo the last git commit and throw away my changes?",
        "opposites",
    ),
    (
        "How do I delete the last commit along with all its code changes?",
        "How can I undo the last commit while keeping my changes?",
        "opposites",
    ),
]

# Paraphrases that ask for the same answer: no guard may veto them.
MUST_MATCH = [
    ("How do I turn on dark mode?", "How can I switch on dark mode?"),
    ("What is the population of Lyon?", "How many people live in Lyon?"),
    ("Book a table for 4 people at 7pm", "Reserve a table for 4 people at 7pm"),
    ("Why doesn't my laptop charge?", "Why won't my laptop charge?"),
    (
        "How do I block public access to an S3 bucket?",
        "How can I block public access to an Amazon S3 bucket?",
    ),
    ("Sort a list of numbers in ascending order", "Order a list of numbers in ascending order"),
    ("Delete every stopped container", "Remove all stopped containers"),
    ("What's the capital of Peru?", "Which city is the capital of Peru?"),
    (
        "Give me a packing list for three days of hiking",
        "What should I pack for a 3 day hike? A packing list please",
    ),
    ("Can you recommend a good book?", "Could you recommend a good book?"),
    ("How far is a 10 km run in miles?", "A 10 km run is how many miles?"),
    ("Top 10 movies of the decade", "The 10 best movies of the decade"),
    ("How do I cancel my Netflix subscription?", "How can I cancel a Netflix subscription?"),
    ("How do I make an S3 bucket?", "How do I create a new Amazon S3 bucket?"),
    # clauses moved as a whole, symmetric links, compounds turned round, equal times
    (
        "Between LEFT JOIN and INNER JOIN, what's the difference?",
        "What's the difference between INNER JOIN and LEFT JOIN?",
    ),
    (
        "What is the probability of rolling two sixes with two fair dice?",
        "With two fair dice, what is the probability of rolling two sixes?",
    ),
    ("In Rust, how do I read a file line by line?", "How do I read a file line by line in Rust?"),
    ("ai, coin flip", "flip coin ai"),
    ("Set up a meeting for 3:00 on Wednesday", "Set up a meeting on Wednesday at 3pm"),
    ("Which one is better?", "Which is better?"),
    (
        "How can I undo the last git commit while keeping my changes?",
        "I committed too early. How do I take the commit back without losing my work?",
    ),
]


@pytest.mark.parametrize(("query", "cached", "reason"), MUST_NOT_MATCH)
def test_trap_pairs_are_vetoed_by_the_right_guard(query: str, cached: str, reason: str) -> None:
    chain = GuardChain(GUARD_NAMES)
    assert reason in set(chain.reasons(query, cached)), (query, cached)
    assert reason in set(chain.reasons(cached, query)), "guards are symmetric"
    assert GuardChain((reason,)).reject_reason(query, cached) == reason


@pytest.mark.parametrize(("query", "cached"), MUST_MATCH)
def test_paraphrases_pass_every_guard(query: str, cached: str) -> None:
    assert GuardChain(GUARD_NAMES).reject_reason(query, cached) is None


def test_identical_texts_always_pass() -> None:
    assert GuardChain(GUARD_NAMES).reject_reason("Is it not safe?", "Is it not safe?") is None


def test_each_guard_is_switchable() -> None:
    query, cached, _ = MUST_NOT_MATCH[0]
    verifier_off = VerifierConfig(enabled=False)
    # "in ascending order" / "in descending order" also fills a shared phrase otherwise
    # (`entities`): with both off, nothing vetoes.
    off = NamespaceConfig(
        name="n", guards=GuardsConfig(opposites=False, entities=False), verifier=verifier_off
    )
    assert CandidateJudge(off).judge(query, cached, 0.95).veto is None
    on = NamespaceConfig(name="n", guards=GuardsConfig(opposites=True), verifier=verifier_off)
    judgement = CandidateJudge(on).judge(query, cached, 0.95)
    assert judgement.veto == "opposites"
    assert judgement.guards == GUARD_NAMES
    none = NamespaceConfig(
        name="n",
        guards=GuardsConfig(negation=False, opposites=False, numbers=False, entities=False),
        verifier=verifier_off,
    )
    assert CandidateJudge(none).judge(query, cached, 0.95).guards == ()


def test_question_tags_are_not_negations() -> None:
    chain = GuardChain(("negation",))
    assert (
        chain.reject_reason("Will my refund arrive today or not?", "Will my refund arrive today?")
        is None
    )


def test_unknown_guard_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown guards"):
        GuardChain(("sarcasm",))


def test_shipped_defaults_are_the_ones_the_harness_chose() -> None:
    """`make bench-quality` writes its choice; the node's defaults must be that choice."""
    result = json.loads(
        (Path(__file__).parents[1] / "docs" / "benchmarks" / "quality.json").read_text()
    )
    chosen = result["chosen"]
    defaults = NamespaceConfig(name="defaults")
    assert defaults.similarity_threshold == chosen["similarity_threshold"]
    assert defaults.guards.model_dump() == chosen["guards"]
    assert defaults.verifier.model_dump() == chosen["verifier"]
