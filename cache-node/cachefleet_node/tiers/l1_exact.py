"""L1 exact tier: an in-process LRU of cache entries, bounded in bytes."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from cachefleet_node.core.entry import CacheEntry

__all__ = ["ByteBoundedLRU"]


class ByteBoundedLRU:
    """Least-recently-used map from entry id to entry whose total size stays under a budget."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, CacheEntry] = OrderedDict()
        self._bytes = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes_used(self) -> int:
        """Sum of the sizes of the held entries."""
        return self._bytes

    def get(self, entry_id: str, now: float) -> CacheEntry | None:
        """The entry if present and not expired (expired entries are dropped)."""
        entry = self._items.get(entry_id)
        if entry is None:
            return None
        if now >= entry.expires_at:
            self._remove(entry_id)
            return None
        self._items.move_to_end(entry_id)
        return entry

    def put(self, entry: CacheEntry) -> None:
        """Insert or replace; evicts least recently used entries to stay within budget."""
        if entry.size_bytes > self.max_bytes:
            self._remove(entry.entry_id)
            return
        self._remove(entry.entry_id)
        self._items[entry.entry_id] = entry
        self._bytes += entry.size_bytes
        while self._bytes > self.max_bytes:
            _, evicted = self._items.popitem(last=False)
            self._bytes -= evicted.size_bytes
            self.evictions += 1

    def count_where(self, predicate: Callable[[CacheEntry], bool]) -> int:
        """How many entries match `predicate`."""
        return sum(1 for entry in self._items.values() if predicate(entry))

    def remove_where(self, predicate: Callable[[CacheEntry], bool]) -> int:
        """Drop every entry matching `predicate`; return how many."""
        doomed = [key for key, entry in self._items.items() if predicate(entry)]
        for key in doomed:
            self._remove(key)
        return len(doomed)

    def clear(self) -> None:
        """Drop everything."""
        self._items.clear()
        self._bytes = 0

    def _remove(self, entry_id: str) -> None:
        entry = self._items.pop(entry_id, None)
        if entry is not None:
            self._bytes -= entry.size_bytes
