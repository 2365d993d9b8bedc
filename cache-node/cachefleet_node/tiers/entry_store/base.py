"""What every entry store offers (`EntryStore`), and what the backends share."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from cachefleet_node.core.entry import CacheEntry, EntryFormatError
from cachefleet_node.core.scope import InvalidationScope

__all__ = ["BATCH", "EntryRef", "EntryStore", "live_entries"]

BATCH = 500  # keys or rows per round trip

# (tenant, entry id): what, with the namespace, names one entry in every store.
EntryRef = tuple[str, str]


class EntryStore(Protocol):
    """Shared storage of cache entries."""

    name: str

    async def get(self, namespace: str, tenant: str, entry_id: str) -> CacheEntry | None:
        """The entry, or None if absent, expired or unreadable."""

    async def get_many(
        self, namespace: str, tenant: str, entry_ids: Sequence[str]
    ) -> list[CacheEntry | None]:
        """`get` of several entries of one tenant in one round trip, in the order asked."""

    async def put(self, entry: CacheEntry) -> None:
        """Store (or replace) an entry until its expiry."""

    async def put_many(self, entries: Sequence[CacheEntry]) -> None:
        """`put` of several entries in one round trip."""

    def put_later(self, entry: CacheEntry) -> bool:
        """Queue an entry to be stored once the store answers again, without waiting (its
        breaker is open); False when nothing was queued (queue full, or no queue)."""

    async def delete_scope(self, scope: InvalidationScope, *, dry_run: bool = False) -> int:
        """Delete the entries in scope (or only count them); return how many."""

    async def count(self, namespace: str) -> int:
        """Live entries of a namespace (approximate where the backend evicts)."""

    async def namespaces(self) -> list[str]:
        """Cache namespaces that hold live entries."""

    async def add_hits(
        self, namespace: str, hits: Mapping[EntryRef, int], keep_until: float
    ) -> None:
        """Add served hits to entries' fleet-wide counts (entries that are gone are ignored)."""

    async def top_entries(self, namespace: str, offset: int, limit: int) -> list[CacheEntry]:
        """Live entries at positions [offset, offset+limit) of the namespace's ranking by hits
        (descending; ties newest first). Positions of expired entries not yet purged count
        but yield nothing, so positions stay stable while entries expire."""

    async def ranked_count(self, namespace: str) -> int:
        """Positions in the namespace's hit ranking (`top_entries` ends there)."""

    async def scan_entries(
        self, namespace: str, cursor: str, limit: int
    ) -> tuple[list[CacheEntry], str]:
        """About `limit` live entries from `cursor` ("" starts) in a stable order, and the
        cursor to go on from ("" at the end). The cursor survives restarts and concurrent
        writes (every entry present throughout is returned at least once). `ValueError`
        for a cursor this store did not make."""

    async def delete_entries(
        self, namespace: str, refs: Iterable[EntryRef], *, dry_run: bool = False
    ) -> int:
        """Delete (or count) these entries; return how many existed."""

    async def close(self) -> None:
        """Release connections."""


def live_entries(blobs: Iterable[bytes], now: float) -> list[CacheEntry]:
    """The readable entries among `blobs` that are still fresh at `now`."""
    entries = []
    for blob in blobs:
        try:
            entry = CacheEntry.from_bytes(blob)
        except EntryFormatError:
            continue
        if entry.is_fresh(now):
            entries.append(entry)
    return entries
