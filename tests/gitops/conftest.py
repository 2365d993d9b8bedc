"""The `kstatus` fixture: the real kstatus library (Go), built once per cache key.

Without Go or the Go module proxy the tests that use it skip with the reason, except with
CI=true, where they fail: the kstatus matrix is an acceptance test, never skipped in CI.
"""

from __future__ import annotations

import os

import pytest
from kstatus_tool import KStatus, required


@pytest.fixture(scope="session")
def kstatus() -> KStatus:
    return required(in_ci=os.environ.get("CI", "").lower() == "true")
