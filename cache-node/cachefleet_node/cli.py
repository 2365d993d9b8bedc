"""`cachefleet-node` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import structlog
import uvicorn

from cachefleet_node.config import ConfigError, NodeConfig, load_node_config
from cachefleet_node.core.calibration import choose_threshold
from cachefleet_node.embedders.base import EmbeddingUnavailable
from cachefleet_node.logging_setup import configure_logging
from cachefleet_node.runtime import NodeRuntime
from cachefleet_node.server.app import create_app, create_metrics_app

__all__ = ["main"]

log = structlog.get_logger(__name__)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    server: dict[str, Any] = {}
    if args.host is not None:
        server["host"] = args.host
    if args.port is not None:
        server["port"] = args.port
    if server:
        overrides["server"] = server
    if args.upstream is not None:
        overrides["upstream"] = {"base_url": args.upstream}
    if args.redis is not None:
        overrides["redis"] = {"url": args.redis}
    if args.milvus is not None:
        overrides["milvus"] = {"uri": args.milvus}
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    return overrides


async def serve(config: NodeConfig, reload: Callable[[], NodeConfig] | None = None) -> int:
    """Start the runtime, then serve HTTP until interrupted. `reload`: reads the config file
    again (the node follows a migration's `embedding_next` live)."""
    try:
        sockets = [_listen(config.server.host, config.server.port)]
        if config.server.metrics_port is not None:
            sockets.append(_listen(config.server.host, config.server.metrics_port))
    except OSError as exc:
        print(f"cachefleet-node: cannot start: {exc}", file=sys.stderr)
        return 3
    runtime = NodeRuntime(config, reload)
    try:
        await runtime.start()
    except (EmbeddingUnavailable, ConfigError) as exc:
        for sock in sockets:
            sock.close()
        print(f"cachefleet-node: cannot start: {exc}", file=sys.stderr)
        return 3
    app = create_app(config, runtime=runtime)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.server.host,
            port=config.server.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=10,
            timeout_keep_alive=config.server.keep_alive_s,
        )
    )
    metrics_server: uvicorn.Server | None = None
    if config.server.metrics_port is not None:  # `/metrics` without a key, for Prometheus
        metrics_server = _SignalsLeftAlone(
            uvicorn.Config(
                create_metrics_app(runtime),
                host=config.server.host,
                port=config.server.metrics_port,
                log_config=None,
                access_log=False,
                lifespan="off",
            )
        )
    metrics_task = (
        None
        if metrics_server is None
        else asyncio.create_task(metrics_server.serve(sockets=sockets[1:]))
    )
    # uvicorn traps SIGTERM/SIGINT while it serves, then restores the handlers it found and
    # raises the signal again: with the default handlers the process would die right there,
    # before `runtime.close` drains the write-backs and flushes the embedded Milvus Lite
    # (a restart then found a torn write-ahead log). Install handlers that let close run.
    stopping: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: stopping.append(signum))
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        await server.serve(sockets=sockets[:1])
    finally:
        if metrics_server is not None and metrics_task is not None:
            metrics_server.should_exit = True
            await metrics_task
        log.info("node_stopping", signals=stopping)
        await runtime.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("node_stopped")
    return 0


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to `host`:`port` and listening, taken before the runtime starts: the
    port is the node's before anything it starts picks a free port (the embedded Milvus Lite
    binds port 0), and a port already in use stops the start before the model loads.
    Connections made meanwhile wait in the backlog until the server accepts them."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sock = socket.create_server((host, port), family=family[0][0], backlog=2048)
    sock.set_inheritable(True)
    return sock


class _SignalsLeftAlone(uvicorn.Server):
    """A uvicorn server that does not trap signals: the main server's stop ends it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def calibrate(args: argparse.Namespace) -> int:
    """`calibrate`: the lowest threshold whose error rate on labelled samples meets the target.

    Input: JSON lines, one per request, `{"similarity": 0.87, "correct": true}` for a request
    whose best guard-passing candidate had that similarity (and whether serving it would have
    been right), or `{"similarity": null}` for a request without a candidate (shadow-mode
    `shadow_hit` log lines and the quality harness produce such samples). Prints the
    threshold with the hit ratio and false-hit rate it implies, as JSON.
    """
    samples: list[tuple[float, bool]] = []
    requests = 0
    for number, line in enumerate(Path(args.samples).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            similarity = row["similarity"]
            requests += 1
            if similarity is not None:
                samples.append((float(similarity), bool(row["correct"])))
        except (ValueError, KeyError, TypeError) as exc:
            print(f"cachefleet-node: {args.samples}:{number}: bad sample ({exc})", file=sys.stderr)
            return 2
    if requests == 0:
        print(f"cachefleet-node: {args.samples}: no samples", file=sys.stderr)
        return 2
    result = choose_threshold(
        samples,
        requests,
        args.target_error_rate,
        floor=args.min_threshold,
        ceiling=args.max_threshold,
    )
    print(
        json.dumps(
            {
                "target_error_rate": args.target_error_rate,
                "threshold": result.threshold,
                "hit_ratio": result.hit_ratio,
                "error_rate": result.error_rate,
                "false_hit_rate": result.false_hit_rate,
                "samples": result.samples,
                "requests": result.requests,
            },
            indent=2,
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="cachefleet-node", description="Cachefleet cache node")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="run the cache node")
    run.add_argument("--config", help="YAML config file (see docs/configuration.md)")
    run.add_argument("--host", help="address to bind (default 127.0.0.1)")
    run.add_argument("--port", type=int, help="port to bind (default 8080)")
    run.add_argument("--upstream", help="upstream base URL, e.g. https://api.openai.com/v1")
    run.add_argument("--redis", help="redis:// URL of the shared exact tier (default: embedded)")
    run.add_argument("--milvus", help="Milvus URI (default: Milvus Lite under --data-dir)")
    run.add_argument("--data-dir", help="local state directory (default .cachefleet)")
    check = commands.add_parser("check-config", help="validate a config file and print it")
    check.add_argument("config")
    tune = commands.add_parser(
        "calibrate", help="pick a threshold for a target error rate from labelled samples"
    )
    tune.add_argument("samples", help="JSON lines: {similarity, correct} per request")
    tune.add_argument("--target-error-rate", type=float, default=0.01)
    tune.add_argument("--min-threshold", type=float, default=0.5)
    tune.add_argument("--max-threshold", type=float, default=1.0)
    args = parser.parse_args(argv)

    if args.command == "calibrate":
        return calibrate(args)

    if args.command == "check-config":
        try:
            config = load_node_config(args.config)
        except ConfigError as exc:
            print(f"cachefleet-node: {exc}", file=sys.stderr)
            return 2
        print(config.model_dump_json(indent=2))
        return 0

    overrides = _overrides(args)
    try:
        config = load_node_config(args.config, overrides)
    except ConfigError as exc:
        print(f"cachefleet-node: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.logging.level)
    path = args.config
    reload = None if path is None else (lambda: load_node_config(path, overrides))
    try:
        return asyncio.run(serve(config, reload))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
