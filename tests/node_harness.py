"""Test harness for the cache node: real servers (redis-server, Milvus Lite, nodes) on loopback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from cachefleet_bench import servers
from cachefleet_bench.servers import free_port
from cachefleet_bench.servers import spawn_redis as _spawn_redis
from cachefleet_node.embedders.base import Embedder
from cachefleet_node.runtime import NodeRuntime
from log_exposure import record_log

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


# Generous deadlines so a busy CI machine never turns a test's lookup into a bypass; the

# fail-open tests set tight ones on purpose.
TEST_DEADLINES = {"redis_ms": 1000, "milvus_ms": 3000, "embedder_ms": 3000}


def require(condition: bool, reason: str) -> None:
    """Skip with a printed reason, or fail in CI where every component must be present."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required component missing in CI: {reason}")
    pytest.skip(reason)


@dataclass
class RedisServer:
    """A redis-server process started by the tests."""

    port: int
    process: subprocess.Popen[bytes]
    workdir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def start_again(self) -> None:
        """Restart on the same port (after `stop`)."""
        self.process = _spawn_redis(self.port, self.workdir)


# --------------------------------------------------------------------------- node harness


class InProcessServer:
    """A uvicorn server for an ASGI app, running in the test event loop on a free port."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=self.port,
                log_config=None,
                access_log=False,
                lifespan="on",
            )
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            await self._task


@dataclass
class Stub:
    """The stub upstream (stand-in for a paid LLM API) and a client to steer it."""

    url: str
    client: httpx.AsyncClient

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    async def calls(self) -> int:
        return int((await self.client.get(f"{self.url}/_stub/stats")).json()["calls"])

    async def behave(self, **behaviour: Any) -> None:
        (await self.client.post(f"{self.url}/_stub/behaviour", json=behaviour)).raise_for_status()

    async def reset(self) -> None:
        (await self.client.post(f"{self.url}/_stub/reset")).raise_for_status()


@dataclass
class MilvusServer:
    """A Milvus Lite gRPC server process shared by the session's nodes."""

    uri: str
    process: subprocess.Popen[bytes]


@dataclass
class Node:
    """A cache node running in-process, with an HTTP client pointed at it."""

    runtime: NodeRuntime
    server: InProcessServer
    client: httpx.AsyncClient

    @property
    def url(self) -> str:
        return self.server.url

    async def chat(
        self,
        content: str | None = None,
        *,
        messages: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **fields: Any,
    ) -> httpx.Response:
        body: dict[str, Any] = {
            "model": fields.pop("model", "gpt-4o-mini"),
            "messages": messages or [{"role": "user", "content": content}],
        }
        body.update(fields)
        return await self.client.post("/v1/chat/completions", json=body, headers=headers or {})

    async def settle(self) -> None:
        """Wait until background write-backs are done."""
        await self.runtime.engine.drain()


class _NonClosingEmbedder:
    """Shares the session embedder with a node without letting the node close it."""

    def __init__(self, inner: Embedder) -> None:
        self._inner = inner
        self.model_id, self.dim, self.space = inner.model_id, inner.dim, inner.space

    async def embed(self, texts: Any, budget: Any = None) -> Any:
        return await self._inner.embed(texts, budget)

    async def aclose(self) -> None:
        return None


NodeFactory = Callable[..., Awaitable[Node]]


@dataclass
class NodeProcess:
    """A `cachefleet-node serve` subprocess."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def spawn_node(config: dict[str, Any], workdir: Path, name: str) -> NodeProcess:
    """Start a node process from a config dict (written as YAML); does not wait for it."""
    url, process, log_path = servers.spawn_node(config, workdir, name)
    record_log(log_path)
    return NodeProcess(url=url, process=process, log_path=log_path)


async def wait_ready(node: NodeProcess, timeout_s: float = 90.0) -> None:
    """Poll /readyz until the node answers 200."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if node.process.poll() is not None:
                pytest.fail(f"node exited early:\n{node.log_path.read_text()[-3000:]}")
            try:
                if (await client.get(f"{node.url}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    pytest.fail(f"node not ready after {timeout_s}s:\n{node.log_path.read_text()[-3000:]}")
