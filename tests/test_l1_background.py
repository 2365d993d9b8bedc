"""The in-process semantic tier builds its HNSW graphs in the background (issue 17).

A search while a partition's graph is being built is exact (a matrix product), rows added
or removed meanwhile are found or never returned, the graph is swapped in when ready, and
the budget counts the graph being built. Refilled ("cold") vectors are evicted before
anything in use, and a refill stops at the budget instead of evicting.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from cachefleet_node.memory import MemoryBudget
from cachefleet_node.tiers.l1_semantic import SemanticIndex, VectorMeta, _Partition

DIM = 64
NOW = 1_000_000.0
BIG = 1 << 40
ROWS = 12_000  # a build of this many rows takes a while on any machine


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def own(index: SemanticIndex, key: str) -> _Partition:
    """Partition `key` of more than one row (one of one row is a row of the shared slab)."""
    part = index._partitions[key]
    assert isinstance(part, _Partition), part
    return part


def meta(entry_id: str, **changes: Any) -> VectorMeta:
    fields: dict[str, Any] = {
        "entry_id": entry_id,
        "namespace": "support",
        "tenant": "acme",
        "prompt": None,
        "created_at": NOW - 10,
        "expires_at": NOW + 3600,
    }
    fields.update(changes)
    return VectorMeta(**fields)


def exact_best(vectors: dict[str, np.ndarray], query: np.ndarray) -> str:
    ids = list(vectors)
    scores = np.stack([vectors[i] for i in ids]) @ query
    return ids[int(np.argmax(scores))]


def test_searches_during_a_background_build_match_exact_search() -> None:
    rng = np.random.default_rng(17)
    index = SemanticIndex(DIM, None, MemoryBudget(BIG), hnsw_min_partition=1_000)
    held: dict[str, np.ndarray] = {}
    for i, vector in enumerate(unit(rng, ROWS)):
        index.add("p", vector, meta(f"v{i}"))
        held[f"v{i}"] = vector
    part = own(index, "p")
    assert index.building == 1  # started at 1,000 rows, off the caller's path
    # The graph under construction is charged (and the rows' one facet, beside partitions).
    assert index.bytes_used == part.nbytes + index._facets.nbytes

    # While it builds: add rows, remove rows (the matrix is copied, not written under the
    # build), and every search finds what exact search finds.
    removed = [f"v{i}" for i in range(0, 600, 3)]
    for entry_id in removed:
        index.remove(entry_id)
        del held[entry_id]
    for i, vector in enumerate(unit(rng, 300)):
        index.add("p", vector, meta(f"new{i}"))
        held[f"new{i}"] = vector
    assert index.bytes_used == part.nbytes + index._facets.nbytes
    during = 0
    for query in [held[f"new{i}"] for i in range(0, 300, 10)] + list(unit(rng, 40)):
        found = index.search("p", query, 4, NOW)
        assert found[0].meta.entry_id == exact_best(held, query)
        assert not {c.meta.entry_id for c in found} & set(removed)
        during += index.building
    assert during > 0, "the build finished before any search: nothing was tested"

    deadline = time.monotonic() + 300
    while part.build is not None or part.graph is None:
        assert time.monotonic() < deadline, "the background build did not finish"
        time.sleep(0.05)
        index.search("p", held["v1"], 1, NOW)  # a use swaps the finished graph in
    assert part.graph is not None
    assert index.bytes_used == part.nbytes + index._facets.nbytes
    hits = 0
    queries = [held[f"new{i}"] for i in range(0, 300, 10)] + [
        held[f"v{i}"] for i in range(1_000, 1_090)
    ]
    for query in queries:
        found = index.search("p", query, 4, NOW)
        assert not {c.meta.entry_id for c in found} & set(removed)
        hits += found[0].meta.entry_id == exact_best(held, query)
    assert hits >= 0.98 * len(queries)


def test_clear_cancels_a_build_and_counts_a_generation() -> None:
    rng = np.random.default_rng(18)
    index = SemanticIndex(DIM, None, MemoryBudget(BIG), hnsw_min_partition=1_000)
    for i, vector in enumerate(unit(rng, 5_000)):
        index.add("p", vector, meta(f"v{i}"))
    build = own(index, "p").build
    assert build is not None
    index.clear()
    assert build.cancelled.is_set()
    assert (len(index), index.bytes_used, index.building, index.generation) == (0, 0, 0, 1)


def test_cold_vectors_are_evicted_first_and_a_refill_stops_at_the_budget() -> None:
    rng = np.random.default_rng(19)
    vectors = unit(rng, 200)
    budget = MemoryBudget(BIG)
    index = SemanticIndex(DIM, None, budget)
    index.add("p", vectors[0], meta("used"))
    assert index.add_cold(["p"] * 50, vectors[1:51], [meta(f"cold{i}") for i in range(1, 51)])
    assert index.add_cold(["p"], vectors[60:61], [meta("used")])  # held already: left as is
    assert len(index) == 51
    assert index.search("p", vectors[0], 1, NOW)[0].meta.entry_id == "used"
    # The budget shrinks: the cold vectors go first, the one in use stays.
    budget.max_bytes = budget.used_bytes - 1
    budget.reclaim()
    assert index.evictions >= 1
    assert "used" in {c.meta.entry_id for c in index.search("p", vectors[0], 60, NOW)}
    # A refill into a full budget adds what fits and evicts nothing.
    evictions, held = index.evictions, len(index)
    fits = index.add_cold(
        ["q"] * 100, vectors[100:200], [meta(f"late{i}") for i in range(100, 200)]
    )
    assert not fits
    assert index.evictions == evictions
    assert len(index) <= held + 100
    assert budget.used_bytes <= budget.max_bytes


def test_a_bulk_refill_keeps_rows_in_order_and_never_grows_a_graph_in_place() -> None:
    rng = np.random.default_rng(21)
    vectors = unit(rng, 2_100)
    ids = [f"r{i}" for i in range(2_000)]
    partitions = ["big" if i % 4 else "small" for i in range(2_000)]
    index = SemanticIndex(DIM, 1_900, MemoryBudget(BIG), hnsw_min_partition=1_000)
    # One call: rows of two partitions, a repeated id (the first copy wins), past the bound.
    assert not index.add_cold(
        [*partitions[:1_000], "small", *partitions[1_000:]],
        np.concatenate([vectors[:1_000], vectors[2_050:2_051], vectors[1_000:2_000]]),
        [meta(i) for i in ids[:1_000]] + [meta("r3")] + [meta(i) for i in ids[1_000:]],
    )
    # The newest 1,900 rows (in the order given) are held, each in its own partition.
    assert len(index) == 1_900
    for i in (0, 3, 4, 999, 1_899):
        found = index.search(partitions[i], vectors[i], 1, NOW)
        assert found[0].meta.entry_id == ids[i]
        assert found[0].similarity > 0.999
    assert index.search("small", vectors[2_050], 1, NOW)[0].meta.entry_id != "r3"
    assert all(c.meta.entry_id != "r1950" for c in index.search("big", vectors[1_950], 5, NOW))
    # The big partition passed the graph's threshold: its graph builds in the background,
    # rows added meanwhile are in its tail and found.
    big = own(index, "big")
    assert big.build is not None or big.graph is not None
    index.max_entries = None
    assert index.add_cold(["big"], vectors[2_060:2_061], [meta("late")])
    assert "late" in big.tail
    # The later a row came, the colder it is: a shrinking budget evicts the last one first.
    index.budget.max_bytes = index.budget.used_bytes - 1
    index.budget.reclaim()
    assert index.evictions == 1
    assert len(index) == 1_900
    assert index.search("big", vectors[2_060], 1, NOW)[0].meta.entry_id != "late"
    assert index.search("big", vectors[1_898], 1, NOW)[0].meta.entry_id == "r1898"


def test_a_bulk_refill_puts_partitions_of_one_row_in_the_slab_and_charges_what_it_holds() -> None:
    rng = np.random.default_rng(22)
    vectors = unit(rng, 700)
    index = SemanticIndex(DIM, None, MemoryBudget(BIG))
    index.add("a", vectors[0], meta("used"))  # a partition of one row, in use
    keys = [f"k{i}" for i in range(600)] + ["a", "pair", "pair"]
    assert index.add_cold(keys, vectors[1:604], [meta(f"c{i}") for i in range(603)])
    # 600 new partitions of one row share the slab; "a" and "pair" now have partitions.
    assert len(index._slab) == 600
    parts = [own(index, "a"), own(index, "pair")]
    held = sum(p.nbytes for p in parts) + index._slab.nbytes + index._facets.nbytes
    assert index.bytes_used == held
    for i in (0, 299, 599):
        assert index.search(f"k{i}", vectors[1 + i], 5, NOW)[0].meta.entry_id == f"c{i}"
    assert [c.meta.entry_id for c in index.search("a", vectors[0], 5, NOW)] == ["used", "c600"]
    # The last row given is the coldest: it goes first, and "pair" is one row again.
    index.budget.max_bytes = index.budget.used_bytes - 1
    index.budget.reclaim()
    assert index.evictions == 1
    assert [c.meta.entry_id for c in index.search("pair", vectors[602], 5, NOW)] == ["c601"]
    assert isinstance(index._partitions["pair"], int)
    assert index.search("a", vectors[0], 1, NOW)[0].meta.entry_id == "used"


def test_unset_bound_follows_the_budget_alone() -> None:
    rng = np.random.default_rng(20)
    budget = MemoryBudget(BIG)
    index = SemanticIndex(DIM, None, budget)
    for i, vector in enumerate(unit(rng, 2_000)):
        index.add("p", vector, meta(f"v{i}"))
    assert len(index) == 2_000
    budget.max_bytes = budget.used_bytes // 2
    budget.reclaim()
    assert 0 < len(index) < 2_000
    assert index.bytes_used <= budget.max_bytes


def test_a_tail_big_enough_for_exact_search_starts_a_rebuild() -> None:
    """Rows added during a build form a tail; when it is big enough to send searches back to
    exact, another build starts at once (a partition was once left on exact search until it
    grew by a quarter)."""
    rng = np.random.default_rng(19)
    index = SemanticIndex(DIM, None, MemoryBudget(BIG), hnsw_min_partition=ROWS)
    for i, vector in enumerate(unit(rng, ROWS)):
        index.add("p", vector, meta(f"v{i}"))
    part = own(index, "p")
    assert part.build is not None
    for i, vector in enumerate(unit(rng, 2_000)):  # during the build: 2,000 > 14,000 // 8
        index.add("p", vector, meta(f"t{i}"))
    assert part.build is not None, "the build finished before the tail was added"
    deadline = time.monotonic() + 300
    while part.graph is None:
        assert time.monotonic() < deadline, "the first build did not finish"
        time.sleep(0.05)
        index.search("p", unit(rng, 1)[0], 1, NOW)  # a use swaps the finished graph in
    assert len(part.tail) == 2_000
    assert part.build is not None, "searches are exact and no rebuild is under way"
