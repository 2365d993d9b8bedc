"""The verifier: word alignment, the shipped head, its decisions on reported pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cachefleet_bench.adversarial import CLASSES, load_pairs
from cachefleet_bench.train_verifier import CLINC_ANSWER_FLOOR, CLINC_INTENT_FLOOR, MAX_DEV_TRAPS
from cachefleet_node.config import NamespaceConfig, VerifierConfig
from cachefleet_node.core.judging import VERIFIER, CandidateJudge
from cachefleet_node.core.lexicon import are_antonyms, are_synonyms, is_word
from cachefleet_node.core.verifier import (
    FEATURE_NAMES,
    VerifierHead,
    pair_diff,
    pair_features,
    shipped_head,
    verifier_score,
)

DEFAULTS = NamespaceConfig(name="defaults").verifier

# (cached prompt, asked prompt, cosine as measured with all-MiniLM-L6-v2): near-misses served
# to users at the old defaults (issue 13) that no guard catches — the verifier must refuse.
REFUSED = [
    ("Write something short about cats", "Write something short about dogs", 0.835),
    ("Write something short", "Write something else short", 0.944),
    ("Give me a recipe for banana bread", "Give me a vegan recipe for banana bread", 0.90),
    (
        "How do I get from Milan to Venice?",
        "How do I get from Milan to Venice without the train?",
        0.929,
    ),
    ("Summarize the plot of Hamlet", "Summarize the plot of Hamlet for a 5-year-old", 0.88),
]

# Paraphrases with a synonym, a typo, filler or another order: the verifier must accept.
ACCEPTED = [
    (
        "How can I buy a train ticket to Paris?",
        "How can I purchase a train ticket to Paris?",
        0.993,
    ),
    ("Can my kids eat honey?", "Can my children eat honey?", 0.992),
    ("How big is the sun?", "How large is the sun?", 0.986),
    ("Why is the sky blue?", "why is teh sky blue", 0.905),
    ("How much protein should I eat per day?", "how much protien should i eat a day", 0.82),
    ("Write 0.375 as a fraction.", "0.375 as fraction", 0.924),
    (
        "In Rust, how do I read a file line by line?",
        "How do I read a file line by line in Rust?",
        0.99,
    ),
    ("How do I reset my password?", "Hi! Quick question: how can I reset my password? Thanks", 0.9),
]


def test_alignment_matches_typos_synonyms_fillers_and_number_words() -> None:
    same = pair_diff(
        "how much protien should i eat a day", "How much protein should I eat per day?"
    )
    assert (same.only_query, same.only_candidate) == ((), ())
    synonym = pair_diff("Can my kids eat honey?", "Can my children eat honey?")
    assert synonym.synonyms == 1
    assert synonym.unmatched == 0
    numbers = pair_diff("squash my last 4 commits into 1", "Squash my last four commits into one")
    assert numbers.unmatched == 0
    thousands = pair_diff("a budget for $3000 a month", "a budget for $3,000 a month")
    assert thousands.unmatched == 0
    changed = pair_diff("Write something short about dogs", "Write something short about cats")
    assert (changed.only_query, changed.only_candidate) == (("dog",), ("cat",))
    assert changed.edits == 1
    added = pair_diff("Give me a vegan recipe for pancakes", "Give me a recipe for pancakes")
    assert added.only_query == ("vegan",)
    assert added.only_candidate == ()


def test_real_words_are_never_typos_of_each_other() -> None:
    assert is_word("female")
    assert is_word("trail")
    assert not is_word("protien")
    diff = pair_diff("Describe a female lion", "Describe a male lion")
    assert diff.unmatched == 2  # "male" is not a misspelt "female"
    numbers = pair_diff("country number 131", "country number 13")
    assert numbers.unmatched == 2  # nor 131 a misspelt 13


def test_the_lexicon_knows_synonyms_and_antonyms() -> None:
    assert are_synonyms("buy", "purchased")
    assert are_synonyms("kids", "children")
    assert not are_synonyms("cat", "dog")
    assert not are_synonyms("python", "rust")
    assert are_antonyms("male", "female")
    assert are_antonyms("high", "low")
    assert not are_antonyms("cat", "dog")


@pytest.mark.parametrize(("cached", "asked", "cosine"), REFUSED)
def test_near_misses_are_refused(cached: str, asked: str, cosine: float) -> None:
    assert verifier_score(asked, cached, cosine) < DEFAULTS.min_score, (asked, cached)


@pytest.mark.parametrize(("cached", "asked", "cosine"), ACCEPTED)
def test_paraphrases_are_accepted(cached: str, asked: str, cosine: float) -> None:
    assert verifier_score(asked, cached, cosine) >= DEFAULTS.min_score, (asked, cached)


def test_the_score_rises_with_the_cosine() -> None:
    query, cached = "Write something short about dogs", "Write something short about cats"
    scores = [verifier_score(query, cached, cosine) for cosine in (0.7, 0.8, 0.9, 0.99)]
    assert scores == sorted(scores)
    assert all(0.0 < score < 1.0 for score in scores)


def test_the_shipped_head_matches_the_features_and_the_defaults() -> None:
    head = shipped_head()
    assert len(head.weights) == len(FEATURE_NAMES)
    point = head.trained_on["operating_point"]
    # `make train-verifier` chose the operating point; the node ships it as its default
    assert (DEFAULTS.min_score, DEFAULTS.weight) == (point["min_score"], point["weight"])
    assert DEFAULTS.enabled
    assert head.trained_on["adversarial_dev_pairs"] > 200
    assert head.trained_on["clinc_pairs"] > 1000


def test_the_operating_point_keeps_both_clinc_floors() -> None:
    trained = shipped_head().trained_on
    point = trained["operating_point"]
    (row,) = [
        row
        for row in trained["selection"]
        if (row["weight"], row["min_score"]) == (point["weight"], point["min_score"])
    ]
    assert row["feasible"]
    assert row["dev_traps_served"] <= MAX_DEV_TRAPS
    assert row["clinc_hit_ratio_at_1pct"] >= CLINC_INTENT_FLOOR
    assert row["clinc_answer_hit_ratio_at_1pct"] >= CLINC_ANSWER_FLOOR


def test_every_adversarial_class_is_in_both_splits() -> None:
    for split in ("dev", "frozen"):
        assert {pair.cls for pair in load_pairs(split)} == set(CLASSES), split


def test_a_row_may_name_its_split_and_the_frozen_split_stays_the_same() -> None:
    pairs = load_pairs()
    for stem in ("round8/", "round9/"):
        named = [pair for pair in pairs if pair.id.startswith(stem)]
        assert named, stem
        assert {pair.split for pair in named} == {"dev"}, stem
    assert sum(pair.split == "frozen" for pair in pairs) == 597  # as before round eight


def test_a_head_for_other_features_is_refused(tmp_path: Path) -> None:
    document = shipped_head().to_json()
    document["features"] = ["bias", "cosine"]
    with pytest.raises(ValueError, match="trained on features"):
        VerifierHead.from_json(document)
    document = shipped_head().to_json()
    document["scale"][1] = 0.0
    with pytest.raises(ValueError, match="scales"):
        VerifierHead.from_json(document)
    round_trip = VerifierHead.from_json(json.loads(json.dumps(shipped_head().to_json())))
    features = pair_features(0.9, pair_diff("a b c", "a b d"))
    assert round_trip.probability(features) == pytest.approx(shipped_head().probability(features))


def test_the_judge_explains_and_bounds_its_score() -> None:
    ns = NamespaceConfig(name="n")
    judge = CandidateJudge(ns)
    assert judge.bonus == pytest.approx(ns.verifier.weight / 2)
    refused = judge.judge("Write something else short", "Write something short", 0.944)
    assert refused.veto == VERIFIER
    assert refused.verifier is not None
    assert refused.guards == ("negation", "opposites", "numbers", "entities")
    served = judge.judge("How can I purchase a ticket?", "How can I buy a ticket?", 0.99)
    assert served.accepted
    assert served.verifier is not None
    assert served.score == pytest.approx(0.99 + ns.verifier.weight * (served.verifier - 0.5))
    vetoed = judge.judge("List 4 causes of HTTP 500", "List 4 causes of HTTP 429", 0.95)
    assert vetoed.veto == "numbers"
    assert vetoed.verifier is None
    off = CandidateJudge(NamespaceConfig(name="n", verifier=VerifierConfig(enabled=False)))
    assert off.bonus == 0.0
    kept = off.judge("Write something else short", "Write something short", 0.944)
    assert kept.accepted
    assert kept.verifier is None
    assert kept.score == 0.944
