"""Every line a node writes is one JSON object (issue 14, point 10), third-party loggers
included: pymilvus installs plain-text handlers of its own that do not propagate."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from node_harness import Stub, spawn_node, wait_ready

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


async def test_a_node_log_is_json_and_names_a_client_that_left(
    tmp_path: Path, stub: Stub, model_dir: Path
) -> None:
    node = spawn_node(
        {"upstream": {"base_url": stub.base_url}, "embedding": {"model_dir": str(model_dir)}},
        tmp_path,
        "logged",
    )
    try:
        await wait_ready(node)
        address = urlsplit(node.url)
        _, writer = await asyncio.open_connection(address.hostname, address.port)
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: node\r\n"
            b"content-type: application/json\r\ncontent-length: 1000\r\n\r\n" + b'{"model": '
        )
        await writer.drain()
        await asyncio.sleep(0.5)
        writer.close()  # the client leaves half-way through its upload
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.post(
                f"{node.url}/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            )
        assert answer.status_code == 200
        await asyncio.sleep(0.5)
    finally:
        node.stop()
    records = [json.loads(line) for line in node.log_path.read_text().splitlines() if line]
    events = [record["event"] for record in records]
    assert "client_disconnected" in events
    assert "unhandled_error" not in events


async def test_a_node_log_holds_no_caller_or_upstream_key(
    tmp_path: Path, stub: Stub, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant_key, wrong_key, upstream_key = "sk-tenant-acme", "sk-wrong-caller", "sk-node-upstream"
    monkeypatch.setenv("CACHEFLEET_UPSTREAM_API_KEY", upstream_key)  # inherited by the node
    node = spawn_node(
        {
            "upstream": {"base_url": stub.base_url},
            "embedding": {"model_dir": str(model_dir)},
            "auth": {
                "api_keys": [
                    {
                        "tenant": "acme",
                        "key_sha256": hashlib.sha256(tenant_key.encode()).hexdigest(),
                    }
                ]
            },
            "logging": {"level": "debug", "log_prompts": True},
        },
        tmp_path,
        "keyed",
    )
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    try:
        await wait_ready(node)
        async with httpx.AsyncClient(base_url=node.url, timeout=30) as client:
            for key, status in ((tenant_key, 200), (wrong_key, 401)):
                headers = {"authorization": f"Bearer {key}"}
                answer = await client.post("/v1/chat/completions", json=body, headers=headers)
                assert answer.status_code == status
                assert (await client.get("/v1/models", headers=headers)).status_code == status
    finally:
        node.stop()
    log = node.log_path.read_text()
    assert '"event": "request"' in log  # the request was logged, at debug level
    for key in (tenant_key, wrong_key, upstream_key):
        assert key not in log
