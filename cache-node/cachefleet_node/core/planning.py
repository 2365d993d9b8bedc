"""Turn a request into a lookup plan (validation, routing, keys, policies); the plan, the
outcome of its lookup, and the provenance headers that report it (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from cachefleet_node.config import NamespaceConfig
from cachefleet_node.core.controls import CacheControls, parse_controls
from cachefleet_node.core.entry import (
    CacheEntry,
    completion_usage,
    logprobs_depth,
    requested_logprobs,
)
from cachefleet_node.core.errors import RequestError
from cachefleet_node.core.judging import Judgement
from cachefleet_node.core.keys import CacheKeys, canonical_request, compute_keys
from cachefleet_node.core.policy import RequestDecision, decide_request, response_cacheable
from cachefleet_node.core.request import ChatRequest, parse_chat_request
from cachefleet_node.core.responses import response_cacheable as responses_cacheable
from cachefleet_node.core.routing import NamespaceRouter

__all__ = [
    "LookupPlan",
    "Outcome",
    "plan_for_namespace",
    "plan_request",
    "resolve_namespace",
    "response_headers_for",
]

Vector = npt.NDArray[np.float32]

#: Chat fields that choose what a hit serves, not the answer: kept out of the keys, checked
#: against the entry instead (`CacheEntry.serves_logprobs`).
_SERVE_TIME_FIELDS = frozenset({"logprobs", "top_logprobs"})


@dataclass(frozen=True, slots=True)
class LookupPlan:
    """Everything the engine needs about one request."""

    ns: NamespaceConfig
    namespace: str  # active cache namespace
    tenant: str
    model: str
    keys: CacheKeys
    controls: CacheControls
    decision: RequestDecision
    body: Mapping[str, Any] | None = None  # the request body (its canonical form is stored)
    api: str = "chat"  # whose answers: chat completions, or responses (`/v1/responses`)
    logprobs: int | None = None  # `top_logprobs` a chat request asks for; None: no logprobs

    @property
    def threshold(self) -> float:
        """Similarity a semantic candidate must reach (without an embedding-model override)."""
        if self.controls.threshold is not None:
            return self.controls.threshold
        return self.ns.similarity_threshold

    @property
    def semantic_enabled(self) -> bool:
        """Whether semantic tiers apply to this request."""
        return self.ns.semantic and self.keys.semantic is not None

    def unstorable(self, answer: dict[str, Any], size: int) -> str | None:
        """None if `answer` (`size` bytes serialised) may be stored, else the reason not."""
        check = responses_cacheable if self.api == "responses" else response_cacheable
        return check(answer, size, self.ns)

    def new_entry(self, completion: dict[str, Any], answer: bytes, now: float) -> CacheEntry:
        """The entry storing `answer` (the serialised `completion`) for this request, created
        at `now`: its TTL, partition and prompt, tags, token counts, and the canonical request
        for warm-ups (left out past the namespace's `max_entry_bytes`)."""
        semantic = self.keys.semantic if self.ns.semantic else None
        prompt_tokens, completion_tokens = completion_usage(completion)
        request = None
        if self.body is not None:
            request = orjson.dumps(canonical_request(dict(self.body)))
            if len(request) > self.ns.max_entry_bytes:
                request = None  # bounded: such an entry cannot be replayed by a warm-up
        return CacheEntry(
            entry_id=self.keys.exact,
            namespace=self.namespace,
            tenant=self.tenant,
            model=self.model,
            created_at=now,
            expires_at=now + (self.controls.ttl_s or self.ns.ttl_s),
            answers=(answer,),
            partition=semantic.partition if semantic else None,
            prompt=semantic.text if semantic else None,
            tags=self.controls.tags,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            request=request,
            logprobs=logprobs_depth(completion, self.logprobs),
        )


@dataclass(slots=True)
class Outcome:
    """Result of a lookup."""

    result: str  # hit-exact | hit-semantic | miss | bypass
    tier: str | None = None  # l1 | l2 on hits
    entry: CacheEntry | None = None
    answer: bytes | None = None
    similarity: float | None = None
    matched_prompt: str | None = None
    reasons: list[str] = field(default_factory=list)
    vector: Vector | None = None
    vector_space: str | None = None  # embedding space of `vector`
    shadow_similarity: float | None = None  # a would-be semantic hit not served (shadow mode)
    judgement: Judgement | None = None  # why the semantic hit was served
    vetoes: list[str] = field(default_factory=list)  # why candidates were refused
    judged: dict[str, Judgement] = field(default_factory=dict)  # entry id -> judgement

    @property
    def hit(self) -> bool:
        """Whether an answer is served from cache."""
        return self.answer is not None


def plan_request(
    router: NamespaceRouter, headers: Mapping[str, str], body: dict[str, Any], tenant: str
) -> tuple[ChatRequest, LookupPlan]:
    """Validate the body and build the plan; `RequestError` on bad input or unknown model."""
    request = parse_chat_request(body)
    ns = resolve_namespace(router, request.model)
    return request, plan_for_namespace(router, ns, headers, request, tenant)


def resolve_namespace(router: NamespaceRouter, model: str) -> NamespaceConfig:
    """The configured namespace serving `model`; `RequestError` 404 when none does."""
    ns = router.resolve(model)
    if ns is None:
        served = sorted({pattern for n in router.namespaces for pattern in n.models})
        raise RequestError(
            404,
            f"model '{model}' is not served by this cache (configured: {', '.join(served)})",
            param="model",
            code="model_not_found",
        )
    return ns


def plan_for_namespace(
    router: NamespaceRouter,
    ns: NamespaceConfig,
    headers: Mapping[str, str],
    request: ChatRequest,
    tenant: str,
    api: str = "chat",
) -> LookupPlan:
    """The plan of a validated request in configured namespace `ns`, keyed in its active
    cache namespace (what the proxy does once it has routed the model). Only a chat plan
    keeps its body, which warm-ups replay (as a chat completion)."""
    body = request.body
    controls = parse_controls(
        headers, min_threshold=ns.min_threshold, max_threshold=ns.max_threshold, max_ttl_s=ns.ttl_s
    )
    namespace = router.active(ns.name)
    chat = api == "chat"
    keyed = {k: v for k, v in body.items() if k not in _SERVE_TIME_FIELDS} if chat else body
    keys = compute_keys(
        keyed, namespace=namespace, tenant=tenant, fuzzy=ns.fuzzy_text, semantic=ns.semantic
    )
    return LookupPlan(
        ns=ns,
        namespace=namespace,
        tenant=tenant,
        model=request.model,
        keys=keys,
        controls=controls,
        decision=decide_request(request, ns),
        body=body if chat else None,
        api=api,
        logprobs=requested_logprobs(body) if chat else None,
    )


def response_headers_for(
    plan: LookupPlan,
    result: str,
    *,
    tier: str | None = None,
    similarity: float | None = None,
    age_s: float | None = None,
    reasons: list[str] | None = None,
    judgement: Judgement | None = None,
    vetoes: Sequence[str] = (),
) -> dict[str, str]:
    """Provenance headers carried by every proxied response; a semantic hit explains itself
    (verifier score, guards that ran), and any response names what refused candidates."""
    headers = {"x-cachefleet-cache": result, "x-cachefleet-namespace": plan.namespace}
    if tier is not None:
        headers["x-cachefleet-tier"] = tier
    if similarity is not None:
        headers["x-cachefleet-similarity"] = f"{similarity:.4f}"
    if judgement is not None:
        headers["x-cachefleet-guards"] = ",".join(judgement.guards) or "none"
        if judgement.verifier is not None:
            headers["x-cachefleet-verifier"] = f"{judgement.verifier:.4f}"
    if vetoes:
        headers["x-cachefleet-vetoes"] = ",".join(dict.fromkeys(vetoes))
    if age_s is not None:
        headers["age"] = str(max(0, int(age_s)))
    if reasons:
        headers["x-cachefleet-bypass-reason"] = ",".join(dict.fromkeys(reasons))
    if plan.controls.threshold is not None:
        headers["x-cachefleet-threshold"] = f"{plan.threshold:.4f}"
    return headers
