"""Guards: cheap checks that veto a semantic candidate whose similarity cleared the threshold.

A guard compares the query's fuzzy text with the cached prompt and names a reason when they
must not share an answer. This module holds the contract; the guards themselves come with
the semantic-correctness work.
"""

from __future__ import annotations

from typing import Protocol

from cachefleet_node.config import NamespaceConfig

__all__ = ["CandidateGuard", "NoGuard", "build_guard"]


class CandidateGuard(Protocol):
    """Vetoes semantic candidates."""

    def reject_reason(self, query: str, candidate: str) -> str | None:
        """None to accept, else a short reason such as `negation`."""
        ...


class NoGuard:
    """Accepts every candidate."""

    def reject_reason(self, query: str, candidate: str) -> str | None:
        """Always accept."""
        return None


def build_guard(namespace: NamespaceConfig) -> CandidateGuard:
    """The guard configured for a namespace."""
    return NoGuard()
