"""Embedders against real components: the real model, real redis-server, real HTTP servers."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis.asyncio
from tokenizers import Tokenizer

from cachefleet_contract.keyspace import embedding_key, embedding_space
from cachefleet_node.config import MODEL_DIR_ENV, EmbeddingConfig
from cachefleet_node.embedders import (
    CachingEmbedder,
    EmbeddingError,
    EmbeddingUnavailable,
    MicroBatcher,
    OnnxEmbedder,
    OnnxModel,
    RemoteEmbedder,
    Vectors,
    build_embedder,
    resolve_model_dir,
)
from cachefleet_node.embedders.hub import DOWNLOAD_FILES
from cachefleet_node.memory import MemoryBudget
from embedding_service import CountingEmbedder, EmbeddingService, serving
from node_harness import RedisServer, free_port

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
TEXTS = [
    "how do I reset my password",
    "what's the weather like in Paris tomorrow",
    "book a table for two at 7pm",
    "",
    "Translate 'good morning' into German, please.",
]


# --- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def reference(model_dir: Path) -> dict[str, Any]:
    """`reference_embeddings.json`: texts and sentence-transformers embeddings."""
    data: dict[str, Any] = json.loads((model_dir / "reference_embeddings.json").read_text())
    return data


@pytest.fixture
async def local(onnx_model: OnnxModel) -> AsyncIterator[OnnxEmbedder]:
    embedder = OnnxEmbedder(onnx_model, MODEL_ID, batch_size=32)
    yield embedder
    await embedder.aclose()


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    similarity: np.ndarray = (a * b).sum(axis=1) / (
        np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    )
    return similarity


# --- local ONNX embedder ----------------------------------------------------------------------


async def test_reproduces_reference_embeddings(
    local: OnnxEmbedder, reference: dict[str, Any], model_dir: Path
) -> None:
    texts: list[str] = reference["texts"]
    expected = np.asarray(reference["embeddings"], dtype=np.float32)
    vectors = await local.embed(texts)
    similarity = cosines(vectors, expected)
    assert similarity.min() >= 0.9999, texts[int(similarity.argmin())][:40]

    # The tokenizer file truncates at 128 tokens: the long texts are the ones that catch it.
    counter = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    counter.no_truncation()
    counter.no_padding()
    lengths = [len(counter.encode(text).ids) for text in texts]
    long = [i for i, length in enumerate(lengths) if length > 128]
    assert long, "the reference set should hold texts longer than 128 tokens"
    assert max(lengths) > 256  # and one beyond max_tokens, so truncation at 256 is checked
    assert similarity[long].min() >= 0.9999
    singles = np.concatenate([await local.embed([texts[i]]) for i in long])
    assert cosines(singles, expected[long]).min() >= 0.9999


async def test_batch_equals_single_shape_norm_and_empty(
    local: OnnxEmbedder, reference: dict[str, Any]
) -> None:
    longest = max(reference["texts"], key=len)
    texts = [*TEXTS, longest]
    batch = await local.embed(texts)
    assert batch.shape == (len(texts), 384)
    assert batch.dtype == np.float32
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    singles = np.concatenate([await local.embed([text]) for text in texts])
    assert np.allclose(batch, singles, atol=1e-5)
    empty = await local.embed([])
    assert empty.shape == (0, 384)
    assert empty.dtype == np.float32
    assert local.dim == 384
    assert local.space == embedding_space(MODEL_ID, 384)


async def test_concurrent_calls_share_inference_batches(
    onnx_model: OnnxModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch_sizes: list[int] = []
    encode = onnx_model.encode

    def counting_encode(texts: Sequence[str]) -> Vectors:
        batch_sizes.append(len(texts))
        return encode(texts)

    monkeypatch.setattr(onnx_model, "encode", counting_encode)
    embedder = OnnxEmbedder(onnx_model, MODEL_ID, batch_size=16)
    try:
        texts = [f"question number {i} about invoices" for i in range(40)]
        results = await asyncio.gather(*(embedder.embed([text]) for text in texts))
        assert sum(batch_sizes) == len(texts)
        assert len(batch_sizes) < len(texts)
        assert max(batch_sizes) <= 16
        expected = encode(texts)
        assert np.allclose(np.concatenate(results), expected, atol=1e-5)

        # One call larger than batch_size is split into batch_size pieces, order kept.
        batch_sizes.clear()
        big = await embedder.embed(texts)
        assert batch_sizes == [16, 16, 8]
        assert np.allclose(big, expected, atol=1e-5)
    finally:
        await embedder.aclose()


async def test_batcher_skips_cancelled_callers_and_survives_errors() -> None:
    started = asyncio.Event()
    gate = asyncio.Event()
    batches: list[list[str]] = []

    async def run(texts: list[str]) -> Vectors:
        batches.append(texts)
        if "bad" in texts:
            raise ValueError("internal detail")
        started.set()
        await gate.wait()
        return np.full((len(texts), 2), len(batches), dtype=np.float32)

    batcher = MicroBatcher(run, max_batch=4)
    first = asyncio.create_task(batcher.submit(["a"]))
    await started.wait()  # the worker is busy with ["a"]
    dropped = asyncio.create_task(batcher.submit(["b"]))
    later = asyncio.create_task(batcher.submit(["c", "d"]))
    await asyncio.sleep(0)  # let both tasks enqueue (a yield, not a timed wait)
    dropped.cancel()
    gate.set()
    assert (await first).tolist() == [[1.0, 1.0]]
    assert (await later).tolist() == [[2.0, 2.0], [2.0, 2.0]]
    with pytest.raises(asyncio.CancelledError):
        await dropped
    assert batches == [["a"], ["c", "d"]]

    with pytest.raises(EmbeddingError, match="ValueError"):
        await batcher.submit(["bad"])
    assert (await batcher.submit(["e"])).shape == (1, 2)  # the worker survived

    await batcher.aclose()
    with pytest.raises(EmbeddingError, match="closed"):
        await batcher.submit(["f"])


# --- hub download -----------------------------------------------------------------------------


class HubHandler(SimpleHTTPRequestHandler):
    """Static files in the Hugging Face layout; counts GET requests."""

    def do_GET(self) -> None:
        self.server.gets.append(self.path)  # type: ignore[attr-defined]
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hub(tmp_path: Path, model_dir: Path) -> Iterator[tuple[str, list[str]]]:
    """A local hub serving the model (symlinks in tmp_path); yields (endpoint, GET paths)."""
    root = tmp_path / "hub"
    for name in DOWNLOAD_FILES:
        link = root / MODEL_ID / "resolve" / "main" / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(model_dir / name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(HubHandler, directory=str(root)))
    server.daemon_threads = True
    gets: list[str] = []
    server.gets = gets  # type: ignore[attr-defined]
    with serving(server) as url:
        yield url, gets


async def test_hub_download_lands_in_cache_and_is_reused(
    hub: tuple[str, list[str]], tmp_path: Path, reference: dict[str, Any]
) -> None:
    endpoint, gets = hub
    config = EmbeddingConfig(hub_endpoint=endpoint, hub_cache_dir=str(tmp_path / "cache"))
    embedder = await build_embedder(config, None, "cf", 0.05, MemoryBudget(1 << 30))
    try:
        target = tmp_path / "cache" / "sentence-transformers--all-MiniLM-L6-v2" / "main"
        assert all((target / name).is_file() for name in DOWNLOAD_FILES)
        assert not list(target.rglob("*.part"))
        assert len(gets) == len(DOWNLOAD_FILES)
        vector = await embedder.embed([reference["texts"][0]])
        expected = np.asarray([reference["embeddings"][0]], dtype=np.float32)
        assert cosines(vector, expected)[0] >= 0.9999
    finally:
        await embedder.aclose()
    assert await asyncio.to_thread(resolve_model_dir, config) == target
    assert len(gets) == len(DOWNLOAD_FILES)  # nothing fetched again


async def test_hub_missing_model_is_unavailable(hub: tuple[str, list[str]], tmp_path: Path) -> None:
    endpoint, _ = hub
    config = EmbeddingConfig(
        model_id="nobody/no-such-model",
        hub_endpoint=endpoint,
        hub_cache_dir=str(tmp_path / "cache"),
    )
    with pytest.raises(EmbeddingUnavailable, match="404") as caught:
        await build_embedder(config, None, "cf", 0.05, MemoryBudget(1 << 30))
    assert MODEL_DIR_ENV in str(caught.value)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]  # no partial files


async def test_hub_unreachable_names_the_setting(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    config = EmbeddingConfig(hub_endpoint=endpoint, hub_cache_dir=str(tmp_path))
    with pytest.raises(EmbeddingUnavailable) as caught:
        await build_embedder(config, None, "cf", 0.05, MemoryBudget(1 << 30))
    message = str(caught.value)
    assert MODEL_DIR_ENV in message
    assert "embedding.model_dir" in message
    assert endpoint in message
    assert MODEL_ID in message


async def test_model_dir_without_onnx_file(tmp_path: Path, model_dir: Path) -> None:
    (tmp_path / "tokenizer.json").symlink_to(model_dir / "tokenizer.json")
    config = EmbeddingConfig(model_dir=str(tmp_path))
    with pytest.raises(EmbeddingUnavailable, match=r"onnx/model\.onnx") as caught:
        await build_embedder(config, None, "cf", 0.05, MemoryBudget(1 << 30))
    assert "embedding.model_dir" in str(caught.value)
    assert MODEL_DIR_ENV in str(caught.value)


# --- remote embedder --------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["tei", "openai"])
async def test_remote_matches_local_and_sends_api_key(
    service: tuple[EmbeddingService, str],
    onnx_model: OnnxModel,
    monkeypatch: pytest.MonkeyPatch,
    protocol: str,
) -> None:
    server, url = service
    monkeypatch.setenv("TEST_EMBEDDING_KEY", "sk-test-123")
    config = EmbeddingConfig(
        kind="remote",
        remote_url=url,
        remote_protocol=protocol,
        remote_model="minilm",
        remote_api_key_env="TEST_EMBEDDING_KEY",
    )
    embedder = await RemoteEmbedder.from_config(config)
    try:
        assert embedder.dim == 384
        assert embedder.space == embedding_space(MODEL_ID, 384)
        vectors = await embedder.embed(TEXTS)
        assert vectors.dtype == np.float32
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert cosines(vectors, onnx_model.encode(TEXTS)).min() >= 0.9999
        assert (await embedder.embed([])).shape == (0, 384)
    finally:
        await embedder.aclose()
    path = "/embed" if protocol == "tei" else "/v1/embeddings"
    assert {p for p, _ in server.requests} == {path}
    assert server.auth == ["Bearer sk-test-123"] * len(server.requests)


async def test_remote_concurrent_calls_are_micro_batched(
    service: tuple[EmbeddingService, str], onnx_model: OnnxModel
) -> None:
    server, url = service
    config = EmbeddingConfig(kind="remote", remote_url=url, batch_size=16)
    embedder = await build_embedder(config, None, "cf", 0.05, MemoryBudget(1 << 30))
    try:
        probes = len(server.requests)
        texts = [f"remote question {i}" for i in range(40)]
        results = await asyncio.gather(*(embedder.embed([text]) for text in texts))
        calls = server.requests[probes:]
        assert sum(count for _, count in calls) == len(texts)
        assert len(calls) < len(texts)
        assert max(count for _, count in calls) <= 16
        assert cosines(np.concatenate(results), onnx_model.encode(texts)).min() >= 0.9999
    finally:
        await embedder.aclose()


async def test_remote_slow_service_fails_within_timeout(
    service: tuple[EmbeddingService, str],
) -> None:
    server, url = service
    config = EmbeddingConfig(kind="remote", remote_url=url, remote_timeout_s=0.3)
    embedder = await RemoteEmbedder.from_config(config)
    try:
        server.delay_s = 10.0
        started = time.monotonic()
        with pytest.raises(EmbeddingError, match=r"did not answer within 0\.3s"):
            await embedder.embed(["this takes too long"])
        assert time.monotonic() - started < 1.5
    finally:
        server.release.set()
        await embedder.aclose()


async def test_remote_errors_and_malformed_answers(service: tuple[EmbeddingService, str]) -> None:
    server, url = service
    embedder = await RemoteEmbedder.from_config(EmbeddingConfig(kind="remote", remote_url=url))
    try:
        server.fail_status = 503
        with pytest.raises(EmbeddingError, match=r"HTTP 503 \(model is overloaded\)"):
            await embedder.embed(["a"])
        server.fail_status = None
        server.bad_dim = True
        with pytest.raises(EmbeddingError, match="shape"):
            await embedder.embed(["a"])
        server.bad_dim = False
        assert (await embedder.embed(["a"])).shape == (1, 384)
    finally:
        await embedder.aclose()


async def test_remote_start_up_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(EmbeddingUnavailable, match=f"{url}/embed"):
        await RemoteEmbedder.from_config(EmbeddingConfig(kind="remote", remote_url=url))
    monkeypatch.delenv("TEST_MISSING_KEY", raising=False)
    config = EmbeddingConfig(kind="remote", remote_url=url, remote_api_key_env="TEST_MISSING_KEY")
    with pytest.raises(EmbeddingUnavailable, match="TEST_MISSING_KEY"):
        await RemoteEmbedder.from_config(config)


# --- embedding cache --------------------------------------------------------------------------


async def test_local_lru_serves_repeats(local: OnnxEmbedder) -> None:
    inner = CountingEmbedder(local)
    cache = CachingEmbedder(
        inner, None, "cf", 3600, 100, redis_deadline_s=0.05, memory_budget=MemoryBudget(1 << 30)
    )
    first = await cache.embed(["alpha", "beta", "alpha"])
    assert inner.calls == [["alpha", "beta"]]  # duplicates computed once
    second = await cache.embed(["beta", "alpha"])
    assert inner.calls == [["alpha", "beta"]]
    assert np.array_equal(second, first[[1, 0]])
    assert (cache.hits_local, cache.hits_redis, cache.misses) == (2, 0, 3)
    await cache.embed(["gamma", "alpha"])
    assert inner.calls[-1] == ["gamma"]  # only the unknown text goes to the inner embedder
    assert (await cache.embed([])).shape == (0, 384)


async def test_redis_is_shared_between_instances(
    local: OnnxEmbedder, redis_client: redis.asyncio.Redis
) -> None:
    writer = CachingEmbedder(local, redis_client, "cf", 600, 100, 1.0, MemoryBudget(1 << 30))
    stored = await writer.embed(TEXTS)
    await writer.flush()  # writes to Redis happen in the background
    key = embedding_key("cf", local.space, TEXTS[0])
    assert 0 < await redis_client.ttl(key) <= 600
    value = await redis_client.get(key)
    assert isinstance(value, bytes)
    assert len(value) == 384 * 4

    inner = CountingEmbedder(local)
    reader = CachingEmbedder(inner, redis_client, "cf", 600, 100, 1.0, MemoryBudget(1 << 30))
    again = await reader.embed([*TEXTS, "a text nobody embedded yet"])
    assert inner.calls == [["a text nobody embedded yet"]]
    assert np.array_equal(again[: len(TEXTS)], stored)
    assert (reader.hits_redis, reader.misses, reader.redis_errors) == (len(TEXTS), 1, 0)
    await reader.embed(TEXTS[:2])
    assert reader.hits_local == 2  # promoted into the local LRU


async def test_build_embedder_with_redis_and_redis_going_down(
    model_dir: Path, redis_server: RedisServer, redis_client: redis.asyncio.Redis
) -> None:
    config = EmbeddingConfig(model_dir=str(model_dir), local_cache_entries=0)
    embedder = await build_embedder(config, redis_client, "cf", 0.5, MemoryBudget(1 << 30))
    try:
        before = await embedder.embed(["kept in redis"])
        await embedder.flush()
        assert await redis_client.exists(embedding_key("cf", embedder.space, "kept in redis"))
        redis_server.stop()
        after = await embedder.embed(["kept in redis", "new text"])
        assert np.allclose(after[0], before[0], atol=1e-6)
        assert after.shape == (2, 384)
        assert embedder.redis_errors >= 1
        assert embedder.misses == 3
    finally:
        await embedder.aclose()


async def test_redis_past_deadline_is_skipped(local: OnnxEmbedder) -> None:
    with socket.socket() as black_hole:  # accepts connections, never answers
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(8)
        client = redis.asyncio.Redis(host="127.0.0.1", port=black_hole.getsockname()[1])
        cache = CachingEmbedder(local, client, "cf", 600, 0, 0.1, MemoryBudget(1 << 30))
        try:
            started = time.monotonic()
            vectors = await cache.embed(["still answered"])
            assert time.monotonic() - started < 1.0
            assert vectors.shape == (1, 384)
            assert cache.redis_timeouts == 1  # the read; no write-back to a failing Redis
            started = time.monotonic()
            await cache.embed(["answered without waiting for redis"])
            assert time.monotonic() - started < 0.1  # cool-down: Redis is skipped at once
            assert cache.redis_timeouts == 1
        finally:
            await client.aclose()
