"""Word overlap between a request and a cached prompt: the optional lexical term of the
semantic score (`NamespaceConfig.lexical_weight`, off by default).

score = cosine similarity + lexical_weight × overlap, where overlap is the Jaccard index of
the two texts' content words (the guards' tokenizer, minus function words). The quality
harness measures what it buys: more hits at loose, high-recall thresholds, fewer at strict
ones (docs/benchmarks/quality.md).
"""

from __future__ import annotations

from cachefleet_node.core.guards import FUNCTION_WORDS, text_features

__all__ = ["FUNCTION_WORDS", "blended_score", "content_words", "word_overlap"]


def content_words(text: str) -> frozenset[str]:
    """Lower-cased words of the text without function words."""
    return text_features(text).words - FUNCTION_WORDS


def word_overlap(query: str, candidate: str) -> float:
    """Jaccard index of the content words, in [0, 1] (0 when either has none)."""
    left, right = content_words(query), content_words(candidate)
    if not left or not right:
        return 0.0
    return len(left & right) / len(left | right)


def blended_score(similarity: float, query: str, candidate: str, weight: float) -> float:
    """The score compared with the threshold: cosine alone when `weight` is 0."""
    if weight <= 0.0:
        return similarity
    return similarity + weight * word_overlap(query, candidate)
