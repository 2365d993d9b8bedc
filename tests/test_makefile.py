"""The Makefile's habits: every target says what it does, and `make help` lists them all."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
_TARGET = re.compile(r"^([a-z][a-z0-9-]*):")


def _targets() -> dict[str, str]:
    """Target -> the first line of the `##` comment right above it ("" when there is none)."""
    lines = (ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
    found: dict[str, str] = {}
    for index, line in enumerate(lines):
        match = _TARGET.match(line)
        if not match:
            continue
        start = index
        while start > 0 and lines[start - 1].startswith("## "):
            start -= 1
        found[match.group(1)] = lines[start][3:] if start < index else ""
    return found


def test_every_target_has_a_comment_and_make_help_lists_it() -> None:
    targets = _targets()
    assert {"help", "test", "test-unit", "test-e2e", "lint", "bench-quality"} <= set(targets)
    assert not [name for name, text in targets.items() if not text], "targets without ##"
    out = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    listed = {
        line.split()[0]: line.split(None, 1)[1] for line in out.splitlines() if line[:1] != " "
    }
    assert listed == targets


def test_the_ci_workflow_runs_existing_make_targets() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    targets = set(_targets())
    runs = [
        step["run"]
        for job in workflow["jobs"].values()
        for step in job["steps"]
        if step.get("run", "").startswith("make ")
    ]
    named = {word for run in runs for word in re.sub(r"\$\{\{.*?\}\}", "", run).split()[1:]}
    matrix = workflow["jobs"]["test"]["strategy"]["matrix"]["target"]
    assert named | set(matrix) <= targets
    assert {"lint", "typecheck", "test-unit", "test-e2e"} <= named | set(matrix)
