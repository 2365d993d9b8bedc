"""Shared fixtures: a real redis-server on a free loopback port, the real embedding model."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn

from cachefleet_node.config import NodeConfig, load_node_config
from cachefleet_node.demo.stub_upstream import create_stub_app
from cachefleet_node.embedders.base import Embedder
from cachefleet_node.embedders.local import OnnxEmbedder, OnnxModel
from cachefleet_node.runtime import NodeRuntime
from cachefleet_node.server.app import create_app
from embedding_service import EmbeddingService, serving

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# Generous deadlines so a busy CI machine never turns a test's lookup into a bypass; the
# fail-open tests set tight ones on purpose.
TEST_DEADLINES = {"redis_ms": 1000, "milvus_ms": 3000, "embedder_ms": 3000}


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def _spawn_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    assert binary is not None
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--maxmemory",
            "256mb",
            "--maxmemory-policy",
            "volatile-lru",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"redis-server did not start on port {port}")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server for one test."""
    require(
        shutil.which("redis-server") is not None, "redis-server not installed (make system-deps)"
    )
    port = free_port()
    server = RedisServer(port=port, process=_spawn_redis(port, tmp_path), workdir=tmp_path)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The all-MiniLM-L6-v2 ONNX model directory from CACHEFLEET_EMBEDDING_MODEL_DIR."""
    value = os.environ.get("CACHEFLEET_EMBEDDING_MODEL_DIR")
    require(bool(value), "CACHEFLEET_EMBEDDING_MODEL_DIR is not set")
    path = Path(str(value))
    require((path / "onnx" / "model.onnx").is_file(), f"no onnx/model.onnx under {path}")
    return path


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


@pytest_asyncio.fixture(scope="session")
async def stub() -> AsyncIterator[Stub]:
    """One stub upstream for the session; reset before each test by `node`."""
    server = InProcessServer(create_stub_app())
    await server.start()
    async with httpx.AsyncClient(timeout=30) as client:
        yield Stub(url=server.url, client=client)
    await server.stop()


@dataclass
class MilvusServer:
    """A Milvus Lite gRPC server process shared by the session's nodes."""

    uri: str
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusServer]:
    """`milvus-lite server` on a free port; tests isolate by collection prefix."""
    binary = Path(sys.executable).with_name("milvus-lite")
    require(binary.exists(), "milvus-lite is not installed in the virtualenv (make venv)")
    port = free_port()
    data = tmp_path_factory.mktemp("milvus")
    process = subprocess.Popen(
        [
            str(binary),
            "server",
            "--data-dir",
            str(data),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail("milvus-lite server did not start")
            time.sleep(0.1)
    yield MilvusServer(uri=f"http://127.0.0.1:{port}", process=process)
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def onnx_model(model_dir: Path) -> OnnxModel:
    """The real model, loaded once for the whole session."""
    return OnnxModel.load(model_dir)


@pytest.fixture
def service(onnx_model: OnnxModel) -> Iterator[tuple[EmbeddingService, str]]:
    server = EmbeddingService(onnx_model)
    with serving(server) as url:
        yield server, url
        server.release.set()


@pytest_asyncio.fixture(scope="session")
async def embedder(onnx_model: OnnxModel) -> AsyncIterator[Embedder]:
    """The real all-MiniLM-L6-v2 ONNX embedder, loaded once."""
    instance = OnnxEmbedder(onnx_model, "sentence-transformers/all-MiniLM-L6-v2", batch_size=32)
    yield instance
    await instance.aclose()


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

    async def embed(self, texts: Any) -> Any:
        return await self._inner.embed(texts)

    async def aclose(self) -> None:
        return None


NodeFactory = Callable[..., Awaitable[Node]]


@pytest_asyncio.fixture
async def node_factory(
    tmp_path: Path, stub: Stub, embedder: Embedder, milvus_server: MilvusServer
) -> AsyncIterator[NodeFactory]:
    """Start cache nodes with config overrides; all stopped after the test.

    By default nodes share the session's Milvus Lite server under a collection prefix unique
    to the test; pass `{"milvus": {"uri": None}}` for the embedded Milvus Lite file.
    """
    await stub.reset()
    started: list[Node] = []
    collection_prefix = "t" + uuid.uuid4().hex[:12]

    async def start(
        overrides: dict[str, Any] | None = None,
        *,
        shared_embedder: bool = True,
        environ: dict[str, str] | None = None,
    ) -> Node:
        data: dict[str, Any] = {
            "data_dir": str(tmp_path / f"node{len(started)}"),
            "upstream": {"base_url": stub.base_url},
            "milvus": {"uri": milvus_server.uri, "collection_prefix": collection_prefix},
            "deadlines": TEST_DEADLINES,
        }
        data.update(overrides or {})
        env = {
            "CACHEFLEET_EMBEDDING_MODEL_DIR": os.environ.get("CACHEFLEET_EMBEDDING_MODEL_DIR", "")
        }
        env.update(environ or {})
        config = load_node_config(overrides=data, environ=env)
        runtime = NodeRuntime(config)
        await runtime.start(_NonClosingEmbedder(embedder) if shared_embedder else None)
        server = InProcessServer(create_app(config, runtime=runtime))
        await server.start()
        client = httpx.AsyncClient(base_url=server.url, timeout=30)
        node = Node(runtime=runtime, server=server, client=client)
        started.append(node)
        return node

    yield start
    for node in started:
        await node.client.aclose()
        await node.server.stop()
        await node.runtime.close()


@pytest_asyncio.fixture
async def node(node_factory: NodeFactory) -> Node:
    """A node on embedded defaults (no Redis, Milvus Lite file) in front of the stub."""
    return await node_factory()


__all__ = ["IN_CI", "Node", "NodeConfig", "RedisServer", "Stub", "free_port", "require"]


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
    import yaml

    port = free_port()
    config = {**config, "server": {"host": "127.0.0.1", "port": port}, "node_id": name}
    config.setdefault("data_dir", str(workdir / name))
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    log_path = workdir / f"{name}.log"
    binary = Path(sys.executable).with_name("cachefleet-node")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(binary), "serve", "--config", str(path)], stdout=log, stderr=subprocess.STDOUT
        )
    return NodeProcess(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)


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
