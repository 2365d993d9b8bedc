"""Bad input gets a 4xx with an OpenAI-style JSON error naming the problem, and no cache write."""

from __future__ import annotations

from typing import Any

import pytest

from node_harness import Node, NodeFactory, Stub

GOOD = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]}


async def post_raw(node: Node, body: bytes, path: str = "/v1/chat/completions") -> Any:
    return await node.client.post(path, content=body, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        (b"{not json", 400, None, "invalid_json"),
        (b"", 400, None, "empty_body"),
        (b"[1, 2]", 400, None, "invalid_json"),
        (b'{"model": "gpt-4o-mini"}', 400, "messages", "missing_required_parameter"),
        (b'{"model": "gpt-4o-mini", "messages": []}', 400, "messages", "invalid_value"),
        (
            b'{"messages": [{"role": "user", "content": "x"}]}',
            400,
            "model",
            "missing_required_parameter",
        ),
        (
            b'{"model": 7, "messages": [{"role": "user", "content": "x"}]}',
            400,
            "model",
            "invalid_value",
        ),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "wizard", "content": "x"}]}',
            400,
            "messages[0].role",
            "invalid_value",
        ),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": 42}]}',
            400,
            "messages[0].content",
            "invalid_value",
        ),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}',
            400,
            "temperature",
            "invalid_value",
        ),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "temperature": 3}',
            400,
            "temperature",
            "invalid_value",
        ),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
            400,
            "stream",
            "invalid_value",
        ),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [{"text": "x"}]}]}',
            400,
            "messages[0].content[0].type",
            "missing_required_parameter",
        ),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
            400,
            None,
            "invalid_encoding",
        ),
    ],
)
async def test_malformed_requests(
    node: Node, stub: Stub, body: bytes, status: int, param: str | None, code: str
) -> None:
    response = await post_raw(node, body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["code"] == code
    assert error["message"]
    assert "Traceback" not in response.text
    assert await stub.calls() == 0
    assert len(node.runtime.engine.l1_exact) == 0


async def test_oversize_body_is_413(node_factory: NodeFactory, stub: Stub) -> None:
    node = await node_factory({"server": {"max_request_bytes": 2048}})
    big = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 5000}]}
    response = await node.client.post("/v1/chat/completions", json=big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert await stub.calls() == 0


async def test_unknown_model_is_404_naming_the_model(node_factory: NodeFactory) -> None:
    node = await node_factory(
        {"namespaces": [{"name": "chat", "models": ["gpt-4o-mini", "gpt-4o"]}]}
    )
    response = await node.client.post("/v1/chat/completions", json={**GOOD, "model": "llama-9000"})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["param"] == "model"
    assert error["code"] == "model_not_found"
    assert "llama-9000" in error["message"]


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/cache/store", {"request": GOOD}, "response"),
        ("/v1/cache/store", {"request": GOOD, "response": {}, "extra": 1}, "extra"),
        ("/v1/cache/invalidate", {"namespace": "Bad Name!"}, "namespace"),
        ("/v1/cache/invalidate", {"older_than_s": -5}, "older_than_s"),
        ("/v1/cache/invalidate", {"tags": "pricing"}, "tags"),
        ("/v1/cache/namespaces/switch", {"name": "default"}, "namespace"),
    ],
)
async def test_cache_api_validation(
    node: Node, path: str, body: dict[str, Any], param: str
) -> None:
    response = await node.client.post(path, json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


async def test_unknown_route_and_method_are_json(node: Node) -> None:
    missing = await node.client.get("/v1/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = await node.client.get("/v1/chat/completions")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("headers", "param"),
    [
        ({"x-cachefleet-tags": "Not A Tag"}, "x-cachefleet-tags"),
        ({"x-cachefleet-ttl": "forever"}, "x-cachefleet-ttl"),
        ({"x-cachefleet-threshold": "1.5"}, "x-cachefleet-threshold"),
        ({"cache-control": "max-age=-3"}, "cache-control"),
    ],
)
async def test_bad_cache_headers(
    node: Node, stub: Stub, headers: dict[str, str], param: str
) -> None:
    response = await node.client.post("/v1/chat/completions", json=GOOD, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert await stub.calls() == 0
