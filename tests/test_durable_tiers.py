"""The semantic tier survives restarts (issue 14, points 2 and 8).

- A node on the embedded Milvus Lite, stopped with SIGTERM (or killed with SIGKILL a second
  after its last answer) and started again on the same data dir, serves every entry it
  stored: all exact repeats, and near-repeats from the vectors it wrote (the in-process
  semantic index is off, so every semantic hit comes from Milvus Lite's files).
- A node on a Milvus server that is killed and started again on the same data dir finds the
  collection unloaded: it reloads it and serves semantic hits again within seconds, and
  `/readyz` says the tier is down while it is.

Real node processes, a real `milvus-lite server` process, the real model, the stub upstream.
Bounds are generous: these run on a busy 2-core machine.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from node_harness import TEST_DEADLINES, NodeProcess, Stub, free_port, spawn_node, wait_ready

SUBJECTS = [
    "salmon", "chicken", "tofu", "rice", "pasta", "bread", "lentils", "quinoa", "eggs",
    "shrimp", "spinach", "potatoes", "carrots", "mushrooms", "beef", "pork", "lamb", "duck",
    "oats", "beans", "cabbage", "broccoli", "zucchini", "eggplant", "pumpkin",
]  # fmt: skip
TEMPLATES = [
    "How do I cook {} on a charcoal grill?",
    "What is the best way to store fresh {} in the fridge?",
    "How many calories are in a cup of {}?",
    "Can dogs safely eat {}?",
    "Which wine pairs well with {}?",
    "How do I freeze {} without losing flavour?",
    "Where do {} originally come from historically?",
    "How do I grow {} in a small garden?",
    "What spices go best with {}?",
    "How do I pickle {} at home?",
    "What is a vegan substitute for {}?",
    "How do I make a curry with {}?",
]


def prompts(count: int) -> list[str]:
    """Distinct questions (several per subject and per template: close neighbours)."""
    every = [t.format(s) for t in TEMPLATES for s in SUBJECTS]
    assert count <= len(every)
    return every[:count]


def near(prompt: str) -> str:
    """A near-repeat: same question, lower case, no question mark, a polite tail."""
    return prompt.lower().rstrip("?") + " please"


def chat(content: str) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}


def content(body: dict[str, Any]) -> str | None:
    response = body.get("response")
    return None if response is None else str(response["choices"][0]["message"]["content"])


async def gather_limited(limit: int, *calls: Any) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(call: Any) -> Any:
        async with gate:
            return await call

    return await asyncio.gather(*(one(c) for c in calls))


def node_config(stub: Stub, model_dir: Path, **extra: Any) -> dict[str, Any]:
    return {
        "upstream": {"base_url": stub.base_url},
        "embedding": {"model_dir": str(model_dir)},
        "namespaces": [{"name": "default"}],
        "deadlines": TEST_DEADLINES,
        # every semantic hit must come from Milvus, not from the node's in-process index
        "l1": {"semantic_max_entries": 0},
        **extra,
    }


def log_tail(node: NodeProcess) -> str:
    lines = [line for line in node.log_path.read_text().splitlines() if "key_check" not in line]
    return "\n".join(lines[-40:])


# ---------------------------------------------------------------- embedded: restarts


@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
async def test_a_restart_on_the_same_data_serves_every_stored_entry(
    stop: str, tmp_path: Path, stub: Stub, model_dir: Path
) -> None:
    await stub.reset()
    config = node_config(stub, model_dir, data_dir=str(tmp_path / "data"))
    questions = prompts(300)
    node = spawn_node(config, tmp_path, "first")
    try:
        await wait_ready(node)
        async with httpx.AsyncClient(base_url=node.url, timeout=60) as client:
            # most through the cache API, 16 at a time: concurrent writes into Milvus Lite
            stored = await gather_limited(
                16,
                *(
                    client.post(
                        "/v1/cache/store", json={"request": chat(q), "response": _completion(q)}
                    )
                    for q in questions[:260]
                ),
            )
            assert all(s.json()["outcome"] == "stored" for s in stored)
            # the rest as misses through the proxy: their write-backs run in the background
            answers = await gather_limited(
                8, *(client.post("/v1/chat/completions", json=chat(q)) for q in questions[260:])
            )
            assert all(a.headers["x-cachefleet-cache"] == "miss" for a in answers)
            if stop == "sigterm":
                node.process.send_signal(signal.SIGTERM)  # write-backs may still be pending
            else:
                await asyncio.sleep(1.0)  # a crash loses at most the last second
                node.process.kill()
            code = await asyncio.to_thread(node.process.wait, 60)
        if stop == "sigterm":
            assert code == 0, log_tail(node)
            log = node.log_path.read_text()
            assert '"milvus_lite_closed"' in log, log_tail(node)
            assert '"flushed": true' in log, log_tail(node)
    finally:
        node.stop()

    again = spawn_node(config, tmp_path, "second")
    try:
        await wait_ready(again)
        async with httpx.AsyncClient(base_url=again.url, timeout=60) as client:
            exact = await gather_limited(
                4, *(client.post("/v1/cache/lookup", json=chat(q)) for q in questions)
            )
            similar = await gather_limited(
                4, *(client.post("/v1/cache/lookup", json=chat(near(q))) for q in questions)
            )
    finally:
        again.stop()
    exact_bodies = [r.json() for r in exact]
    missing = [
        q for q, b in zip(questions, exact_bodies, strict=True) if b["result"] != "hit-exact"
    ]
    assert not missing, f"{len(missing)} of {len(questions)} exact repeats missed: {missing[:5]}"
    served = [
        content(s.json()) == content(e) and s.json()["result"] == "hit-semantic"
        for s, e in zip(similar, exact_bodies, strict=True)
    ]
    rate = sum(served) / len(served)
    assert rate >= 0.95, (
        f"near-repeats served from the restarted tier: {rate:.1%}; reasons "
        f"{[s.json()['reasons'] for s, ok in zip(similar, served, strict=True) if not ok][:5]}"
        f"\n{log_tail(again)}"
    )
    assert "WAL recovery stopped" not in again.log_path.read_text()


# --------------------------------------------------------- Milvus server: restarts


class MilvusProcess:
    """A `milvus-lite server` process that can be killed and started again on its data."""

    def __init__(self, data: Path) -> None:
        self.data, self.port = data, free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = Path(sys.executable).with_name("milvus-lite")
        where = ["--data-dir", str(self.data), "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = subprocess.Popen(
            [binary, "server", *where],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    pytest.fail("milvus-lite server did not start")
                time.sleep(0.1)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


async def test_semantic_hits_come_back_within_seconds_after_a_milvus_restart(
    tmp_path: Path, stub: Stub, model_dir: Path
) -> None:
    await stub.reset()
    milvus = MilvusProcess(tmp_path / "milvus")
    milvus.start()
    config = node_config(
        stub, model_dir, milvus={"uri": milvus.uri, "collection_prefix": "r" + uuid.uuid4().hex[:8]}
    )
    questions = prompts(30)
    node = spawn_node(config, tmp_path, "node")
    outcomes: list[tuple[float, str]] = []
    stop = asyncio.Event()
    try:
        await wait_ready(node)
        async with httpx.AsyncClient(base_url=node.url, timeout=60) as client:
            for q in questions:  # one at a time: stored before the server is killed
                stored = await client.post(
                    "/v1/cache/store",
                    json={"request": chat(q), "response": _completion(q)},
                )
                assert stored.json()["outcome"] == "stored", stored.text

            async def load() -> None:  # near-repeats, each one a Milvus search
                for i in range(1_000_000):
                    if stop.is_set():
                        return
                    r = await client.post("/v1/cache/lookup", json=chat(near(questions[i % 30])))
                    outcomes.append((time.monotonic(), r.json()["result"]))
                    await asyncio.sleep(0.05)

            async def milvus_state() -> dict[str, Any]:
                body = (await client.get("/readyz")).json()
                assert body["status"] == "ready"  # fail-open: the node serves regardless
                return dict(body["tiers"]["milvus"])

            loader = asyncio.create_task(load())
            await _until(lambda: _hits_since(outcomes, 0.0) >= 5, 30)
            milvus.kill()
            killed = time.monotonic()
            # the node sees the server gone and says so
            down = await _until_state(milvus_state, lambda s: not s["connected"], 30)
            assert down["problem"] == "unreachable", down
            await asyncio.sleep(max(0.0, 2.0 - (time.monotonic() - killed)))
            milvus.start()  # same data dir: the collection exists but is not loaded
            restarted = time.monotonic()
            await _until(lambda: _hits_since(outcomes, restarted) >= 1, 60)
            recovered_s = next(t for t, r in outcomes if t > restarted and r == "hit-semantic")
            recovered_s -= restarted
            await _until(
                lambda: len([t for t, _ in outcomes if t > restarted + recovered_s]) >= 40, 60
            )
            stop.set()
            await loader
            state = await milvus_state()
    finally:
        stop.set()
        node.stop()
        milvus.kill()
    after = [r for t, r in outcomes if t > restarted + recovered_s]
    rate = after.count("hit-semantic") / len(after)
    print(f"semantic hits back {recovered_s:.2f} s after the Milvus restart; then {rate:.0%}")
    assert recovered_s < 15, (
        recovered_s
    )  # measured 1-3 s; was never (the collection stayed released)
    assert rate >= 0.9, (rate, after[:20], log_tail(node))
    assert state["connected"], state
    assert state["recoveries"] >= 1, state


def _completion(question: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-durable",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"answer to {question}"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 30},
    }


def _hits_since(outcomes: list[tuple[float, str]], since: float) -> int:
    return sum(1 for t, r in outcomes if t > since and r == "hit-semantic")


async def _until(check: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout_s}s")
        await asyncio.sleep(0.1)


async def _until_state(read: Any, check: Any, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        state = await read()
        if check(state):
            return dict(state)
        if time.monotonic() > deadline:
            raise AssertionError(f"state not reached within {timeout_s}s: {state}")
        await asyncio.sleep(0.2)
