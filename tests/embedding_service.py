"""A test double of the GPU embedding pods: TEI and OpenAI routes serving real vectors."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from cachefleet_node.embedders import OnnxModel
from cachefleet_node.embedders.base import EmbedBudget, Embedder, Vectors

__all__ = ["CountingEmbedder", "EmbeddingHandler", "EmbeddingService", "serving"]


class CountingEmbedder:
    """Wraps an embedder and records the texts of every call."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dim = inner.dim
        self.space = inner.space
        self.calls: list[list[str]] = []

    async def embed(self, texts: Sequence[str], budget: EmbedBudget | None = None) -> Vectors:
        self.calls.append(list(texts))
        return await self.inner.embed(texts, budget)

    async def aclose(self) -> None:
        await self.inner.aclose()


@contextmanager
def serving(server: ThreadingHTTPServer) -> Iterator[str]:
    """Run `server` in a thread; yield its base URL; stop it on exit."""
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class EmbeddingService(ThreadingHTTPServer):
    """Test double of a GPU embedding pod (TEI and OpenAI routes) serving real vectors."""

    daemon_threads = True

    def __init__(self, model: OnnxModel) -> None:
        super().__init__(("127.0.0.1", 0), EmbeddingHandler)
        self.model = model
        self.lock = threading.Lock()
        self.requests: list[tuple[str, int]] = []  # (path, number of texts)
        self.auth: list[str | None] = []
        self.delay_s = 0.0
        self.release = threading.Event()
        self.fail_status: int | None = None
        self.bad_dim = False

    def vectors(self, texts: list[str]) -> np.ndarray:
        with self.lock:
            vectors = self.model.encode(texts) * 3.0  # unnormalised: the client normalises
        return vectors[:, :10] if self.bad_dim else vectors


class EmbeddingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EmbeddingService

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        service = self.server
        texts = body["inputs"] if self.path == "/embed" else body["input"]
        with service.lock:
            service.requests.append((self.path, len(texts)))
            service.auth.append(self.headers.get("Authorization"))
        if service.delay_s:
            service.release.wait(service.delay_s)
        if service.fail_status:
            self._send(service.fail_status, {"error": "model is overloaded"})
        elif self.path == "/embed" and body.get("truncate") is True:
            self._send(200, service.vectors(texts).tolist())
        elif self.path == "/v1/embeddings" and body.get("model"):
            rows = list(enumerate(service.vectors(texts).tolist()))
            data = [{"object": "embedding", "index": i, "embedding": v} for i, v in rows[::-1]]
            self._send(200, {"object": "list", "data": data, "model": body["model"]})
        else:
            self._send(404, {"error": "not found"})

    def _send(self, status: int, payload: Any) -> None:
        content = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)

    def log_message(self, format: str, *args: Any) -> None:
        pass
