"""`POST /v1/embeddings`: what the cache understands of a request, and how vectors are kept and
served (pure).

A request is cached per input item. A body is validated by the `openai` package's own
`EmbeddingCreateParams` (`core.validation`: a 400 naming the field otherwise); only requests
made of the fields it defines (`EMBEDDING_FIELDS`) with a non-empty input are understood, and
anything else (a field the SDK does not know yet, an empty input) is for the upstream to
judge, untouched.
Vectors are kept as little-endian float32 (what the models produce and what `base64` encodes)
and presented per request: `float` as the float32 values written as JSON numbers, `base64` as
the raw bytes, like the OpenAI API.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import orjson
from openai.types.embedding_create_params import EmbeddingCreateParams

from cachefleet_node.core.validation import ApiBody

__all__ = [
    "EMBEDDINGS_BODY",
    "EMBEDDING_FIELDS",
    "EmbeddingRequest",
    "EmbeddingsAnswer",
    "Item",
    "Vector",
    "parse_embedding_request",
    "read_stored",
    "read_upstream_answer",
    "render_response",
    "split_tokens",
    "stored_answer",
]

Vector = npt.NDArray[np.float32]
Item = str | tuple[int, ...]  # one input: a text, or a token array
EncodingFormat = Literal["float", "base64"]

#: Embeddings request bodies, as the SDK types them.
EMBEDDINGS_BODY = ApiBody(EmbeddingCreateParams, {})
#: The request fields of the API (those of the SDK's type).
EMBEDDING_FIELDS = EmbeddingCreateParams.__required_keys__ | EmbeddingCreateParams.__optional_keys__
_LITTLE_F32 = np.dtype("<f4")


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    """An understood embeddings request: its items in order, and what keys them."""

    model: str
    items: tuple[Item, ...]
    encoding_format: EncodingFormat
    dimensions: int | None


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _token_array(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, list) and value and all(_is_token(token) for token in value):
        return tuple(value)
    return None


def _items(value: Any) -> tuple[Item, ...] | None:
    """The input items: a string, a token array, or a list of either kind (not mixed)."""
    if isinstance(value, str):
        return (value,) if value else None
    if not isinstance(value, list) or not value:
        return None
    tokens = _token_array(value)
    if tokens is not None:
        return (tokens,)
    if all(isinstance(item, str) and item for item in value):
        return tuple(value)
    arrays = [_token_array(item) for item in value]
    if all(array is not None for array in arrays):
        return tuple(array for array in arrays if array is not None)
    return None


def parse_embedding_request(body: dict[str, Any]) -> EmbeddingRequest | str:
    """The request as the cache understands it, or why it does not (a bypass reason:
    `unknown-field`, or `invalid-request` for what the upstream should answer itself);
    `RequestError` naming the field of a body the API's types refuse."""
    EMBEDDINGS_BODY.check(body)
    if any(name not in EMBEDDING_FIELDS for name in body):
        return "unknown-field"
    model, items = body["model"], _items(body["input"])
    dimensions = body.get("dimensions")
    if not model or items is None or (dimensions is not None and dimensions < 1):
        return "invalid-request"
    return EmbeddingRequest(
        model=model,
        items=items,
        encoding_format="base64" if body.get("encoding_format") == "base64" else "float",
        dimensions=dimensions,
    )


def _vector(value: Any) -> Vector | None:
    """One upstream `embedding` value as float32: a list of numbers, or base64 float32."""
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
        if not raw or len(raw) % 4:
            return None
        return np.frombuffer(raw, dtype=_LITTLE_F32).astype(np.float32)
    if isinstance(value, list) and value:
        try:
            numbers = np.asarray(value)  # numbers only: strings, nulls, lists give other kinds
        except ValueError:
            return None
        if numbers.ndim != 1 or numbers.dtype.kind not in "fi":
            return None
        vector = numbers.astype(np.float32)
        return vector if bool(np.isfinite(vector).all()) else None
    return None


@dataclass(frozen=True, slots=True)
class EmbeddingsAnswer:
    """A successful upstream answer, read: one vector per item sent, in the order sent."""

    vectors: tuple[Vector, ...]
    model: str
    prompt_tokens: int
    total_tokens: int


def read_upstream_answer(content: bytes, count: int) -> EmbeddingsAnswer | None:
    """Read a 2xx answer to `count` items; None unless it is a complete embeddings list (one
    vector of one common length per item, each `index` exactly once)."""
    try:
        answer = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list) or len(data) != count:
        return None
    vectors: list[Vector | None] = [None] * count
    for position, item in enumerate(data):
        if not isinstance(item, dict):
            return None
        index = item.get("index", position)
        if not _is_token(index) or index >= count or vectors[index] is not None:
            return None
        vectors[index] = _vector(item.get("embedding"))
    if any(vector is None for vector in vectors):
        return None
    read = tuple(vector for vector in vectors if vector is not None)
    if len({len(vector) for vector in read}) != 1:
        return None
    usage = answer.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    prompt = _count(usage.get("prompt_tokens"), 0)
    model = answer.get("model")
    return EmbeddingsAnswer(
        vectors=read,
        model=model if isinstance(model, str) else "",
        prompt_tokens=prompt,
        total_tokens=_count(usage.get("total_tokens"), prompt),
    )


def _count(value: Any, default: int) -> int:
    return value if isinstance(value, int) and _is_token(value) else default


def split_tokens(total: int, weights: Sequence[int]) -> list[int]:
    """Share the upstream's token count of a batch among its items, in proportion to their
    lengths (largest remainder: the shares add up to `total`). The API reports one count per
    call; a token array's length is its exact count."""
    if not weights:
        return []
    weight = sum(weights)
    if weight <= 0:
        shares = [total // len(weights)] * len(weights)
        for i in range(total - sum(shares)):
            shares[i] += 1
        return shares
    exact = [total * w / weight for w in weights]
    shares = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: exact[i] - shares[i], reverse=True)
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


def stored_answer(vector: Vector, model: str) -> bytes:
    """The stored form of one item's vector: JSON with the float32 bytes in base64."""
    data = np.ascontiguousarray(vector, dtype=_LITTLE_F32).tobytes()
    return orjson.dumps(
        {"object": "embedding", "model": model, "embedding": base64.b64encode(data).decode()}
    )


def read_stored(answer: bytes) -> tuple[Vector, str] | None:
    """(vector, model) of a stored item; None for anything else (a chat answer, corrupt)."""
    try:
        stored = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(stored, dict) or stored.get("object") != "embedding":
        return None
    vector = _vector(stored.get("embedding"))
    model = stored.get("model")
    if vector is None or not isinstance(model, str):
        return None
    return vector, model


def _present(vector: Vector, encoding: EncodingFormat) -> Any:
    if encoding == "base64":
        return base64.b64encode(np.ascontiguousarray(vector, dtype=_LITTLE_F32).tobytes()).decode()
    # float64 holds every float32 exactly; its shortest form is what the API sends and what a
    # client decoding the base64 form gets (`np.frombuffer(..., "float32").tolist()`)
    return vector.astype(np.float64)


def render_response(
    vectors: Sequence[Vector],
    encoding: EncodingFormat,
    model: str,
    prompt_tokens: int,
    total_tokens: int,
) -> bytes:
    """The API's `list` of embeddings, in the request's order."""
    return orjson.dumps(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": index, "embedding": _present(vector, encoding)}
                for index, vector in enumerate(vectors)
            ],
            "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": total_tokens},
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
