"""L1 exact tier: an in-process LRU of cache entries, bounded in bytes that are really held.

Entries are kept as their wire encoding (`CacheEntry.to_bytes`), zlib-compressed, one bytes
object each, so the size charged to the budget is the size held: the compressed blob, the key
and a measured constant for the per-item bookkeeping (dict slot, key and value objects,
allocator headers). An entry is decoded on each read.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator

from cachefleet_node.core.entry import CacheEntry
from cachefleet_node.memory import MemoryBudget

__all__ = ["ITEM_OVERHEAD_BYTES", "ByteBoundedLRU"]

# Bytes an item costs beside its blob and key characters: the OrderedDict slot and node, the
# key str header, the (blob, tick) tuple, the tick int and the blob's header, with allocator
# rounding (checked against process RSS by tests/test_l1_tiers.py).
ITEM_OVERHEAD_BYTES = 440
_COMPRESSION_LEVEL = 1  # 1 keeps a put near 0.1 ms; higher levels save little on small JSON


class ByteBoundedLRU:
    """Least-recently-used map from entry id to entry, charged to a shared memory budget."""

    tier = "l1_exact"

    def __init__(self, budget: MemoryBudget) -> None:
        self.budget = budget
        self._items: OrderedDict[str, tuple[bytes, int]] = OrderedDict()
        self._bytes = 0
        self.evictions = 0
        budget.register(self)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes_used(self) -> int:
        """Bytes this tier holds (blobs plus per-item bookkeeping)."""
        return self._bytes

    def get(self, entry_id: str, now: float) -> CacheEntry | None:
        """The entry if present and not expired (expired entries are dropped)."""
        item = self._items.get(entry_id)
        if item is None:
            return None
        entry = _decode(item[0])
        if now >= entry.expires_at:
            self._remove(entry_id)
            return None
        self._items[entry_id] = (item[0], self.budget.tick())
        self._items.move_to_end(entry_id)
        return entry

    def put(self, entry: CacheEntry) -> None:
        """Insert or replace; the budget evicts least recently used items to stay within it."""
        self._remove(entry.entry_id)
        blob = zlib.compress(entry.to_bytes(), _COMPRESSION_LEVEL)
        size = _item_size(entry.entry_id, blob)
        if not self.budget.fits(size):
            return
        self._items[entry.entry_id] = (blob, self.budget.tick())
        self._charge(size)
        self.budget.reclaim()

    def oldest_tick(self) -> int | None:
        """The tick of the least recently used entry (for the shared budget)."""
        for _, tick in self._items.values():
            return tick
        return None

    def evict_oldest(self) -> None:
        """Evict the least recently used entry (called by the shared budget)."""
        entry_id, (blob, _) = self._items.popitem(last=False)
        self._charge(-_item_size(entry_id, blob))
        self.evictions += 1

    def count_where(self, predicate: Callable[[CacheEntry], bool]) -> int:
        """How many entries match `predicate`."""
        return sum(1 for entry in self._entries() if predicate(entry))

    def remove_where(self, predicate: Callable[[CacheEntry], bool]) -> int:
        """Drop every entry matching `predicate`; return how many."""
        doomed = [entry.entry_id for entry in self._entries() if predicate(entry)]
        for key in doomed:
            self._remove(key)
        return len(doomed)

    def clear(self) -> None:
        """Drop everything."""
        self._items.clear()
        self._charge(-self._bytes)

    def _entries(self) -> Iterator[CacheEntry]:
        return (_decode(blob) for blob, _ in list(self._items.values()))

    def _charge(self, size: int) -> None:
        self._bytes += size

    def _remove(self, entry_id: str) -> None:
        item = self._items.pop(entry_id, None)
        if item is not None:
            self._charge(-_item_size(entry_id, item[0]))


def _item_size(entry_id: str, blob: bytes) -> int:
    return len(blob) + len(entry_id) + ITEM_OVERHEAD_BYTES


def _decode(blob: bytes) -> CacheEntry:
    return CacheEntry.from_bytes(zlib.decompress(blob))
