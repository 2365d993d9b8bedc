"""Metrics exposure: with tenant keys configured `/metrics` on the API port needs the admin
key, while `server.metrics_port` serves it without one (for Prometheus) and nothing else; the
in-process tiers' gauges are refreshed when they are scraped, not only on writes."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from cachefleet_bench.servers import free_port
from log_exposure import record_log
from node_harness import MilvusServer, NodeFactory, NodeProcess, Stub, wait_ready

KEYS = {"acme": "sk-acme-tenant", "ops": "sk-ops-admin"}


def auth(tenant: str) -> dict[str, str]:
    return {"authorization": f"Bearer {KEYS[tenant]}"}


def sample(exposition: str, name: str, labels: dict[str, str]) -> float | None:
    """One sample of a Prometheus text exposition (None when absent)."""
    for family in text_string_to_metric_families(exposition):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return found.value
    return None


def start_node(config: dict[str, Any], workdir: Path) -> NodeProcess:
    """`cachefleet-node serve` with `config` (its own `server` section); does not wait."""
    path = workdir / "node.yaml"
    path.write_text(yaml.safe_dump(config))
    log_path = workdir / "node.log"
    binary = Path(sys.executable).with_name("cachefleet-node")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(binary), "serve", "--config", str(path)], stdout=log, stderr=subprocess.STDOUT
        )
    record_log(log_path)
    server = config["server"]
    return NodeProcess(f"http://{server['host']}:{server['port']}", process, log_path)


async def test_the_metrics_port_serves_metrics_without_a_key_and_the_api_port_needs_one(
    tmp_path: Path, stub: Stub, milvus_server: MilvusServer, model_dir: Path
) -> None:
    port, metrics_port = free_port(), free_port()
    config = {
        "node_id": "metrics-port",
        "data_dir": str(tmp_path / "data"),
        "server": {"host": "127.0.0.1", "port": port, "metrics_port": metrics_port},
        "upstream": {"base_url": stub.base_url},
        "milvus": {"uri": milvus_server.uri, "collection_prefix": "m" + uuid.uuid4().hex[:10]},
        "embedding": {"model_dir": str(model_dir)},
        "auth": {
            "api_keys": [
                {
                    "tenant": tenant,
                    "key_sha256": hashlib.sha256(key.encode()).hexdigest(),
                    "admin": tenant == "ops",
                }
                for tenant, key in KEYS.items()
            ]
        },
    }
    node = start_node(config, tmp_path)
    try:
        await wait_ready(node)
        async with httpx.AsyncClient(timeout=30) as client:
            api, scrape = f"{node.url}/metrics", f"http://127.0.0.1:{metrics_port}/metrics"
            assert (await client.get(api)).status_code == 401
            assert (await client.get(api, headers=auth("acme"))).status_code == 403
            assert (await client.get(api, headers=auth("ops"))).status_code == 200
            open_metrics = await client.get(scrape)
            assert open_metrics.status_code == 200
            assert open_metrics.headers["content-type"].startswith("text/plain")
            assert sample(open_metrics.text, "cachefleet_l1_budget_bytes", {}) is not None
            # The metrics listener serves nothing else.
            for other in ("/v1/cache/stats", "/openapi.json", "/docs", "/readyz"):
                missing = await client.get(f"http://127.0.0.1:{metrics_port}{other}")
                assert missing.status_code == 404, other
        node.process.terminate()
        assert await asyncio.to_thread(node.process.wait, 30) == 0
        async with httpx.AsyncClient(timeout=5) as client:  # both listeners are closed
            for url in (node.url, f"http://127.0.0.1:{metrics_port}"):
                try:
                    await client.get(f"{url}/metrics")
                except httpx.ConnectError:
                    continue
                raise AssertionError(f"{url} still answers after the node stopped")
    finally:
        node.stop()


async def test_gauges_follow_an_expiry_at_scrape_time_without_a_write(
    node_factory: NodeFactory,
) -> None:
    """An entry dropped by a read (its TTL passed) leaves the gauges at the next scrape,
    though nothing was written since."""
    node = await node_factory({"namespaces": [{"name": "default", "ttl_s": 1}]})
    question = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Ping?"}]}
    assert (await node.chat("Ping?")).headers["x-cachefleet-cache"] == "miss"
    await node.settle()
    l1_exact = {"tier": "l1_exact"}
    before = (await node.client.get("/metrics")).text
    assert sample(before, "cachefleet_entries", l1_exact) == 1
    assert (sample(before, "cachefleet_l1_bytes", l1_exact) or 0) > 0
    writes = sample(before, "cachefleet_writes_total", {"outcome": "stored"})

    deadline = time.monotonic() + 30  # a failsafe: the entry expires after 1 s
    while (await node.client.post("/v1/cache/lookup", json=question)).json()["hit"]:
        assert time.monotonic() < deadline, "the entry never expired"
        await asyncio.sleep(0.2)
    after = (await node.client.get("/metrics")).text
    assert sample(after, "cachefleet_writes_total", {"outcome": "stored"}) == writes
    assert sample(after, "cachefleet_entries", l1_exact) == 0
    assert sample(after, "cachefleet_l1_bytes", l1_exact) == 0
