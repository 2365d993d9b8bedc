"""`/healthz`, `/readyz` and `/metrics` of the operator process (aiohttp, which kopf ships)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

__all__ = ["ProbeServer"]


class ProbeServer:
    """Liveness, readiness (`ready` returns what keeps the process from being ready) and
    metrics on one port."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        alive: Callable[[], bool],
        ready: Callable[[], list[str]],
        metrics: Callable[[], bytes],
    ) -> None:
        self._host, self._port = host, port
        self._alive, self._ready, self._metrics = alive, ready, metrics
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def _healthz(self, _: web.Request) -> web.Response:
        ok = self._alive()
        return web.json_response({"status": "ok" if ok else "failing"}, status=200 if ok else 500)

    async def _readyz(self, _: web.Request) -> web.Response:
        problems = self._ready()
        if not problems:
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready", "problems": problems}, status=503)

    async def _metrics_view(self, _: web.Request) -> web.Response:
        response = web.Response(body=self._metrics())
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        response.charset = "utf-8"
        return response

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics_view)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
