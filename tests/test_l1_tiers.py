"""In-process tiers: the byte-bounded exact LRU and the partitioned semantic index."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from cachefleet_node.core.entry import CacheEntry
from cachefleet_node.memory import (
    UNLIMITED_BUDGET_BYTES,
    MemoryBudget,
    budget_bytes,
    cgroup_memory_limit,
)
from cachefleet_node.tiers.l1_exact import ByteBoundedLRU
from cachefleet_node.tiers.l1_semantic import SemanticIndex, VectorMeta, _Partition

DIM = 32
NOW = 1_000_000.0
BIG = 1 << 40  # a budget nothing reaches


def entry(entry_id: str, size: int = 100, **changes: Any) -> CacheEntry:
    """An entry whose answer is `size` characters of incompressible-ish text."""
    text = random.Random(entry_id).randbytes(size // 2 + 1).hex()[:size]
    fields: dict[str, Any] = {
        "entry_id": entry_id,
        "namespace": "support",
        "tenant": "acme",
        "model": "gpt-4o-mini",
        "created_at": NOW - 10,
        "expires_at": NOW + 3600,
        "answers": (orjson.dumps({"content": text}),),
    }
    fields.update(changes)
    return CacheEntry(**fields)


def cost(item: CacheEntry) -> int:
    """What `item` alone is charged in an exact tier."""
    lru = ByteBoundedLRU(MemoryBudget(BIG))
    lru.put(item)
    return lru.bytes_used


# ------------------------------------------------------------------------------ exact LRU


def test_lru_evicts_least_recently_used_within_the_byte_budget() -> None:
    one = max(cost(entry(name)) for name in "abcd")  # compressed sizes differ by a few bytes
    lru = ByteBoundedLRU(MemoryBudget(3 * one))
    for name in "abc":
        lru.put(entry(name))
    assert lru.bytes_used == sum(cost(entry(name)) for name in "abc")
    assert lru.get("a", NOW) is not None  # a is now the most recently used
    lru.put(entry("d"))
    assert lru.get("b", NOW) is None
    assert [n for n in "acd" if lru.get(n, NOW) is not None] == ["a", "c", "d"]
    assert lru.evictions == 1
    assert lru.bytes_used <= lru.budget.max_bytes


def test_entries_read_back_equal_to_what_was_put() -> None:
    lru = ByteBoundedLRU(MemoryBudget(BIG))
    item = entry(
        "a",
        size=3000,
        partition="p",
        prompt="how do I reset my password?",
        tags=("faq",),
        request=orjson.dumps({"model": "m", "messages": []}),
        prompt_tokens=3,
        completion_tokens=4,
    )
    lru.put(item)
    assert lru.get("a", NOW) == item
    # Stored compressed: the charge is well under the encoding of a repetitive answer.
    repetitive = entry("b", answers=(orjson.dumps({"content": "yes " * 5000}),))
    assert cost(repetitive) < len(repetitive.to_bytes()) // 10


def test_lru_byte_budget_holds_under_random_load() -> None:
    rng = random.Random(7)
    lru = ByteBoundedLRU(MemoryBudget(50_000))
    live: dict[str, CacheEntry] = {}
    for step in range(2000):
        name = f"e{rng.randint(0, 300)}"
        if rng.random() < 0.7:
            item = entry(name, size=rng.randint(0, 5000))
            lru.put(item)
            live[name] = item
        else:
            lru.get(name, NOW)
        assert lru.bytes_used <= lru.budget.max_bytes, step
    held = [e for e in live.values() if lru.get(e.entry_id, NOW) == e]
    assert lru.bytes_used == sum(cost(e) for e in held)
    assert len(lru) == len(held)


def test_replacing_an_entry_does_not_double_count() -> None:
    lru = ByteBoundedLRU(MemoryBudget(10_000))
    lru.put(entry("a", size=1000))
    lru.put(entry("a", size=2000))
    assert len(lru) == 1
    assert lru.bytes_used == cost(entry("a", size=2000))


def test_entry_larger_than_the_budget_is_not_stored() -> None:
    lru = ByteBoundedLRU(MemoryBudget(2000))
    lru.put(entry("small"))
    lru.put(entry("huge", size=5000))
    assert lru.get("huge", NOW) is None
    assert lru.get("small", NOW) is not None
    # A too-large replacement also drops the old copy, never serving a stale answer.
    lru.put(entry("small", size=5000))
    assert lru.get("small", NOW) is None
    assert lru.bytes_used == 0


def test_zero_budget_stores_nothing() -> None:
    lru = ByteBoundedLRU(MemoryBudget(0))
    lru.put(entry("a", size=0))
    assert len(lru) == 0


def test_expired_entries_are_not_returned_and_are_dropped() -> None:
    lru = ByteBoundedLRU(MemoryBudget(100_000))
    lru.put(entry("a", expires_at=NOW + 5))
    assert lru.get("a", NOW + 4.9) is not None
    assert lru.get("a", NOW + 5) is None
    assert len(lru) == 0
    assert lru.bytes_used == 0


def test_remove_and_count_where() -> None:
    lru = ByteBoundedLRU(MemoryBudget(1_000_000))
    for i in range(10):
        lru.put(entry(f"e{i}", tenant="acme" if i % 2 else "globex", tags=(f"t{i % 3}",)))
    assert lru.count_where(lambda e: e.tenant == "acme") == 5
    assert lru.count_where(lambda e: "t0" in e.tags) == 4
    assert len(lru) == 10
    assert lru.remove_where(lambda e: e.tenant == "acme") == 5
    assert len(lru) == 5
    assert lru.count_where(lambda e: e.tenant == "acme") == 0
    kept = (entry(f"e{i}", tenant="globex", tags=(f"t{i % 3}",)) for i in range(0, 10, 2))
    assert lru.bytes_used == sum(cost(e) for e in kept)
    lru.clear()
    assert (len(lru), lru.bytes_used) == (0, 0)


# ------------------------------------------------------------------------- semantic index


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
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
        "prompt": f"prompt {entry_id}",
        "created_at": NOW - 10,
        "expires_at": NOW + 3600,
    }
    fields.update(changes)
    return VectorMeta(**fields)


def fill(index: SemanticIndex, partition: str, vectors: np.ndarray, prefix: str = "v") -> None:
    for i, vector in enumerate(vectors):
        index.add(partition, vector, meta(f"{prefix}{i}"))


def settle(index: SemanticIndex, partition: str, timeout_s: float = 120.0) -> None:
    """Use `partition` until its graph is built and swapped in, with no build due."""
    deadline = time.monotonic() + timeout_s
    part = own(index, partition)
    while part.build is not None or part.graph is None:
        assert time.monotonic() < deadline, "the background graph build did not finish"
        time.sleep(0.01)
        index.search(partition, part.vectors.rows[0].astype(np.float32), 1, NOW)


def near(rng: np.random.Generator, vector: np.ndarray, noise: float = 0.05) -> np.ndarray:
    query = vector + noise * rng.standard_normal(vector.shape).astype(np.float32) / np.sqrt(DIM)
    return (query / np.linalg.norm(query)).astype(np.float32)


@pytest.mark.parametrize("k", [1, 5, 20, 300])
def test_exact_search_matches_brute_force(k: int) -> None:
    rng = np.random.default_rng(1)
    vectors = unit(rng, 200)
    index = SemanticIndex(
        DIM, max_entries=10_000, budget=MemoryBudget(BIG), hnsw_min_partition=10_000
    )
    fill(index, "p", vectors)
    for query in unit(rng, 20):
        found = index.search("p", query, k, NOW)
        # Rows are held in float16: the ranking is exact over the rounded rows, and a unit
        # vector's cosine moves by at most 2**-11 from its float32 value.
        scores = vectors.astype(np.float16).astype(np.float32) @ query
        expected = np.argsort(-scores)[:k]
        assert [c.meta.entry_id for c in found] == [f"v{i}" for i in expected]
        exact = (vectors @ query)[expected]
        assert [c.similarity for c in found] == pytest.approx(exact.tolist(), abs=2**-11)


def test_partitions_are_isolated() -> None:
    rng = np.random.default_rng(2)
    vectors = unit(rng, 3)
    index = SemanticIndex(DIM, max_entries=100, budget=MemoryBudget(BIG))
    index.add("tenant-a", vectors[0], meta("a", tenant="a"))
    index.add("tenant-b", vectors[1], meta("b", tenant="b"))
    assert [c.meta.entry_id for c in index.search("tenant-a", vectors[1], 5, NOW)] == ["a"]
    assert index.search("tenant-c", vectors[1], 5, NOW) == []


def test_large_partition_switches_to_hnsw_and_keeps_recall() -> None:
    rng = np.random.default_rng(3)
    vectors = unit(rng, 600)
    index = SemanticIndex(DIM, max_entries=10_000, budget=MemoryBudget(BIG), hnsw_min_partition=64)
    fill(index, "p", vectors[:300])  # past 64 rows: a graph is built in the background
    settle(index, "p")
    partition = own(index, "p")
    fill(index, "p", vectors[300:], prefix="w")  # added to the existing graph
    ids = [f"v{i}" for i in range(300)] + [f"w{i}" for i in range(300)]
    targets = rng.choice(600, size=50, replace=False)
    hits = 0
    for target in targets:
        found = index.search("p", near(rng, vectors[target]), 5, NOW)
        assert len(found) == 5
        assert [c.similarity for c in found] == sorted((c.similarity for c in found), reverse=True)
        hits += found[0].meta.entry_id == ids[target]
    assert partition.graph is not None
    # rows added during the build stay in the exactly searched tail until the next build
    assert partition.graph.index.ntotal + len(partition.tail) == 600
    assert hits / len(targets) >= 0.98


def test_graph_hits_report_the_exact_cosine_and_agree_with_a_float32_search() -> None:
    """The graph walks 4-bit codes; its candidates are re-scored from the float16 rows, so a
    hit is the float32 search's best and carries its cosine (within float16 rounding)."""
    dim = 384
    rng = np.random.default_rng(12)
    topics = unit(rng, 40, dim)  # clustered, as embeddings of related questions are
    raw = topics[rng.integers(0, 40, 3000)] + 0.7 * unit(rng, 3000, dim)
    vectors = (raw / np.linalg.norm(raw, axis=1, keepdims=True)).astype(np.float32)
    index = SemanticIndex(
        dim, max_entries=10_000, budget=MemoryBudget(BIG), hnsw_min_partition=1024
    )
    fill(index, "p", vectors)
    settle(index, "p")
    graph = own(index, "p").graph
    assert graph is not None
    assert graph.index.ntotal + len(own(index, "p").tail) == 3000
    agree = 0
    for target in rng.choice(3000, size=200, replace=False):
        query = near(rng, vectors[target], noise=0.5)
        found = index.search("p", query, 1, NOW)[0]
        scores = vectors @ query
        row = int(found.meta.entry_id[1:])
        agree += row == int(np.argmax(scores))
        assert found.similarity == pytest.approx(float(scores[row]), abs=2**-11)
    assert agree >= 196  # 98%


def test_removed_ids_are_never_returned_also_after_rebuilds() -> None:
    rng = np.random.default_rng(4)
    vectors = unit(rng, 400)
    index = SemanticIndex(DIM, max_entries=10_000, budget=MemoryBudget(BIG), hnsw_min_partition=64)
    fill(index, "p", vectors)
    settle(index, "p")
    graph_before = own(index, "p").graph
    assert graph_before is not None
    removed: set[str] = set()
    order = [int(i) for i in rng.permutation(400)]
    for step, i in enumerate(order[:300]):
        index.remove(f"v{i}")
        removed.add(f"v{i}")
        if step % 10 == 0:
            for query in (vectors[i], near(rng, vectors[order[-1]])):
                found = index.search("p", query, 10, NOW)
                assert not removed & {c.meta.entry_id for c in found}
    settle(index, "p")
    assert own(index, "p").graph is not graph_before  # tombstones forced a rebuild
    remaining = order[300:]
    assert len(index) == 100
    for i in remaining[:30]:
        found = index.search("p", near(rng, vectors[i]), 3, NOW)
        assert found[0].meta.entry_id == f"v{i}"
        assert not removed & {c.meta.entry_id for c in found}
    for i in order[:300]:
        assert all(c.meta.entry_id != f"v{i}" for c in index.search("p", vectors[i], 3, NOW))


def test_readding_an_id_replaces_its_vector() -> None:
    rng = np.random.default_rng(5)
    vectors = unit(rng, 200)
    for hnsw_min in (64, 10_000):
        index = SemanticIndex(
            DIM, max_entries=10_000, budget=MemoryBudget(BIG), hnsw_min_partition=hnsw_min
        )
        fill(index, "p", vectors[:100])
        index.search("p", vectors[0], 1, NOW)
        index.add("p", vectors[150], meta("v3"))
        assert len(index) == 100
        found = index.search("p", vectors[150], 1, NOW)
        assert (found[0].meta.entry_id, found[0].similarity) == (
            "v3",
            pytest.approx(1.0, abs=2**-11),
        )
        assert all(c.meta.entry_id != "v3" for c in index.search("p", vectors[3], 1, NOW))
        # Moving an id to another partition removes it from the first.
        index.add("q", vectors[3], meta("v3"))
        assert all(c.meta.entry_id != "v3" for c in index.search("p", vectors[150], 5, NOW))
        assert index.search("q", vectors[3], 1, NOW)[0].meta.entry_id == "v3"


def test_global_bound_evicts_least_recently_used() -> None:
    rng = np.random.default_rng(6)
    vectors = unit(rng, 10)
    index = SemanticIndex(DIM, max_entries=5, budget=MemoryBudget(BIG))
    for i in range(5):
        index.add("p" if i % 2 else "q", vectors[i], meta(f"v{i}"))
    assert index.search("q", vectors[0], 1, NOW)[0].meta.entry_id == "v0"  # v0 touched
    index.add("p", vectors[5], meta("v5"))
    index.add("q", vectors[6], meta("v6"))
    assert len(index) == 5
    assert index.evictions == 2
    present = {
        c.meta.entry_id
        for p in ("p", "q")
        for v in vectors[:7]
        for c in index.search(p, v, 10, NOW)
    }
    assert present == {"v0", "v3", "v4", "v5", "v6"}


def test_zero_max_entries_stores_nothing() -> None:
    index = SemanticIndex(DIM, max_entries=0, budget=MemoryBudget(BIG))
    index.add("p", unit(np.random.default_rng(0), 1)[0], meta("a"))
    assert len(index) == 0
    assert index.search("p", unit(np.random.default_rng(0), 1)[0], 1, NOW) == []


def test_expired_and_too_old_vectors_are_not_returned() -> None:
    rng = np.random.default_rng(7)
    vectors = unit(rng, 3)
    index = SemanticIndex(DIM, max_entries=100, budget=MemoryBudget(BIG))
    index.add("p", vectors[0], meta("old", created_at=NOW - 1000))
    index.add("p", vectors[1], meta("young", created_at=NOW - 5))
    index.add("p", vectors[2], meta("expiring", expires_at=NOW + 1))
    ids = {c.meta.entry_id for c in index.search("p", vectors[0], 10, NOW)}
    assert ids == {"old", "young", "expiring"}
    ids = {c.meta.entry_id for c in index.search("p", vectors[0], 10, NOW, max_age_s=60)}
    assert ids == {"young", "expiring"}
    ids = {c.meta.entry_id for c in index.search("p", vectors[0], 10, NOW + 1)}
    assert ids == {"old", "young"}
    assert len(index) == 2  # the expired vector was dropped


def test_remove_where_by_namespace_and_tenant() -> None:
    rng = np.random.default_rng(8)
    vectors = unit(rng, 40)
    index = SemanticIndex(DIM, max_entries=1000, budget=MemoryBudget(BIG))
    for i, vector in enumerate(vectors):
        namespace = "support" if i < 20 else "sales"
        tenant = "acme" if i % 2 else "globex"
        index.add(
            f"{namespace}/{tenant}", vector, meta(f"v{i}", namespace=namespace, tenant=tenant)
        )
    removed = index.remove_where(lambda m: m.namespace == "support" and m.tenant == "acme")
    assert removed == 10
    assert len(index) == 30
    assert index.search("support/acme", vectors[1], 5, NOW) == []
    assert len(index.search("support/globex", vectors[0], 50, NOW)) == 10
    assert index.remove_where(lambda m: m.namespace == "sales") == 20
    assert len(index) == 10
    assert index.search("sales/acme", vectors[21], 5, NOW) == []


def test_semantic_bytes_follow_what_the_partitions_hold() -> None:
    rng = np.random.default_rng(9)
    vectors = unit(rng, 300)
    index = SemanticIndex(DIM, max_entries=10_000, budget=MemoryBudget(BIG), hnsw_min_partition=64)
    fill(index, "p", vectors[:200])
    for i, vector in enumerate(vectors[200:]):
        index.add(f"own-{i}", vector, meta(f"own{i}"))
    index.search("p", vectors[0], 1, NOW)  # builds a graph, which is charged too
    with_graph = index.bytes_used
    # The 100 partitions of one row are rows of the shared slab.
    assert sum(isinstance(part, int) for part in index._partitions.values()) == 100
    held = own(index, "p").nbytes + index._slab.nbytes
    assert with_graph == held + index._facets.nbytes  # one facet: namespace, tenant, tags
    index.remove_where(lambda m: True)
    assert (len(index), index.bytes_used, index._partitions) == (0, 0, {})


def test_a_partition_of_one_vector_costs_about_one_vector_not_a_block() -> None:
    dim = 384
    rng = np.random.default_rng(10)
    index = SemanticIndex(dim, max_entries=10_000, budget=MemoryBudget(BIG))
    for i, vector in enumerate(unit(rng, 1000, dim)):
        index.add(f"system-prompt-{i}", vector, meta(f"v{i}"))
    per_partition = index.bytes_used / 1000
    # Rows of the shared slab: no matrix or lists of their own (those took ~600 B more).
    assert dim * 2 < per_partition < dim * 2 + 1_000
    # Matrices grow geometrically and shrink back as rows leave.
    vectors = unit(rng, 1000, dim)
    for i, vector in enumerate(vectors):
        index.add("shared", vector, meta(f"s{i}"))
    assert 1_000 <= own(index, "shared").vectors.capacity <= 1_250
    index.remove_where(lambda m: m.entry_id.startswith("s") and m.entry_id not in ("s0", "s1"))
    assert own(index, "shared").vectors.capacity <= 8
    index.remove("s1")  # its last row goes back to the shared slab
    assert isinstance(index._partitions["shared"], int)
    assert index.search("shared", vectors[0], 5, NOW)[0].meta.entry_id == "s0"


def test_partitions_of_one_row_share_one_slab_through_adds_removals_and_growth() -> None:
    """Partitions of one row are rows of one shared slab, swap-removed; a second row moves a
    partition out to a matrix of its own, and its last row back. Under random adds and removals every partition's
    search finds its own rows and no other, the bytes follow, and the slab's blocks are freed
    as it empties."""
    rng = np.random.default_rng(23)
    vectors = unit(rng, 4_000)
    index = SemanticIndex(DIM, None, MemoryBudget(BIG), hnsw_min_partition=10_000)
    held: dict[str, dict[str, int]] = {}  # partition -> id -> its vector
    for step in range(4_000):
        if rng.random() < 0.6 or not held:
            key, entry_id = f"k{rng.integers(0, 1_200)}", f"e{step}"
            index.add(key, vectors[step], meta(entry_id))
            held.setdefault(key, {})[entry_id] = step
        else:
            key = sorted(held)[rng.integers(0, len(held))]
            entry_id = sorted(held[key])[rng.integers(0, len(held[key]))]
            index.remove(entry_id)
            del held[key][entry_id]
            if not held[key]:
                del held[key]
    ones = sum(len(rows) == 1 for rows in held.values())
    assert 300 < ones < len(held)  # both kinds, the slab past one block
    assert len(index._slab) == ones == sum(isinstance(p, int) for p in index._partitions.values())
    assert len(index) == sum(len(rows) for rows in held.values())
    for key, rows in held.items():
        for entry_id, number in rows.items():
            found = index.search(key, vectors[number], 50, NOW)
            assert {c.meta.entry_id for c in found} == set(rows)
            assert found[0].meta.entry_id == entry_id
            assert found[0].meta.prompt == f"prompt {entry_id}"
    assert index.search("k-none", vectors[0], 5, NOW) == []
    single = next(rows for rows in held.values() if len(rows) == 1)
    ((entry_id, number),) = single.items()
    found = index.similar_where(vectors[number], 0.999, lambda m: True)
    assert [c.meta.entry_id for c in found] == [entry_id]  # the slab is searched too
    partitions = [p for p in index._partitions.values() if not isinstance(p, int)]
    held_bytes = sum(p.nbytes for p in partitions) + index._slab.nbytes + index._facets.nbytes
    assert index.bytes_used == held_bytes
    index.remove_where(lambda m: True)
    assert (len(index), index.bytes_used, index._slab.blocks, index._partitions) == (0, 0, [], {})


def test_a_partition_keeps_its_lru_place_when_it_grows_out_of_the_slab() -> None:
    rng = np.random.default_rng(24)
    vectors = unit(rng, 4)
    index = SemanticIndex(DIM, 3, MemoryBudget(BIG))
    index.add("a", vectors[0], meta("a0"))
    index.add("b", vectors[1], meta("b0"))
    oldest = index.oldest_tick()
    index.add("a", vectors[2], meta("a1"))  # "a" leaves the slab; a0 is still the oldest
    assert index.oldest_tick() == oldest
    index.add("c", vectors[3], meta("c0"))  # past the bound of 3: a0 goes
    assert [c.meta.entry_id for c in index.search("a", vectors[0], 5, NOW)] == ["a1"]
    assert [c.meta.entry_id for c in index.search("b", vectors[1], 5, NOW)] == ["b0"]


def test_one_budget_evicts_least_recently_used_across_tiers() -> None:
    rng = np.random.default_rng(11)
    vectors = unit(rng, 4)
    budget = MemoryBudget(BIG)
    exact = ByteBoundedLRU(budget)
    semantic = SemanticIndex(DIM, max_entries=100, budget=budget)
    exact.put(entry("old-entry"))
    semantic.add("p", vectors[0], meta("old-vector"))
    exact.put(entry("new-entry"))
    semantic.add("q", vectors[1], meta("new-vector"))
    assert exact.get("old-entry", NOW) is not None  # touched: now the most recent of all
    assert budget.used_bytes == exact.bytes_used + semantic.bytes_used
    budget.max_bytes = budget.used_bytes - 1
    budget.reclaim()  # the oldest item is the vector "old-vector"
    assert len(semantic) == 1
    assert len(exact) == 2
    budget.max_bytes = cost(entry("old-entry"))
    budget.reclaim()  # then "new-entry", then "new-vector"
    assert [exact.get(name, NOW) is not None for name in ("old-entry", "new-entry")] == [
        True,
        False,
    ]
    assert len(semantic) == 0
    assert (exact.evictions, semantic.evictions) == (1, 2)
    assert budget.used_bytes <= budget.max_bytes


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"memory.max": "1610612736\n"}, 1_610_612_736),
        ({"memory.max": "max\n", "limit_in_bytes": "1073741824"}, None),
        ({"limit_in_bytes": "1073741824\n"}, 1_073_741_824),
        ({"limit_in_bytes": "9223372036854771712\n"}, None),  # cgroup v1 without a limit
        ({}, None),
    ],
)
def test_container_memory_limit_from_cgroup_v2_then_v1(
    tmp_path: Path, files: dict[str, str], expected: int | None
) -> None:
    paths = (tmp_path / "memory.max", tmp_path / "limit_in_bytes")
    for path in paths:
        if path.name in files:
            path.write_text(files[path.name])
    assert cgroup_memory_limit(paths) == expected


def test_budget_is_the_setting_else_a_share_of_the_limit() -> None:
    assert budget_bytes(1234, 0.35, 1_000_000) == 1234
    assert budget_bytes(None, 0.35, 1_000_000) == 350_000
    assert budget_bytes(None, 0.35, None) == UNLIMITED_BUDGET_BYTES
