"""Embed a data set once, with the node's real model, and keep the vectors on disk.

Vectors are cached under `~/.cache/cachefleet/bench/` keyed by the model file's SHA-256, the
truncation length and the texts, so a rerun (or the CI subset after a full run) costs no
inference. The harness then serves lookups from this table through `TableEmbedder`, which
speaks the node's `Embedder` contract: the engine embeds exactly as it would with the model.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cachefleet_contract.keyspace import embedding_space
from cachefleet_node.embedders.base import EmbedBudget, Vectors
from cachefleet_node.embedders.local import OnnxModel

__all__ = ["TableEmbedder", "VectorCache"]

_BATCH = 64


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class VectorCache:
    """Embeds lists of texts with one model, memoised on disk."""

    def __init__(
        self, model_dir: Path, cache_dir: Path, *, max_tokens: int = 256, threads: int = 0
    ) -> None:
        self.model_dir = model_dir
        self.cache_dir = cache_dir
        self.max_tokens = max_tokens
        self.threads = threads
        self.model_sha = _file_sha256(model_dir / "onnx" / "model.onnx")
        self._model: OnnxModel | None = None

    @property
    def model(self) -> OnnxModel:
        """The loaded model (loaded on first use only)."""
        if self._model is None:
            self._model = OnnxModel.load(self.model_dir, self.max_tokens, self.threads)
        return self._model

    def embed(self, name: str, texts: Sequence[str]) -> Vectors:
        """Rows for `texts` (L2-normalised float32), from disk when already computed."""
        digest = hashlib.sha256(f"{self.model_sha}:{self.max_tokens}".encode())
        for text in texts:
            digest.update(text.encode())
            digest.update(b"\0")
        path = self.cache_dir / f"{name}-{digest.hexdigest()[:24]}.npy"
        if path.is_file():
            vectors: Vectors = np.load(path)
            if vectors.shape[0] == len(texts):
                print(f"    {name}: {len(texts)} vectors from {path}", flush=True)
                return vectors
        started = time.monotonic()
        parts = []
        for start in range(0, len(texts), _BATCH):
            parts.append(self.model.encode(texts[start : start + _BATCH]))
            done = min(start + _BATCH, len(texts))
            if done == len(texts) or (start // _BATCH) % 40 == 0:
                rate = done / max(time.monotonic() - started, 1e-9)
                print(f"    {name}: embedded {done}/{len(texts)} ({rate:.0f}/s)", flush=True)
        vectors = np.concatenate(parts) if parts else np.zeros((0, 384), dtype=np.float32)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".tmp.npy")
        np.save(partial, vectors)
        partial.replace(path)
        return vectors


class TableEmbedder:
    """An `Embedder` over precomputed vectors; unknown texts go to the model."""

    def __init__(self, cache: VectorCache, texts: Sequence[str], vectors: Vectors) -> None:
        self.model_id = "sentence-transformers/all-MiniLM-L6-v2"
        self.dim = int(vectors.shape[1])
        self.space = embedding_space(self.model_id, self.dim)
        self._cache = cache
        self._rows = {text: i for i, text in enumerate(texts)}
        self.vectors = vectors

    def vector(self, text: str) -> Vectors:
        """One row."""
        row = self._rows.get(text)
        found: Vectors = self._cache.model.encode([text])[0] if row is None else self.vectors[row]
        return found

    async def embed(self, texts: Sequence[str], budget: EmbedBudget | None = None) -> Vectors:
        """Rows for `texts` (computed at once: no queue, the budget is never at stake)."""
        return np.stack([self.vector(text) for text in texts]).astype(np.float32)

    async def aclose(self) -> None:
        """Nothing to release."""
