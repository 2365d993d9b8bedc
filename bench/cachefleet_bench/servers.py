"""Real servers on loopback ports for the benchmarks and the tests: redis-server, a Milvus Lite
server and `cachefleet-node serve` processes. Each helper starts one process and waits until it
listens; the caller stops it by its PID (never by name: other runs use the same binaries)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

__all__ = ["free_port", "listening", "spawn_milvus", "spawn_node", "spawn_redis", "stop"]


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def stop(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `timeout_s`; a process already gone is left alone."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def spawn_redis(port: int, workdir: Path, *, appendonly: bool = False) -> subprocess.Popen[bytes]:
    """redis-server on `port` with its files in `workdir`; returns once it answers PING.

    Without `appendonly` nothing is persisted; with it, the append-only file is synced every
    second (Redis's default), so a kill -9 loses at most the last second of writes.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not installed (make system-deps)")
    argv = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "yes" if appendonly else "no",
        "--dir",
        str(workdir),
        "--maxmemory",
        "256mb",
        "--maxmemory-policy",
        "volatile-lru",
    ]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"redis-server did not start on port {port}")


def spawn_milvus(
    port: int, data_dir: Path, log_path: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`milvus-lite server` (the virtualenv's) on `port`, data in `data_dir`, with `env` added
    to its environment; returns once it listens. Starting it again on the same `data_dir`
    restarts the same server."""
    binary = Path(sys.executable).with_name("milvus-lite")
    if not binary.exists():
        raise RuntimeError("milvus-lite is not installed in the virtualenv (make venv)")
    data_dir.mkdir(parents=True, exist_ok=True)
    where = ["--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port)]
    with (log_path or Path(os.devnull)).open("ab") as out:
        process = subprocess.Popen(  # noqa: S603
            [binary, "server", *where], stdout=out, stderr=out, env={**os.environ, **(env or {})}
        )
    deadline = time.monotonic() + 60
    while not listening(port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"milvus-lite server did not start on port {port}")
        time.sleep(0.1)
    return process


def spawn_node(
    config: dict[str, Any], workdir: Path, name: str
) -> tuple[str, subprocess.Popen[bytes], Path]:
    """Start `cachefleet-node serve` from a config dict (written as YAML) on a free port; does
    not wait for it. Returns its base URL, the process and its log file."""
    port = free_port()
    config = {**config, "server": {"host": "127.0.0.1", "port": port}, "node_id": name}
    config.setdefault("data_dir", str(workdir / name))
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    log_path = workdir / f"{name}.log"
    binary = Path(sys.executable).with_name("cachefleet-node")
    argv = [str(binary), "serve", "--config", str(path)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    return f"http://127.0.0.1:{port}", process, log_path
