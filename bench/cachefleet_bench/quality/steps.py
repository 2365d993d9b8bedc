"""The steps of the quality harness, in the order `run` takes them.

1. `load_inputs`: CLINC150, Quora pairs and the adversarial pairs, embedded once.
2. `record_clinc` and `judge_pairs`: what the node's rule sees per data set.
3. `choose_defaults`: the guards and the threshold (the shipped defaults).
4. `evaluate_clinc`: the rules against the peers (`run_peers`), with bootstrap intervals,
   at the peers' error rates, and replayed through `CacheEngine.lookup`.
5. `evaluate_adversarial`, `evaluate_qqp`: served shares per class; Quora's hit rate at
   fixed false-hit rates.
6. `stream`: a shuffled stream from an empty cache, every policy side by side.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cachefleet_bench.adversarial import load_pairs
from cachefleet_bench.datasets import (
    OOS,
    ClincData,
    QqpData,
    default_data_dir,
    load_clinc,
    load_qqp,
    quantities,
)
from cachefleet_bench.peers import (
    GPTCACHE_DEFAULT_THRESHOLD,
    GPTCACHE_MAX_DISTANCE,
    REDISVL_DEFAULT_DISTANCE,
    GptCachePeer,
    top1_cosine,
)
from cachefleet_bench.quality.decisions import (
    BoolArray,
    Decisions,
    Setting,
    best_setting,
    guard_effect,
    held_out,
    rule_row,
    split_halves,
)
from cachefleet_bench.quality.engine import (
    NO_VERIFIER,
    SYSTEM,
    Bench,
    enabled_guards,
    guards_config,
    namespace,
)
from cachefleet_bench.quality.runs import (
    AdversarialRun,
    ClincRun,
    QqpRun,
    adversarial_run,
    adversarial_tables,
    clinc_candidates,
    qqp_rule,
    qqp_run,
    qqp_summary,
)
from cachefleet_bench.vectors import TableEmbedder, VectorCache
from cachefleet_node.config import GuardsConfig, NamespaceConfig, VerifierConfig
from cachefleet_node.core.calibration import Calibration
from cachefleet_node.core.guards import GUARD_NAMES
from cachefleet_node.engine import SEMANTIC_CANDIDATES

__all__ = [
    "LEXICAL_WEIGHTS",
    "TARGET_ERROR",
    "Choice",
    "Inputs",
    "Peers",
    "choose_defaults",
    "evaluate_adversarial",
    "evaluate_clinc",
    "evaluate_qqp",
    "judge_pairs",
    "load_inputs",
    "record_clinc",
    "run_peers",
    "say",
    "stream",
]

TARGET_ERROR = 0.01
#: Settings of `lexical_weight` compared at the peers' error rates (0: cosine only).
LEXICAL_WEIGHTS = (0.0, 0.1, 0.2, 0.3)
#: The peers' default rules as cosine thresholds (on unit vectors GPTCache's rank is
#: 4 - (2 - 2 cos)).
REDISVL_DEFAULT_COSINE = 1 - REDISVL_DEFAULT_DISTANCE
GPTCACHE_DEFAULT_COSINE = 1 - GPTCACHE_MAX_DISTANCE * (1 - GPTCACHE_DEFAULT_THRESHOLD) / 2


def say(message: str) -> None:
    """One progress line."""
    print(f"==> {message}", flush=True)


# --------------------------------------------------------------------------- 1. data


@dataclasses.dataclass
class Inputs:
    """The data sets and their vectors (embedded once, kept on disk by `VectorCache`)."""

    vectors: VectorCache
    model_dir: Path
    clinc: ClincData
    qqp: QqpData
    clinc_embedder: TableEmbedder
    qqp_embedder: TableEmbedder
    adversarial_embedder: TableEmbedder


def load_inputs(
    args: argparse.Namespace, sizes: tuple[int | None, int | None, int | None, int | None]
) -> Inputs:
    """Load CLINC150 (`sizes`: train and val queries per intent, OOS queries), Quora pairs
    (the fourth size) and every adversarial pair, and embed their texts."""
    train_k, val_k, oos_k, qqp_k = sizes
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    model_dir = Path(args.model_dir or os.environ.get("CACHEFLEET_EMBEDDING_MODEL_DIR", ""))
    vectors = VectorCache(model_dir, Path(args.cache_dir), threads=args.threads)
    say(f"loading CLINC150 and Quora pairs from {data_dir} (subset: {args.subset})")
    clinc = load_clinc(
        data_dir,
        train_per_intent=train_k,
        val_per_intent=val_k,
        oos_queries=oos_k,
        seed=args.seed,
    )
    qqp = load_qqp(data_dir, pairs=qqp_k, seed=args.seed)
    say(f"embedding {len(clinc.texts)} CLINC texts and {len(qqp.texts)} Quora texts once")
    clinc_embedder = TableEmbedder(vectors, clinc.texts, vectors.embed("clinc", clinc.texts))
    qqp_embedder = TableEmbedder(vectors, qqp.texts, vectors.embed("qqp", qqp.texts))
    pairs = load_pairs()
    texts = list(dict.fromkeys(t for pair in pairs for t in (pair.cached, pair.asked)))
    say(f"embedding {len(texts)} texts of {len(pairs)} adversarial pairs")
    adversarial_embedder = TableEmbedder(vectors, texts, vectors.embed("adversarial", texts))
    return Inputs(
        vectors, model_dir, clinc, qqp, clinc_embedder, qqp_embedder, adversarial_embedder
    )


# --------------------------------------------------------------------------- 2. verdicts


async def record_clinc(inputs: Inputs, workdir: Path) -> tuple[Bench, ClincRun]:
    """Warm a `CacheEngine` with CLINC150 train; record its top candidates per query. The
    engine stays open for the replays of `evaluate_clinc`, which closes it."""
    clinc, embedder = inputs.clinc, inputs.clinc_embedder
    say(f"warming a cache engine with {len(clinc.train)} CLINC train prompts")
    bench = Bench(embedder, workdir / "warm", namespace(0.8, GuardsConfig()))
    for i, (text, label) in enumerate(clinc.train):
        await bench.store(text, label, embedder.vector(text))
        if (i + 1) % 5000 == 0:
            print(f"    stored {i + 1}/{len(clinc.train)}", flush=True)
    say(f"recording the engine's top-{SEMANTIC_CANDIDATES} candidates per query")
    return bench, await clinc_candidates(bench, embedder, clinc)


def judge_pairs(inputs: Inputs) -> tuple[QqpRun, AdversarialRun]:
    """Cosine, guard and verifier verdicts of every Quora and adversarial pair."""
    say("Quora pairs: cosine, guard and verifier verdicts")
    qqp = qqp_run(inputs.qqp, inputs.qqp_embedder)
    say("adversarial pairs: cosine, guard and verifier verdicts")
    return qqp, adversarial_run(inputs.adversarial_embedder)


# --------------------------------------------------------------------------- 3. defaults


@dataclasses.dataclass
class Choice:
    """The chosen defaults, and the CLINC150 decisions with and without their parts."""

    operating_threshold: float  # where the guards' effects are measured
    effects: dict[str, Any]
    guards: list[str]
    threshold: float
    raw: Calibration  # the best threshold at 1% error, before rounding up
    best_2pct: Calibration
    verifier: VerifierConfig
    no_guards: Decisions
    guards_only: Decisions
    ours: Decisions

    def namespace(self, name: str) -> NamespaceConfig:
        """A namespace at the chosen setting."""
        return namespace(
            self.threshold, guards_config(self.guards), name=name, verifier=self.verifier
        )

    def document(self) -> dict[str, Any]:
        """The `chosen` section of quality.json."""
        return {
            "similarity_threshold": self.threshold,
            "guards": {name: name in self.guards for name in GUARD_NAMES},
            "verifier": self.verifier.model_dump(),
            "target_error_rate": TARGET_ERROR,
            "raw_threshold": self.raw.threshold,
            "best_2pct_threshold": self.best_2pct.threshold,
        }


def choose_defaults(run: ClincRun, qqp: QqpRun, adversarial: AdversarialRun) -> Choice:
    """A guard is on where its vetoes remove at least as many wrong hits as right ones
    (CLINC + QQP + the adversarial dev split, at the threshold of every guard on); the
    threshold is the lowest whose CLINC error rate stays within 1% with those guards,
    rounded up to two decimals. The verifier's operating point was chosen by
    `train-verifier` (dev split and CLINC); it ships as the node's default."""
    dev = adversarial.split("dev")
    trap = np.array([not pair.paraphrase for pair in adversarial.pairs])
    none = run.decide(())
    every = run.decide(GUARD_NAMES)
    t0 = every.best(TARGET_ERROR).threshold
    effects: dict[str, Any] = {}
    chosen: list[str] = []
    qqp_base = qqp.scores(()) >= t0
    for name in GUARD_NAMES:
        clinc_effect = guard_effect(none, run.decide((name,)), t0)
        vetoed = qqp_base & ~(qqp.scores((name,)) >= t0)
        qqp_effect = {
            "false_hits_removed": int((vetoed & ~qqp.label).sum()),
            "right_hits_lost": int((vetoed & qqp.label).sum()),
        }
        adv_vetoed = dev & adversarial.served(t0, ()) & ~adversarial.served(t0, (name,))
        adversarial_effect = {  # the dev split only: the frozen one is never tuned on
            "false_hits_removed": int((adv_vetoed & trap).sum()),
            "right_hits_lost": int((adv_vetoed & ~trap).sum()),
        }
        parts = (clinc_effect, qqp_effect, adversarial_effect)
        removed = sum(part["false_hits_removed"] for part in parts)
        lost = sum(part["right_hits_lost"] for part in parts)
        effects[name] = {
            "clinc": clinc_effect,
            "qqp": qqp_effect,
            "adversarial_dev": adversarial_effect,
            "enabled": removed >= lost,
        }
        if removed >= lost:
            chosen.append(name)
    guards_only = run.decide(chosen)
    best1, best2 = guards_only.best(0.01), guards_only.best(0.02)
    threshold = math.ceil(best1.threshold * 100) / 100
    verifier = VerifierConfig()
    ours = run.decide(chosen, verifier=verifier)
    say(
        f"chosen: guards {chosen or 'none'}, threshold {threshold} "
        f"(raw {best1.threshold:.4f}), verifier min_score {verifier.min_score}, "
        f"weight {verifier.weight}"
    )
    return Choice(t0, effects, chosen, threshold, best1, best2, verifier, none, guards_only, ours)


# --------------------------------------------------------------------------- 4. CLINC150


@dataclasses.dataclass
class Peers:
    """RedisVL's default rule and GPTCache on the same vectors: decisions per CLINC query."""

    redisvl: Decisions
    gptcache: Decisions
    implementation: str
    gptcache_agreement: int | None  # queries where GPTCache's `get` agrees with its rank rule
    same_quantities: BoolArray  # the nearest entry has the query's quantities (answer level)


def run_peers(inputs: Inputs) -> Peers:
    """The peers serve the nearest stored entry when their default rule lets them."""
    say("peers: RedisVL default rule and GPTCache on the same vectors")
    clinc, embedder = inputs.clinc, inputs.clinc_embedder
    train_texts = list(dict.fromkeys(t for t, _ in clinc.train))
    last_label = dict(clinc.train)
    stored = np.stack([embedder.vector(t) for t in train_texts])
    queries = np.stack([embedder.vector(t) for t, _ in clinc.queries])
    top_index, top_sim = top1_cosine(queries, stored)
    oos = np.array([label == OOS for _, label in clinc.queries])
    top_right = (
        np.array(
            [
                last_label[train_texts[j]] == label
                for j, (_, label) in zip(top_index, clinc.queries, strict=True)
            ]
        )
        & ~oos
    )
    redisvl = Decisions(top_sim.astype(np.float64), top_right, oos)
    gpt = GptCachePeer(clinc.texts, embedder.vectors)
    gpt_agree = None
    if gpt.real:
        gpt.warm([t for t, _ in clinc.train], [label for _, label in clinc.train])
        ranks, rights = [], []
        gpt_agree = 0
        for text, label in clinc.queries:
            ranked = gpt.rank(text)
            rank, answer = ranked if ranked is not None else (-1.0, "")
            ranks.append((rank - 2) / 2)  # on unit vectors: rank = 4 - (2 - 2 cos)
            rights.append(answer == label and label != OOS)
            got = gpt.get(text)
            gpt_agree += (got is not None) == (
                rank >= GPTCACHE_MAX_DISTANCE * GPTCACHE_DEFAULT_THRESHOLD
            )
        gptcache = Decisions(np.array(ranks), np.array(rights), oos)
    else:
        gptcache = redisvl
    same_quantities = np.array(
        [
            quantities(text) == quantities(train_texts[j])
            for j, (text, _) in zip(top_index, clinc.queries, strict=True)
        ]
    )
    return Peers(redisvl, gptcache, gpt.implementation, gpt_agree, same_quantities)


def _peer_rules(peers: Peers) -> dict[str, tuple[Decisions, float]]:
    return {
        "redisvl_default_rule": (peers.redisvl, REDISVL_DEFAULT_COSINE),
        "gptcache_default_rule": (peers.gptcache, GPTCACHE_DEFAULT_COSINE),
    }


def _settings(
    run: ClincRun, choice: Choice, shipped: Decisions, *, answer_level: bool
) -> dict[Setting, Decisions]:
    """Cachefleet's settings compared at a peer's error rate: guards as chosen or off × each
    lexical weight, and the shipped setting (chosen guards, the verifier)."""
    settings: dict[Setting, Decisions] = {
        (tuple(guards), weight, False): run.decide(
            guards, answer_level=answer_level, lexical_weight=weight
        )
        for guards in (choice.guards, [])
        for weight in LEXICAL_WEIGHTS
    }
    settings[(tuple(choice.guards), 0.0, True)] = shipped
    return settings


def _setting_document(setting: Setting) -> dict[str, Any]:
    guards, weight, verified = setting
    return {"guards": list(guards), "lexical_weight": weight, "verifier": verified}


def _clinc_rules(choice: Choice, peers: Peers, rounds: int, seed: int) -> dict[str, Any]:
    """Every rule at its default threshold and its best at 1% / 2% error (intent level)."""
    rules = {
        "cachefleet": {
            **rule_row(choice.ours, choice.threshold, rounds, seed),
            "guards": choice.guards,
        },
        "cachefleet_no_verifier": rule_row(choice.guards_only, choice.threshold, rounds, seed),
        "cachefleet_no_guards": rule_row(choice.no_guards, choice.threshold, rounds, seed),
    }
    for peer, (decisions, default) in _peer_rules(peers).items():
        rules[peer] = rule_row(decisions, default, rounds, seed)
    rules["gptcache_default_rule"] |= {
        "implementation": peers.implementation,
        "get_agrees_with_rank_rule": peers.gptcache_agreement,
    }
    return rules


def _answer_level(
    run: ClincRun, choice: Choice, peers: Peers, rounds: int, seed: int
) -> dict[str, Any]:
    """The rules when a hit is right only if the intent and the quantities match, and
    Cachefleet's best setting at each peer's error rate."""
    ours = run.decide(choice.guards, answer_level=True, verifier=choice.verifier)
    t = choice.threshold
    rows = {
        "cachefleet": rule_row(ours, t, rounds, seed),
        "cachefleet_no_verifier": rule_row(
            run.decide(choice.guards, answer_level=True), t, rounds, seed
        ),
        "cachefleet_no_guards": rule_row(run.decide((), answer_level=True), t, rounds, seed),
    }
    # The peers serve the nearest entry, so one top-1 array serves both.
    for peer, (decisions, default) in _peer_rules(peers).items():
        answer = Decisions(decisions.sim, decisions.correct & peers.same_quantities, decisions.oos)
        rows[peer] = rule_row(answer, default, rounds, seed)
    settings = _settings(run, choice, ours, answer_level=True)
    for peer in _peer_rules(peers):
        peer_default = rows[peer]["default"]
        setting, ours_at = best_setting(settings, peer_default["error_rate"])
        rows[peer]["equal_error_rate"] = {
            "peer_hit_ratio": peer_default["hit_ratio"],
            "peer_error_rate": peer_default["error_rate"],
            "cachefleet_hit_ratio": ours_at.hit_ratio,
            "cachefleet_threshold": ours_at.threshold,
            "cachefleet_setting": _setting_document(setting),
            "shipped_setting_hit_ratio": ours.best(peer_default["error_rate"]).hit_ratio,
        }
    return rows


def _equal_error_rate(
    settings: dict[Setting, Decisions],
    choice: Choice,
    peers: Peers,
    rules: dict[str, Any],
    seed: int,
) -> tuple[dict[str, Any], tuple[Setting, Calibration]]:
    """Cachefleet at each peer's error rate: its best setting, the shipped setting, and a
    held-out check (setting and threshold tuned on one half of the queries, judged against
    the peer on the other half). Also returns the best setting at GPTCache's error rate."""
    halves = split_halves(len(choice.ours.sim), seed)
    rows = {}
    found = {}
    for peer, (peer_decisions, peer_threshold) in _peer_rules(peers).items():
        peer_default = rules[peer]["default"]
        target = peer_default["error_rate"]
        setting, ours_at = found[peer] = best_setting(settings, target)
        shipped_at = choice.ours.best(target)
        rows[peer] = {
            "peer_hit_ratio": peer_default["hit_ratio"],
            "peer_error_rate": target,
            "cachefleet_hit_ratio": ours_at.hit_ratio,
            "cachefleet_threshold": ours_at.threshold,
            "cachefleet_setting": _setting_document(setting),
            "shipped_setting_hit_ratio": shipped_at.hit_ratio,
            "shipped_setting_threshold": shipped_at.threshold,
            "held_out": held_out(settings, peer_decisions, peer_threshold, halves),
        }
    return rows, found["gptcache_default_rule"]


async def _agreement(
    bench: Bench, queries: Sequence[tuple[str, str]], decisions: Decisions, ns: NamespaceConfig
) -> float:
    """Share of queries on which `CacheEngine.lookup` with `ns` does what the analysis says
    (hit or miss, and a right or wrong answer)."""
    agree = 0
    for i, (text, label) in enumerate(queries):
        served, _ = await bench.lookup(text, ns)
        hit = bool(decisions.sim[i] >= ns.similarity_threshold)
        predicted_right = bool(decisions.correct[i])
        agree += (served is not None) == hit and (
            not hit or (served == label and label != OOS) == predicted_right
        )
    return agree / len(queries)


async def evaluate_clinc(
    bench: Bench, inputs: Inputs, run: ClincRun, choice: Choice, rounds: int, seed: int
) -> dict[str, Any]:
    """The `clinc` section of quality.json. Replays every query through the warm engine at
    the chosen setting and at the best setting for GPTCache's error rate, then closes it."""
    queries = inputs.clinc.queries
    say("replaying every query through CacheEngine.lookup at the chosen setting")
    agree = await _agreement(bench, queries, choice.ours, choice.namespace("bench-chosen"))
    peers = run_peers(inputs)
    rules = _clinc_rules(choice, peers, rounds, seed)
    answer_level = _answer_level(run, choice, peers, rounds, seed)
    settings = _settings(run, choice, choice.ours, answer_level=False)
    equal_error, (setting, at_gptcache) = _equal_error_rate(settings, choice, peers, rules, seed)
    guards_at, weight_at, verified_at = setting
    say(
        f"replaying every query through CacheEngine.lookup at GPTCache's error rate "
        f"(guards {list(guards_at) or 'off'}, lexical weight {weight_at}, "
        f"verifier {'on' if verified_at else 'off'}, "
        f"threshold {at_gptcache.threshold:.4f})"
    )
    recall_ns = namespace(
        at_gptcache.threshold,
        guards_config(guards_at),
        name="bench-recall",
        lexical_weight=weight_at,
        verifier=choice.verifier if verified_at else NO_VERIFIER,
    )
    recall_agreement = await _agreement(bench, queries, settings[setting], recall_ns)
    await bench.close()
    return {
        "train": len(inputs.clinc.train),
        "queries": len(queries),
        "oos_queries": int(peers.redisvl.oos.sum()),
        "rules": rules,
        "equal_error_rate": equal_error,
        "answer_level": answer_level,
        "lexical_weights_at_1pct": {
            f"guards {'+'.join(guards) or 'off'}, weight {weight}"
            f"{', verifier' if verified else ''}": decisions.best(TARGET_ERROR).hit_ratio
            for (guards, weight, verified), decisions in settings.items()
        },
        "engine_agreement": agree,
        "engine_agreement_at_gptcache_error_rate": recall_agreement,
    }


# --------------------------------------------------------------------------- 5. pairs


async def _adversarial_agreement(
    embedder: TableEmbedder, run: AdversarialRun, ns: NamespaceConfig, workdir: Path
) -> float:
    """Replay every pair through `CacheEngine` (cached prompt stored, asked prompt looked
    up, each pair in its own partition through its system prompt): the share of pairs where
    the engine serves exactly when the analysis says it does."""
    bench = Bench(embedder, workdir / "adversarial", ns)
    expected = run.served(ns.similarity_threshold, enabled_guards(ns.guards), ns.verifier)
    agree = 0
    try:
        for pair, serve in zip(run.pairs, expected, strict=True):
            system = f"{SYSTEM} (pair {pair.id})"
            await bench.store(pair.cached, pair.id, embedder.vector(pair.cached), system=system)
            served, _ = await bench.lookup(pair.asked, ns, system=system)
            agree += (served == pair.id) == bool(serve)
    finally:
        await bench.close()
    return agree / len(run.pairs)


async def evaluate_adversarial(
    inputs: Inputs, run: AdversarialRun, choice: Choice, rounds: int, seed: int, workdir: Path
) -> dict[str, Any]:
    """The `adversarial` section of quality.json: served shares per class, every rule, both
    splits; every pair replayed through `CacheEngine` at the chosen setting."""
    say("adversarial pairs: served per class, every rule, both splits")
    rules = {
        "cachefleet": run.served(choice.threshold, choice.guards, choice.verifier),
        "cachefleet_no_verifier": run.served(choice.threshold, choice.guards),
        "cosine_only": run.served(choice.threshold, ()),
        "redisvl_default_rule": run.sim >= REDISVL_DEFAULT_COSINE,
        "gptcache_default_rule": run.sim >= GPTCACHE_DEFAULT_COSINE,
    }
    say("replaying every adversarial pair through CacheEngine at the chosen setting")
    agreement = await _adversarial_agreement(
        inputs.adversarial_embedder, run, choice.namespace("bench-chosen"), workdir
    )
    return {
        "pairs": len(run.pairs),
        "by_split": {split: int(run.split(split).sum()) for split in ("dev", "frozen")},
        "rules": adversarial_tables(run, rules, rounds, seed),
        "engine_agreement": agreement,
    }


def evaluate_qqp(
    data: QqpData, run: QqpRun, choice: Choice, rounds: int, seed: int
) -> dict[str, Any]:
    """The `qqp` section of quality.json: hit rate on duplicates at false-hit rate <= 1% /
    5% and ROC-AUC (a fifth of the bootstrap rounds, at least 50), and the fixed rules."""
    say("Quora pairs: hit rate on duplicates at false-hit rate <= 1% / 5%, ROC-AUC")
    ours = run.scores(choice.guards, choice.verifier)
    qqp_rounds = max(rounds // 5, 50)
    rules = {
        "cachefleet": {
            **qqp_summary(ours, run.label, qqp_rounds, seed),
            "at_chosen_threshold": qqp_rule(ours, run.label, choice.threshold),
        },
        "cachefleet_no_verifier": qqp_summary(
            run.scores(choice.guards), run.label, qqp_rounds, seed
        ),
        "cosine_only": qqp_summary(run.scores(()), run.label, qqp_rounds, seed),
        "redisvl_default_rule": qqp_rule(run.sim, run.label, REDISVL_DEFAULT_COSINE),
        "gptcache_default_rule": qqp_rule(run.sim, run.label, GPTCACHE_DEFAULT_COSINE),
    }
    return {"pairs": len(data.pairs), "duplicates": int(run.label.sum()), "rules": rules}


# --------------------------------------------------------------------------- 6. stream


async def stream(inputs: Inputs, choice: Choice, seed: int, workdir: Path) -> dict[str, Any]:
    """CLINC150 train and queries shuffled, replayed in order from an empty cache (store on
    miss): cumulative wrong answers per policy (Cachefleet at the chosen setting, RedisVL's
    and GPTCache's default rules)."""
    rows = list(inputs.clinc.train) + list(inputs.clinc.queries)
    random.Random(seed).shuffle(rows)
    say(f"shuffled stream of {len(rows)} requests from an empty cache")
    embedder = inputs.clinc_embedder
    ns = choice.namespace("bench-stream")
    bench = Bench(embedder, workdir / "stream", ns)
    gpt = GptCachePeer(inputs.clinc.texts, embedder.vectors)
    redis_store = np.zeros((len(rows), embedder.dim), dtype=np.float32)
    redis_labels: list[str] = []
    wrong = {"cachefleet": 0, "redisvl": 0, "gptcache": 0}
    hits = dict.fromkeys(wrong, 0)
    curves: dict[str, list[int]] = {key: [] for key in wrong}
    started = time.monotonic()
    try:
        for i, (text, label) in enumerate(rows):
            served, outcome = await bench.lookup(text, ns)
            if outcome.hit:
                hits["cachefleet"] += 1
                wrong["cachefleet"] += label == OOS or served != label
            else:
                await bench.store(text, label, outcome.vector)
            vector = embedder.vector(text)
            count = len(redis_labels)
            scores = redis_store[:count] @ vector
            best = int(scores.argmax()) if count else -1
            if count and 1 - float(scores[best]) <= REDISVL_DEFAULT_DISTANCE:
                hits["redisvl"] += 1
                wrong["redisvl"] += label == OOS or redis_labels[best] != label
            else:
                redis_store[count] = vector
                redis_labels.append(label)
            answer = gpt.get(text) if gpt.real else None
            if answer is not None:
                hits["gptcache"] += 1
                wrong["gptcache"] += label == OOS or answer != label
            elif gpt.real:
                gpt.put(text, label)
            for key in wrong:
                curves[key].append(wrong[key])
            if (i + 1) % 2000 == 0 or i + 1 == len(rows):
                rate = (i + 1) / max(time.monotonic() - started, 1e-9)
                print(f"    stream: {i + 1}/{len(rows)} requests ({rate:.0f}/s)", flush=True)
    finally:
        await bench.close()
    n = len(rows)
    policies = ["cachefleet", "redisvl"] + (["gptcache"] if gpt.real else [])
    return {
        "requests": n,
        "policies": {
            key: {"hit_ratio": hits[key] / n, "error_rate": wrong[key] / n} for key in policies
        },
        "cumulative_wrong": {key: curves[key] for key in policies},
    }
