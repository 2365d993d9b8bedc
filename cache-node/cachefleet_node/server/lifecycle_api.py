"""Model-version lifecycle API for the operator (admin only).

- `POST /v1/cache/warm`: replay the most-hit requests of a retired namespace into the active
  one, one batch at a time.
- `POST /v1/cache/reembed`: copy stored prompts into the migration's next embedding space.
- `GET /v1/cache/embedding`, `POST /v1/cache/embedding/switch`: which embedding space serves
  lookups; switch every node to the other one.

Every call is one bounded, idempotent batch; the caller (the operator) keeps the progress
(`next_offset`, `next_cursor`) and resumes from it after a restart of either side.
"""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import Field

from cachefleet_node.config import Identifier
from cachefleet_node.core.errors import RequestError
from cachefleet_node.engine import UnknownSpaceError
from cachefleet_node.lifecycle import NoMigrationError, reembed_batch
from cachefleet_node.server.common import (
    StrictBody,
    openapi_body,
    parse_body,
    require_admin,
    runtime_of,
    unavailable,
)
from cachefleet_node.server.http import json_response
from cachefleet_node.server.warm import warm_batch

__all__ = ["router"]

router = APIRouter(prefix="/v1/cache", tags=["lifecycle"])
log = structlog.get_logger(__name__)


class WarmRequest(StrictBody):
    """Replay ranking positions [offset, offset+limit) of `from_namespace` into `name`."""

    from_namespace: Identifier = Field(description="Cache namespace to take the requests from.")
    name: Identifier = Field(
        description="Configured namespace to refill (its active cache namespace is written)."
    )
    offset: int = Field(
        ge=0, le=2**31, description="First position in the ranking by hits (0: top)."
    )
    limit: int = Field(ge=1, le=500, description="Positions to process in this batch.")
    rate_per_s: float | None = Field(
        None, gt=0, description="Most upstream calls started per second within the batch."
    )


class ReembedRequest(StrictBody):
    """Embed about `limit` stored prompts of `namespace` from `cursor` into the next space."""

    namespace: Identifier = Field(description="Cache namespace whose prompts are re-embedded.")
    cursor: str = Field(
        max_length=512, description='Opaque cursor from the previous batch; "" starts.'
    )
    limit: int = Field(ge=1, le=1000, description="Entries to read in this batch (a target).")


class EmbeddingSwitchRequest(StrictBody):
    """Make an embedding space serve lookups on every node."""

    space: str = Field(min_length=1, max_length=128, description="Space id (see GET embedding).")


@router.post("/warm", openapi_extra=openapi_body(WarmRequest))
async def warm(http_request: Request) -> Response:
    """Refill `name`'s active cache namespace from the most-hit requests of `from_namespace`.

    409 `upstream_key_missing` when the node has no upstream credential of its own.
    """
    runtime = runtime_of(http_request)
    await require_admin(http_request, runtime, "warming a namespace")
    payload = await parse_body(http_request, runtime, WarmRequest)
    ns = runtime.engine.router.get(payload.name)
    if ns is None:
        raise RequestError(
            404, f"no configured namespace '{payload.name}'", param="name", code="not_found"
        )
    if not runtime.upstream.has_api_key:
        raise RequestError(
            409,
            "warming replays stored requests upstream with the node's own credential, and "
            f"none is set: put the upstream API key in ${runtime.config.upstream.api_key_env} "
            "(upstream.api_key_env)",
            code="upstream_key_missing",
        )
    try:
        result = await warm_batch(
            runtime,
            from_namespace=payload.from_namespace,
            ns=ns,
            offset=payload.offset,
            limit=payload.limit,
            rate_per_s=payload.rate_per_s,
        )
    except Exception as exc:
        raise unavailable(f"warming from '{payload.from_namespace}'", exc) from exc
    return json_response(
        {
            "processed": result.processed,
            "stored": result.stored,
            "skipped": result.skipped,
            "failed": result.failed,
            "next_offset": result.next_offset,
            "total": result.total,
            "done": result.done,
        }
    )


@router.post("/reembed", openapi_extra=openapi_body(ReembedRequest))
async def reembed(http_request: Request) -> Response:
    """Embed stored prompts of a namespace with the next embedding model into its collection.

    409 `no_embedding_next` when the node has no `embedding_next`.
    """
    runtime = runtime_of(http_request)
    await require_admin(http_request, runtime, "re-embedding")
    payload = await parse_body(http_request, runtime, ReembedRequest)
    engine = runtime.engine
    try:
        result = await reembed_batch(engine, payload.namespace, payload.cursor, payload.limit)
        total = await engine.store.count(payload.namespace)
    except NoMigrationError as exc:
        raise RequestError(
            409,
            "re-embedding needs a migration target: this node has no embedding_next configured",
            code="no_embedding_next",
        ) from exc
    except ValueError as exc:
        raise RequestError(
            400,
            "invalid value for 'cursor': not a cursor returned by this cache's re-embedding",
            param="cursor",
            code="invalid_value",
        ) from exc
    except Exception as exc:
        raise unavailable(f"re-embedding '{payload.namespace}'", exc) from exc
    target = engine.target_space
    rate = result.processed / result.seconds if result.seconds > 0 else 0.0
    log.info(
        "reembed_batch",
        namespace=payload.namespace,
        space=None if target is None else target.space,
        processed=result.processed,
        embedded=result.embedded,
        total=total,
        done=result.done,
        duration_s=round(result.seconds, 3),
        entries_per_s=round(rate, 1),
    )
    return json_response(
        {
            "processed": result.processed,
            "next_cursor": result.next_cursor,
            "total": total,
            "done": result.done,
        }
    )


@router.get("/embedding")
async def embedding(http_request: Request) -> Response:
    """The embedding space serving lookups (`active`) and the migration's other one (`next`):
    each `{model_id, space, collection}`; `next` is null without a migration. With tenant
    keys, admin only."""
    runtime = runtime_of(http_request)
    await require_admin(http_request, runtime, "reading the embedding spaces")
    return json_response(runtime.engine.describe_embedding())


@router.post("/embedding/switch", openapi_extra=openapi_body(EmbeddingSwitchRequest))
async def switch_embedding(http_request: Request) -> Response:
    """Make `space` serve lookups on every node (persisted, broadcast; idempotent).

    409 `unknown_space` when this node has no embedder for `space`.
    """
    runtime = runtime_of(http_request)
    await require_admin(http_request, runtime, "switching the embedding space")
    payload = await parse_body(http_request, runtime, EmbeddingSwitchRequest)
    try:
        await runtime.switch_embedding(payload.space)
    except UnknownSpaceError as exc:
        known = ", ".join(s.space for s in runtime.spaces())
        raise RequestError(
            409,
            f"this node has no embedding space '{payload.space}' (it has: {known}); configure "
            "the target model as embedding_next first",
            param="space",
            code="unknown_space",
        ) from exc
    except Exception as exc:
        raise unavailable("the embedding switch", exc) from exc
    return json_response(runtime.engine.describe_embedding())
