"""Fixtures of the client matrix: the independent OpenAI stub and a node in front of it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from openai_stub import OpenAIStub

from node_harness import InProcessServer, Node, NodeFactory


@pytest_asyncio.fixture
async def openai_stub() -> AsyncIterator[tuple[OpenAIStub, str]]:
    """A fresh stub per test (its counters start at zero) and its `/v1` URL."""
    stub = OpenAIStub()
    server = InProcessServer(stub.app)
    await server.start()
    yield stub, f"{server.url}/v1"
    await server.stop()


@pytest_asyncio.fixture
async def matrix_node(node_factory: NodeFactory, openai_stub: tuple[OpenAIStub, str]) -> Node:
    """A node on embedded defaults (no tenant keys) whose upstream is the stub."""
    return await node_factory({"upstream": {"base_url": openai_stub[1]}})
