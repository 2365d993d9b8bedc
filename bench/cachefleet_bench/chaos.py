"""The fault run (`make chaos`, issue 14): real redis-server, Milvus Lite server, stub upstream and
two cache node processes, N concurrent clients of chat completions (repeats, paraphrases and new
prompts), while Redis and Milvus are killed (-9) and restarted, stopped (SIGSTOP) and continued,
and the upstream turns slow, then broken (malformed chunks, 5xx, hang).

Figures: requests and outcomes; client errors caused by the cache (an error the upstream did not
cause: outside an upstream fault, or not the upstream's own error), by the upstream, and 504s of
the node's total upstream deadline outside upstream faults (counted apart); wrong answers (not
to the prompt nor a paraphrase of it), with semantic hits across a workload near-miss pair
counted apart (the matcher's precision, `make bench-quality`); answers lost (stored before a
fault, no longer served by either node at the end), and answers given during a fault that are
not served at the end; seconds from the Milvus restart to the next semantic hit served from
Milvus; upstream calls for 50 identical concurrent requests on the two nodes; 5xx from a
seeded fuzz of request bodies. Node B keeps no in-process ANN (`l1.semantic_max_entries: 0`),
so its semantic hits come from Milvus: its lookups of paraphrases are the recovery probe.
Writes `docs/benchmarks/chaos.json` and `chaos.png`; RSS against the budget at 1M entries is
`docs/benchmarks/memory.json` (`python -m cachefleet_bench memory`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import random
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from cachefleet_bench import servers
from cachefleet_node.demo.__main__ import load_workload

__all__ = ["Fleet", "Settings", "add_arguments", "main", "run"]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "benchmarks"
#: Generous tier deadlines: a loaded 2-core machine must not turn every lookup into a bypass.
DEADLINES = {"redis_ms": 1000, "milvus_ms": 3000, "embedder_ms": 3000}
UPSTREAM_TIMEOUT_S = 10.0
#: Milvus Lite searches its unflushed rows (the memtable) by a scan in Python, about 40 ms
#: per 1,000 rows, and flushes them into indexed segments only at 128 MiB (~70,000 rows):
#: the run's few thousand rows made every search slower as they were written (0.3 s at
#: 7,400 rows, a few searches a second for the whole fleet), far from a real Milvus, whose
#: growing segments are indexed. Flushing at 2 MiB keeps searches at 30-50 ms.
MILVUS_LITE_ENV = {"MILVUS_LITE_MEMTABLE_MEMORY_LIMIT_BYTES": str(2 * 1024 * 1024)}
ERRORS = ("cache_errors", "upstream_errors", "upstream_deadline")  # counted per second
KEEP_SETTLE_S = 3.0  # between the answers kept before a fault and the fault
#: Idle connections are dropped by the clients before the servers drop them (the nodes'
#: `server.keep_alive_s`: 75 s; the stub's uvicorn: 5 s, as httpx's default): with equal times
#: a request can be sent on a connection the server is closing, and fail before it is read.
KEEPALIVE = httpx.Limits(keepalive_expiry=2.0)
_SUFFIXES = ("", " Thanks!", " Please help.", " Any tips?", " Thank you.", " Quick question.")
_TOPICS = (
    "volcanoes glaciers tides deserts comets orchids beetles lighthouses violins bridges "
    "tunnels harbours windmills canals castles geysers reefs meteors fjords canyons"
).split()


@dataclass
class Settings:
    """Size and timing of one run."""

    clients: int = 1000
    fault_s: float = 8.0  # how long each fault lasts
    settle_s: float = 5.0  # normal traffic after each fault
    keepers_per_fault: int = 10  # answers asked before and during each fault, checked at the end
    recovery_bound_s: float = 120.0  # longest wait for semantic hits after the Milvus restart
    fuzz_cases: int = 600
    seed: int = 14

    @classmethod
    def ci(cls) -> Settings:
        """The shortened run of tests/test_chaos.py."""
        return cls(clients=50, fault_s=3.0, settle_s=2.0, keepers_per_fault=4, fuzz_cases=100)


# --------------------------------------------------------------------------- the fleet


@dataclass
class Fleet:
    """The processes of one run, each stopped by its PID."""

    workdir: Path
    model_dir: str
    redis_port: int = field(default_factory=servers.free_port)
    milvus_port: int = field(default_factory=servers.free_port)
    stub_port: int = field(default_factory=servers.free_port)
    redis: subprocess.Popen[bytes] | None = None
    milvus: subprocess.Popen[bytes] | None = None
    stub: subprocess.Popen[bytes] | None = None
    nodes: list[tuple[str, subprocess.Popen[bytes], Path]] = field(default_factory=list)

    @property
    def stub_url(self) -> str:
        return f"http://127.0.0.1:{self.stub_port}"

    @property
    def urls(self) -> list[str]:
        return [url for url, _, _ in self.nodes]

    def start_redis(self) -> None:
        self.redis = servers.spawn_redis(self.redis_port, self.workdir, appendonly=True)

    def start_milvus(self) -> None:
        self.milvus = servers.spawn_milvus(
            self.milvus_port, self.workdir / "milvus", self.workdir / "milvus.log", MILVUS_LITE_ENV
        )

    def start_stub(self) -> None:
        argv = [sys.executable, "-m", "cachefleet_node.demo.stub_upstream"]
        with (self.workdir / "stub.log").open("ab") as log:
            self.stub = subprocess.Popen(  # noqa: S603
                [*argv, "--port", str(self.stub_port)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + 30
        while not servers.listening(self.stub_port):
            if self.stub.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the stub upstream did not start")
            time.sleep(0.1)

    def start_nodes(self) -> None:
        base = {
            "upstream": {"base_url": f"{self.stub_url}/v1", "timeout_s": UPSTREAM_TIMEOUT_S},
            "redis": {"url": f"redis://127.0.0.1:{self.redis_port}/0"},
            "milvus": {"uri": f"http://127.0.0.1:{self.milvus_port}", "collection_prefix": "chaos"},
            "embedding": {"model_dir": self.model_dir},
            "namespaces": [{"name": "default"}],
            "deadlines": DEADLINES,
        }
        # node-b keeps no in-process ANN: its semantic hits come from Milvus (the probe).
        probe = {**base, "l1": {"semantic_max_entries": 0}}
        self.nodes = [
            servers.spawn_node(base, self.workdir, "node-a"),
            servers.spawn_node(probe, self.workdir, "node-b"),
        ]

    async def wait_ready(self, timeout_s: float = 180.0) -> None:
        """Until every node's /readyz is 200."""
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=5) as client:
            for url, process, log in self.nodes:
                while True:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"{url} not ready:\n{log.read_text()[-3000:]}")
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(f"{url}/readyz")).status_code == 200:
                            break
                    await asyncio.sleep(0.3)

    def stop(self) -> None:
        for _, node, _ in self.nodes:
            servers.stop(node, timeout_s=20)
        for process in (self.stub, self.milvus, self.redis):
            if process is not None:
                _signal(process, signal.SIGCONT)
                servers.stop(process)


def _signal(process: subprocess.Popen[bytes] | None, sig: signal.Signals) -> None:
    if process is not None and process.poll() is None:
        process.send_signal(sig)
        if sig == signal.SIGKILL:
            process.wait()


@contextlib.contextmanager
def running_fleet(workdir: Path, model_dir: str) -> Iterator[Fleet]:
    """Redis (append-only file), Milvus, the stub and two nodes; all stopped at the end."""
    fleet = Fleet(workdir=workdir, model_dir=model_dir)
    try:
        fleet.start_redis()
        fleet.start_milvus()
        fleet.start_stub()
        fleet.start_nodes()
        yield fleet
    finally:
        fleet.stop()


# --------------------------------------------------------------------------- requests


def _chat(prompt: str, stream: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": prompt}],
    }
    if stream:
        body["stream"] = True
    return body


@dataclass
class Reply:
    """What a client got: an answer's text, or why there is none."""

    status: int
    cache: str
    answer: str | None
    problem: str | None  # None, or what was wrong
    upstream: bool  # the problem is the upstream's own (its error, or its malformed bytes)


def _transport_problem(exc: httpx.HTTPError) -> str:
    """An httpx error with the chain of exceptions under it (a reset, an EOF, a timeout)."""
    chain: list[str] = []
    cause: BaseException | None = exc
    while cause is not None and len(chain) < 4:
        chain.append(f"{type(cause).__name__} {cause}".strip())
        cause = cause.__cause__ or cause.__context__
    return f"transport: {' <- '.join(chain)}"[:300]


def _error_is_upstreams(body: bytes) -> bool:
    with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
        error = orjson.loads(body)["error"]
        return error.get("type") in {"upstream_error", "server_error"} or error.get("code") in {
            "upstream_unavailable",
            "stream_interrupted",
        }
    return False


def _stream_answer(text: bytes) -> tuple[str | None, str | None, bool]:
    """(answer, problem, upstream's) of an SSE body."""
    parts: list[str] = []
    done = False
    for line in text.split(b"\n"):
        if not line.startswith(b"data: "):
            continue
        data = line[6:]
        if data == b"[DONE]":
            done = True
            continue
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None, "undecodable chunk", False
        if "error" in chunk:
            return None, "error event", _error_is_upstreams(data)
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return None, "malformed chunk", True
        for choice in choices:
            if not isinstance(choice, dict) or not isinstance(choice.get("index"), int):
                return None, "malformed chunk", True
            content = (choice.get("delta") or {}).get("content")
            if isinstance(content, str):
                parts.append(content)
    if not done:
        return None, "no [DONE]", False
    return "".join(parts), None, False


def _plain_answer(text: bytes) -> tuple[str | None, str | None, bool]:
    try:
        content = orjson.loads(text)["choices"][0]["message"]["content"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return None, "malformed answer", True
    if not isinstance(content, str):
        return None, "malformed answer", True
    return content, None, False


async def ask(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> Reply:
    """One chat completion through a node, read to the end and checked."""
    try:
        response = await client.post(f"{url}/v1/chat/completions", json=body)
    except httpx.HTTPError as exc:
        return Reply(0, "", None, _transport_problem(exc), False)
    cache = response.headers.get("x-cachefleet-cache", "")
    if response.status_code != 200:
        upstream = _error_is_upstreams(response.content)
        return Reply(response.status_code, cache, None, f"status {response.status_code}", upstream)
    reader = _stream_answer if body.get("stream") else _plain_answer
    answer, problem, upstream = reader(response.content)
    return Reply(200, cache, answer, problem, upstream)


def answered(prompt: str, answer: str, group: list[str] | None) -> bool:
    """Whether the stub's answer is to `prompt` (or to a paraphrase in its group)."""
    asked = {p[:80] for p in (group or [prompt])} | {prompt[:80]}
    return any(answer.startswith(f"Answer to '{p}'") for p in asked)


# --------------------------------------------------------------------------- the run


def _utc(wall: float) -> str:
    """A wall-clock time as the node's log lines write it (ISO 8601, UTC)."""
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds")


@dataclass
class Record:
    """Counters per second of the run."""

    started: float = field(default_factory=time.monotonic)
    seconds: dict[int, Counter[str]] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    upstream_windows: list[tuple[float, float]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    #: every cache-caused error, with UTC times and the node, to find it in the node's log
    cache_errors: list[dict[str, Any]] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.started

    def count(self, at: float, what: str) -> None:
        self.seconds.setdefault(int(at), Counter())[what] += 1

    def upstream_fault_during(self, start: float, end: float) -> bool:
        """Whether a request from `start` to `end` overlapped an upstream fault (open ones
        included), or started while the upstream may still answer a request of one."""
        margin = UPSTREAM_TIMEOUT_S + 5
        return any(s - 1 <= end and start <= e + margin for s, e in self.upstream_windows)

    def outcome(
        self, start: float, node: str, prompt: str, reply: Reply, verdict: str | None
    ) -> None:
        """Count one reply from `node` (`verdict`: None, `wrong` or `near_miss`, an answer to a
        near-miss group's prompt); an error is the upstream's when it says so during an
        upstream fault. A transport error is never the upstream's: the node must answer."""
        end = self.now()
        self.count(end, "requests")
        if reply.problem is None:
            self.count(end, "hits" if reply.cache.startswith("hit") else reply.cache or "other")
            if verdict is not None:
                self.count(end, verdict)
                self.sample(start, end, prompt, reply, verdict)
            return
        if reply.upstream and self.upstream_fault_during(start, end):
            self.count(end, "upstream_errors")
        elif reply.upstream and end - start >= UPSTREAM_TIMEOUT_S:
            # the upstream's error (a 504, or an interrupted stream) after the node's total
            # upstream deadline (`upstream.timeout_s`) outside an upstream fault: counted apart
            self.count(end, "upstream_deadline")
        else:
            self.count(end, "cache_errors")
            self.sample(start, end, prompt, reply, reply.problem)
            self.cache_errors.append(
                {
                    "node": node,
                    "sent_utc": _utc(time.time() - (end - start)),
                    "failed_utc": _utc(time.time()),
                    "start_s": round(start, 2),
                    "end_s": round(end, 2),
                    "status": reply.status,
                    "problem": reply.problem,
                    "prompt": prompt[:80],
                }
            )

    def sample(self, start: float, end: float, prompt: str, reply: Reply, why: str) -> None:
        """Keep the first few bad replies of each kind, to say what went wrong."""
        kind = f"{why} {reply.cache} {reply.status}"
        if sum(s["kind"] == kind for s in self.samples) < 3 and len(self.samples) < 30:
            self.samples.append(
                {
                    "kind": kind,
                    "start_s": round(start, 1),
                    "end_s": round(end, 1),
                    "status": reply.status,
                    "cache": reply.cache,
                    "why": why,
                    "prompt": prompt[:80],
                    "answer": (reply.answer or "")[:120],
                }
            )

    def total(self, what: str) -> int:
        return sum(c[what] for c in self.seconds.values())


class Workload:
    """Repeats, paraphrases and new prompts, seeded. `near_misses`: by a group's first
    prompt, the prompts of the groups written as its near misses (same words, other intent)."""

    def __init__(self, seed: int) -> None:
        groups = load_workload()["groups"]
        self.groups: list[list[str]] = [g["prompts"] for g in groups]
        by_id = {g["id"]: g["prompts"] for g in groups}
        self.near_misses: dict[str, list[str]] = {}
        for g in groups:
            if g["near_miss_of"] in by_id:
                other = by_id[g["near_miss_of"]]
                self.near_misses.setdefault(g["prompts"][0], []).extend(other)
                self.near_misses.setdefault(other[0], []).extend(g["prompts"])
        self.rng = random.Random(seed)
        self.serial = itertools.count()

    def next(self) -> tuple[str, list[str] | None]:
        kind = self.rng.random()
        group = self.rng.choice(self.groups)
        if kind < 0.4:
            return group[0], group
        if kind < 0.7:
            return self.rng.choice(group[1:]), group
        topic = self.rng.choice(_TOPICS)
        return f"Write haiku {next(self.serial)} about {topic}.", None


async def _clients(fleet: Fleet, settings: Settings, record: Record, stop: asyncio.Event) -> None:
    """`settings.clients` users, each with its own connection pool, asking one request at a
    time. One pool shared by all of them is not used: httpcore's pool can close an idle
    connection it has already handed to a waiting request (keep-alive expired while a loaded
    event loop delayed that request), and the request then fails with a `ReadError` of the
    client's own making (encode/httpcore#1110). In a pool with one request at a time no other
    request's pass can close the connection in use."""
    workload = Workload(settings.seed)
    names = {url: log.stem for url, _, log in fleet.nodes}
    tls = ssl.create_default_context()  # unused (plain HTTP): built once, not per client

    async def one() -> None:
        async with httpx.AsyncClient(timeout=120, limits=KEEPALIVE, verify=tls) as client:
            while not stop.is_set():
                prompt, group = workload.next()
                url = workload.rng.choice(fleet.urls)
                start = record.now()
                reply = await ask(client, url, _chat(prompt, workload.rng.random() < 0.2))
                verdict = None
                if reply.answer is not None and not answered(prompt, reply.answer, group):
                    near = workload.near_misses.get(group[0]) if group else None
                    crossed = near is not None and answered(near[0], reply.answer, near)
                    verdict = "near_miss" if crossed else "wrong"
                record.outcome(start, names[url], prompt, reply, verdict)

    await asyncio.gather(*(one() for _ in range(settings.clients)))


async def _probe(
    fleet: Fleet, record: Record, stop: asyncio.Event, probes: list[tuple[float, bool]]
) -> None:
    """Lookups of paraphrases on node-b (no in-process ANN): a semantic hit came from Milvus."""
    groups = Workload(0).groups
    texts = itertools.cycle(
        [g[1] + s for s in _SUFFIXES for g in groups]
        + [g[2] + s for s in _SUFFIXES for g in groups]
    )
    probe_url = fleet.urls[1]
    async with httpx.AsyncClient(timeout=30, limits=KEEPALIVE) as client:
        while not stop.is_set():
            hit = False
            with contextlib.suppress(httpx.HTTPError, ValueError):
                reply = await client.post(f"{probe_url}/v1/cache/lookup", json=_chat(next(texts)))
                hit = reply.json().get("result") == "hit-semantic"
            probes.append((record.now(), hit))
            await asyncio.sleep(0.5)


def _recovered_at(probes: list[tuple[float, bool]], since: float) -> float | None:
    return next((t for t, hit in probes if t >= since and hit), None)


@dataclass
class Fault:
    """One fault: how to cause it and how to end it."""

    name: str
    upstream: bool
    begin: Callable[[], Awaitable[None]]
    end: Callable[[], Awaitable[None]]


def _faults(fleet: Fleet, stub: httpx.AsyncClient) -> list[Fault]:
    async def behave(**fields: Any) -> None:
        (await stub.post(f"{fleet.stub_url}/_stub/behaviour", json=fields)).raise_for_status()

    async def send(name: str, sig: signal.Signals) -> None:
        _signal(getattr(fleet, name), sig)

    async def restart(name: str) -> None:
        await asyncio.to_thread(getattr(fleet, f"start_{name}"))

    def process(name: str, stopped: signal.Signals, back: Callable[[], Awaitable[None]]) -> Fault:
        return Fault(
            f"{name.capitalize()} {label[stopped]}", False, lambda: send(name, stopped), back
        )

    label = {signal.SIGKILL: "kill -9", signal.SIGSTOP: "SIGSTOP"}
    return [
        process("redis", signal.SIGKILL, lambda: restart("redis")),
        process("redis", signal.SIGSTOP, lambda: send("redis", signal.SIGCONT)),
        process("milvus", signal.SIGKILL, lambda: restart("milvus")),
        process("milvus", signal.SIGSTOP, lambda: send("milvus", signal.SIGCONT)),
        Fault(
            "upstream slow", False, lambda: behave(latency_ms=2000), lambda: behave(latency_ms=0)
        ),
        Fault(
            "upstream malformed",
            True,
            lambda: behave(malformed=True),
            lambda: behave(malformed=False),
        ),
        Fault(
            "upstream 5xx",
            True,
            lambda: behave(fail_next=10**9, fail_status=503),
            lambda: behave(fail_next=0),
        ),
        Fault("upstream hang", True, lambda: behave(hang=True), lambda: behave(hang=False)),
    ]


async def _keep(
    client: httpx.AsyncClient,
    fleet: Fleet,
    fault: str,
    when: str,
    count: int,
    kept: list[dict[str, Any]],
) -> None:
    """Ask `count` new prompts at once (`when`: before or during `fault`); remember those
    answered by the upstream."""

    async def one(i: int) -> None:
        node = i % len(fleet.urls)
        prompt = f"Keep {when} {fault} {i}: a note about {_TOPICS[i % len(_TOPICS)]}."
        reply = await ask(client, fleet.urls[node], _chat(prompt, stream=i % 3 == 0))
        if reply.answer is not None and not reply.cache.startswith("hit"):
            kept.append({"fault": fault, "when": when, "prompt": prompt, "node": node})

    await asyncio.gather(*(one(i) for i in range(count)))


async def _readable(client: httpx.AsyncClient, url: str, prompt: str) -> bool:
    reply = await client.post(f"{url}/v1/cache/lookup", json=_chat(prompt))
    data = reply.json()
    answer = ((data.get("response") or {}).get("choices") or [{}])[0].get("message", {})
    text = answer.get("content") if isinstance(answer, dict) else None
    return bool(data.get("hit")) and isinstance(text, str) and answered(prompt, text, None)


async def _answers_after(
    fleet: Fleet, client: httpx.AsyncClient, kept: list[dict[str, Any]]
) -> dict[str, Any]:
    """After the run, which kept answers each node still serves. `lost`: stored before a fault
    (healthy tiers), no longer served by the node that answered or by the other one. Answers
    given during a fault are counted apart: the tier that would share them may be down."""
    figures: dict[str, Any] = {}
    for when in ("before", "during"):
        asked = [k for k in kept if k["when"] == when]
        gone: list[dict[str, Any]] = []
        unshared: list[dict[str, Any]] = []
        for k in asked:
            if not await _readable(client, fleet.urls[k["node"]], k["prompt"]):
                gone.append(k)
            elif not await _readable(client, fleet.urls[1 - k["node"]], k["prompt"]):
                unshared.append(k)
        figures[when] = {
            "answered": len(asked),
            "not_served": len(gone),
            "not_on_the_other_node": len(unshared),
            "which": [{k: v for k, v in g.items() if k != "when"} for g in gone + unshared],
        }
    figures["lost"] = figures["before"]["not_served"] + figures["before"]["not_on_the_other_node"]
    return figures


async def _single_flight(fleet: Fleet, client: httpx.AsyncClient) -> dict[str, Any]:
    """50 identical concurrent requests alternating between the nodes: upstream calls."""
    await client.post(f"{fleet.stub_url}/_stub/reset")
    await client.post(f"{fleet.stub_url}/_stub/behaviour", json={"latency_ms": 400})
    body = _chat("Single flight: what is the tallest mountain on each continent?")
    replies = await asyncio.gather(*(ask(client, fleet.urls[i % 2], body) for i in range(50)))
    calls = (await client.get(f"{fleet.stub_url}/_stub/stats")).json()["calls"]
    await client.post(f"{fleet.stub_url}/_stub/reset")
    return {
        "requests": 50,
        "nodes": len(fleet.urls),
        "upstream_calls": calls,
        "errors": sum(r.problem is not None for r in replies),
    }


def _fuzz_value(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(12 if depth < 4 else 7)
    scalars: list[Any] = [
        None,
        rng.choice([True, False]),
        rng.choice([0, -1, 2**63, -(2**63) - 1, 10**400 if rng.random() < 0.1 else 7]),
        rng.choice([1e300, -0.0, 3.5, float("nan")]),
        rng.choice(["", "x" * rng.randrange(1, 5000), "\u0000\ud7ff\ufffd", "🙂" * 50]),
        rng.choice(["user", "system", "assistant", "tool", "developer", "function"]),
        "gpt-4o-mini",
    ]
    if choice < len(scalars):
        return scalars[choice]
    if choice < 9:
        return [_fuzz_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["role", "content", "type", "text", "tool_calls", "name", "index", "function", "x"]
    return {rng.choice(keys): _fuzz_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def _fuzz_case(rng: random.Random) -> tuple[str, bytes, dict[str, str]]:
    """A hostile request: a route, a body and headers."""
    message: dict[str, Any] = {"role": "user", "content": f"fuzz {rng.random()}"}
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [message]}
    fields = [
        "model",
        "messages",
        "temperature",
        "max_tokens",
        "stream",
        "n",
        "stop",
        "tools",
        "stream_options",
        "response_format",
        "tool_choice",
        "logprobs",
        "seed",
        "user",
    ]
    for name in rng.sample(fields, rng.randrange(1, 4)):
        body[name] = _fuzz_value(rng)
    if rng.random() < 0.3:
        message[rng.choice(["content", "role", "tool_calls", "name"])] = _fuzz_value(rng)
    depth = rng.choice([0] * 18 + [100, 300, 1000])
    if depth:
        body["metadata"] = "@deep@"
    route = rng.choice(["/v1/chat/completions", "/v1/cache/lookup", "/v1/cache/store"])
    payload: Any = body
    if route == "/v1/cache/store":
        payload = {"request": body, "response": _fuzz_value(rng)}
        if rng.random() < 0.5:
            answer = {"role": "assistant", "content": "ok", "tool_calls": _fuzz_value(rng)}
            payload["response"] = {"choices": [{"index": 0, "message": answer}]}
    raw = json.dumps(payload, allow_nan=True).encode()
    raw = raw.replace(b'"@deep@"', b"[" * depth + b"1" + b"]" * depth)
    if rng.random() < 0.1:
        raw = raw[: rng.randrange(len(raw))] + rng.choice([b"", b"\xff\xfe", b"}}}"])
    headers = {"content-type": "application/json"}
    if rng.random() < 0.2:
        headers["cache-control"] = rng.choice(
            ["max-age=" + "9" * rng.randrange(1, 400), "no-store, max-age=-1", "s-maxage=x"]
        )
    return route, raw, headers


async def _fuzz(fleet: Fleet, cases: int, seed: int) -> dict[str, Any]:
    """Seeded hostile bodies and headers against node-a: 5xx and broken connections."""
    rng = random.Random(seed)
    statuses: Counter[str] = Counter()
    samples: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=fleet.urls[0], timeout=60, limits=KEEPALIVE) as client:
        for _ in range(cases):
            route, raw, headers = _fuzz_case(rng)
            try:
                reply = await client.post(route, content=raw, headers=headers)
                status = str(reply.status_code)
                text = reply.text[:200]
            except httpx.HTTPError as exc:
                status, text = "transport", type(exc).__name__
            statuses[status] += 1
            if status in {"transport"} | {str(n) for n in range(500, 600)} and len(samples) < 10:
                samples.append(
                    {
                        "route": route,
                        "status": status,
                        "body": raw[:200].decode(errors="replace"),
                        "reply": text,
                    }
                )
    server_errors = sum(n for s, n in statuses.items() if s.startswith("5"))
    return {
        "cases": cases,
        "5xx": server_errors,
        "transport_errors": statuses["transport"],
        "statuses": dict(sorted(statuses.items())),
        "samples": samples,
        "how": "seeded random bodies and headers (types, huge numbers, deep nesting, bad UTF-8, "
        "truncated JSON, cache-control) on chat completions, cache lookup and cache store",
    }


async def _seed_anchors(fleet: Fleet, client: httpx.AsyncClient, groups: list[list[str]]) -> None:
    """Every group's canonical prompt answered by node-a, readable from node-b (via Redis)."""
    for group in groups:
        await ask(client, fleet.urls[0], _chat(group[0]))
    deadline = time.monotonic() + 120
    for group in groups:
        while not await _readable(client, fleet.urls[1], group[0]):
            if time.monotonic() > deadline:
                raise RuntimeError("the anchors never reached the shared tiers")
            await asyncio.sleep(0.5)


async def _faulted(
    fleet: Fleet, settings: Settings, record: Record, probes: list[tuple[float, bool]]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Each fault in turn, under load; answers kept before (stored by healthy tiers) and
    during each fault; the Milvus recovery."""
    kept: list[dict[str, Any]] = []
    recovery: dict[str, Any] = {}
    count = settings.keepers_per_fault
    async with httpx.AsyncClient(timeout=120, limits=KEEPALIVE) as client:
        await asyncio.sleep(settings.settle_s)
        before = [hit for t, hit in probes]
        recovery["baseline_probe_hit_rate"] = round(sum(before) / max(1, len(before)), 3)
        for fault in _faults(fleet, client):
            await _keep(client, fleet, fault.name, "before", count, kept)
            # their write-backs land (seconds on a loaded machine), then Redis syncs its
            # append-only file (every second)
            await asyncio.sleep(KEEP_SETTLE_S)
            start = record.now()
            if fault.upstream:
                record.upstream_windows.append((start, float("inf")))
            await fault.begin()
            keeping = asyncio.create_task(_keep(client, fleet, fault.name, "during", count, kept))
            await asyncio.sleep(settings.fault_s)
            await fault.end()
            end = record.now()
            if fault.upstream:
                record.upstream_windows[-1] = (start, end)
            record.faults.append(
                {"name": fault.name, "start_s": round(start, 1), "end_s": round(end, 1)}
            )
            if fault.name == "Milvus kill -9":
                for _ in range(int(settings.recovery_bound_s * 2)):
                    if _recovered_at(probes, end) is not None:
                        break
                    await asyncio.sleep(0.5)
                first = _recovered_at(probes, end)
                recovery["first_semantic_hit_s"] = None if first is None else round(first - end, 1)
                recovery["restarted_at_s"] = round(end, 1)
            await keeping
            await asyncio.sleep(settings.settle_s)
    return kept, recovery


async def run(settings: Settings, workdir: Path, model_dir: str) -> dict[str, Any]:
    """One fault run; returns the figures."""
    with running_fleet(workdir, model_dir) as fleet:
        await fleet.wait_ready()
        record = Record()
        probes: list[tuple[float, bool]] = []
        async with httpx.AsyncClient(timeout=120, limits=KEEPALIVE) as client:
            await _seed_anchors(fleet, client, Workload(0).groups)
            stop = asyncio.Event()
            record.started = time.monotonic()
            load = asyncio.gather(
                _clients(fleet, settings, record, stop), _probe(fleet, record, stop, probes)
            )
            try:
                kept, recovery = await _faulted(fleet, settings, record, probes)
            finally:
                stop.set()
                await load
            duration = record.now()
            answers = await _answers_after(fleet, client, kept)
            single_flight = await _single_flight(fleet, client)
        fuzz = await _fuzz(fleet, settings.fuzz_cases, settings.seed)
    return _figures(settings, record, probes, duration, answers, recovery, single_flight, fuzz)


def _figures(
    settings: Settings,
    record: Record,
    probes: list[tuple[float, bool]],
    duration: float,
    answers: dict[str, Any],
    recovery: dict[str, Any],
    single_flight: dict[str, Any],
    fuzz: dict[str, Any],
) -> dict[str, Any]:
    requests = record.total("requests")
    timeline = [
        {
            "t": t,
            **{k: record.seconds.get(t, Counter())[k] for k in ("requests", "hits", *ERRORS)},
        }
        for t in range(int(duration) + 1)
    ]
    return {
        "settings": asdict(settings),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "duration_s": round(duration, 1),
        "requests": requests,
        "hits": record.total("hits"),
        "misses": record.total("miss"),
        "bypasses": record.total("bypass"),
        "errors": {
            "cache_caused": record.total("cache_errors"),
            "upstream_caused": record.total("upstream_errors"),
            "upstream_timeouts_outside_faults": record.total("upstream_deadline"),
        },
        "wrong_answers": record.total("wrong"),
        # a semantic hit across a near-miss pair: the matcher's precision (docs/benchmarks/
        # quality.json), not a fault's effect; counted apart
        "near_miss_answers": record.total("near_miss"),
        "bad_reply_samples": record.samples,
        "cache_error_details": record.cache_errors[:200],
        "answers": answers,
        "semantic_recovery": recovery,
        "single_flight": single_flight,
        "fuzz": fuzz,
        "memory": "docs/benchmarks/memory.json and memory.png (make target: python -m "
        "cachefleet_bench memory): RSS against the budget at 1M entries",
        "faults": record.faults,
        "timeline": timeline,
        "probes": [[round(t, 1), hit] for t, hit in probes],
    }


# --------------------------------------------------------------------------- output


def plot(figures: dict[str, Any], path: Path) -> None:
    """Hit rate and errors per 5 s, the faults shaded, the Milvus probe's hits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    window = 5
    rows = figures["timeline"]
    starts = list(range(0, len(rows), window))
    sums = [
        {k: sum(r[k] for r in rows[s : s + window]) for k in rows[0] if k != "t"} for s in starts
    ]
    rate = [s["hits"] / s["requests"] if s["requests"] else 0 for s in sums]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    top.plot(starts, rate, label="hit rate (all clients)")
    probe_t = [t for t, hit in figures["probes"] if hit]
    top.plot(
        probe_t, [1.02] * len(probe_t), "|", color="green", label="Milvus semantic hit (probe)"
    )
    top.set_ylabel("hit rate")
    top.set_ylim(0, 1.08)
    bottom.plot(starts, [s["cache_errors"] for s in sums], color="red", label="cache-caused errors")
    bottom.plot(
        starts, [s["upstream_errors"] for s in sums], color="orange", label="upstream-caused errors"
    )
    bottom.plot(
        starts,
        [s["upstream_deadline"] for s in sums],
        color="purple",
        label="upstream deadline passed outside upstream faults",
    )
    bottom.plot(starts, [s["requests"] for s in sums], color="grey", alpha=0.5, label="requests")
    bottom.set_ylabel(f"per {window} s")
    bottom.set_xlabel("seconds")
    for axis in (top, bottom):
        for fault in figures["faults"]:
            axis.axvspan(fault["start_s"], fault["end_s"], color="grey", alpha=0.15)
        axis.legend(loc="upper right", fontsize=7)
    for fault in figures["faults"]:
        top.text(fault["start_s"], 0.02, fault["name"], rotation=90, fontsize=7, va="bottom")
    fig.suptitle(
        f"{figures['settings']['clients']} clients, {figures['requests']} requests: "
        f"{figures['errors']['cache_caused']} cache-caused errors, "
        f"{figures['wrong_answers']} wrong answers, {figures['answers']['lost']} answers lost"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command line of `python -m cachefleet_bench chaos`."""
    defaults = Settings()
    parser.add_argument("--clients", type=int, default=defaults.clients)
    parser.add_argument("--fault-s", type=float, default=defaults.fault_s)
    parser.add_argument("--settle-s", type=float, default=defaults.settle_s)
    parser.add_argument("--fuzz-cases", type=int, default=defaults.fuzz_cases)
    parser.add_argument("--out", type=Path, default=DOCS, help="where chaos.json and .png go")
    parser.add_argument(
        "--keep-workdir",
        action="store_true",
        help="keep the run's directory (node, Milvus and stub logs, configs); its path is printed",
    )


def main(args: argparse.Namespace) -> int:
    """Run the fault run and write its figures."""
    model_dir = os.environ.get("CACHEFLEET_EMBEDDING_MODEL_DIR", "")
    settings = Settings(
        clients=args.clients,
        fault_s=args.fault_s,
        settle_s=args.settle_s,
        fuzz_cases=args.fuzz_cases,
    )
    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))
    try:
        figures = asyncio.run(run(settings, workdir, model_dir))
    finally:
        if args.keep_workdir:
            print(f"chaos: logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "chaos.json").write_text(json.dumps(figures, indent=1) + "\n")
    plot(figures, args.out / "chaos.png")
    summary = {k: figures[k] for k in ("requests", "hits", "semantic_recovery", "single_flight")}
    summary["errors"] = {k: v for k, v in figures["errors"].items() if not k.endswith("samples")}
    summary["answers"] = {
        k: {n: c for n, c in v.items() if n != "which"} if isinstance(v, dict) else v
        for k, v in figures["answers"].items()
    }
    summary["fuzz_5xx"] = figures["fuzz"]["5xx"]
    print(json.dumps(summary, indent=1))
    return 0
