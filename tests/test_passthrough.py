"""Every route the node does not cache passes through to the upstream, untouched."""

from __future__ import annotations

import hashlib

import pytest

from node_harness import Node, NodeFactory, Stub


async def test_models_and_unknown_routes_pass_through(node: Node, stub: Stub) -> None:
    models = await node.client.get("/v1/models", headers={"authorization": "Bearer sk-x"})
    assert models.status_code == 200
    assert models.json()["data"][0]["id"] == "gpt-4o-mini"
    assert models.headers["x-cachefleet-cache"] == "bypass"
    assert models.headers["x-cachefleet-bypass-reason"] == "not-cached-route"
    # a route the upstream lacks: its own 404, as it sent it
    unknown = await node.client.post("/v1/audio/speech?x=1", json={"input": "hi", "model": "m"})
    assert unknown.status_code == 404
    assert unknown.headers["x-cachefleet-cache"] == "bypass"
    assert await stub.calls() == 0  # nothing went to chat/completions


async def test_the_upstream_sees_the_callers_credential_or_the_nodes(
    node_factory: NodeFactory, stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    await stub.behave(valid_keys=["sk-good"])
    keyless = await node_factory()
    refused = await keyless.client.get("/v1/models", headers={"authorization": "Bearer sk-bad"})
    assert refused.status_code == 401  # the upstream's answer to the caller's key
    assert refused.json()["error"]["code"] == "invalid_api_key"
    accepted = await keyless.client.get("/v1/models", headers={"authorization": "Bearer sk-good"})
    assert accepted.status_code == 200

    monkeypatch.setenv("CACHEFLEET_UPSTREAM_API_KEY", "sk-good")  # the node's own key
    acme = {"tenant": "acme", "key_sha256": hashlib.sha256(b"sk-acme").hexdigest()}
    tenants = await node_factory({"auth": {"api_keys": [acme]}})
    unknown_tenant = await tenants.client.get(
        "/v1/models", headers={"authorization": "Bearer sk-bad"}
    )
    assert unknown_tenant.status_code == 401  # the node's own check: no tenant for this key
    through = await tenants.client.get("/v1/models", headers={"authorization": "Bearer sk-acme"})
    assert through.status_code == 200  # the upstream got the node's key, not the tenant's


async def test_stream_null_is_accepted_like_the_api_does(node: Node) -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hello"}],
        "stream": None,
    }
    response = await node.client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.json()["object"] == "chat.completion"
