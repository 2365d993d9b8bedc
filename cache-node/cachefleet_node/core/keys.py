"""Cache keys and semantic partitions (pure functions, no I/O).

- The **exact key** hashes the canonical request: namespace, tenant and every body field that
  can change the answer (model, all messages, tools, response format, sampling parameters,
  unknown fields too). Only fields known not to affect the answer are left out.
- The **partition** is where a semantic match may be looked for. It hashes namespace, tenant,
  model and a *context fingerprint*: the canonical request with the fuzzy text blanked out.
  Two requests are semantic candidates only if everything but the fuzzy text is identical,
  so a hit across tenants, models, system prompts, tools or earlier turns cannot happen.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

import orjson

__all__ = [
    "ANSWER_NEUTRAL_FIELDS",
    "CacheKeys",
    "SemanticKey",
    "canonical_request",
    "compute_keys",
    "content_text",
    "embedding_entry_id",
]

KEY_VERSION = 1

# Body fields that never change the answer, so they stay out of every key.
ANSWER_NEUTRAL_FIELDS = frozenset(
    {
        "stream",  # a stored answer replays as JSON or SSE
        "stream_options",
        "user",  # end-user id for abuse monitoring
        "metadata",
        "store",
        "service_tier",
        "safety_identifier",
        "prompt_cache_key",
    }
)

_FUZZY_SLOT = {"$cachefleet": "fuzzy-text"}

FuzzyMode = Literal["last_user_turn", "all_user_turns"]


@dataclass(frozen=True, slots=True)
class SemanticKey:
    """Where and what to search semantically."""

    partition: str  # hex digest of (namespace, tenant, model, context fingerprint)
    context: str  # hex digest of the request without its fuzzy text
    text: str  # the text to embed


@dataclass(frozen=True, slots=True)
class CacheKeys:
    """Keys of one request. `semantic` is None when only exact matching is allowed."""

    exact: str
    semantic: SemanticKey | None
    semantic_skip_reason: str | None = None


def _digest(value: Any) -> str:
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()


def embedding_entry_id(
    *,
    namespace: str,
    tenant: str,
    model: str,
    dimensions: int | None,
    item: str | tuple[int, ...],
) -> str:
    """Exact key of one input item of `POST /v1/embeddings`: namespace, tenant, model,
    `dimensions` and the item itself (a string, or a token array: never equal to a string).

    `encoding_format` (a presentation of the same float32 vector) and `user` stay out. The
    `kind` field keeps these keys apart from chat keys, with which they share the entry store.
    """
    return _digest(
        {
            "v": KEY_VERSION,
            "kind": "embedding",
            "ns": namespace,
            "tenant": tenant,
            "model": model,
            "dimensions": dimensions,
            "input": item,
        }
    )


def canonical_request(body: dict[str, Any]) -> dict[str, Any]:
    """The request fields that can change the answer."""
    return {key: value for key, value in body.items() if key not in ANSWER_NEUTRAL_FIELDS}


def content_text(content: Any) -> str | None:
    """Text of a message content: a string, or text-only parts joined; None otherwise."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                return None
            text = part.get("text")
            if not isinstance(text, str):
                return None
            texts.append(text)
        return "\n".join(texts)
    return None


def _fuzzy_positions(messages: list[Any], mode: FuzzyMode) -> tuple[list[int], str | None]:
    """Indices of the messages whose text is fuzzy, or a reason why none can be."""
    if not messages or not isinstance(messages[-1], dict) or messages[-1].get("role") != "user":
        return [], "last message is not a user turn"
    if mode == "last_user_turn":
        return [len(messages) - 1], None
    return [
        i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"
    ], None


def compute_keys(
    body: dict[str, Any],
    *,
    namespace: str,
    tenant: str,
    fuzzy: FuzzyMode = "last_user_turn",
    semantic: bool = True,
) -> CacheKeys:
    """Exact key and semantic partition of a validated chat-completion body."""
    canonical = canonical_request(body)
    exact = _digest({"v": KEY_VERSION, "ns": namespace, "tenant": tenant, "req": canonical})
    if not semantic:
        return CacheKeys(exact=exact, semantic=None, semantic_skip_reason="semantic disabled")

    messages = list(canonical.get("messages", []))
    positions, reason = _fuzzy_positions(messages, fuzzy)
    if reason is not None:
        return CacheKeys(exact=exact, semantic=None, semantic_skip_reason=reason)
    texts = []
    for index in positions:
        text = content_text(messages[index].get("content"))
        if text is None:
            return CacheKeys(
                exact=exact, semantic=None, semantic_skip_reason="user turn is not plain text"
            )
        texts.append(text)
        messages[index] = {**messages[index], "content": _FUZZY_SLOT}
    fuzzy_text = "\n".join(texts)
    if not fuzzy_text.strip():
        return CacheKeys(exact=exact, semantic=None, semantic_skip_reason="empty user turn")

    context = _digest(
        {"v": KEY_VERSION, "fuzzy": fuzzy, "req": {**canonical, "messages": messages}}
    )
    partition = _digest(
        {
            "v": KEY_VERSION,
            "ns": namespace,
            "tenant": tenant,
            "model": body.get("model"),
            "ctx": context,
        }
    )
    return CacheKeys(
        exact=exact, semantic=SemanticKey(partition=partition, context=context, text=fuzzy_text)
    )
