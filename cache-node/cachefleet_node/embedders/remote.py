"""Remote embedder: GPU embedding pods speaking TEI (`POST /embed`) or OpenAI
(`POST /v1/embeddings`), micro-batched, with a per-call deadline and client-side normalisation.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any, Literal

import httpx
import numpy as np
import orjson
import structlog

from cachefleet_contract.keyspace import embedding_space
from cachefleet_node.config import EmbeddingConfig
from cachefleet_node.embedders.base import (
    EmbedBudget,
    EmbeddingError,
    EmbeddingUnavailable,
    MicroBatcher,
    Vectors,
    empty_vectors,
    l2_normalize,
    redact_url,
    text_window,
)

__all__ = ["RemoteEmbedder", "RemoteService"]

log = structlog.get_logger(__name__)

RemoteProtocol = Literal["tei", "openai"]

_PROBE_TEXT = "cachefleet start-up probe"
_REASON_CHARS = 120


class RemoteService:
    """One embedding endpoint: builds requests, enforces the deadline, validates answers."""

    def __init__(
        self,
        url: str,
        protocol: RemoteProtocol,
        *,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 2.0,
        max_connections: int = 8,
    ) -> None:
        base = url.rstrip("/")
        if protocol == "tei":
            self.endpoint = f"{base}/embed"
        else:
            self.endpoint = (
                f"{base}/embeddings" if base.endswith("/v1") else f"{base}/v1/embeddings"
            )
        self.protocol = protocol
        self.model = model
        self.timeout_s = timeout_s
        self.where = redact_url(self.endpoint)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )

    async def embed(self, texts: list[str], dim: int | None) -> Vectors:
        """One HTTP call for `texts`; rows normalised; `dim` checked when given."""
        if self.protocol == "tei":
            body: dict[str, Any] = {"inputs": texts, "truncate": True}
        else:
            body = {"input": texts, "model": self.model, "encoding_format": "float"}
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self._client.post(
                    self.endpoint,
                    content=orjson.dumps(body),
                    headers={"Content-Type": "application/json"},
                )
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise EmbeddingError(
                f"embedding service {self.where} did not answer within {self.timeout_s:g}s"
            ) from exc
        except httpx.HTTPError as exc:
            raise EmbeddingError(
                f"embedding service {self.where} unreachable ({type(exc).__name__})"
            ) from exc
        if not response.is_success:
            raise EmbeddingError(
                f"embedding service {self.where} returned HTTP {response.status_code}"
                f" ({_reason(response)})"
            )
        return self._parse(response.content, len(texts), dim)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    def _parse(self, content: bytes, count: int, dim: int | None) -> Vectors:
        try:
            payload = orjson.loads(content)
            if self.protocol == "tei":
                rows = payload
            else:
                items = sorted(payload["data"], key=lambda item: int(item["index"]))
                rows = [item["embedding"] for item in items]
            vectors = np.asarray(rows, dtype=np.float32)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise EmbeddingError(
                f"embedding service {self.where} sent a malformed response ({type(exc).__name__})"
            ) from exc
        rows_ok = vectors.ndim == 2 and vectors.shape[0] == count and vectors.shape[1] > 0
        if not rows_ok or (dim is not None and vectors.shape[1] != dim):
            raise EmbeddingError(
                f"embedding service {self.where} sent vectors of shape {vectors.shape}, "
                f"expected ({count}, {dim or 'dim'})"
            )
        if not np.isfinite(vectors).all():
            raise EmbeddingError(f"embedding service {self.where} sent non-finite values")
        return l2_normalize(vectors)


def _reason(response: httpx.Response) -> str:
    """A short, user-facing reason: the service's error message, else the status phrase."""
    try:
        payload = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        payload = None
    message = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(message, dict):  # OpenAI: {"error": {"message": ...}}
        message = message.get("message")
    if isinstance(message, str) and message:
        return message[:_REASON_CHARS]
    return response.reason_phrase or "error"


class RemoteEmbedder:
    """Embeds through a `RemoteService`, at most `batch_size` texts per HTTP call.

    Up to `max_in_flight` calls run at once; under load, queued texts are coalesced. Texts
    are cut to what a model reading `max_tokens` tokens can use before they are sent.
    Create with `connect` (or `from_config`), which discovers `dim` with a probe call.
    """

    def __init__(
        self,
        service: RemoteService,
        model_id: str,
        dim: int,
        batch_size: int = 32,
        max_in_flight: int = 4,
        max_tokens: int = 256,
    ) -> None:
        self.model_id = model_id
        self.dim = dim
        self.space = embedding_space(model_id, dim)
        self._service = service
        self._batcher = MicroBatcher(
            self._call,
            batch_size,
            concurrency=max_in_flight,
            max_text_chars=text_window(max_tokens),
        )

    @classmethod
    async def connect(
        cls,
        service: RemoteService,
        model_id: str,
        batch_size: int = 32,
        max_in_flight: int = 4,
        max_tokens: int = 256,
    ) -> RemoteEmbedder:
        """Probe `service` once to learn the dimension; `EmbeddingUnavailable` if it fails."""
        try:
            probe = await service.embed([_PROBE_TEXT], None)
        except EmbeddingError as exc:
            await service.aclose()
            raise EmbeddingUnavailable(
                f"embedding service start-up probe failed: {exc}; check embedding.remote_url"
            ) from exc
        dim = int(probe.shape[1])
        log.info(
            "remote embedder ready", endpoint=service.where, protocol=service.protocol, dim=dim
        )
        return cls(service, model_id, dim, batch_size, max_in_flight, max_tokens)

    @classmethod
    async def from_config(cls, config: EmbeddingConfig) -> RemoteEmbedder:
        """Build from `embedding.*` settings; the API key comes from `remote_api_key_env`."""
        if not config.remote_url:
            raise EmbeddingUnavailable("embedding.remote_url is not set")
        api_key = None
        if config.remote_api_key_env:
            api_key = os.environ.get(config.remote_api_key_env)
            if not api_key:
                raise EmbeddingUnavailable(
                    f"environment variable {config.remote_api_key_env} (from "
                    "embedding.remote_api_key_env) is not set"
                )
        service = RemoteService(
            config.remote_url,
            config.remote_protocol,
            model=config.remote_model or config.model_id,
            api_key=api_key,
            timeout_s=config.remote_timeout_s,
        )
        return await cls.connect(
            service, config.model_id, config.batch_size, max_tokens=config.max_tokens
        )

    async def embed(self, texts: Sequence[str], budget: EmbedBudget | None = None) -> Vectors:
        """Embed `texts`; `EmbeddingError` on timeout, HTTP error or malformed answer."""
        if not texts:
            return empty_vectors(self.dim)
        return await self._batcher.submit(texts, budget)

    async def aclose(self) -> None:
        """Fail pending calls and close the connections."""
        await self._batcher.aclose()
        await self._service.aclose()

    async def _call(self, texts: list[str]) -> Vectors:
        return await self._service.embed(texts, self.dim)
