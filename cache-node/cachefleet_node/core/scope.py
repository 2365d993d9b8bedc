"""Invalidation scopes (pure): which entries an invalidation removes."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["InvalidationScope"]


@dataclass(frozen=True, slots=True)
class InvalidationScope:
    """Entries of `namespace`, narrowed by tenant, any of `tags`, creation time and entry ids.

    `created_before` is an absolute UNIX time: entries created earlier match. A non-empty
    `entry_ids` narrows the scope to those entries (a targeted invalidation).
    """

    namespace: str
    tenant: str | None = None
    tags: tuple[str, ...] = ()
    created_before: float | None = None
    entry_ids: frozenset[str] = frozenset()

    @property
    def whole_namespace(self) -> bool:
        """Whether the scope is every entry of the namespace."""
        return (
            self.tenant is None
            and not self.tags
            and self.created_before is None
            and not self.entry_ids
        )

    def matches(
        self,
        namespace: str,
        tenant: str,
        tags: tuple[str, ...],
        created_at: float,
        entry_id: str | None = None,
    ) -> bool:
        """Whether an entry with these attributes falls in the scope."""
        if namespace != self.namespace:
            return False
        if self.entry_ids and entry_id not in self.entry_ids:
            return False
        if self.tenant is not None and tenant != self.tenant:
            return False
        if self.tags and not set(self.tags).intersection(tags):
            return False
        return self.created_before is None or created_at < self.created_before

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form (used on the coherence bus)."""
        return {
            "namespace": self.namespace,
            "tenant": self.tenant,
            "tags": list(self.tags),
            "created_before": self.created_before,
            "entry_ids": sorted(self.entry_ids),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> InvalidationScope:
        """Inverse of `to_dict`."""
        tags = data.get("tags") or []
        created_before = data.get("created_before")
        tenant = data.get("tenant")
        entry_ids = data.get("entry_ids") or []
        return cls(
            namespace=str(data["namespace"]),
            tenant=None if tenant is None else str(tenant),
            tags=tuple(str(t) for t in tags) if isinstance(tags, list) else (),
            created_before=float(created_before)
            if isinstance(created_before, int | float)
            else None,
            entry_ids=frozenset(str(e) for e in entry_ids)
            if isinstance(entry_ids, list)
            else frozenset(),
        )
