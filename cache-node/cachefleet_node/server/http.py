"""HTTP helpers shared by the routes: bounded body reads, JSON responses, error handlers."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from cachefleet_node.core.errors import RequestError, error_body

__all__ = ["install_error_handlers", "json_response", "model_response", "read_body"]

log = structlog.get_logger(__name__)


def json_response(
    content: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON response serialised with orjson."""
    return Response(
        orjson.dumps(content),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )


def model_response(model: BaseModel, status_code: int = 200) -> Response:
    """A JSON response holding a model of the admin contract (`cachefleet_contract.admin`)."""
    return json_response(model.model_dump(mode="json"), status_code=status_code)


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The request body; 413 as soon as it exceeds `limit` bytes, 408 if it has not arrived
    within `timeout_s` (an upload that never ends must not hold a connection)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(
            413, f"request body exceeds the {limit}-byte limit", code="request_too_large"
        )
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise RequestError(
                        413,
                        f"request body exceeds the {limit}-byte limit",
                        code="request_too_large",
                    )
                chunks.append(chunk)
    except TimeoutError:
        raise RequestError(
            408,
            f"the request body did not arrive within {timeout_s:g}s",
            code="request_timeout",
        ) from None
    return b"".join(chunks)


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as an OpenAI-style JSON body; internals never leak."""

    @app.exception_handler(RequestError)
    async def _request_error(_: Request, exc: RequestError) -> Response:
        return json_response(exc.body(), exc.status)

    @app.exception_handler(ClientDisconnect)
    async def _client_left(request: Request, _: ClientDisconnect) -> Response:
        # Not an error of the node: the client went away while sending its request.
        log.info("client_disconnected", path=request.url.path)
        return Response(status_code=499)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return json_response(
            error_body(str(exc.detail), "invalid_request_error", None, code), exc.status_code
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled_error", path=request.url.path, error=type(exc).__name__, exc_info=exc)
        return json_response(
            error_body("internal error in the cache node", "server_error", None, "internal_error"),
            500,
        )
