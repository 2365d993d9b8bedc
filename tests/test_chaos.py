"""The shortened fault run of `make chaos` (issue 14): Redis and Milvus killed and stopped, the
upstream slow and broken, under 50 concurrent clients on two node processes."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from cachefleet_bench import chaos
from log_exposure import record_log
from node_harness import require


@pytest.mark.timeout(420)
async def test_faults_under_load_break_no_answer_and_lose_none(
    tmp_path: Path, model_dir: Path
) -> None:
    require(shutil.which("redis-server") is not None, "redis-server not installed")
    require(Path(sys.executable).with_name("milvus-lite").exists(), "milvus-lite not installed")
    for name in ("node-a", "node-b", "milvus", "stub"):
        record_log(tmp_path / f"{name}.log")
    figures = await chaos.run(chaos.Settings.ci(), tmp_path, str(model_dir))
    errors, answers = figures["errors"], figures["answers"]
    assert figures["requests"] > 200
    assert errors["cache_caused"] == 0, figures["bad_reply_samples"]
    assert figures["wrong_answers"] == 0, figures["bad_reply_samples"]
    assert answers["before"]["answered"] > 0
    assert answers["lost"] == 0, answers["before"]["which"]
    recovery = figures["semantic_recovery"]
    assert recovery["baseline_probe_hit_rate"] > 0
    assert recovery["first_semantic_hit_s"] is not None, "no Milvus semantic hit after restart"
    assert recovery["first_semantic_hit_s"] <= 120
    assert figures["single_flight"]["upstream_calls"] == 1, figures["single_flight"]
    assert figures["fuzz"]["5xx"] == 0, figures["fuzz"]["samples"]
    assert figures["fuzz"]["transport_errors"] == 0, figures["fuzz"]["samples"]
