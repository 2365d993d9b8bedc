"""Entity guards: each text names something the other does not."""

from __future__ import annotations

from cachefleet_node.core.guards.features import TextFeatures
from cachefleet_node.core.guards.scope import short_form
from cachefleet_node.core.guards.vocabulary import FUNCTION_WORDS


def _substituted(a: TextFeatures, b: TextFeatures) -> bool:
    """Each side holds a name the other lacks (a name that prefixes another counts as it:
    "S3" / "S3-bucket"; so does a short form of the other's words: "US" / "United States",
    "k8s" / "Kubernetes"). Only for names: numbers compare exactly (13 is not 131)."""
    only_a = _unmatched(a.entities, b)
    return bool(only_a) and bool(_unmatched(b.entities, a))


def _unmatched(names: frozenset[str], other: TextFeatures) -> list[str]:
    return [
        name
        for name in names - other.entities
        if not any(name.startswith(y) or y.startswith(name) for y in other.entities)
        and not short_form(name, other.sequence)
    ]


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


def entities_differ(q: TextFeatures, c: TextFeatures) -> bool:
    return _substituted(q, c) or _slot_filled_otherwise(q, c) or _slot_filled_otherwise(c, q)
