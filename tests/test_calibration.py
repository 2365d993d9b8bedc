"""Threshold calibration: offline choice, the CLI, and the online calibrator."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from cachefleet_node.cli import main
from cachefleet_node.core.calibration import OnlineCalibrator, choose_threshold


def _labelled(n: int, seed: int) -> list[tuple[float, bool]]:
    """Similarities in [0.5, 1); the higher, the likelier the candidate is right."""
    rng = random.Random(seed)
    samples = []
    for _ in range(n):
        similarity = 0.5 + rng.random() * 0.5
        samples.append((similarity, rng.random() < (similarity - 0.5) * 2))
    return samples


@pytest.mark.parametrize("target", [0.01, 0.02, 0.05])
def test_chosen_threshold_meets_the_target_and_is_the_lowest_that_does(target: float) -> None:
    samples = _labelled(4000, seed=3)
    requests = 5000  # a fifth of the requests had no candidate at all
    result = choose_threshold(samples, requests, target)
    served = [s for s in samples if s[0] >= result.threshold]
    wrong = sum(not ok for _, ok in served)
    assert wrong / requests <= target
    assert result.error_rate == pytest.approx(wrong / requests)
    assert result.hit_ratio == pytest.approx(len(served) / requests)
    lower = max(s for s, _ in samples if s < result.threshold)
    wrong_lower = sum(not ok for s, ok in samples if s >= lower)
    assert wrong_lower / requests > target, "a lower threshold would also have met the target"


def test_no_threshold_meets_an_impossible_target() -> None:
    result = choose_threshold([(0.99, False)], 1, 0.01, ceiling=1.0)
    assert result.threshold == 1.0
    assert result.hit_ratio == 0.0


def test_online_calibrator_waits_for_enough_samples() -> None:
    calibrator = OnlineCalibrator(0.02, floor=0.5, ceiling=1.0, min_samples=50, window=500)
    samples = _labelled(400, seed=5)
    for index, (similarity, correct) in enumerate(samples):
        calibrator.count_request()
        result = calibrator.observe(similarity, correct)
        if index + 1 < 50:
            assert result is None
            assert calibrator.threshold is None
    assert calibrator.threshold is not None
    assert calibrator.current is not None
    assert calibrator.current.error_rate <= 0.02


def test_calibrate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "samples.jsonl"
    rows = [{"similarity": s, "correct": ok} for s, ok in _labelled(1000, seed=9)]
    rows += [{"similarity": None}] * 200
    path.write_text("\n".join(json.dumps(row) for row in rows))
    assert main(["calibrate", str(path), "--target-error-rate", "0.02"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["requests"] == 1200
    assert out["error_rate"] <= 0.02
    assert 0.5 <= out["threshold"] <= 1.0

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"similarity": "x", "correct": true}\n')
    assert main(["calibrate", str(bad)]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err
