"""Turn an HTTP request into a lookup plan (validation, routing, keys, policies)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cachefleet_node.config import NamespaceConfig
from cachefleet_node.core.controls import parse_controls
from cachefleet_node.core.errors import RequestError
from cachefleet_node.core.judging import Judgement
from cachefleet_node.core.keys import compute_keys
from cachefleet_node.core.policy import decide_request
from cachefleet_node.core.request import ChatRequest, parse_chat_request
from cachefleet_node.core.routing import NamespaceRouter
from cachefleet_node.engine import LookupPlan

__all__ = ["plan_for_namespace", "plan_request", "response_headers_for"]


def plan_request(
    router: NamespaceRouter, headers: Mapping[str, str], body: dict[str, Any], tenant: str
) -> tuple[ChatRequest, LookupPlan]:
    """Validate the body and build the plan; `RequestError` on bad input or unknown model."""
    request = parse_chat_request(body)
    ns = router.resolve(request.model)
    if ns is None:
        served = sorted({pattern for n in router.namespaces for pattern in n.models})
        raise RequestError(
            404,
            f"model '{request.model}' is not served by this cache "
            f"(configured: {', '.join(served)})",
            param="model",
            code="model_not_found",
        )
    return request, plan_for_namespace(router, ns, headers, request, tenant)


def plan_for_namespace(
    router: NamespaceRouter,
    ns: NamespaceConfig,
    headers: Mapping[str, str],
    request: ChatRequest,
    tenant: str,
) -> LookupPlan:
    """The plan of a validated request in configured namespace `ns`, keyed in its active
    cache namespace (what the proxy does once it has routed the model)."""
    body = request.body
    controls = parse_controls(
        headers, min_threshold=ns.min_threshold, max_threshold=ns.max_threshold, max_ttl_s=ns.ttl_s
    )
    namespace = router.active(ns.name)
    keys = compute_keys(
        body, namespace=namespace, tenant=tenant, fuzzy=ns.fuzzy_text, semantic=ns.semantic
    )
    return LookupPlan(
        ns=ns,
        namespace=namespace,
        tenant=tenant,
        model=request.model,
        keys=keys,
        controls=controls,
        decision=decide_request(request, ns),
        body=body,
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
