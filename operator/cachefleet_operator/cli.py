"""`cachefleet-operator`: run the operator (kopf, standalone) against a cluster."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import kopf
import prometheus_client
import structlog
from pydantic import ValidationError

from cachefleet_operator import handlers
from cachefleet_operator.adapters.credentials import CredentialsError, load_access
from cachefleet_operator.adapters.logging_setup import configure_logging
from cachefleet_operator.settings import OperatorConfig

__all__ = ["main", "parse_config"]

log = structlog.get_logger("cachefleet.operator")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cachefleet-operator",
        description="Run the Cachefleet operator. Every flag has a CACHEFLEET_OPERATOR_* "
        "environment variable (docs/operator.md); flags win.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        dest="namespaces",
        help="watch this namespace (repeatable)",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", default=None, help="watch every namespace"
    )
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, in-cluster)")
    parser.add_argument("--http-host", help="address of /healthz, /readyz, /metrics")
    parser.add_argument("--http-port", type=int, help="port of /healthz, /readyz, /metrics")
    parser.add_argument("--log-level", help="debug, info, warning, error")
    parser.add_argument("--workers", type=int, help="concurrent reconciles")
    parser.add_argument("--resync-interval", help="re-reconcile period without events (e.g. 10m)")
    parser.add_argument(
        "--stats-interval", help="node stats period, least time between hit-rate writes"
    )
    parser.add_argument("--hit-rate-window", help="window of status.hitRate (e.g. 15m)")
    parser.add_argument("--purge-timeout", help="deletion waits this long for a purge (e.g. 10m)")
    parser.add_argument(
        "--node-endpoints-from-annotation",
        action="store_true",
        default=None,
        help="TEST/DEV ONLY: node URLs from the cachefleet.io/node-endpoints annotation",
    )
    return parser


def parse_config(argv: Sequence[str] | None = None) -> OperatorConfig:
    """Environment first, flags over it."""
    args = _parser().parse_args(argv)
    overrides = {key: value for key, value in vars(args).items() if value is not None}
    if overrides.get("namespaces"):
        overrides["all_namespaces"] = False
    elif overrides.get("all_namespaces"):
        overrides["namespaces"] = []
    return OperatorConfig(**overrides)


async def run(config: OperatorConfig) -> None:
    """Run until SIGTERM/SIGINT (kopf handles both and runs the cleanup handlers)."""
    access = load_access(config.kubeconfig)
    memo = kopf.Memo(config=config, access=access, ready=False)
    ready = asyncio.Event()

    async def mark_ready() -> None:
        await ready.wait()
        memo["ready"] = True

    marker = asyncio.create_task(mark_ready())
    log.info(
        "starting",
        server=access.server,
        credentials=access.source,
        namespaces=config.namespaces or "*",
        handlers=handlers.__name__,
    )
    try:
        await kopf.operator(
            standalone=True,
            clusterwide=config.all_namespaces,
            namespaces=config.namespaces,
            memo=memo,
            ready_flag=ready,
        )
    finally:
        marker.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = parse_config(argv)
    except ValidationError as error:
        print(f"cachefleet-operator: invalid settings:\n{error}", file=sys.stderr)
        return 2
    if not config.scoped:
        print(
            "cachefleet-operator: pass --namespace NS (repeatable) or --all-namespaces "
            "(or set CACHEFLEET_OPERATOR_NAMESPACES / CACHEFLEET_OPERATOR_ALL_NAMESPACES)",
            file=sys.stderr,
        )
        return 2
    configure_logging(config.log_level)
    # No `*_created` series next to each counter (the function is untyped upstream).
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    try:
        asyncio.run(run(config))
    except CredentialsError as error:
        log.error("no_credentials", error=str(error))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
