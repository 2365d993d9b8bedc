"""Nodes on a real Redis Cluster (3 masters, 3 replicas, local redis-server processes):
store, hits, invalidation, purge and coherence across two nodes; a master killed under load.
And on a master found through a real Redis Sentinel: the master killed under load."""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import ValidationError

from cachefleet_contract.config import RedisConfig
from node_harness import Node, NodeFactory, Stub, require


@dataclass
class LocalCluster:
    """Six cluster-enabled redis-server processes on loopback, joined by `redis-cli`."""

    ports: list[int]
    processes: dict[int, subprocess.Popen[bytes]]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    @property
    def nodes(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.ports[1:]]

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)

    def master_ports(self) -> list[int]:
        """Ports of the masters a live node reports (failed nodes excluded)."""
        for port, process in self.processes.items():
            if process.poll() is None:
                raw = self.client(port).execute_command("CLUSTER", "NODES")
                text = raw.decode() if isinstance(raw, bytes) else str(raw)
                return [
                    int(fields[1].split("@")[0].rsplit(":", 1)[1])
                    for fields in (line.split() for line in text.splitlines())
                    if "master" in fields[2] and "fail" not in fields[2]
                ]
        raise AssertionError("no live cluster node")

    def kill(self, port: int) -> None:
        """kill -9 one node."""
        process = self.processes[port]
        process.kill()
        process.wait()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def _cluster_port(taken: list[int]) -> int:
    """A free port whose cluster bus port (+10000) is free too; Redis needs it <= 55535."""
    while True:
        port = random.randint(20_000, 55_000)
        if port in taken or port + 10_000 in taken:
            continue
        try:
            for candidate in (port, port + 10_000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port


def _flags(options: dict[str, object]) -> list[str]:
    """`redis-server` command-line flags for `options`."""
    return [part for name, value in options.items() for part in (f"--{name}", str(value))]


def _wait_ping(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if redis.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping():
                return
        except redis.RedisError:
            time.sleep(0.05)
    raise RuntimeError(f"cluster node on port {port} did not start")


def _cluster_ok(port: int) -> bool:
    """The node sees the whole cluster, and a replica has synced with its master."""
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
    info = client.execute_command("CLUSTER", "INFO")
    text = info.decode() if isinstance(info, bytes) else str(info)
    replication = client.info("replication")
    synced = replication["role"] == "master" or replication.get("master_link_status") == "up"
    return "cluster_state:ok" in text and synced


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A fresh 3-master / 3-replica Redis Cluster for one test."""
    require(
        shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None,
        "redis-server / redis-cli not installed (make system-deps)",
    )
    ports: list[int] = []
    for _ in range(6):
        ports.append(_cluster_port(ports))
    processes: dict[int, subprocess.Popen[bytes]] = {}
    cluster = LocalCluster(ports, processes)
    try:
        for port in ports:
            workdir = tmp_path / f"redis-{port}"
            workdir.mkdir()
            options = {
                "port": port,
                "bind": "127.0.0.1",
                "cluster-enabled": "yes",
                "cluster-config-file": workdir / "nodes.conf",
                "cluster-node-timeout": 2000,
                "cluster-replica-validity-factor": 0,
                "save": "",
                "appendonly": "no",
                "dir": workdir,
            }
            processes[port] = subprocess.Popen(
                [str(shutil.which("redis-server")), *_flags(options)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        for port in ports:
            _wait_ping(port)
        subprocess.run(
            [
                str(shutil.which("redis-cli")),
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in ports),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 60
        while not all(_cluster_ok(port) for port in ports):
            assert time.monotonic() < deadline, "cluster did not converge"
            time.sleep(0.2)
        yield cluster
    finally:
        cluster.stop()


def _cluster_config(cluster: LocalCluster) -> dict[str, Any]:
    return {"url": cluster.url, "mode": "cluster", "nodes": cluster.nodes}


@dataclass
class _Load:
    """What the clients of `_clients_during` saw."""

    errors: list[str]
    answered: int = 0


@contextlib.asynccontextmanager
async def _clients_during(node: Node, questions: list[str], fault: str) -> AsyncIterator[_Load]:
    """Eight clients asking `questions` (every third round a fresh question) while the body
    runs; every answer must be a 200 with choices."""
    load = _Load(errors=[])
    stop = asyncio.Event()

    async def client(worker: int) -> None:
        round_ = 0
        while not stop.is_set():
            question = questions[(worker + round_) % len(questions)]
            if round_ % 3 == 0:
                question = f"Fresh question {worker}-{round_} during {fault}"
            round_ += 1
            response = await node.chat(question)
            if response.status_code != 200 or not response.json()["choices"]:
                load.errors.append(f"{response.status_code}: {response.text[:200]}")
            load.answered += 1

    workers = [asyncio.create_task(client(worker)) for worker in range(8)]
    try:
        yield load
    finally:
        stop.set()
        await asyncio.gather(*workers)


async def _until(check: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not reached within {timeout_s}s")


async def _lookup(node: Node, content: str) -> str:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}
    response = await node.client.post("/v1/cache/lookup", json=body)
    return str(response.json()["result"])


async def test_two_nodes_share_a_cluster(
    node_factory: NodeFactory, redis_cluster: LocalCluster, stub: Stub
) -> None:
    """Entries spread over the masters; hits, tag invalidation, purge and coherence work."""
    node_a = await node_factory({"redis": _cluster_config(redis_cluster)})
    node_b = await node_factory({"redis": _cluster_config(redis_cluster)})
    assert node_a.runtime.fleet.bus is not None
    assert node_b.runtime.fleet.bus is not None
    await asyncio.wait_for(node_b.runtime.fleet.bus.subscribed.wait(), 30)

    questions = [f"Question number {i} about key rotation" for i in range(12)]
    for i, question in enumerate(questions):
        tags = {"x-cachefleet-tags": "even" if i % 2 == 0 else "odd"}
        assert (await node_a.chat(question, headers=tags)).headers["x-cachefleet-cache"] == "miss"
    await node_a.settle()
    keys_per_master = [redis_cluster.client(port).dbsize() for port in redis_cluster.master_ports()]
    assert sum(1 for count in keys_per_master if count > 0) >= 2  # not all in one slot

    for question in questions:  # written by A, read from the cluster by B
        assert await _lookup(node_b, question) == "hit-exact"
    assert (await node_b.chat(questions[0])).headers["x-cachefleet-tier"] == "l1"
    assert await stub.calls() == len(questions)
    stats = (await node_b.client.get("/v1/cache/stats")).json()
    assert stats["namespaces"]["default"]["entries"] == len(questions)
    # Multi-key commands over keys of many slots: SCAN of every master, then MGET (age
    # filter) and EXISTS (dry run), each split per slot by the client.
    counted = await node_b.client.post(
        "/v1/cache/invalidate", json={"namespace": "default", "older_than_s": 0, "dry_run": True}
    )
    assert counted.json()["removed"]["default"]["store"] == len(questions)

    # A tag invalidation through A removes the tagged entries and clears B's L1 (coherence).
    removed = await node_a.client.post(
        "/v1/cache/invalidate", json={"namespace": "default", "tags": ["even"]}
    )
    assert removed.status_code == 200
    assert removed.json()["removed"]["default"]["store"] == 6

    async def b_misses_even() -> bool:
        return await _lookup(node_b, questions[0]) == "miss"

    await _until(b_misses_even, 30)
    assert await _lookup(node_b, questions[1]) == "hit-exact"

    # A whole-namespace purge (SCAN over every master) leaves nothing behind.
    purged = await node_b.client.post("/v1/cache/invalidate", json={"namespace": "default"})
    assert purged.json()["removed"]["default"]["store"] == 6

    async def a_misses_all() -> bool:  # A's L1 is emptied by B's event (pub/sub: async)
        return all([await _lookup(node_a, question) == "miss" for question in questions])

    await _until(a_misses_all, 30)
    leftover = [
        key
        for port in redis_cluster.master_ports()
        for key in redis_cluster.client(port).scan_iter(match="cf:e:*")
    ]
    assert leftover == []


async def test_master_killed_under_load(
    node_factory: NodeFactory, redis_cluster: LocalCluster, stub: Stub
) -> None:
    """kill -9 of a master while clients run: every request answered, hits come back."""
    node = await node_factory({"redis": _cluster_config(redis_cluster)})
    questions = [f"Load question {i} on the cluster" for i in range(30)]
    for question in questions:
        await node.chat(question)
    await node.settle()

    async with _clients_during(node, questions, "the failover") as load:
        await asyncio.sleep(1.0)
        masters = redis_cluster.master_ports()
        victim = masters[0]
        redis_cluster.kill(victim)

        def promoted() -> bool:
            live = redis_cluster.master_ports()
            return victim not in live and len(live) == 3

        deadline = time.monotonic() + 60
        while not await asyncio.to_thread(promoted):
            assert time.monotonic() < deadline, "no replica was promoted"
            await asyncio.sleep(0.5)
        await asyncio.sleep(3.0)  # the node's client follows the new topology, breakers close
    assert load.errors == []
    assert load.answered > 0
    await node.settle()

    # Hits resume on every slot: new answers are stored and read back from the cluster.
    async def stored_again() -> bool:
        fresh = [f"After the failover, question {i}" for i in range(12)]
        for question in fresh:
            await node.chat(question)
        await node.settle()
        node.runtime.engine.clear_l1()
        results = [await _lookup(node, question) for question in fresh]
        return all(result == "hit-exact" for result in results)

    await _until(stored_again, 60)


@dataclass
class LocalSentinel:
    """A master, its replica and one sentinel watching them (`SERVICE`), on loopback."""

    master: int
    replica: int
    sentinel: int
    processes: dict[int, subprocess.Popen[bytes]]

    SERVICE = "cfmain"

    def current_master(self) -> int:
        """The master's port as the sentinel tells it."""
        client = redis.Redis(host="127.0.0.1", port=self.sentinel, socket_timeout=5)
        _, port = client.sentinel_get_master_addr_by_name(self.SERVICE)
        return int(port)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def _sentinel_ready(setup: LocalSentinel) -> bool:
    """The replica has synced and the sentinel knows it (it can fail over to it)."""
    replica = redis.Redis(host="127.0.0.1", port=setup.replica, socket_timeout=2)
    if replica.info("replication").get("master_link_status") != "up":
        return False
    sentinel = redis.Redis(host="127.0.0.1", port=setup.sentinel, socket_timeout=2)
    known = sentinel.sentinel_slaves(setup.SERVICE)
    return any(not (r["is_sdown"] or r["is_disconnected"]) for r in known)


@pytest.fixture
def redis_sentinel(tmp_path: Path) -> Iterator[LocalSentinel]:
    """A fresh master + replica + sentinel for one test."""
    require(shutil.which("redis-server") is not None, "redis-server not installed")
    binary = str(shutil.which("redis-server"))
    ports: list[int] = []
    for _ in range(3):
        ports.append(_cluster_port(ports))
    master, replica, sentinel = ports
    setup = LocalSentinel(master, replica, sentinel, {})
    base = {"bind": "127.0.0.1", "save": "", "appendonly": "no"}
    try:
        for port, extra in ((master, {}), (replica, {"replicaof": f"127.0.0.1 {master}"})):
            workdir = tmp_path / f"redis-{port}"
            workdir.mkdir()
            options = {"port": port, **base, "dir": workdir, **extra}
            setup.processes[port] = subprocess.Popen(
                [binary, *_flags(options)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            _wait_ping(port)
        conf = tmp_path / "sentinel.conf"  # the sentinel rewrites it: a file of its own
        conf.write_text(
            f"port {sentinel}\nbind 127.0.0.1\ndir {tmp_path}\n"
            f"sentinel monitor {setup.SERVICE} 127.0.0.1 {master} 1\n"
            f"sentinel down-after-milliseconds {setup.SERVICE} 1000\n"
            f"sentinel failover-timeout {setup.SERVICE} 10000\n",
            encoding="utf-8",
        )
        setup.processes[sentinel] = subprocess.Popen(
            [binary, str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_ping(sentinel)
        deadline = time.monotonic() + 60
        while not _sentinel_ready(setup):
            assert time.monotonic() < deadline, "replica not synced or not known to the sentinel"
            time.sleep(0.2)
        yield setup
    finally:
        setup.stop()


async def test_sentinel_master_killed_under_load(
    node_factory: NodeFactory, redis_sentinel: LocalSentinel
) -> None:
    """The node writes to the master the sentinel names; after kill -9 of that master under
    load every request was answered, the promoted replica serves the old entries and takes
    new ones."""
    setup = redis_sentinel
    config = {
        "url": f"redis://127.0.0.1:{setup.sentinel}/0",
        "mode": "sentinel",
        "sentinel_service": setup.SERVICE,
    }
    node = await node_factory({"redis": config})
    assert node.runtime.fleet.bus is not None
    await asyncio.wait_for(node.runtime.fleet.bus.subscribed.wait(), 30)
    questions = [f"Sentinel question number {i}" for i in range(12)]
    for question in questions:
        assert (await node.chat(question)).headers["x-cachefleet-cache"] == "miss"
    await node.settle()
    master = redis.Redis(host="127.0.0.1", port=setup.master, socket_timeout=10)
    assert len(list(master.scan_iter(match="cf:e:*"))) == len(questions)
    assert master.execute_command("WAIT", 1, 10_000) == 1  # the replica has every entry

    async with _clients_during(node, questions, "the sentinel failover") as load:
        await asyncio.sleep(1.0)
        setup.processes[setup.master].kill()
        await asyncio.to_thread(setup.processes[setup.master].wait)
        deadline = time.monotonic() + 60
        while await asyncio.to_thread(setup.current_master) != setup.replica:
            assert time.monotonic() < deadline, "the sentinel promoted no replica"
            await asyncio.sleep(0.5)
        await asyncio.sleep(3.0)  # the node reconnects to the new master, breakers close
    assert load.errors == []
    assert load.answered > 0
    await node.settle()

    async def served_by_new_master() -> bool:
        fresh = [f"After the sentinel failover, question {i}" for i in range(6)]
        for question in fresh:
            await node.chat(question)
        await node.settle()
        node.runtime.engine.clear_l1()
        results = [await _lookup(node, question) for question in [*questions, *fresh]]
        return all(result == "hit-exact" for result in results)

    await _until(served_by_new_master, 60)
    promoted = redis.Redis(host="127.0.0.1", port=setup.replica, socket_timeout=10)
    assert promoted.info("replication")["role"] == "master"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"mode": "sentinel"}, "sentinel_service is required"),
        ({"sentinel_service": "cfmain"}, "sentinel_service is required"),
        ({"nodes": ["127.0.0.1:7001"]}, "nodes is for mode cluster or sentinel"),
        ({"mode": "cluster", "url": "unix:///tmp/redis.sock"}, "needs a redis://"),
        ({"mode": "cluster", "nodes": ["no-port"]}, "String should match pattern"),
    ],
)
def test_redis_mode_settings_are_checked(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RedisConfig.model_validate({"url": "redis://127.0.0.1:6379/0", **fields})
