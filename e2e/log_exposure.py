"""No credential in any log line (issue 14): a pytest plugin that scans every log the suite makes.

The harnesses `record_log` each process log they create (cache nodes, the operator, the stub,
Milvus Lite); each test's captured output (in-process nodes' structlog lines, stdlib
logging) is scanned as its report comes in, the files when the session ends. A hit fails the
session with the file (or test) and line. Most keys the suite hands out are `sk-…`; the others
are listed in `_secrets` or added with `register_secret` by the harness that uses them.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

CREDENTIAL = re.compile(r"(?<![\w-])sk-[A-Za-z0-9][\w-]*")

# keys outside the `sk-` convention in test files (tests/test_lifecycle_node.py,
# e2e/test_operator_invalidation.py); `key-` alone would match the node's reason codes
_secrets: set[str] = {"key-acme", "key-globex", "key-ops", "key-team-a", "key-team-b"}
_logs: set[Path] = set()
_hits: list[str] = []


def register_secret(value: str) -> None:
    """Treat `value` as a credential too (for a key outside the `sk-` convention)."""
    _secrets.add(value)


def record_log(path: Path) -> None:
    """Scan the log file at `path` when the session ends."""
    _logs.add(path)


def find_credentials(text: str, where: str) -> list[str]:
    """`where:line: credential` for each line of `text` that holds a credential."""
    found: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        matches = CREDENTIAL.findall(line) + [secret for secret in _secrets if secret in line]
        found.extend(f"{where}:{number}: {match}" for match in matches)
    return found


def scan_logs(paths: set[Path]) -> list[str]:
    """The credentials in the log files at `paths` (those that exist)."""
    found: list[str] = []
    for path in sorted(paths):
        if path.is_file():
            found.extend(find_credentials(path.read_text(errors="replace"), str(path)))
    return found


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Scan a test phase's captured stdout, stderr and log records (earlier phases' sections
    come again in later reports, so only this phase's)."""
    for section, text in report.sections:
        if section.startswith("Captured") and section.endswith(report.when):
            _hits.extend(find_credentials(text, f"{report.nodeid} [{section}]"))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Fail the session if a credential reached any log."""
    hits = _hits + scan_logs(_logs)
    if not hits:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = "credentials found in logs (issue 14):\n" + "\n".join(hits)
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_sep("=", "CREDENTIAL IN LOG", red=True, bold=True)
        reporter.write_line(message)
    else:
        print(message)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def install(config: pytest.Config) -> None:
    """Register this plugin once per session (the tests/ and e2e/ conftests both call this)."""
    if not config.pluginmanager.has_plugin("log_exposure"):
        config.pluginmanager.register(sys.modules[__name__], "log_exposure")
