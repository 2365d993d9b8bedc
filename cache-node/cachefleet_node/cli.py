"""`cachefleet-node` command line."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable
from typing import Any

import structlog
import uvicorn

from cachefleet_node.bench import calibrate, quality, train_verifier
from cachefleet_node.config import ConfigError, NodeConfig, load_node_config
from cachefleet_node.embedders.base import EmbeddingUnavailable
from cachefleet_node.logging_setup import configure_logging
from cachefleet_node.runtime import NodeRuntime
from cachefleet_node.server.app import create_app

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
    runtime = NodeRuntime(config, reload)
    try:
        await runtime.start()
    except (EmbeddingUnavailable, ConfigError) as exc:
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
        )
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
        await server.serve()
    finally:
        log.info("node_stopping", signals=stopping)
        await runtime.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("node_stopped")
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
    bench = commands.add_parser("bench", help="benchmarks").add_subparsers(
        dest="bench", required=True
    )
    quality.add_arguments(
        bench.add_parser("quality", help="semantic-correctness harness (CLINC150, Quora pairs)")
    )
    calibrate.add_arguments(
        bench.add_parser("calibrate", help="pick a threshold for a target error rate")
    )
    train_verifier.add_arguments(
        bench.add_parser("train-verifier", help="train the verifier head on shippable data")
    )
    args = parser.parse_args(argv)

    if args.command == "bench":
        runners = {
            "quality": quality.main,
            "calibrate": calibrate.main,
            "train-verifier": train_verifier.main,
        }
        return runners[args.bench](args)

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
