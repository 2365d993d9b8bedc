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
        if not isinstance(choice, dict) or not _replayable_message(choice.get("message")):
            return "malformed"
        if not isinstance(choice.get("index", 0), int):
            return "malformed"
        if choice.get("finish_reason") not in CACHEABLE_FINISH_REASONS:
            return "unfinished"
    return None


def _replayable_message(message: Any) -> bool:
    """The shape a hit is served and replayed from: text or null content and refusal, tool
    calls as objects with a function name and string arguments."""
    if not isinstance(message, dict):
        return False
    for key in ("content", "refusal"):
        if message.get(key) is not None and not isinstance(message[key], str):
            return False
    calls = message.get("tool_calls")
    if calls is None:
        return True
    if not isinstance(calls, list):
        return False
    for call in calls:
        if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
            return False
        function = call["function"]
        if not isinstance(function.get("name"), str):
            return False
        if not isinstance(function.get("arguments", ""), str):
            return False
    return True
