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
        ("/v1/cache/invalidate", {"older_than_s": 1e300}, "older_than_s"),
        (
            "/v1/cache/warm",
            {"name": "default", "from_namespace": "old", "offset": 2**63, "limit": 10},
            "offset",
        ),
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
    missing = await node.client.get("/v1/cache/nope")  # the node's own API: never upstream
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    outside = await node.client.get("/nope")
    assert outside.status_code == 404
    assert outside.json()["error"]["code"] == "not_found"
    wrong = await node.client.get("/v1/chat/completions")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    assert "POST" in wrong.json()["error"]["message"]


@pytest.mark.parametrize(
    ("headers", "param"),
    [
        ({"x-cachefleet-tags": "Not A Tag"}, "x-cachefleet-tags"),
        ({"x-cachefleet-ttl": "forever"}, "x-cachefleet-ttl"),
        ({"x-cachefleet-threshold": "1.5"}, "x-cachefleet-threshold"),
        ({"cache-control": "max-age=-3"}, "cache-control"),
        ({"cache-control": "max-age=1e3"}, "cache-control"),
        ({"x-cachefleet-ttl": "9" * 5000}, None),  # huge: capped like the namespace TTL
    ],
)
async def test_bad_cache_headers(
    node: Node, stub: Stub, headers: dict[str, str], param: str | None
) -> None:
    response = await node.client.post("/v1/chat/completions", json=GOOD, headers=headers)
    if param is None:
        assert response.status_code == 200
        return
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert await stub.calls() == 0


async def test_huge_max_age_counts_as_2_to_the_31(node: Node) -> None:
    # RFC 9111 5.2: a delta-seconds too large to represent is 2^31, never an error
    headers = {"cache-control": "max-age=" + "9" * 400}
    first = await node.client.post("/v1/chat/completions", json=GOOD, headers=headers)
    assert first.status_code == 200
    await node.settle()
    again = await node.client.post("/v1/chat/completions", json=GOOD, headers=headers)
    assert again.headers["x-cachefleet-cache"] == "hit-exact"


async def test_deep_json_is_400_naming_the_field(node: Node, stub: Stub) -> None:
    deep = b"[" * 300 + b"]" * 300
    body = (
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "x": '
        + deep
        + b"}"
    )
    response = await post_raw(node, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"].startswith("x[0][0]")
    assert "deeper than 64" in error["message"]
    assert await stub.calls() == 0
    # the connection is still usable after the error
    assert (await node.client.post("/v1/chat/completions", json=GOOD)).status_code == 200


async def test_the_served_openapi_has_no_dangling_references(node: Node) -> None:
    document = (await node.client.get("/openapi.json")).json()

    def references(value: Any) -> list[str]:
        if isinstance(value, dict):
            own = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
            return own + [ref for item in value.values() for ref in references(item)]
        if isinstance(value, list):
            return [ref for item in value for ref in references(item)]
        return []

    found = references(document)
    for reference in found:
        target: Any = document
        for part in reference.removeprefix("#/").split("/"):
            assert isinstance(target, dict), reference
            assert part in target, reference
            target = target[part]
    bodies = [
        operation["requestBody"]["content"]["application/json"]["schema"]
        for path in document["paths"].values()
        for operation in path.values()
        if "requestBody" in operation
    ]
    assert bodies, "the request bodies are described"
    assert all("$defs" not in body for body in bodies)
