"""The credential scanner that checks every log of the suite (issue 14) finds what it must."""

from __future__ import annotations

from pathlib import Path

from log_exposure import find_credentials, register_secret, scan_logs


def test_the_scanner_names_file_and_line_of_each_credential(tmp_path: Path) -> None:
    register_secret("plain-password-42")
    log = tmp_path / "node.log"
    log.write_text(
        '{"event": "node_started", "upstream": "http://127.0.0.1:1/v1"}\n'
        '{"event": "request", "authorization": "Bearer sk-acme-test"}\n'
        '{"event": "redis", "url": "redis://:plain-password-42@127.0.0.1:6379/0"}\n'
        '{"event": "converge", "admin": "key-ops"}\n'
    )
    assert scan_logs({log, tmp_path / "never-written.log"}) == [
        f"{log}:2: sk-acme-test",
        f"{log}:3: plain-password-42",
        f"{log}:4: key-ops",
    ]


def test_the_scanner_leaves_reason_codes_and_words_containing_sk_alone() -> None:
    text = "risk-based task-queue api-key reasons=['key-rejected'] desk-sk-top sk- keys-total"
    assert find_credentials(text, "line") == []
