"""Local embedder: ONNX Runtime + HF `tokenizers`, mean pooling over the attention mask.

Texts are cut to what the model can read before they are tokenized (a generous character
bound per token of `max_tokens`, `CHARS_PER_TOKEN`), so a huge prompt costs about what a
window-sized one does, and a batch holds at most two windows of characters.

The model directory's `tokenizer.json` carries its own padding and truncation (for MiniLM:
fixed padding to 128, truncation at 128). Both are replaced here: truncation at `max_tokens`,
and padding to the longest text of each group of similar lengths (a batch is sorted by length
and split where lengths jump, so one long text does not make every short one pay for its
padding). Pad tokens are masked out of the pooled mean.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import structlog
from tokenizers import Encoding, Tokenizer

from cachefleet_contract.keyspace import embedding_space
from cachefleet_node.config import EmbeddingConfig
from cachefleet_node.embedders.base import (
    EmbedBudget,
    EmbeddingUnavailable,
    MicroBatcher,
    Vectors,
    empty_vectors,
    l2_normalize,
    text_window,
)
from cachefleet_node.embedders.hub import check_model_dir, resolve_model_dir

__all__ = ["OnnxEmbedder", "OnnxModel"]

log = structlog.get_logger(__name__)

_OUTPUT = "last_hidden_state"
_FEEDS = ("input_ids", "attention_mask", "token_type_ids")
_LENGTH_SLACK = 8  # tokens of padding always accepted within a length group


class OnnxModel:
    """A loaded sentence-embedding model. `encode` blocks; call it from one thread at a time."""

    def __init__(
        self, session: ort.InferenceSession, tokenizer: Tokenizer, max_tokens: int = 256
    ) -> None:
        padding = tokenizer.padding or {}
        self._pad_id = int(padding.get("pad_id", 0))
        self._pad_type_id = int(padding.get("pad_type_id", 0))
        self._pad_token = str(padding.get("pad_token", "[PAD]"))
        tokenizer.no_padding()  # padded per length group in `encode`
        tokenizer.enable_truncation(max_length=max_tokens)
        self.max_tokens = max_tokens
        self._session = session
        self._tokenizer = tokenizer
        inputs = {item.name for item in session.get_inputs()}
        unknown = inputs - set(_FEEDS)
        if unknown or "input_ids" not in inputs:
            raise EmbeddingUnavailable(f"unsupported ONNX model inputs: {sorted(inputs)}")
        if _OUTPUT not in {item.name for item in session.get_outputs()}:
            raise EmbeddingUnavailable(f"the ONNX model has no `{_OUTPUT}` output")
        self._inputs = [name for name in _FEEDS if name in inputs]
        self.dim = int(self.encode(["warm-up"]).shape[1])

    @classmethod
    def load(cls, model_dir: Path, max_tokens: int = 256, threads: int = 0) -> OnnxModel:
        """Load `onnx/model.onnx` and `tokenizer.json` from `model_dir` (blocking)."""
        check_model_dir(model_dir)
        started = time.monotonic()
        limit = _max_positions(model_dir)
        if limit is not None and max_tokens > limit:
            raise EmbeddingUnavailable(
                f"embedding.max_tokens={max_tokens} exceeds the model's {limit} positions"
            )
        try:
            tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        except Exception as exc:
            raise EmbeddingUnavailable(
                f"cannot read {model_dir / 'tokenizer.json'}: {str(exc)[:200]}"
            ) from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime's default, all cores
        options.inter_op_num_threads = 1
        # Idle pool threads sleep instead of spinning: spinning steals the event loop's core
        # (measured on 2 shared cores: single-text p50 13 ms spinning vs 5.5 ms without).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = ort.InferenceSession(
                str(model_dir / "onnx" / "model.onnx"),
                sess_options=options,
                providers=["CPUExecutionProvider"],
            )
        except Exception as exc:
            raise EmbeddingUnavailable(
                f"cannot load {model_dir / 'onnx' / 'model.onnx'}: {str(exc)[:200]}"
            ) from exc
        model = cls(session, tokenizer, max_tokens)
        log.info(
            "embedding model loaded",
            path=str(model_dir),
            dim=model.dim,
            max_tokens=max_tokens,
            threads=threads or "default",
            seconds=round(time.monotonic() - started, 2),
        )
        return model

    def encode(self, texts: Sequence[str]) -> Vectors:
        """Embed `texts` (non-empty): mean of `last_hidden_state` over the mask, L2-normalised."""
        encodings = self._tokenizer.encode_batch(list(texts))
        lengths = [len(item.ids) for item in encodings]
        order = sorted(range(len(encodings)), key=lengths.__getitem__)
        parts = [
            self._run([encodings[i] for i in group]) for group in _length_groups(order, lengths)
        ]
        pooled = np.concatenate(parts)
        result = np.empty_like(pooled)
        result[order] = pooled
        return l2_normalize(result)

    def _run(self, encodings: list[Encoding]) -> Vectors:
        """Mean-pooled (not normalised) rows of one group, padded to its longest text."""
        length = max(len(item.ids) for item in encodings)
        for item in encodings:
            item.pad(
                length,
                pad_id=self._pad_id,
                pad_type_id=self._pad_type_id,
                pad_token=self._pad_token,
            )
        mask = np.array([item.attention_mask for item in encodings], dtype=np.int64)
        columns = {
            "input_ids": np.array([item.ids for item in encodings], dtype=np.int64),
            "attention_mask": mask,
            "token_type_ids": np.array([item.type_ids for item in encodings], dtype=np.int64),
        }
        feeds = {name: columns[name] for name in self._inputs}
        (hidden,) = self._session.run([_OUTPUT], feeds)
        weights = mask.astype(np.float32)[:, :, None]
        summed = (np.asarray(hidden, dtype=np.float32) * weights).sum(axis=1)
        means: Vectors = np.divide(summed, np.maximum(weights.sum(axis=1), 1.0), dtype=np.float32)
        return means


def _length_groups(order: list[int], lengths: list[int]) -> list[list[int]]:
    """Split indices sorted by length where a length passes 1.5x its group's first (+slack)."""
    groups: list[list[int]] = []
    for index in order:
        if groups and lengths[index] <= lengths[groups[-1][0]] * 3 // 2 + _LENGTH_SLACK:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


def _max_positions(model_dir: Path) -> int | None:
    try:
        config: Any = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = config.get("max_position_embeddings") if isinstance(config, dict) else None
    return value if isinstance(value, int) else None


class OnnxEmbedder:
    """Async embedder over an `OnnxModel`: micro-batched, inference in a dedicated thread."""

    def __init__(self, model: OnnxModel, model_id: str, batch_size: int = 32) -> None:
        self.model_id = model_id
        self.dim = model.dim
        self.space = embedding_space(model_id, model.dim)
        self._model = model
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cachefleet-embed")
        window = text_window(model.max_tokens)
        self._batcher = MicroBatcher(
            self._infer, batch_size, max_text_chars=window, max_batch_chars=2 * window
        )

    @classmethod
    async def from_config(cls, config: EmbeddingConfig) -> OnnxEmbedder:
        """Resolve (download if needed) and load the model without blocking the event loop."""
        model_dir = await asyncio.to_thread(resolve_model_dir, config)
        model = await asyncio.to_thread(
            OnnxModel.load, model_dir, config.max_tokens, config.threads
        )
        return cls(model, config.model_id, config.batch_size)

    async def embed(self, texts: Sequence[str], budget: EmbedBudget | None = None) -> Vectors:
        """Embed `texts`; concurrent calls share batches of up to `batch_size` texts."""
        if not texts:
            return empty_vectors(self.dim)
        return await self._batcher.submit(texts, budget)

    async def aclose(self) -> None:
        """Fail pending calls and stop the inference thread."""
        await self._batcher.aclose()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _infer(self, texts: list[str]) -> Vectors:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._model.encode, texts)
