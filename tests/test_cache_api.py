"""The cache API (lookup, store, invalidate, stats, namespaces) and tenancy rules."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest

from node_harness import Node, NodeFactory, RedisServer, Stub

QUESTION = "What is the refund policy for annual plans?"
PARAPHRASE = "what's the refund policy on annual plans"


def request(content: str, model: str = "gpt-4o-mini") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}]}


def completion(text: str, prompt_tokens: int = 40, completion_tokens: int = 60) -> dict[str, Any]:
    return {
        "id": "chatcmpl-app",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
    }


async def test_store_then_lookup_exact_and_semantic(node: Node, stub: Stub) -> None:
    stored = await node.client.post(
        "/v1/cache/store",
        json={"request": request(QUESTION), "response": completion("Refunds within 30 days.")},
    )
    assert stored.status_code == 201
    assert stored.json()["stored"] is True
    exact = (await node.client.post("/v1/cache/lookup", json=request(QUESTION))).json()
    assert exact["hit"] is True
    assert exact["result"] == "hit-exact"
    assert exact["response"]["choices"][0]["message"]["content"] == "Refunds within 30 days."
    semantic = (await node.client.post("/v1/cache/lookup", json=request(PARAPHRASE))).json()
    assert semantic["result"] == "hit-semantic"
    assert semantic["similarity"] > 0.85
    miss = (
        await node.client.post("/v1/cache/lookup", json=request("Where is your office?"))
    ).json()
    assert miss == {**miss, "hit": False, "result": "miss", "response": None}
    # the proxy serves what the application stored, without calling upstream
    proxied = await node.chat(PARAPHRASE)
    assert proxied.json()["choices"][0]["message"]["content"] == "Refunds within 30 days."
    assert await stub.calls() == 0


async def test_store_rejects_incomplete_answers(node: Node) -> None:
    partial = completion("half an answer")
    partial["choices"][0]["finish_reason"] = None
    response = await node.client.post(
        "/v1/cache/store", json={"request": request(QUESTION), "response": partial}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "response"
    assert (await node.client.post("/v1/cache/lookup", json=request(QUESTION))).json()[
        "hit"
    ] is False


@pytest.mark.parametrize(
    "tool_calls", ["call me", [1, 2], [{"function": "f"}], [{"function": {"name": 3}}]]
)
async def test_store_rejects_answers_that_cannot_be_replayed(node: Node, tool_calls: Any) -> None:
    odd = completion("")
    odd["choices"][0]["message"]["tool_calls"] = tool_calls
    response = await node.client.post(
        "/v1/cache/store", json={"request": request(QUESTION), "response": odd}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "response"
    # nothing stored: a streamed request for the prompt still goes upstream and succeeds
    streamed = await node.chat(QUESTION, stream=True)
    assert streamed.status_code == 200
    assert streamed.headers["x-cachefleet-cache"] == "miss"


async def test_invalidate_by_tag_and_age_and_dry_run(node: Node) -> None:
    for index, tags in enumerate(["pricing", "pricing,legal", "support"]):
        await node.client.post(
            "/v1/cache/store",
            json={
                "request": request(f"{QUESTION} case {index} {'x' * index}"),
                "response": completion("a"),
            },
            headers={"x-cachefleet-tags": tags},
        )
    dry = (
        await node.client.post("/v1/cache/invalidate", json={"tags": ["pricing"], "dry_run": True})
    ).json()
    assert dry["dry_run"] is True
    assert dry["removed"]["default"]["store"] == 2
    assert (await node.client.get("/v1/cache/stats")).json()["namespaces"]["default"][
        "entries"
    ] == 3
    young = (await node.client.post("/v1/cache/invalidate", json={"older_than_s": 3600})).json()
    assert young["removed"]["default"]["store"] == 0  # nothing is an hour old
    done = (await node.client.post("/v1/cache/invalidate", json={"tags": ["pricing"]})).json()
    assert done["removed"]["default"] == {"l1": 2, "store": 2, "vectors": 2}
    left = (await node.client.get("/v1/cache/stats")).json()["namespaces"]["default"]["entries"]
    assert left == 1


async def test_tenant_keys_scope_invalidation_and_admin_rights(
    node_factory: NodeFactory, redis_server: RedisServer
) -> None:
    keys = {"acme": "sk-acme", "globex": "sk-globex", "ops": "sk-ops"}
    node = await node_factory(
        {
            "redis": {"url": redis_server.url},
            "auth": {
                "api_keys": [
                    {
                        "tenant": tenant,
                        "key_sha256": hashlib.sha256(key.encode()).hexdigest(),
                        "admin": tenant == "ops",
                    }
                    for tenant, key in keys.items()
                ]
            },
        }
    )

    def auth(tenant: str) -> dict[str, str]:
        return {"authorization": f"Bearer {keys[tenant]}"}

    for tenant in ("acme", "globex"):
        stored = await node.client.post(
            "/v1/cache/store",
            json={"request": request(QUESTION), "response": completion(f"for {tenant}")},
            headers=auth(tenant),
        )
        assert stored.status_code == 201
    forbidden = await node.client.post(
        "/v1/cache/invalidate", json={"tenant": "globex"}, headers=auth("acme")
    )
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["param"] == "tenant"
    own = (await node.client.post("/v1/cache/invalidate", json={}, headers=auth("acme"))).json()
    assert own["tenant"] == "acme"
    assert own["removed"]["default"]["store"] == 1
    acme_view = await node.client.post(
        "/v1/cache/lookup", json=request(QUESTION), headers=auth("acme")
    )
    globex_view = await node.client.post(
        "/v1/cache/lookup", json=request(QUESTION), headers=auth("globex")
    )
    assert acme_view.json()["hit"] is False
    assert globex_view.json()["response"]["choices"][0]["message"]["content"] == "for globex"
    switch = {"name": "default", "namespace": "default-v2"}
    denied = await node.client.post(
        "/v1/cache/namespaces/switch", json=switch, headers=auth("acme")
    )
    assert denied.status_code == 403
    allowed = await node.client.post(
        "/v1/cache/namespaces/switch", json=switch, headers=auth("ops")
    )
    assert allowed.json()["active"] == {"default": "default-v2"}

    # What spans every tenant is for the admin key only (Prometheus scrapes
    # `server.metrics_port`); the description for key holders.
    for path in ("/v1/cache/stats", "/v1/cache/namespaces", "/v1/cache/embedding", "/metrics"):
        assert (await node.client.get(path)).status_code == 401, path
        assert (await node.client.get(path, headers=auth("acme"))).status_code == 403, path
        assert (await node.client.get(path, headers=auth("ops"))).status_code == 200, path
    for path in ("/openapi.json", "/docs"):
        assert (await node.client.get(path)).status_code == 401, path
        assert (await node.client.get(path, headers=auth("acme"))).status_code == 200, path


async def test_stats_count_hits_tokens_and_dollars(
    node_factory: NodeFactory, redis_server: RedisServer
) -> None:
    node = await node_factory({"redis": {"url": redis_server.url}})
    await node.chat(QUESTION)
    await node.settle()
    await node.chat(QUESTION)
    await node.chat(PARAPHRASE)
    await node.chat(QUESTION, temperature=0, max_tokens=3)
    await node.settle()
    report = (await node.client.get("/v1/cache/stats")).json()
    counters = report["namespaces"]["default"]["node"]
    assert counters["requests"] == 4
    assert counters["hits_exact"] == 1
    assert counters["hits_semantic"] == 1
    assert counters["misses"] == 2
    assert counters["hit_rate"] == 0.5
    assert counters["completion_tokens_saved"] > 0
    assert counters["cost_saved_dollars"] > 0
    assert report["namespaces"]["default"]["entries"] == 2
    l1 = report["l1"]  # the in-process tiers against their shared memory budget
    assert (l1["exact_entries"], l1["semantic_entries"]) == (2, 2)
    assert l1["tier_bytes"]["l1_exact"] == l1["exact_bytes"] > 0
    assert 0 < sum(l1["tier_bytes"].values()) <= l1["budget_bytes"]
    assert set(l1["evictions"]) == {"l1_exact", "l1_semantic"}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # fleet-wide counters are flushed to Redis every second
        report = (await node.client.get("/v1/cache/stats")).json()
        if (report["namespaces"]["default"].get("fleet") or {}).get("requests") == 4:
            break
        await __import__("asyncio").sleep(0.2)
    assert report["namespaces"]["default"]["fleet"]["hits"] == 2


async def test_openapi_description_lists_the_api(node: Node) -> None:
    spec = (await node.client.get("/openapi.json")).json()
    for path in (
        "/v1/chat/completions",
        "/v1/cache/lookup",
        "/v1/cache/store",
        "/v1/cache/invalidate",
        "/v1/cache/stats",
        "/v1/cache/namespaces/switch",
        "/metrics",
        "/healthz",
        "/readyz",
    ):
        assert path in spec["paths"], path
    body = spec["paths"]["/v1/chat/completions"]["post"]["requestBody"]
    assert "messages" in body["content"]["application/json"]["schema"]["properties"]
