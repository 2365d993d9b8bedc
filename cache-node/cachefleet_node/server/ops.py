"""Operational endpoints: Prometheus metrics and health probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cachefleet_contract.admin import MilvusHealth, Readiness, ReadinessTiers, StoreHealth
from cachefleet_node.runtime import NodeRuntime
from cachefleet_node.server.common import require_admin
from cachefleet_node.server.http import json_response, model_response

__all__ = ["metrics_router", "router"]

router = APIRouter(tags=["ops"])
#: `/metrics` without a key, for the separate metrics listener (`server.metrics_port`).
metrics_router = APIRouter(tags=["ops"])


def _runtime(request: Request) -> NodeRuntime:
    runtime: NodeRuntime = request.app.state.runtime
    return runtime


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus exposition of the node's metrics; with tenant keys configured, for the
    admin key only (they span every tenant): scrape `server.metrics_port` instead."""
    runtime = _runtime(request)
    await require_admin(request, runtime, "reading /metrics")
    return _exposition(runtime)


@metrics_router.get("/metrics")
async def open_metrics(request: Request) -> Response:
    """Prometheus exposition of the node's metrics (the metrics listener: no key)."""
    return _exposition(_runtime(request))


def _exposition(runtime: NodeRuntime) -> Response:
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/openapi.json", include_in_schema=False)
async def openapi(request: Request) -> Response:
    """The OpenAPI description; with tenant keys configured, for key holders only."""
    _runtime(request).tenants.resolve(request.headers.get("authorization"))
    return json_response(request.app.openapi())


@router.get("/docs", include_in_schema=False)
async def docs(request: Request) -> HTMLResponse:
    """Swagger UI over `/openapi.json` (with tenant keys, for key holders only)."""
    _runtime(request).tenants.resolve(request.headers.get("authorization"))
    return get_swagger_ui_html(openapi_url="/openapi.json", title=request.app.title)


@router.get("/healthz")
async def healthz() -> Response:
    """Liveness: the process answers."""
    return json_response({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """Readiness: the node serves traffic. Shared tiers being down does not make it unready
    (the data plane fails open); their state is reported for humans."""
    runtime = _runtime(request)
    if not runtime.ready:
        return model_response(Readiness(status="starting"), status_code=503)
    engine, bus = runtime.engine, runtime.fleet.bus
    return model_response(
        Readiness(
            status="ready",
            tiers=ReadinessTiers(
                store=StoreHealth(kind=engine.store.name, breaker_open=engine.store_breaker_open),
                # connected: loaded and answering; else `problem` says why (being repaired)
                milvus=(
                    MilvusHealth(connected=False)
                    if engine.vectors is None
                    else MilvusHealth.model_validate(engine.vectors.describe())
                ),
                coherence=None if bus is None else bus.subscribed.is_set(),
            ),
        )
    )
