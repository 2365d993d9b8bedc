"""The shortened fault run of `make chaos` (issue 14): Redis and Milvus killed and stopped, the
upstream slow and broken, under 50 concurrent clients on two node processes."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from cachefleet_bench import chaos
from cachefleet_node.config import UpstreamConfig
from cachefleet_node.upstream import Upstream
from log_exposure import record_log
from node_harness import require


@pytest.mark.timeout(420)
async def test_faults_under_load_break_no_answer_and_lose_none(
    tmp_path: Path, model_dir: Path
) -> None:
    require(shutil.which("redis-server") is not None, "redis-server not installed")
    require(Path(sys.executable).with_name("milvus-lite").exists(), "milvus-lite not installed")
    for name in ("node-a", "node-b", "milvus", "stub"):
        record_log(tmp_path / f"{name}.log")
    figures = await chaos.run(chaos.Settings.ci(), tmp_path, str(model_dir))
    errors, answers = figures["errors"], figures["answers"]
    assert figures["requests"] > 200
    assert errors["cache_caused"] == 0, figures["bad_reply_samples"]
    assert figures["wrong_answers"] == 0, figures["bad_reply_samples"]
    assert answers["before"]["answered"] > 0
    assert answers["lost"] == 0, answers["before"]["which"]
    recovery = figures["semantic_recovery"]
    assert recovery["baseline_probe_hit_rate"] > 0
    assert recovery["first_semantic_hit_s"] is not None, "no Milvus semantic hit after restart"
    assert recovery["first_semantic_hit_s"] <= 120
    assert figures["single_flight"]["upstream_calls"] == 1, figures["single_flight"]
    assert figures["fuzz"]["5xx"] == 0, figures["fuzz"]["samples"]
    assert figures["fuzz"]["transport_errors"] == 0, figures["fuzz"]["samples"]


async def test_each_client_has_its_own_connection_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The load's clients never share an httpx pool: a shared pool can close a connection it
    has handed to another waiting request (encode/httpcore#1110), a `ReadError` the client
    makes itself, which the run would count as the cache's."""
    fleet = chaos.Fleet(workdir=tmp_path, model_dir="")
    fleet.nodes = [(f"http://node-{n}", None, tmp_path / f"node-{n}.log") for n in "ab"]  # type: ignore[misc]
    in_flight: Counter[int] = Counter()
    pools: set[int] = set()
    shared: list[int] = []

    async def answer(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> chaos.Reply:
        pools.add(id(client))
        in_flight[id(client)] += 1
        if in_flight[id(client)] > 1:
            shared.append(id(client))
        await asyncio.sleep(0.01)
        in_flight[id(client)] -= 1
        prompt = body["messages"][0]["content"]
        return chaos.Reply(200, "miss", f"Answer to '{prompt[:80]}': ok", None, False)

    monkeypatch.setattr(chaos, "ask", answer)
    record, stop = chaos.Record(), asyncio.Event()
    load = asyncio.create_task(chaos._clients(fleet, chaos.Settings(clients=20), record, stop))
    await asyncio.sleep(0.3)
    stop.set()
    await load
    assert record.total("requests") >= 20
    assert record.total("wrong") == 0
    assert len(pools) == 20
    assert shared == []


def test_a_transport_error_is_the_caches_even_during_an_upstream_fault() -> None:
    """The node must answer (an error body, an error event): a broken connection to it is
    never the upstream's; its node and UTC times are kept to find it in that node's log."""
    record = chaos.Record()
    record.upstream_windows.append((0.0, float("inf")))
    broken = chaos.Reply(0, "", None, "transport: ReadError", False)
    record.outcome(0.0, "node-a", "a prompt", broken, None)
    upstreams = chaos.Reply(503, "miss", None, "status 503", True)
    record.outcome(0.0, "node-b", "a prompt", upstreams, None)
    assert record.total("cache_errors") == 1
    assert record.total("upstream_errors") == 1
    [detail] = record.cache_errors
    assert detail["node"] == "node-a"
    assert detail["problem"] == "transport: ReadError"
    assert detail["sent_utc"] <= detail["failed_utc"]


class _ClosingUpstream:
    """An HTTP/1.1 upstream on loopback that reads each request and answers it with keep-alive,
    except that it closes the connection without an answer on the requests `drop` picks
    (by the connection's request number, from 1): the race of an upstream's idle timeout with
    the node's reuse of that connection, or an upstream that breaks a new connection."""

    def __init__(self, drop: set[int]) -> None:
        self.drop = drop
        self.requests = 0
        self.connections = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = 0
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next(
                    int(line.split(b":")[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                )
                await reader.readexactly(length)
                number += 1
                self.requests += 1
                if number in self.drop:
                    return
                body = b'{"choices": []}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
        except asyncio.IncompleteReadError:
            return
        finally:
            writer.close()


async def _calls(upstream_server: _ClosingUpstream, count: int) -> list[int]:
    server = await asyncio.start_server(upstream_server.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    upstream = Upstream(UpstreamConfig(base_url=f"http://127.0.0.1:{port}/v1", timeout_s=10), None)
    try:
        statuses = []
        for _ in range(count):
            reply = await upstream.post(
                "/chat/completions", b"{}", {"content-type": "application/json"}
            )
            statuses.append(reply.status_code)
        return statuses
    finally:
        await upstream.aclose()
        server.close()
        await server.wait_closed()


async def test_a_call_broken_on_a_reused_upstream_connection_is_sent_again() -> None:
    """The chaos run's 502 `upstream is unreachable` with the stub healthy: the stub closed an
    idle connection as the node reused it. The node sends that call again on a new one."""
    stub = _ClosingUpstream(drop={2})
    assert await _calls(stub, 2) == [200, 200]
    assert (stub.requests, stub.connections) == (3, 2)


async def test_a_call_broken_on_a_new_upstream_connection_is_not_repeated() -> None:
    stub = _ClosingUpstream(drop={1})
    with pytest.raises(httpx.RemoteProtocolError):
        await _calls(stub, 1)
    assert (stub.requests, stub.connections) == (1, 1)
