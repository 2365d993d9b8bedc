"""HTTP client for the cache nodes' API: `/v1/cache/stats`, `/readyz`, `/v1/cache/invalidate`."""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["NodeClient", "NodeError"]


class NodeError(RuntimeError):
    """A node could not be reached or answered with an error."""


class NodeClient:
    """Talks to cache nodes by base URL (`http://10.1.2.3:8080`)."""

    def __init__(self, *, timeout: float = 5.0) -> None:
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
    ) -> Any:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        try:
            response = await self._client.request(method, url, json=body, headers=headers)
        except httpx.HTTPError as error:
            raise NodeError(f"{method} {url}: {type(error).__name__}: {error}") from error
        if response.status_code >= 400 and response.status_code not in accept_statuses:
            raise NodeError(f"{method} {url}: HTTP {response.status_code}: {response.text[:300]}")
        try:
            return response.json()
        except ValueError as error:
            raise NodeError(f"{method} {url}: not JSON") from error

    async def stats(self, base_url: str) -> dict[str, Any]:
        """Counters per cache namespace (node and fleet), entries, tier flags."""
        result: dict[str, Any] = await self._call("GET", f"{base_url}/v1/cache/stats")
        return result

    async def readiness(self, base_url: str) -> dict[str, Any]:
        """`/readyz`: `{"status": "ready", "tiers": {...}}` (or `starting`, with HTTP 503)."""
        result: dict[str, Any] = await self._call(
            "GET", f"{base_url}/readyz", accept_statuses=(503,)
        )
        return result

    async def invalidate(
        self, base_url: str, namespace: str, *, api_key: str | None = None
    ) -> dict[str, Any]:
        """Purge one cache namespace on every tier and every node's L1 (admin key if auth)."""
        result: dict[str, Any] = await self._call(
            "POST",
            f"{base_url}/v1/cache/invalidate",
            body={"namespace": namespace},
            api_key=api_key,
        )
        return result
