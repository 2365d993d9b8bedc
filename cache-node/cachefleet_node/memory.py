"""One byte budget shared by the in-process tiers, derived from the pod's memory limit.

Every tier charges what it holds to one `MemoryBudget`; when the total passes the budget the
budget evicts the least recently used item across all tiers (each tier stamps its items with
the budget's `tick()` and says which of its items is oldest). The tiers: the exact entries
(`l1_exact`), the semantic vectors (`l1_semantic`) and the embedding cache (`embeddings`).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Protocol

__all__ = [
    "CGROUP_LIMIT_FILES",
    "UNLIMITED_BUDGET_BYTES",
    "MemoryBudget",
    "Reclaimable",
    "budget_bytes",
    "cgroup_memory_limit",
    "configured_budget",
    "read_rss",
]

# cgroup v2, then v1: the container's memory limit.
CGROUP_LIMIT_FILES = (
    Path("/sys/fs/cgroup/memory.max"),
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
)
# cgroup v1 reports "no limit" as a huge page-rounded number rather than "max".
_UNLIMITED_V1 = 1 << 60
# The budget when neither the config nor a container limit sets one.
UNLIMITED_BUDGET_BYTES = 256 * 1024 * 1024


def cgroup_memory_limit(files: tuple[Path, ...] = CGROUP_LIMIT_FILES) -> int | None:
    """The memory limit of this container in bytes, or None when it has none (or no cgroup)."""
    for path in files:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text == "max":
            return None
        try:
            limit = int(text)
        except ValueError:
            continue
        return None if limit >= _UNLIMITED_V1 else limit
    return None


def budget_bytes(max_bytes: int | None, memory_fraction: float, limit: int | None) -> int:
    """The in-process tiers' budget: `max_bytes` when set, else `memory_fraction` of the
    container's memory `limit`, else `UNLIMITED_BUDGET_BYTES`."""
    if max_bytes is not None:
        return max_bytes
    if limit is not None:
        return int(limit * memory_fraction)
    return UNLIMITED_BUDGET_BYTES


def configured_budget(max_bytes: int | None, memory_fraction: float) -> MemoryBudget:
    """The budget the `l1` config asks for, against this container's memory limit."""
    return MemoryBudget(budget_bytes(max_bytes, memory_fraction, cgroup_memory_limit()))


def read_rss() -> int:
    """Resident set size of this process in bytes, as the OS counts it (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS missing from /proc/self/status")


class Reclaimable(Protocol):
    """A tier that charges a `MemoryBudget`: `tier` names it in metrics and `/stats`,
    `evictions` counts the items it evicted."""

    tier: str
    evictions: int

    @property
    def bytes_used(self) -> int:
        """Bytes the tier holds."""
        ...

    def oldest_tick(self) -> int | None:
        """The tick of the least recently used item, None when empty."""
        ...

    def evict_oldest(self) -> None:
        """Evict the least recently used item (releasing its bytes)."""
        ...


class MemoryBudget:
    """Bytes held by the in-process tiers, kept at most `max_bytes` by global LRU eviction."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._tick = 0
        self._tiers: list[Reclaimable] = []
        self._retired_evictions: Counter[str] = Counter()

    @property
    def used_bytes(self) -> int:
        """Bytes held by the registered tiers together."""
        return sum(tier.bytes_used for tier in self._tiers)

    def bytes_by_tier(self) -> dict[str, int]:
        """Bytes held per tier name (tiers of one name, such as two embedding caches, summed;
        a name whose tiers all left the budget: 0)."""
        held = Counter(dict.fromkeys(self._retired_evictions, 0))
        for tier in self._tiers:
            held[tier.tier] += tier.bytes_used
        return dict(held)

    def evictions_by_tier(self) -> dict[str, int]:
        """Items evicted per tier name since start, unregistered tiers' evictions included."""
        evicted = Counter(self._retired_evictions)
        for tier in self._tiers:
            evicted[tier.tier] += tier.evictions
        return dict(evicted)

    def register(self, tier: Reclaimable) -> None:
        """Count `tier`'s bytes and let the budget evict from it."""
        self._tiers.append(tier)

    def unregister(self, tier: Reclaimable) -> None:
        """Stop counting `tier` (one being replaced or closed); its evictions stay counted."""
        self._tiers.remove(tier)
        self._retired_evictions[tier.tier] += tier.evictions

    def tick(self) -> int:
        """A stamp that orders uses across tiers (larger: more recent)."""
        self._tick += 1
        return self._tick

    def fits(self, size: int) -> bool:
        """Whether an item of `size` bytes can ever be held."""
        return size <= self.max_bytes

    def reclaim(self) -> None:
        """Evict least recently used items, whichever tier holds them, until within budget."""
        while self.used_bytes > self.max_bytes:
            oldest: tuple[int, Reclaimable] | None = None
            for tier in self._tiers:
                tick = tier.oldest_tick()
                if tick is not None and (oldest is None or tick < oldest[0]):
                    oldest = (tick, tier)
            if oldest is None:
                return
            oldest[1].evict_oldest()
