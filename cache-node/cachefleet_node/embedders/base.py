"""The embedder contract, its errors, and the micro-batcher shared by local and remote embedders.

Every embedder maps texts to L2-normalised float32 rows in one vector space, named by
`space` (see `keyspace.embedding_space`). Vectors of different spaces never mix.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx
import numpy as np
import numpy.typing as npt
import structlog

__all__ = [
    "Embedder",
    "EmbeddingError",
    "EmbeddingUnavailable",
    "MicroBatcher",
    "Vectors",
    "empty_vectors",
    "l2_normalize",
    "redact_url",
]

Vectors = npt.NDArray[np.float32]

log = structlog.get_logger(__name__)


class EmbeddingError(Exception):
    """An embedder failed; the message is user-facing and never carries secrets or text."""


class EmbeddingUnavailable(EmbeddingError):
    """The embedder cannot start: model missing, hub offline, service unreachable."""


class Embedder(Protocol):
    """Maps texts to unit-length float32 vectors of one vector space."""

    model_id: str
    dim: int
    space: str

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """Embed `texts`: shape (len(texts), dim), float32, rows L2-normalised."""
        ...

    async def aclose(self) -> None:
        """Release threads, connections and pending calls."""
        ...


def l2_normalize(vectors: npt.NDArray[np.floating]) -> Vectors:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    rows = np.asarray(vectors, dtype=np.float32)
    norms = np.asarray(np.linalg.norm(rows, axis=1, keepdims=True), dtype=np.float32)
    return np.divide(rows, np.maximum(norms, np.float32(1e-12)), dtype=np.float32)


def empty_vectors(dim: int) -> Vectors:
    """The result of embedding no texts."""
    return np.zeros((0, dim), dtype=np.float32)


def redact_url(url: str) -> str:
    """`url` without user info or query, safe for logs and error messages."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "<invalid URL>"
    return str(parsed.copy_with(username=None, password=None, query=None, fragment=None))


@dataclass(eq=False)
class _Pending:
    texts: list[str]
    future: asyncio.Future[Vectors]


class MicroBatcher:
    """Coalesces concurrent embed calls into batches of at most `max_batch` texts.

    `concurrency` workers each take whatever is queued as soon as they are free: there is no
    waiting window, so a lone call runs at once and batches form only under load. Callers that
    were cancelled while queued are skipped. `run` gets a non-empty list of texts and returns
    one row per text.
    """

    def __init__(
        self,
        run: Callable[[list[str]], Awaitable[Vectors]],
        max_batch: int,
        concurrency: int = 1,
    ) -> None:
        if max_batch < 1 or concurrency < 1:
            raise ValueError("max_batch and concurrency must be at least 1")
        self._run = run
        self._max_batch = max_batch
        self._concurrency = concurrency
        self._pending: deque[_Pending] = deque()
        self._ready = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    async def submit(self, texts: Sequence[str]) -> Vectors:
        """Embed `texts` (non-empty) through the shared batches; rows in input order."""
        if self._closed:
            raise EmbeddingError("embedder is closed")
        loop = asyncio.get_running_loop()
        self._start_workers(loop)
        parts = [
            _Pending(list(texts[start : start + self._max_batch]), loop.create_future())
            for start in range(0, len(texts), self._max_batch)
        ]
        self._pending.extend(parts)
        self._ready.set()
        try:
            results = [await part.future for part in parts]
        except BaseException:
            for part in parts:  # drop the queued rest; mark failures of the rest as seen
                if not part.future.cancel() and not part.future.cancelled():
                    part.future.exception()
            raise
        return results[0] if len(results) == 1 else np.concatenate(results)

    async def aclose(self) -> None:
        """Stop the workers; queued and running calls fail with `EmbeddingError`."""
        self._closed = True
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()
        while self._pending:
            _fail(self._pending.popleft(), EmbeddingError("embedder is closed"))

    def _start_workers(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is loop:
            return
        if self._loop is not None:
            raise RuntimeError("an embedder must be used from one event loop")
        self._loop = loop
        self._workers = [
            loop.create_task(self._work(), name=f"embed-batcher-{index}")
            for index in range(self._concurrency)
        ]

    def _take(self) -> list[_Pending]:
        batch: list[_Pending] = []
        size = 0
        while self._pending:
            item = self._pending[0]
            if item.future.done():  # caller gave up while queued
                self._pending.popleft()
                continue
            if batch and size + len(item.texts) > self._max_batch:
                break
            batch.append(self._pending.popleft())
            size += len(item.texts)
        return batch

    async def _work(self) -> None:
        while True:
            while not self._pending:
                self._ready.clear()
                await self._ready.wait()
            batch = self._take()
            if batch:
                await self._run_batch(batch)

    async def _run_batch(self, batch: list[_Pending]) -> None:
        texts = [text for item in batch for text in item.texts]
        try:
            vectors = await self._run(texts)
        except asyncio.CancelledError:
            for item in batch:
                _fail(item, EmbeddingError("embedder is closed"))
            raise
        except EmbeddingError as exc:
            for item in batch:
                _fail(item, exc)
            return
        except Exception as exc:
            log.exception("embedding batch failed", batch_size=len(texts))
            error = EmbeddingError(f"embedding failed ({type(exc).__name__})")
            for item in batch:
                _fail(item, error)
            return
        offset = 0
        for item in batch:
            count = len(item.texts)
            if not item.future.done():
                item.future.set_result(vectors[offset : offset + count])
            offset += count


def _fail(item: _Pending, error: EmbeddingError) -> None:
    if not item.future.done():
        item.future.set_exception(error)
