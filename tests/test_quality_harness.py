"""The quality harness on a small seeded subset, with the real model and the real peers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cachefleet_bench import quality
from cachefleet_bench.datasets import CLINC_FILE, QQP_FILE, default_data_dir
from cachefleet_bench.quality.report import ADVERSARIAL_RULES
from cachefleet_bench.quality.steps import LEXICAL_WEIGHTS
from node_harness import require


def test_harness_smoke(tmp_path: Path, model_dir: Path) -> None:
    data_dir = default_data_dir()
    require(
        (data_dir / CLINC_FILE).is_file() and (data_dir / QQP_FILE).is_file(),
        f"data sets not found under {data_dir} (set CACHEFLEET_DATA_DIR)",
    )
    parser = argparse.ArgumentParser()
    quality.add_arguments(parser)
    args = parser.parse_args(
        [
            "--subset",
            "smoke",
            "--data-dir",
            str(data_dir),
            "--model-dir",
            str(model_dir),
            "--cache-dir",
            str(tmp_path / "vectors"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert quality.main(args) == 0
    result = json.loads((tmp_path / "out" / "quality.json").read_text())
    assert (tmp_path / "out" / "quality_clinc.png").stat().st_size > 0
    assert (tmp_path / "out" / "quality_stream.png").stat().st_size > 0

    clinc = result["clinc"]
    # the analysis and CacheEngine.lookup made the same decision for every query
    assert clinc["engine_agreement"] == 1.0
    # ... also at the setting (guards, lexical weight, threshold) matched to GPTCache's error
    assert clinc["engine_agreement_at_gptcache_error_rate"] == 1.0
    for peer in ("redisvl_default_rule", "gptcache_default_rule"):
        equal = clinc["equal_error_rate"][peer]
        assert equal["cachefleet_hit_ratio"] >= equal["shipped_setting_hit_ratio"]
        assert equal["cachefleet_setting"]["lexical_weight"] in LEXICAL_WEIGHTS
        assert len(equal["held_out"]) == 2
    gpt = clinc["rules"]["gptcache_default_rule"]
    assert gpt["implementation"].startswith("gptcache 0.1.44")
    assert gpt["get_agrees_with_rank_rule"] == clinc["queries"]
    for rule in clinc["rules"].values():
        sweep = rule["sweep"]
        hits = [row["hit_ratio"] for row in sweep]
        assert hits == sorted(hits, reverse=True)
        best = next(row for row in sweep if row["threshold"] >= rule["threshold_at_1pct"])
        assert best["error_rate"] <= 0.01
    chosen = result["chosen"]
    assert 0.5 <= chosen["similarity_threshold"] <= 1.0
    assert set(chosen["guards"]) == {"negation", "opposites", "numbers", "entities"}
    qqp = result["qqp"]["rules"]["cachefleet"]
    assert 0.5 < qqp["roc_auc"] <= 1.0
    low, high = qqp["ci95"]["roc_auc"]
    assert low <= high
    assert set(result["stream"]["policies"]) == {"cachefleet", "redisvl", "gptcache"}
    assert (tmp_path / "out" / "quality_adversarial.png").stat().st_size > 0

    adversarial = result["adversarial"]
    # every pair, both splits, replayed through CacheEngine: the same decision as the analysis
    assert adversarial["engine_agreement"] == 1.0
    assert (
        adversarial["by_split"]["frozen"] + adversarial["by_split"]["dev"] == adversarial["pairs"]
    )
    assert adversarial["pairs"] >= 600
    for split in ("dev", "frozen"):
        tables = adversarial["rules"][split]
        assert set(tables) == set(ADVERSARIAL_RULES)
        ours, guards_only = tables["cachefleet"], tables["cachefleet_no_verifier"]
        # at the same threshold the verifier serves fewer traps than the guards alone
        assert ours["traps"]["served"] <= guards_only["traps"]["served"]
        assert ours["traps"]["served"] < tables["cosine_only"]["traps"]["served"]
        for row in ours.values():
            low, high = row["ci95"]
            assert low <= row["served"] <= high
    assert result["chosen"]["verifier"]["enabled"]
