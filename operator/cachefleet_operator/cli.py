"""`cachefleet-operator`: run the operator (kopf, standalone) against a cluster."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import kopf
import prometheus_client
import structlog
from pydantic import ValidationError

from cachefleet_operator import handlers
from cachefleet_operator.adapters.credentials import ClusterAccess, CredentialsError, load_access
from cachefleet_operator.adapters.http_server import ProbeServer
from cachefleet_operator.adapters.kube import KubeClient
from cachefleet_operator.adapters.logging_setup import configure_logging
from cachefleet_operator.services.leadership import LeaderElection
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
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="act only while holding the Lease (default on; --no-leader-election for one "
        "process you know is alone)",
    )
    parser.add_argument("--lease-namespace", help="namespace of the leader-election Lease")
    parser.add_argument("--lease-name", help="name of the leader-election Lease")
    parser.add_argument("--identity", help="this process in the Lease (default $POD_NAME)")
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


_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def lease_namespace(config: OperatorConfig, access: ClusterAccess) -> str:
    """Where the leader-election Lease lives (see `OperatorConfig.lease_namespace`)."""
    if config.lease_namespace:
        return config.lease_namespace
    own = os.environ.get("POD_NAMESPACE")
    if not own and _SERVICE_ACCOUNT_NAMESPACE.is_file():
        own = _SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    if own:
        return own
    if config.namespaces:
        return config.namespaces[0]
    return access.default_namespace or "default"


def identity(config: OperatorConfig) -> str:
    """This process's name in the Lease."""
    return (
        config.identity
        or os.environ.get("POD_NAME")
        or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    )


async def run(config: OperatorConfig) -> int:
    """Run until SIGTERM/SIGINT (kopf handles both and runs the cleanup handlers); with leader
    election, stand by until this process leads, and stop (exit code 1, the pod restarts and
    stands by) the moment it no longer does."""
    access = load_access(config.kubeconfig)
    stop = _stop_on_signals()
    if not config.leader_election:
        await _operate(config, access, stop)
        return 0
    kube = KubeClient(access, user_agent="cachefleet-operator")
    election = LeaderElection(
        kube,
        namespace=lease_namespace(config, access),
        name=config.lease_name,
        identity=identity(config),
        lease_duration_s=config.lease_duration,
        renew_deadline_s=config.renew_deadline,
        retry_period_s=config.retry_period,
    )
    standby = ProbeServer(
        host=config.http_host,
        port=config.http_port,
        alive=lambda: True,
        ready=lambda: [election.problem or "standing by"],
        metrics=lambda: b"# standing by: this operator process is not the leader\n",
    )
    await standby.start()
    try:
        if not await _stand_by(election, stop):
            await kube.aclose()
            return 0  # stopped (SIGTERM) before leading
    finally:
        await standby.stop()
    lost = False
    holding = asyncio.create_task(election.hold())
    operating = asyncio.create_task(_operate(config, access, stop))
    try:
        done, _ = await asyncio.wait({holding, operating}, return_when=asyncio.FIRST_COMPLETED)
        if holding in done:
            lost = True  # stop acting at once: another process may lead already
            operating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await operating
        else:
            operating.result()
    finally:
        holding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await holding
        if not lost:
            await election.release()
        await kube.aclose()
    return 1 if lost else 0


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM/SIGINT, and kopf's stop flag: the handlers stay until kopf
    installs its own when it starts, so a signal between leading and kopf's start (or while
    the process sets up) stops the operator cleanly instead of killing it (no Lease release)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def _stand_by(election: LeaderElection, stop: asyncio.Event) -> bool:
    """Wait to lead; False when SIGTERM/SIGINT came first."""
    acquiring = asyncio.create_task(election.acquire())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({acquiring, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if acquiring.done():
            acquiring.result()  # an error in the election is raised, not swallowed
            return True
        return False
    finally:
        for task in (acquiring, stopping):
            task.cancel()


async def _operate(config: OperatorConfig, access: ClusterAccess, stop: asyncio.Event) -> None:
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
            stop_flag=stop,  # a signal before kopf's own handlers are in place
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
        return asyncio.run(run(config))
    except CredentialsError as error:
        log.error("no_credentials", error=str(error))
        return 1


if __name__ == "__main__":
    sys.exit(main())
