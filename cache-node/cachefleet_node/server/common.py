"""Helpers shared by the routes: runtime, caller, validated bodies, admin checks, who may read
cached answers."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, TypeAdapter, ValidationError

from cachefleet_contract.admin import StrictBody
from cachefleet_node.auth import Caller
from cachefleet_node.core.errors import RequestError
from cachefleet_node.core.request import decode_json_object
from cachefleet_node.core.validation import validation_error_to_request_error
from cachefleet_node.key_check import Rejection
from cachefleet_node.runtime import NodeRuntime
from cachefleet_node.server.http import read_body

__all__ = [
    "StrictBody",
    "caller_of",
    "may_read_hits",
    "openapi_body",
    "parse_body",
    "require_admin",
    "runtime_of",
    "unavailable",
]

M = TypeVar("M", bound=BaseModel)


def runtime_of(request: Request) -> NodeRuntime:
    """The node runtime behind the app."""
    runtime: NodeRuntime = request.app.state.runtime
    return runtime


def openapi_body(model: type[Any]) -> dict[str, Any]:
    """`openapi_extra` describing a JSON request body of type `model` (a pydantic model or
    a `TypedDict`; routes read bodies themselves). The schema's `$defs` are inlined: a
    `#/$defs/...` reference would point at the root of the OpenAPI document, where nothing is."""
    schema = TypeAdapter(model).json_schema()
    definitions = schema.pop("$defs", {})
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inlined(schema, definitions)}},
        }
    }


def _inlined(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        reference = node.get("$ref")
        if isinstance(reference, str) and reference.startswith("#/$defs/"):
            target = definitions[reference.removeprefix("#/$defs/")]
            rest = {key: value for key, value in node.items() if key != "$ref"}
            return {**_inlined(target, definitions), **_inlined(rest, definitions)}
        return {key: _inlined(value, definitions) for key, value in node.items()}
    if isinstance(node, list):
        return [_inlined(item, definitions) for item in node]
    return node


async def parse_body(request: Request, runtime: NodeRuntime, model: type[M]) -> M:
    """Read, decode and validate a JSON body; 400 naming the bad parameter."""
    server = runtime.config.server
    data = decode_json_object(
        await read_body(request, server.max_request_bytes, server.body_timeout_s)
    )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error_to_request_error(exc, data) from exc


async def caller_of(request: Request, runtime: NodeRuntime) -> Caller:
    """Who is calling (401 for a bad key when tenant keys are configured)."""
    return runtime.tenants.resolve(request.headers.get("authorization"))


async def require_admin(request: Request, runtime: NodeRuntime, action: str) -> Caller:
    """The caller, or 403 unless it holds an admin key."""
    caller = await caller_of(request, runtime)
    if not caller.admin:
        raise RequestError(
            403,
            f"{action} needs an admin key",
            code="forbidden",
            error_type="permission_error",
        )
    return caller


def unavailable(what: str, exc: BaseException) -> RequestError:
    """503 for an admin operation whose shared tier could not be reached."""
    return RequestError(
        503,
        f"{what} failed: a shared tier is unreachable ({type(exc).__name__}); "
        "nothing was reported as done, retry",
        code="tier_unavailable",
        error_type="server_error",
    )


async def may_read_hits(
    runtime: NodeRuntime, caller: Caller, authorization: str | None
) -> Rejection | bool:
    """Whether a cached answer may go to this caller: always with tenant keys (the key chose
    the tenant) or for a key-less shared cache; otherwise only to a credential the upstream
    accepts (`key_check.KeyVerdicts`): True, a `Rejection` to answer with, or False when
    undecided (the request then goes upstream)."""
    if not caller.forward_auth or runtime.config.auth.serve_hits_without_key_check:
        return True
    return await runtime.key_verdicts.check(authorization)
