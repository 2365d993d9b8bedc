"""`python -m cachefleet_bench embedded-durable`'s data, without the optional engines: the
rows' partitions, the queries' exact answers, and a missing engine skipped, not failed."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from cachefleet_bench import embedded_durable


def test_partitions_keep_nine_rows_in_ten_in_partition_zero() -> None:
    parts = embedded_durable.partition_of(np.arange(10_000, dtype=np.int64))
    assert (parts == 0).sum() == 9_000
    assert set(np.unique(parts)) == set(range(embedded_durable.OTHER_PARTITIONS + 1))


def test_exact_answers_are_the_nearest_row_of_partition_zero() -> None:
    rows = 2_000
    queries, exact = embedded_durable._queries(rows, 30)
    keys = np.concatenate([k for k, _ in embedded_durable._chunks(rows)])
    vectors = np.concatenate([v for _, v in embedded_durable._chunks(rows)])
    assert len(keys) == rows
    scores = vectors @ queries.T
    scores[embedded_durable.partition_of(keys) != 0] = -np.inf
    assert np.array_equal(keys[np.argmax(scores, axis=0)], exact)
    assert (embedded_durable.partition_of(exact) == 0).all()


def test_a_missing_engine_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded_durable, "_version", lambda engine: None)
    parser = argparse.ArgumentParser()
    embedded_durable.add_arguments(parser)
    output = tmp_path / "out.json"
    args = parser.parse_args(
        ["--sizes", "1000", "--queries", "5", "--engines", "faiss-hnsw", "--output", str(output)]
    )
    assert embedded_durable.main(args) == 0
    report = json.loads(output.read_text())
    assert report["about"]["faiss-hnsw"]["version"] is None
    assert report["engines"] == {}
