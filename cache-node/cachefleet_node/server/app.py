"""The node's ASGI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from cachefleet_node import __version__
from cachefleet_node.config import NodeConfig
from cachefleet_node.embedders.base import Embedder
from cachefleet_node.runtime import NodeRuntime
from cachefleet_node.server import (
    cache_api,
    embeddings,
    lifecycle_api,
    ops,
    passthrough,
    proxy,
    responses,
)
from cachefleet_node.server.http import install_error_handlers

__all__ = ["create_app", "create_metrics_app"]

DESCRIPTION = """\
Semantic cache node: an OpenAI-compatible proxy that answers repeated and paraphrased
requests from cache, plus a cache API for applications and the Cachefleet operator.

Every proxied response carries `x-cachefleet-cache` (`hit-exact`, `hit-semantic`, `miss`,
`bypass`; `partial` for an embeddings batch answered in part from cache),
`x-cachefleet-namespace`, and on hits `x-cachefleet-similarity`, `x-cachefleet-tier` and
`age`. Errors are OpenAI-style JSON objects naming the offending parameter.
"""


def create_app(
    config: NodeConfig, *, runtime: NodeRuntime | None = None, embedder: Embedder | None = None
) -> FastAPI:
    """Build the app around a runtime.

    Given a started `runtime`, the caller owns its life; otherwise the app's lifespan starts
    one (with `embedder` injected when given) and closes it.
    """
    owned = runtime is None
    node = runtime or NodeRuntime(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if owned:
            await node.start(embedder)
        try:
            yield
        finally:
            if owned:
                await node.close()

    app = FastAPI(
        title="Cachefleet cache node",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url=None,  # served by `ops`: behind the tenant keys when they are configured
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = node
    install_error_handlers(app)
    app.include_router(proxy.router)
    app.include_router(responses.router)
    app.include_router(embeddings.router)
    app.include_router(cache_api.router)
    app.include_router(lifecycle_api.router)
    app.include_router(ops.router)
    app.include_router(passthrough.router)  # last: every other /v1 route goes upstream
    return app


def create_metrics_app(runtime: NodeRuntime) -> FastAPI:
    """The app of the separate metrics listener (`server.metrics_port`): `/metrics` of
    `runtime` without a key, nothing else. The caller owns the runtime's life."""
    app = FastAPI(
        title="Cachefleet cache node metrics",
        version=__version__,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.include_router(ops.metrics_router)
    return app
