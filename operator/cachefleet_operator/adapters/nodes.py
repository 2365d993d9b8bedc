"""HTTP client for the cache nodes' API: stats, readiness, and the admin routes of the
model-version lifecycle (namespaces, switch, invalidate, warm, re-embed, embedding switch).

With tenants configured, the admin routes need an admin tenant's key (`api_key`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

__all__ = ["NodeClient", "NodeError"]


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
        *,
        body: Any = None,
        api_key: str | None = None,
        accept_statuses: tuple[int, ...] = (),
        time_limit: float | None = None,
    ) -> Any:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        try:
            response = await self._client.request(
                method,
                url,
                json=body,
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
            return response.json()
        except ValueError as error:
            raise NodeError(f"{method} {url}: not JSON", status=response.status_code) from error

    async def stats(self, base_url: str, *, api_key: str | None = None) -> dict[str, Any]:
        """Counters per cache namespace (node and fleet), entries, tier flags (with tenants,
        an admin key)."""
        result: dict[str, Any] = await self._call(
            "GET", f"{base_url}/v1/cache/stats", api_key=api_key
        )
        return result

    async def readiness(self, base_url: str) -> dict[str, Any]:
        """`/readyz`: `{"status": "ready", "tiers": {...}}` (or `starting`, with HTTP 503)."""
        result: dict[str, Any] = await self._call(
            "GET", f"{base_url}/readyz", accept_statuses=(503,)
        )
        return result

    async def invalidate(
        self,
        base_url: str,
        namespace: str,
        *,
        api_key: str | None = None,
        tenant: str | None = None,
        tags: Sequence[str] = (),
        older_than_s: float | None = None,
        dry_run: bool = False,
        retired_only: bool = False,
        similar_to: dict[str, Any] | None = None,
        time_limit: float | None = None,
        deleting_cache: bool = False,
    ) -> dict[str, Any]:
        """Remove (or with `dry_run` count) entries of one cache namespace on every tier and
        every node's L1. `retired_only`: refused (409 `namespace_active`) while any configured
        namespace uses it. `deleting_cache`: the cache is being deleted; the node also drops
        the fleet's state keys. Answers `{"dry_run", "tenant", "removed": {ns: {l1, store,
        vectors}}}`."""
        body: dict[str, Any] = {"namespace": namespace}
        if tenant is not None:
            body["tenant"] = tenant
        if tags:
            body["tags"] = list(tags)
        if older_than_s is not None:
            body["older_than_s"] = older_than_s
        if dry_run:
            body["dry_run"] = True
        if retired_only:
            body["retired_only"] = True
        if similar_to is not None:
            body["similar_to"] = similar_to
        if deleting_cache:
            body["deleting_cache"] = True
        result: dict[str, Any] = await self._call(
            "POST",
            f"{base_url}/v1/cache/invalidate",
            body=body,
            api_key=api_key,
            time_limit=time_limit,
        )
        return result

    async def namespaces(self, base_url: str, *, api_key: str | None = None) -> dict[str, Any]:
        """`{"active": {name: cache namespace}, "embedding": {...}, "entries": {ns: n}}`."""
        result: dict[str, Any] = await self._call(
            "GET", f"{base_url}/v1/cache/namespaces", api_key=api_key
        )
        return result

    async def switch_namespace(
        self, base_url: str, name: str, namespace: str, *, api_key: str | None = None
    ) -> dict[str, Any]:
        """Point configured namespace `name` at `namespace` on every node sharing the Redis."""
        result: dict[str, Any] = await self._call(
            "POST",
            f"{base_url}/v1/cache/namespaces/switch",
            body={"name": name, "namespace": namespace},
            api_key=api_key,
        )
        return result

    async def warm(
        self,
        base_url: str,
        *,
        from_namespace: str,
        name: str,
        offset: int,
        limit: int,
        rate_per_s: float,
        api_key: str | None = None,
        time_limit: float | None = None,
    ) -> dict[str, Any]:
        """Replay the old namespace's most-hit prompts (`offset`, `limit`) through the upstream
        into the active namespace of `name`: `{processed, stored, skipped, failed, next_offset,
        total, done}`."""
        result: dict[str, Any] = await self._call(
            "POST",
            f"{base_url}/v1/cache/warm",
            body={
                "from_namespace": from_namespace,
                "name": name,
                "offset": offset,
                "limit": limit,
                "rate_per_s": rate_per_s,
            },
            api_key=api_key,
            time_limit=time_limit,
        )
        return result

    async def reembed(
        self,
        base_url: str,
        *,
        namespace: str,
        cursor: str,
        limit: int,
        api_key: str | None = None,
        time_limit: float | None = None,
    ) -> dict[str, Any]:
        """Embed a batch of stored prompts into the next space: `{processed, next_cursor,
        total, done}`."""
        result: dict[str, Any] = await self._call(
            "POST",
            f"{base_url}/v1/cache/reembed",
            body={"namespace": namespace, "cursor": cursor, "limit": limit},
            api_key=api_key,
            time_limit=time_limit,
        )
        return result

    async def embedding(self, base_url: str, *, api_key: str | None = None) -> dict[str, Any]:
        """`{"active": {model_id, space, collection}, "next": {...} | null}`."""
        result: dict[str, Any] = await self._call(
            "GET", f"{base_url}/v1/cache/embedding", api_key=api_key
        )
        return result

    async def switch_embedding(
        self, base_url: str, space: str, *, api_key: str | None = None
    ) -> dict[str, Any]:
        """Make `space` serve lookups on every node (persisted, coherent)."""
        result: dict[str, Any] = await self._call(
            "POST",
            f"{base_url}/v1/cache/embedding/switch",
            body={"space": space},
            api_key=api_key,
        )
        return result
