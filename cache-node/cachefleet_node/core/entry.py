"""The cache entry and its wire format (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

__all__ = [
    "CacheEntry",
    "EntryFormatError",
    "as_served_hit",
    "completion_usage",
    "logprobs_depth",
    "requested_logprobs",
    "with_logprobs",
]

FORMAT_VERSION = 2
# Versions `from_bytes` reads: 1 (before entries remembered their request), 2 (adds `request`,
# later an optional `logprobs` depth that older readers ignore).
READABLE_VERSIONS = frozenset({1, 2})


class EntryFormatError(ValueError):
    """A stored entry could not be decoded (corrupt or from an unknown version)."""


def completion_usage(completion: dict[str, Any]) -> tuple[int, int]:
    """(prompt_tokens, completion_tokens) of a chat completion, or (input_tokens,
    output_tokens) of a response; zeros when absent."""
    usage = completion.get("usage")
    if not isinstance(usage, dict):
        return 0, 0
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    output = usage.get("completion_tokens", usage.get("output_tokens"))
    return (
        prompt if isinstance(prompt, int) and prompt >= 0 else 0,
        output if isinstance(output, int) and output >= 0 else 0,
    )


def as_served_hit(completion: dict[str, Any], *, response_id: str, created: int) -> dict[str, Any]:
    """A cached chat.completion as one hit serves it: its own `id` and `created` (each response
    is a new one), and the usage of the answer it reuses with every prompt token reported as
    cached (`prompt_tokens_details.cached_tokens`), the way OpenAI reports its prompt cache,
    so cost tools see a cached call rather than a fresh one."""
    served = {**completion, "id": response_id, "created": created}
    usage = completion.get("usage")
    if isinstance(usage, dict):
        prompt, _ = completion_usage(completion)
        details = usage.get("prompt_tokens_details")
        served["usage"] = {
            **usage,
            "prompt_tokens_details": {
                **(details if isinstance(details, dict) else {}),
                "cached_tokens": prompt,
            },
        }
    return served


def requested_logprobs(body: Mapping[str, Any]) -> int | None:
    """How many alternatives per token a chat request asks for (its `top_logprobs`, 0 with
    `logprobs: true` alone); None when it does not ask for logprobs."""
    if body.get("logprobs") is not True:
        return None
    top = body.get("top_logprobs")
    return top if isinstance(top, int) and not isinstance(top, bool) and top > 0 else 0


def logprobs_depth(completion: dict[str, Any], requested: int | None) -> int | None:
    """The logprobs an answer to a request asking for `requested` carries: `requested` when
    every choice has its logprobs object, else None."""
    choices = completion.get("choices")
    if requested is None or not isinstance(choices, list) or not choices:
        return None
    if all(isinstance(c, dict) and isinstance(c.get("logprobs"), dict) for c in choices):
        return requested
    return None


def with_logprobs(completion: dict[str, Any], requested: int | None) -> dict[str, Any]:
    """A stored chat.completion as served to a request asking for `requested` logprobs: none
    (`logprobs: null` on every choice) when it did not ask, else each token's
    `top_logprobs` cut to the `requested` first (the entry may keep more)."""
    choices = []
    for choice in completion.get("choices") or []:
        logprobs = choice.get("logprobs")
        if requested is None or not isinstance(logprobs, dict):
            logprobs = None
        else:
            logprobs = {
                part: _top(tokens, requested) if isinstance(tokens, list) else tokens
                for part, tokens in logprobs.items()
            }
        choices.append({**choice, "logprobs": logprobs})
    return {**completion, "choices": choices}


def _top(tokens: list[Any], requested: int) -> list[Any]:
    return [
        {**token, "top_logprobs": token["top_logprobs"][:requested]}
        if isinstance(token, dict) and isinstance(token.get("top_logprobs"), list)
        else token
        for token in tokens
    ]


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One cached answer set. `answers` are serialised chat.completion objects."""

    entry_id: str
    namespace: str
    tenant: str
    model: str
    created_at: float
    expires_at: float
    answers: tuple[bytes, ...]
    partition: str | None = None  # semantic partition; None for exact-only entries
    prompt: str | None = None  # the fuzzy text that was embedded
    tags: tuple[str, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # The canonical request body (orjson), kept so a warm-up can replay it upstream.
    request: bytes | None = None
    # `top_logprobs` depth every answer carries (0: logprobs, no alternatives); None: an
    # answer has no logprobs, so a request asking for them is not served from this entry.
    logprobs: int | None = None
    _size: int = field(default=0, compare=False, repr=False)

    def __post_init__(self) -> None:
        size = sum(len(a) for a in self.answers) + len(self.prompt or "") + 256
        size += len(self.request or b"")
        object.__setattr__(self, "_size", size)

    @property
    def size_bytes(self) -> int:
        """Approximate memory/storage footprint, used for byte-bounded tiers."""
        return self._size

    def is_fresh(self, now: float, max_age_s: float | None = None) -> bool:
        """Not expired, and younger than `max_age_s` when given."""
        if now >= self.expires_at:
            return False
        return max_age_s is None or now - self.created_at <= max_age_s

    def serves_logprobs(self, requested: int | None) -> bool:
        """Whether every answer carries the logprobs a request asks for (`requested_logprobs`)."""
        return requested is None or (self.logprobs is not None and self.logprobs >= requested)

    def with_answer(
        self,
        answer: bytes,
        limit: int,
        now: float,
        expires_at: float,
        logprobs: int | None = None,
    ) -> CacheEntry:
        """A copy with one more answer (for `sample:N`, at most `limit` answers kept) that
        carries `logprobs`. An answer with deeper logprobs than the entry's starts the answer
        set over, so that the entry can serve the request that asked for them."""
        if logprobs is not None and not self.serves_logprobs(logprobs):
            answers: tuple[bytes, ...] = (answer,)
        else:
            answers = (*self.answers, answer)[-limit:]  # the entry's depth covers this one's
        return replace(
            self, answers=answers, created_at=now, expires_at=expires_at, logprobs=logprobs
        )

    def to_bytes(self) -> bytes:
        """Serialise for the shared store."""
        return orjson.dumps(
            {
                "v": FORMAT_VERSION,
                "id": self.entry_id,
                "ns": self.namespace,
                "tenant": self.tenant,
                "model": self.model,
                "created": self.created_at,
                "expires": self.expires_at,
                "partition": self.partition,
                "prompt": self.prompt,
                "tags": list(self.tags),
                "usage": [self.prompt_tokens, self.completion_tokens],
                "answers": [orjson.Fragment(a) for a in self.answers],
                "request": None if self.request is None else orjson.Fragment(self.request),
                "logprobs": self.logprobs,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> CacheEntry:
        """Decode what `to_bytes` wrote; raise `EntryFormatError` on anything else."""
        try:
            raw = orjson.loads(data)
            if raw.get("v") not in READABLE_VERSIONS:
                raise EntryFormatError(f"unknown entry format version {raw.get('v')!r}")
            prompt_tokens, completion_tokens = raw["usage"]
            request = raw.get("request")
            return cls(
                entry_id=str(raw["id"]),
                namespace=str(raw["ns"]),
                tenant=str(raw["tenant"]),
                model=str(raw["model"]),
                created_at=float(raw["created"]),
                expires_at=float(raw["expires"]),
                partition=raw["partition"],
                prompt=raw["prompt"],
                tags=tuple(raw["tags"]),
                prompt_tokens=int(prompt_tokens),
                completion_tokens=int(completion_tokens),
                answers=tuple(orjson.dumps(a) for a in raw["answers"]),
                request=None if request is None else orjson.dumps(request),
                logprobs=_depth(raw.get("logprobs")),
            )
        except EntryFormatError:
            raise
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise EntryFormatError(f"corrupt cache entry: {exc}") from exc


def _depth(value: Any) -> int | None:
    """A stored logprobs depth (absent before entries kept one: None)."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise EntryFormatError(f"bad logprobs depth {value!r}")
    return value
