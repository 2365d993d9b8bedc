"""Deadlines that bound a whole exchange (issue 14, point 6): the upstream's answer must be
complete within `upstream.timeout_s` however steadily it trickles, and a client's upload within
`server.body_timeout_s`. Real node (uvicorn), the stub upstream slowed down on purpose."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import orjson

from node_harness import NodeFactory, Stub

QUESTION = "Which ports must be open for the admin console?"


async def test_a_trickling_answer_is_cut_at_the_total_deadline_and_not_stored(
    node_factory: NodeFactory, stub: Stub
) -> None:
    node = await node_factory({"upstream": {"base_url": stub.base_url, "timeout_s": 1.5}})
    await stub.behave(trickle_ms=200)  # ~40 pieces of 16 bytes: 8 s for the whole answer
    started = time.monotonic()
    cut = await node.chat(QUESTION)
    elapsed = time.monotonic() - started
    assert cut.status_code == 504, cut.text
    assert cut.json()["error"]["code"] == "upstream_unavailable"
    assert elapsed < 6.0, elapsed  # cut near 1.5 s, not after the 8 s the upstream takes
    await node.settle()
    await stub.behave(trickle_ms=0)
    calls = await stub.calls()
    again = await node.chat(QUESTION)
    assert again.status_code == 200
    assert again.headers["x-cachefleet-cache"] == "miss"  # nothing of the cut answer was kept
    assert await stub.calls() == calls + 1


async def test_a_trickling_stream_ends_with_an_interruption_and_is_not_stored(
    node_factory: NodeFactory, stub: Stub
) -> None:
    node = await node_factory({"upstream": {"base_url": stub.base_url, "timeout_s": 1.5}})
    await stub.behave(token_delay_ms=150)  # every chunk arrives in time; the whole does not
    started = time.monotonic()
    cut = await node.chat(QUESTION, stream=True)
    elapsed = time.monotonic() - started
    assert cut.status_code == 200
    assert b"[DONE]" not in cut.content
    last = cut.content.strip().split(b"\n\n")[-1]
    assert orjson.loads(last[6:])["error"]["code"] == "stream_interrupted"
    assert elapsed < 6.0, elapsed
    await node.settle()
    await stub.behave(token_delay_ms=0)
    again = await node.chat(QUESTION, stream=True)
    assert again.headers["x-cachefleet-cache"] == "miss"


async def test_an_upload_that_never_ends_gets_408_and_frees_the_connection(
    node_factory: NodeFactory,
) -> None:
    node = await node_factory({"server": {"body_timeout_s": 1.0}})
    address = urlsplit(node.url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: node\r\n"
            b"content-type: application/json\r\ncontent-length: 1000\r\n\r\n" + b'{"model": '
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        assert head.startswith(b"HTTP/1.1 408"), head
        rest = await asyncio.wait_for(reader.read(), timeout=10)  # then the node hangs up
        assert b"request_timeout" in rest
    finally:
        writer.close()
    assert (await node.chat(QUESTION)).status_code == 200  # others are served meanwhile
