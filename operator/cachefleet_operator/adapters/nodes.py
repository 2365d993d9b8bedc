"""HTTP client for the cache nodes' API: stats, readiness, and the admin routes of the
model-version lifecycle (namespaces, switch, invalidate, warm, re-embed, embedding switch).

Requests and answers are the contract's models (`cachefleet_contract.admin`); an answer that
does not fit its model is a `NodeError`. With tenants configured, the admin routes need an
admin tenant's key (`api_key`).
"""

from __future__ import annotations

from typing import TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from cachefleet_contract.admin import (
    ActiveNamespaces,
    EmbeddingSpaces,
    EmbeddingSwitchRequest,
    InvalidateRequest,
    InvalidateResult,
    NamespacesReport,
    Readiness,
    ReembedRequest,
    ReembedResult,
    StatsReport,
    SwitchRequest,
    WarmRequest,
    WarmResult,
)

__all__ = ["NodeClient", "NodeError"]

Answer = TypeVar("Answer", bound=BaseModel)


class NodeError(RuntimeError):
    """A node could not be reached (`status` None) or answered with an error."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


def _error_code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = error.get("code")
        return str(code) if code is not None else None
    return None


class NodeClient:
    """Talks to cache nodes by base URL (`http://10.1.2.3:8080`)."""

    def __init__(self, *, timeout: float = 5.0) -> None:
        self._timeout = timeout
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            trust_env=False,  # node traffic stays in the cluster: never through an env proxy
            headers={"User-Agent": "cachefleet-operator"},
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(
        self,
        method: str,
        url: str,
        answer: type[Answer],
        *,
        body: BaseModel | None = None,
        api_key: str | None = None,
        accept_statuses: tuple[int, ...] = (),
        time_limit: float | None = None,
    ) -> Answer:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        try:
            response = await self._client.request(
                method,
                url,
                json=None if body is None else body.model_dump(mode="json", exclude_defaults=True),
                headers=headers,
                timeout=httpx.Timeout(time_limit)
                if time_limit is not None
                else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.HTTPError as error:
            raise NodeError(f"{method} {url}: {type(error).__name__}: {error}") from error
        if response.status_code >= 400 and response.status_code not in accept_statuses:
            raise NodeError(
                f"{method} {url}: HTTP {response.status_code}: {response.text[:300]}",
                status=response.status_code,
                code=_error_code(response),
            )
        try:
            return answer.model_validate_json(response.content)
        except ValidationError as error:
            raise NodeError(
                f"{method} {url}: not a {answer.__name__}: {error.errors()[0]['msg']}",
                status=response.status_code,
            ) from error

    async def stats(self, base_url: str, *, api_key: str | None = None) -> StatsReport:
        """Counters per cache namespace (node and fleet), entries, tier flags (with tenants,
        an admin key)."""
        return await self._call("GET", f"{base_url}/v1/cache/stats", StatsReport, api_key=api_key)

    async def readiness(self, base_url: str) -> Readiness:
        """`/readyz`: `ready` with the tiers (or `starting`, with HTTP 503)."""
        return await self._call("GET", f"{base_url}/readyz", Readiness, accept_statuses=(503,))

    async def invalidate(
        self,
        base_url: str,
        request: InvalidateRequest,
        *,
        api_key: str | None = None,
        time_limit: float | None = None,
    ) -> InvalidateResult:
        """Remove (or with `dry_run` count) entries on every tier and every node's L1.
        `retired_only`: refused (409 `namespace_active`) while any configured namespace uses
        the namespace. `deleting_cache`: the cache is being deleted; the node also drops the
        fleet's state keys."""
        return await self._call(
            "POST",
            f"{base_url}/v1/cache/invalidate",
            InvalidateResult,
            body=request,
            api_key=api_key,
            time_limit=time_limit,
        )

    async def namespaces(self, base_url: str, *, api_key: str | None = None) -> NamespacesReport:
        """The active cache namespace of each configured one, the embedding spaces, entries."""
        return await self._call(
            "GET", f"{base_url}/v1/cache/namespaces", NamespacesReport, api_key=api_key
        )

    async def switch_namespace(
        self, base_url: str, name: str, namespace: str, *, api_key: str | None = None
    ) -> ActiveNamespaces:
        """Point configured namespace `name` at `namespace` on every node sharing the Redis."""
        return await self._call(
            "POST",
            f"{base_url}/v1/cache/namespaces/switch",
            ActiveNamespaces,
            body=SwitchRequest(name=name, namespace=namespace),
            api_key=api_key,
        )

    async def warm(
        self,
        base_url: str,
        request: WarmRequest,
        *,
        api_key: str | None = None,
        time_limit: float | None = None,
    ) -> WarmResult:
        """Replay a batch of the old namespace's most-hit prompts through the upstream into the
        active namespace of `request.name`."""
        return await self._call(
            "POST",
            f"{base_url}/v1/cache/warm",
            WarmResult,
            body=request,
            api_key=api_key,
            time_limit=time_limit,
        )

    async def reembed(
        self,
        base_url: str,
        request: ReembedRequest,
        *,
        api_key: str | None = None,
        time_limit: float | None = None,
    ) -> ReembedResult:
        """Embed a batch of stored prompts into the next space."""
        return await self._call(
            "POST",
            f"{base_url}/v1/cache/reembed",
            ReembedResult,
            body=request,
            api_key=api_key,
            time_limit=time_limit,
        )

    async def embedding(self, base_url: str, *, api_key: str | None = None) -> EmbeddingSpaces:
        """The embedding space serving lookups and the migration's next one."""
        return await self._call(
            "GET", f"{base_url}/v1/cache/embedding", EmbeddingSpaces, api_key=api_key
        )

    async def switch_embedding(
        self, base_url: str, space: str, *, api_key: str | None = None
    ) -> EmbeddingSpaces:
        """Make `space` serve lookups on every node (persisted, coherent)."""
        return await self._call(
            "POST",
            f"{base_url}/v1/cache/embedding/switch",
            EmbeddingSpaces,
            body=EmbeddingSwitchRequest(space=space),
            api_key=api_key,
        )
