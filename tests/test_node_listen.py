"""The node claims its listening port before it starts anything else.

A real `cachefleet-node serve` process: a port already in use stops the start at once, with a
message, before the model loads (and before the embedded Milvus Lite picks a free port of its
own, which could otherwise be the node's)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import yaml


def test_a_port_in_use_stops_the_start_with_a_message(tmp_path: Path, model_dir: Path) -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    config = {
        "upstream": {"base_url": "http://127.0.0.1:9"},
        "embedding": {"model_dir": str(model_dir)},
        "namespaces": [{"name": "default"}],
        "server": {"host": "127.0.0.1", "port": port},
        "data_dir": str(tmp_path / "data"),
    }
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump(config))
    binary = Path(sys.executable).with_name("cachefleet-node")
    try:
        done = subprocess.run(
            [str(binary), "serve", "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        taken.close()
    assert done.returncode == 3, done.stderr[-2000:]
    assert "cannot start" in done.stderr
    assert "in use" in done.stderr
    # stopped before the runtime started: no embedder, no embedded Milvus Lite
    assert "milvus_lite" not in done.stdout + done.stderr
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())
