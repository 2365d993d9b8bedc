"""Which requests and responses may be cached in a namespace (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cachefleet_node.config import NamespaceConfig
from cachefleet_node.core.request import ChatRequest

__all__ = ["RequestDecision", "decide_request", "response_cacheable"]

CACHEABLE_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "function_call"})


@dataclass(frozen=True, slots=True)
class RequestDecision:
    """How the cache treats one request."""

    cacheable: bool
    reason: str | None = None  # why not, when not cacheable
    sample_size: int = 1  # answers to collect before serving (`sample:N`)


def decide_request(request: ChatRequest, namespace: NamespaceConfig) -> RequestDecision:
    """Apply the namespace's cacheability and temperature policies to a request."""
    last = request.body["messages"][-1]
    if last.get("role") in {"tool", "function"} and not namespace.cache_tool_results:
        return RequestDecision(False, "tool-result")
    if request.temperature is not None and request.temperature > 0:
        policy = namespace.temperature_policy
        if policy == "bypass":
            return RequestDecision(False, "temperature")
        return RequestDecision(True, sample_size=namespace.sample_size)
    return RequestDecision(True)


def response_cacheable(completion: Any, size: int, namespace: NamespaceConfig) -> str | None:
    """None if a chat.completion may be stored, else the reason it may not."""
    if size > namespace.max_entry_bytes:
        return "too-large"
    if not isinstance(completion, dict):
        return "malformed"
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices:
        return "no-choices"
    for choice in choices:
        if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
            return "malformed"
        if choice.get("finish_reason") not in CACHEABLE_FINISH_REASONS:
            return "unfinished"
    return None
