"""Invalidation scopes (pure): which entries an invalidation removes."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["InvalidationScope"]


@dataclass(frozen=True, slots=True)
class InvalidationScope:
    """Entries of `namespace`, narrowed by tenant, any of `tags`, and creation time.

    `created_before` is an absolute UNIX time: entries created earlier match.
    """

    namespace: str
    tenant: str | None = None
    tags: tuple[str, ...] = ()
    created_before: float | None = None

    def matches(
        self, namespace: str, tenant: str, tags: tuple[str, ...], created_at: float
    ) -> bool:
        """Whether an entry with these attributes falls in the scope."""
        if namespace != self.namespace:
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
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> InvalidationScope:
        """Inverse of `to_dict`."""
        tags = data.get("tags") or []
        created_before = data.get("created_before")
        tenant = data.get("tenant")
        return cls(
            namespace=str(data["namespace"]),
            tenant=None if tenant is None else str(tenant),
            tags=tuple(str(t) for t in tags) if isinstance(tags, list) else (),
            created_before=float(created_before)
            if isinstance(created_before, int | float)
            else None,
        )
