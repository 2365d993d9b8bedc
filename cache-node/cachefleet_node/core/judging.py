"""Judging a semantic candidate: guards, verifier and the score compared with the threshold.

One `CandidateJudge` per namespace turns (request text, cached prompt, cosine similarity)
into a `Judgement`: the guards that ran and the first that vetoed, the verifier's score and
whether it refused, and the score the engine compares with the threshold:

    score = similarity + lexical_weight × word overlap + verifier.weight × (verifier − 0.5)

Pure and deterministic; the same judgement explains a hit in the response headers and a
refusal in the metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

from cachefleet_node.config import NamespaceConfig
from cachefleet_node.core.guards import GUARD_NAMES, GuardChain
from cachefleet_node.core.lexical import blended_score
from cachefleet_node.core.lexicon import is_word
from cachefleet_node.core.verifier import VerifierHead, score_lift, shipped_head, verifier_score

__all__ = ["VERIFIER", "CandidateJudge", "Judgement", "load_verifier"]

#: The veto reason of a verifier refusal (beside the guard names).
VERIFIER = "verifier"


@dataclass(frozen=True, slots=True)
class Judgement:
    """Why a candidate is served or refused."""

    similarity: float
    score: float  # compared with the threshold
    guards: tuple[str, ...]  # the guards that ran
    verifier: float | None  # the verifier's score, None when it is off or a guard vetoed
    veto: str | None  # the guard or `verifier` that refused the candidate

    @property
    def accepted(self) -> bool:
        """No guard vetoed and the verifier did not refuse."""
        return self.veto is None


class CandidateJudge:
    """The guards, verifier and score rule of one namespace."""

    def __init__(self, ns: NamespaceConfig, head: VerifierHead | None = None) -> None:
        self.config = ns
        enabled = tuple(name for name in GUARD_NAMES if getattr(ns.guards, name))
        self._chain = GuardChain(enabled)
        self._lexical_weight = ns.lexical_weight
        self._verifier = ns.verifier
        self._head = (head or shipped_head()) if ns.verifier.enabled else None

    @property
    def bonus(self) -> float:
        """The most a candidate's score can exceed its similarity: a candidate whose
        similarity is below `threshold - bonus` cannot be served."""
        verifier = self._verifier.weight / 2 if self._head is not None else 0.0
        return self._lexical_weight + verifier

    def judge(self, query: str, candidate: str, similarity: float) -> Judgement:
        """Guards first (cheap, decisive), then the verifier."""
        score = blended_score(similarity, query, candidate, self._lexical_weight)
        guards = self._chain.enabled
        veto = self._chain.reject_reason(query, candidate)
        if veto is not None or self._head is None:
            return Judgement(similarity, score, guards, None, veto)
        probability = verifier_score(query, candidate, similarity, self._head)
        score += score_lift(probability, self._verifier.weight)
        refused = VERIFIER if probability < self._verifier.min_score else None
        return Judgement(similarity, score, guards, probability, refused)


def load_verifier() -> None:
    """Load the verifier's head and lexicon now (about 0.25 s), not on a first lookup."""
    shipped_head()
    is_word("warm")
