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

from cachefleet_contract.admin import (
    EmbeddingSpaces,
    EmbeddingSwitchRequest,
    ReembedRequest,
    ReembedResult,
    WarmRequest,
)
from cachefleet_node.core.errors import RequestError
from cachefleet_node.lifecycle import NoMigrationError, reembed_batch
from cachefleet_node.server.common import (
    openapi_body,
    parse_body,
    require_admin,
    runtime_of,
    unavailable,
)
from cachefleet_node.server.http import model_response
from cachefleet_node.server.warm import warm_batch
from cachefleet_node.spaces import UnknownSpaceError

__all__ = ["router"]

router = APIRouter(prefix="/v1/cache", tags=["lifecycle"])
log = structlog.get_logger(__name__)


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
    return model_response(result)


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
    target = engine.spaces.target
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
    return model_response(
        ReembedResult(
            processed=result.processed,
            next_cursor=result.next_cursor,
            total=total,
            done=result.done,
        )
    )


@router.get("/embedding")
async def embedding(http_request: Request) -> Response:
    """The embedding space serving lookups (`active`) and the migration's other one (`next`):
    each `{model_id, space, collection}`; `next` is null without a migration. With tenant
    keys, admin only."""
    runtime = runtime_of(http_request)
    await require_admin(http_request, runtime, "reading the embedding spaces")
    return model_response(EmbeddingSpaces.model_validate(runtime.engine.spaces.describe()))


@router.post("/embedding/switch", openapi_extra=openapi_body(EmbeddingSwitchRequest))
async def switch_embedding(http_request: Request) -> Response:
    """Make `space` serve lookups on every node (persisted, broadcast; idempotent).

    409 `unknown_space` when this node has no embedder for `space`.
    """
    runtime = runtime_of(http_request)
    await require_admin(http_request, runtime, "switching the embedding space")
    payload = await parse_body(http_request, runtime, EmbeddingSwitchRequest)
    try:
        await runtime.fleet.switch_embedding(payload.space)
    except UnknownSpaceError as exc:
        known = ", ".join(s.space for s in runtime.engine.spaces.all())
        raise RequestError(
            409,
            f"this node has no embedding space '{payload.space}' (it has: {known}); configure "
            "the target model as embedding_next first",
            param="space",
            code="unknown_space",
        ) from exc
    except Exception as exc:
        raise unavailable("the embedding switch", exc) from exc
    return model_response(EmbeddingSpaces.model_validate(runtime.engine.spaces.describe()))
