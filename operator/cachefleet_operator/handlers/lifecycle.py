"""Operator start and stop: kopf settings, credentials, the controller, the probe server."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from cachefleet_operator.adapters.credentials import ClusterAccess, bearer_parts
from cachefleet_operator.adapters.http_server import ProbeServer
from cachefleet_operator.adapters.kube import KubeClient
from cachefleet_operator.adapters.metrics import OperatorMetrics
from cachefleet_operator.adapters.nodes import NodeClient
from cachefleet_operator.domain.render import CHILD_SELECTOR, FIELD_MANAGER, owned_kinds
from cachefleet_operator.services.controller import Controller
from cachefleet_operator.settings import OperatorConfig

__all__ = ["FINALIZER", "PREFIX", "configure", "login", "shutdown", "startup"]

#: kopf's own state (handler progress, diff-base, finalizer) lives under the project's prefix.
PREFIX = "cachefleet.io"
FINALIZER = f"{PREFIX}/finalizer"


def configure(settings: kopf.OperatorSettings) -> None:
    """kopf settings: annotations under cachefleet.io, watch timeouts, server-side selectors."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    # A watch that stops delivering (no events, no bookmarks) is dropped and re-established.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.watching.reconnect_backoff = 1.0
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 30
    # Only the children the operator made are watched: filtered by the API server.
    for kind in owned_kinds():
        settings.watching.label_selectors[kind.api_version, kind.plural] = CHILD_SELECTOR
    # No namespace/CRD scanning: no RBAC on namespaces or CRDs; install the CRDs first.
    settings.scanning.disabled = True
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = FIELD_MANAGER
    settings.posting.event_name_prefix = "cachefleet-"
    settings.execution.max_workers = 4


def _connection(access: ClusterAccess) -> kopf.ConnectionInfo:
    return kopf.ConnectionInfo(
        server=access.server,
        ca_path=access.ca_file,
        insecure=access.insecure or None,
        certificate_path=access.cert_file,
        private_key_path=access.key_file,
        default_namespace=access.default_namespace,
        **bearer_parts(access.authorization()),
    )


@kopf.on.login(retries=3)
def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    """kopf and the operator's own client use the same credentials. kopf calls this again
    when the API answers 401 (an exec credential expired): the plugin runs again then."""
    access: ClusterAccess = memo["access"]
    return _connection(access)


@kopf.on.startup()
async def startup(
    settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    configure(settings)
    config: OperatorConfig = memo["config"]
    access: ClusterAccess = memo["access"]
    metrics = OperatorMetrics()
    controller = Controller(
        config,
        kube=KubeClient(access, user_agent=FIELD_MANAGER),
        nodes=NodeClient(timeout=config.node_timeout),
        metrics=metrics,
    )
    await controller.start()
    memo["controller"] = controller
    server = ProbeServer(
        host=config.http_host,
        port=config.http_port,
        alive=controller.alive,
        ready=lambda: controller.readiness_problems() if memo.get("ready") else ["starting"],
        metrics=metrics.exposition,
    )
    await server.start()
    memo["server"] = server
    logger.info("serving /healthz, /readyz and /metrics on %s:%s", config.http_host, server.port)


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    server: ProbeServer | None = memo.get("server")
    if server is not None:
        await server.stop()
    controller: Controller | None = memo.get("controller")
    if controller is not None:
        await controller.stop()
