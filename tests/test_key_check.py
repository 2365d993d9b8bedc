"""No cached answer without a credential the upstream accepts (no tenant keys configured)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from node_harness import NodeFactory, Stub

QUESTION = "How do I reset my password?"
GOOD = {"authorization": "Bearer sk-good"}
OTHER = {"authorization": "Bearer sk-other"}
WRONG = {"authorization": "Bearer sk-wrong"}


async def model_calls(stub: Stub) -> int:
    return int((await stub.client.get(f"{stub.url}/_stub/stats")).json()["model_calls"])


def assert_refused_like_upstream(response: httpx.Response, code: str = "invalid_api_key") -> None:
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code  # the upstream's own body
    assert response.headers["x-cachefleet-cache"] == "bypass"
    assert response.headers["x-cachefleet-bypass-reason"] == "key-rejected"


async def test_hits_go_only_to_credentials_the_upstream_accepts(
    node_factory: NodeFactory, stub: Stub
) -> None:
    await stub.behave(valid_keys=["sk-good", "sk-other"])
    node = await node_factory()
    first = await node.chat(QUESTION, headers=GOOD)
    assert first.headers["x-cachefleet-cache"] == "miss"
    await node.settle()
    calls, checks = await stub.calls(), await model_calls(stub)

    # the upstream accepted sk-good a moment ago: served without asking again
    hit = await node.chat(QUESTION, headers=GOOD)
    assert hit.headers["x-cachefleet-cache"] == "hit-exact"
    assert await model_calls(stub) == checks

    wrong = await node.chat(QUESTION, headers=WRONG)
    assert_refused_like_upstream(wrong)
    assert "Incorrect API key" in wrong.json()["error"]["message"]
    missing = await node.chat(QUESTION)
    assert_refused_like_upstream(missing)
    assert "didn't provide" in missing.json()["error"]["message"]
    assert await model_calls(stub) == checks + 2  # one cheap check each
    again = await node.chat(QUESTION, headers=WRONG)
    assert_refused_like_upstream(again)
    assert await model_calls(stub) == checks + 2  # the refusal is remembered

    # another key the upstream accepts reads the same answer after one check
    other = await node.chat(QUESTION, headers=OTHER)
    assert other.headers["x-cachefleet-cache"] == "hit-exact"
    assert await model_calls(stub) == checks + 3
    assert await stub.calls() == calls  # no completion was paid for any of this

    metrics = (await node.client.get("/metrics")).text
    assert 'cachefleet_key_checks_total{outcome="rejected"} 3.0' in metrics
    assert 'cachefleet_key_checks_total{outcome="verified"} 1.0' in metrics
    assert 'cachefleet_key_checks_total{outcome="accepted"} 1.0' in metrics


async def test_the_lookup_api_refuses_the_same_credentials(
    node_factory: NodeFactory, stub: Stub
) -> None:
    await stub.behave(valid_keys=["sk-good"])
    node = await node_factory()
    await node.chat(QUESTION, headers=GOOD)
    await node.settle()
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": QUESTION}],
    }
    wrong = await node.client.post("/v1/cache/lookup", json=body, headers=WRONG)
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    good = await node.client.post("/v1/cache/lookup", json=body, headers=GOOD)
    assert good.json()["hit"] is True


async def test_a_revoked_key_reads_hits_only_until_its_verdict_expires(
    node_factory: NodeFactory, stub: Stub
) -> None:
    await stub.behave(valid_keys=["sk-good"])
    node = await node_factory({"auth": {"key_verdict_ttl_s": 0.5}})
    await node.chat(QUESTION, headers=GOOD)
    await node.settle()
    await stub.behave(valid_keys=["sk-other"])  # sk-good revoked upstream
    within = await node.chat(QUESTION, headers=GOOD)
    assert within.headers["x-cachefleet-cache"] == "hit-exact"  # the documented bound
    await asyncio.sleep(0.6)
    after = await node.chat(QUESTION, headers=GOOD)
    assert_refused_like_upstream(after)


async def test_an_undecided_check_sends_the_request_upstream(
    node_factory: NodeFactory, stub: Stub
) -> None:
    await stub.behave(valid_keys=["sk-good", "sk-other"], models_status=404)
    node = await node_factory()
    await node.chat(QUESTION, headers=GOOD)
    await node.settle()
    calls = await stub.calls()
    # /models says nothing: the upstream answers this one and thereby accepts sk-other
    routed = await node.chat(QUESTION, headers=OTHER)
    assert routed.status_code == 200
    assert routed.headers["x-cachefleet-cache"] == "bypass"
    assert routed.headers["x-cachefleet-bypass-reason"] == "key-unverified"
    assert await stub.calls() == calls + 1
    learned = await node.chat(QUESTION, headers=OTHER)
    assert learned.headers["x-cachefleet-cache"] == "hit-exact"
    # a wrong key still gets the upstream's refusal, from the completion call itself
    wrong = await node.chat(QUESTION, headers=WRONG)
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"


async def test_a_keyless_shared_cache_serves_every_caller_when_told_to(
    node_factory: NodeFactory, stub: Stub
) -> None:
    await stub.behave(valid_keys=["sk-good"])
    node = await node_factory({"auth": {"serve_hits_without_key_check": True}})
    await node.chat(QUESTION, headers=GOOD)
    await node.settle()
    anyone = await node.chat(QUESTION)
    assert anyone.status_code == 200
    assert anyone.headers["x-cachefleet-cache"] == "hit-exact"
    assert await model_calls(stub) == 0


async def test_the_upstream_password_never_reaches_the_log(
    node_factory: NodeFactory, stub: Stub, capsys: Any
) -> None:
    with_password = stub.base_url.replace("http://", "http://svc:hunter2-secret@")
    await node_factory({"upstream": {"base_url": with_password}})
    out = capsys.readouterr()
    assert "node_started" in out.out + out.err
    assert "hunter2-secret" not in out.out + out.err
