"""`make bench-scale` in miniature: one in-process worker on a small synthetic corpus, the
log-log law fit and the peer ratios (the peers and the server-backed run are not run here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cachefleet_bench import scale
from cachefleet_node.embedders.base import Vectors


def _corpus_file(folder: Path, size: int, queries: int, inserts: int) -> Path:
    rng = np.random.default_rng(1)

    def rows(count: int) -> Vectors:
        vectors = rng.normal(size=(count, 384)).astype(np.float32)
        unit: Vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return unit

    stored = rows(size)
    noisy = stored[:queries] + rng.normal(0, 0.01, (queries, 384)).astype(np.float32)
    path = folder / "corpus.npz"
    np.savez(
        path,
        stored=stored,
        queries=noisy / np.linalg.norm(noisy, axis=1, keepdims=True),
        inserts=rows(inserts),
    )
    texts = {
        "stored": [f"how do I reset password number {i}?" for i in range(size)],
        "queries": [f"how can I reset my password number {i}?" for i in range(queries)],
        "inserts": [f"what is the capital of country {i}?" for i in range(inserts)],
    }
    path.with_suffix(".json").write_text(json.dumps(texts))
    return path


def test_in_process_worker_measures_every_cost(tmp_path: Path, model_dir: Path) -> None:
    job = scale.Job(
        system="cachefleet_inprocess",
        size=500,
        corpus_file=str(_corpus_file(tmp_path, 500, 20, 10)),
        model_dir=str(model_dir),
        lookups=30,
        embedded_lookups=3,
        libssl_dir=str(tmp_path),
        peers_dir=str(tmp_path),
    )
    result = scale.run_job(job)
    lookups = result["lookups"]
    assert set(lookups) == {"l1_exact", "l1_semantic", "l1_semantic_with_embedding"}
    assert lookups["l1_semantic"]["n"] == 30
    assert lookups["l1_semantic_with_embedding"]["n"] == 3
    for stats in lookups.values():
        assert 0 < stats["p50_ms"] <= stats["p99_ms"]
    assert result["insert_entries_per_s"] > 0
    assert result["bulk_load_entries_per_s"] > 0
    assert result["memory"]["counted_bytes_per_entry"] > 0
    # Exact search over float16 rows finds each noisy copy's original, as float32 does.
    assert result["l1_against_exact_float32"]["top1_agreement"] == 1.0
    assert result["l1_against_exact_float32"]["max_similarity_error"] <= 2**-11


def test_law_fit_names_the_growth() -> None:
    sizes = [10_000, 100_000, 1_000_000]
    assert scale.fit_law(sizes, [1.0, 1.0, 1.0])["law"].startswith("flat")
    assert scale.fit_law(sizes, [1.0, 10.0, 100.0])["law"].startswith("linear")
    assert scale.fit_law(sizes, [100.0, 10.0, 1.0])["law"].startswith("falls")
    assert scale.fit_law(sizes[:1], [1.0])["slope"] is None


def test_ratios_compare_peers_to_cachefleet_at_each_size() -> None:
    def result(semantic_ms: float, inserts: float, lookup: str) -> dict[str, object]:
        stats = {"p50_ms": semantic_ms, "p99_ms": semantic_ms * 2, "n": 1}
        return {
            "bulk_load_entries_per_s": inserts,
            "insert_entries_per_s": inserts,
            "memory": {"total_bytes_per_entry": 100},
            "lookups": {lookup: stats},
        }

    systems = {
        "cachefleet_inprocess": {"results": {"10": result(1.0, 1000.0, "l1_semantic")}},
        "redisvl": {"results": {"10": result(4.0, 500.0, "semantic")}},
    }
    row = scale.ratios(systems, [10])["10"]
    assert row["redisvl/cachefleet_inprocess:semantic_lookup_p50"] == 4.0
    assert row["cachefleet_inprocess/redisvl:insert_rate"] == 2.0


def test_merge_keeps_the_rows_a_run_did_not_measure_again() -> None:
    earlier = {
        "runs": ["run 1: every system"],
        "sizes": [10, 20],
        "systems": {
            "redisvl": {"results": {"10": {"old": 1}, "20": {"old": 2}}, "not_run": {}},
            "cachefleet_durable": {"results": {"10": {"old": 3}}, "not_run": {}},
        },
    }
    now = {
        "sizes": [10],
        "machine": "this one",
        "systems": {"cachefleet_durable": {"results": {"10": {"new": 4}}, "not_run": {}}},
    }
    report = scale.merged(earlier, now)
    assert report["systems"]["cachefleet_durable"]["results"] == {"10": {"new": 4}}
    assert report["systems"]["redisvl"]["results"] == {"10": {"old": 1}, "20": {"old": 2}}
    assert report["sizes"] == [10, 20]
    assert (report["runs"], report["machine"]) == (["run 1: every system"], "this one")


def test_durable_timeline_counts_searches_past_the_deadline_per_bucket() -> None:
    samples = [
        scale._Sample(1.0, 120.0, False),
        scale._Sample(2.0, 3.0, True),
        scale._Sample(12.0, 2.0, True, None),
        scale._Sample(13.0, 60.0, True, "DEADLINE_EXCEEDED"),
    ]
    states = [
        {"at_s": 0.0, "indexed_rows": 0, "total_rows": 100},
        {"at_s": 11.0, "indexed_rows": 100, "total_rows": 100},
    ]
    first, second = scale._timeline(samples, states, deadline_ms=50.0)
    assert (first["from_s"], first["searches"], first["past_deadline"]) == (0.0, 2, 1)
    assert (first["own_row_first"], first["indexed_rows"]) == (0.5, 0)
    assert (second["past_deadline"], second["errors"], second["indexed_rows"]) == (1, 1, 100)
    assert second["max_ms"] == 60.0
