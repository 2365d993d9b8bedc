"""Shared fixtures: real redis-server, Milvus Lite, the real model, the stub upstream, nodes."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

import log_exposure
from cachefleet_bench.servers import spawn_milvus, stop
from cachefleet_node.config import load_node_config
from cachefleet_node.demo.stub_upstream import create_stub_app
from cachefleet_node.embedders.base import Embedder
from cachefleet_node.embedders.local import OnnxEmbedder, OnnxModel
from cachefleet_node.runtime import NodeRuntime
from cachefleet_node.server.app import create_app
from embedding_service import EmbeddingService, serving
from node_harness import (
    TEST_DEADLINES,
    InProcessServer,
    MilvusServer,
    Node,
    NodeFactory,
    NodeProcess,
    RedisServer,
    Stub,
    _NonClosingEmbedder,
    _spawn_redis,
    free_port,
    require,
    spawn_node,
    wait_ready,
)


def pytest_configure(config: pytest.Config) -> None:
    """Scan every log of the session for credentials (issue 14)."""
    log_exposure.install(config)


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


@pytest_asyncio.fixture(scope="session")
async def stub() -> AsyncIterator[Stub]:
    """One stub upstream for the session; reset before each test by `node`."""
    server = InProcessServer(create_stub_app())
    await server.start()
    async with httpx.AsyncClient(timeout=30) as client:
        yield Stub(url=server.url, client=client)
    await server.stop()


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusServer]:
    """`milvus-lite server` on a free port; tests isolate by collection prefix."""
    require(
        Path(sys.executable).with_name("milvus-lite").exists(),
        "milvus-lite is not installed in the virtualenv (make venv)",
    )
    port = free_port()
    process = spawn_milvus(port, tmp_path_factory.mktemp("milvus"))
    yield MilvusServer(uri=f"http://127.0.0.1:{port}", process=process)
    stop(process)


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


@pytest_asyncio.fixture
async def node_pair(
    tmp_path: Path,
    redis_server: RedisServer,
    milvus_server: MilvusServer,
    stub: Stub,
    model_dir: Path,
) -> AsyncIterator[list[NodeProcess]]:
    """Two `cachefleet-node serve` processes sharing one Redis, one Milvus and the stub."""
    await stub.reset()
    config = {
        "upstream": {"base_url": stub.base_url},
        "redis": {"url": redis_server.url},
        "milvus": {"uri": milvus_server.uri, "collection_prefix": "p" + uuid.uuid4().hex[:10]},
        "embedding": {"model_dir": str(model_dir)},
        "namespaces": [{"name": "default"}],
        "deadlines": TEST_DEADLINES,
    }
    nodes = [spawn_node(config, tmp_path, name) for name in ("node-a", "node-b")]
    try:
        await asyncio.gather(*(wait_ready(n) for n in nodes))
        yield nodes
    finally:
        for n in nodes:
            n.stop()
