"""Every line a node writes is one JSON object (issue 14, point 10), third-party loggers
included: pymilvus installs plain-text handlers of its own that do not propagate."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import logging
import pymilvus  # installs its own plain-text handlers
from cachefleet_node.logging_setup import configure_logging
configure_logging("info")
logging.getLogger("pymilvus").warning("pymilvus says %s", "hello")
try:
    raise RuntimeError("deadline exceeded")
except RuntimeError:
    logging.getLogger("pymilvus.milvus_client").exception("search failed")
logging.getLogger("some.library").error("plain stdlib")
"""


def test_third_party_log_lines_are_json_with_their_tracebacks_inside() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # fails on any line that is not JSON
    by_event = {record["event"]: record for record in records}
    assert by_event["pymilvus says hello"]["logger"] == "pymilvus"
    assert "RuntimeError: deadline exceeded" in by_event["search failed"]["exception"]
    assert by_event["plain stdlib"]["level"] == "error"
