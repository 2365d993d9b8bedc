"""The embedding spaces of a node, each an embedder and its Milvus collection.

`active` serves lookups. During an embedding migration `target` (the next model, or after a
switch the previous one) receives a copy of every write, so either can serve after a switch.
Each role has its own breakers: a failing second space never opens the first one's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog

from cachefleet_node.embedders.base import Embedder
from cachefleet_node.resilience import TierGuard
from cachefleet_node.tiers.milvus_store import MilvusVectorStore

__all__ = ["UnknownSpaceError", "VectorSpace", "VectorSpaces"]

log = structlog.get_logger(__name__)


class UnknownSpaceError(ValueError):
    """An embedding switch named a space this node has no embedder for."""


@dataclass(slots=True)
class VectorSpace:
    """One embedding space on this node: its embedder and its Milvus collection."""

    embedder: Embedder
    vectors: MilvusVectorStore | None

    @property
    def space(self) -> str:
        """Identity of the space (`keyspace.embedding_space`)."""
        return self.embedder.space

    @property
    def model_id(self) -> str:
        """The embedding model."""
        return self.embedder.model_id

    def describe(self) -> dict[str, str | None]:
        """`{model_id, space, collection}` for the API."""
        return {
            "model_id": self.model_id,
            "space": self.space,
            "collection": None if self.vectors is None else self.vectors.collection,
        }


class VectorSpaces:
    """The space serving lookups, the migration's other one, and the breakers of each."""

    def __init__(
        self,
        active: VectorSpace,
        target: VectorSpace | None,
        guard: Callable[[str], TierGuard],
    ) -> None:
        """`guard(tier)`: a fresh guard (breaker) for a tier name."""
        self.active = active
        self.target = target
        self.loading: str | None = None  # a next model being loaded live (model id)
        self._guard = guard
        self.milvus_guard = guard("milvus")
        self.embed_guard = guard("embedder")
        self.target_milvus_guard = guard("milvus-next")
        self.target_embed_guard = guard("embedder-next")

    def all(self) -> list[VectorSpace]:
        """Every space of this node, the active one first."""
        return [s for s in (self.active, self.target) if s is not None]

    def describe(self) -> dict[str, object]:
        """`{"active": {...}, "next": {...} | None, "loading": model_id | None}` (see
        `VectorSpace.describe`; `loading`: a next model being loaded live, not usable yet)."""
        return {
            "active": self.active.describe(),
            "next": None if self.target is None else self.target.describe(),
            "loading": self.loading,
        }

    def replace_target(self, space: VectorSpace | None) -> VectorSpace | None:
        """Make `space` the dual-write target (a migration's next model loaded live), or drop
        the target (`None`: the migration is over or cancelled); return the space replaced."""
        if space is not None and space.space == self.active.space:
            raise ValueError(f"space {space.space} already serves lookups")
        previous, self.target = self.target, space
        self.target_milvus_guard = self._guard("milvus-next")
        self.target_embed_guard = self._guard("embedder-next")
        log.info(
            "embedding_target_replaced",
            space=None if space is None else space.space,
            model_id=None if space is None else space.model_id,
            previous=None if previous is None else previous.space,
        )
        return previous

    def activate(self, space: str) -> bool:
        """Serve lookups from `space`, the previous one becoming the target; return whether
        anything changed. Raises `UnknownSpaceError` if this node has no embedder for it."""
        if space == self.active.space:
            return False
        target = self.target
        if target is None or target.space != space:
            raise UnknownSpaceError(space)
        self.active, self.target = target, self.active
        self.milvus_guard, self.target_milvus_guard = (
            self._guard("milvus"),
            self._guard("milvus-next"),
        )
        self.embed_guard, self.target_embed_guard = (
            self._guard("embedder"),
            self._guard("embedder-next"),
        )
        log.info(
            "embedding_switched", space=space, model_id=target.model_id, previous=self.target.space
        )
        return True
