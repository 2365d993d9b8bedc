"""What the semantic tiers have in common: a query for the nearest vectors of one partition,
the candidates it finds, and the `VectorTier` protocol that the in-process index
(`l1_semantic.SemanticIndex`) and the shared collection (`milvus_store.MilvusVectorStore`)
both implement, so that the engine judges the candidates of either in one loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

__all__ = ["VectorHit", "VectorQuery", "VectorTier"]

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class VectorQuery:
    """The nearest live vectors of one partition to `vector`."""

    namespace: str
    tenant: str
    partition: str
    vector: Vector
    limit: int
    now: float  # the lookup's clock: expiry and `max_age_s` are measured from it
    max_age_s: float | None = None


@dataclass(frozen=True, slots=True)
class VectorHit:
    """A stored vector found by a search, with its partition fields (re-checked by the caller)."""

    entry_id: str
    namespace: str
    tenant: str
    partition: str
    similarity: float
    created_at: float
    vector: Vector | None  # the stored vector, where the tier returns it
    tags: tuple[str, ...] = ()
    prompt: str | None = None  # None: the tier keeps no prompts (read it from the entry)


class VectorTier(Protocol):
    """A semantic tier: nearest neighbours inside one partition, most similar first."""

    async def nearest(self, query: VectorQuery) -> list[VectorHit]:
        """Up to `query.limit` live vectors of the query's partition."""
