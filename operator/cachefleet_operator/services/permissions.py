"""Readiness that means something: the operator can list every kind it watches, where it
watches it.

kopf keeps retrying a watch the API server refuses (RBAC taken away, a CRD not installed) and
the process stays alive, so without this check `/readyz` would say 200 while nothing is
reconciled. Every `interval` (sooner while something fails) the checker lists one object of
each watched kind in each watched namespace (or across all of them) and keeps what failed;
`/readyz` answers 503 with those problems until they are fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import structlog

from cachefleet_operator.adapters.kube import (
    CACHEINVALIDATIONS,
    MODELVERSIONS,
    SEMANTICCACHES,
    ApiError,
    KubeClient,
    ResourceType,
    resource_for,
)
from cachefleet_operator.domain.render import CHILD_SELECTOR, owned_kinds

__all__ = ["WatchPermissions", "watched_resources"]

log = structlog.get_logger("cachefleet.permissions")

PROBLEM_MESSAGE_CHARS = 300


def watched_resources() -> list[tuple[ResourceType, str | None]]:
    """Every kind the operator watches, with the label selector its watch uses."""
    own: list[tuple[ResourceType, str | None]] = [
        (SEMANTICCACHES, None),
        (MODELVERSIONS, None),
        (CACHEINVALIDATIONS, None),
    ]
    children = [
        (resource_for(kind.api_version, kind.kind), CHILD_SELECTOR) for kind in owned_kinds()
    ]
    return own + children


class WatchPermissions:
    """Checks, again and again, that each watch the operator relies on can be served."""

    def __init__(
        self,
        kube: KubeClient,
        *,
        namespaces: Sequence[str],
        interval: float = 30.0,
        retry_interval: float = 5.0,
    ) -> None:
        self._kube = kube
        #: None: cluster-wide watches (all namespaces).
        self._scopes: list[str | None] = list(namespaces) or [None]
        self._interval = interval
        self._retry_interval = retry_interval
        self._stopping = asyncio.Event()
        self.checked = False
        self.problems: list[str] = []

    async def check(self) -> list[str]:
        """List one object of every watched kind in every scope; the failures, described."""
        probes = [
            (rt, selector, scope) for rt, selector in watched_resources() for scope in self._scopes
        ]
        results = await asyncio.gather(
            *(self._kube.probe_list(rt, scope, label_selector=sel) for rt, sel, scope in probes),
            return_exceptions=True,
        )
        problems: list[str] = []
        for (rt, _, scope), result in zip(probes, results, strict=True):
            if isinstance(result, ApiError):
                where = f"in namespace {scope}" if scope else "in all namespaces"
                detail = f"{result.status} {result.reason}" if result.status else "unreachable"
                problems.append(
                    f"cannot list {rt.qualified_name} {where} ({detail}): "
                    f"{result.message[:PROBLEM_MESSAGE_CHARS]}"
                )
            elif isinstance(result, BaseException):
                raise result
        if problems != self.problems:
            if problems:
                log.warning("watch_permissions_missing", problems=problems)
            elif self.checked:
                log.info("watch_permissions_restored")
        self.problems, self.checked = problems, True
        return problems

    async def run(self) -> None:
        """Check now, then every `interval` (every `retry_interval` while something fails)."""
        while not self._stopping.is_set():
            await self.check()
            delay = self._retry_interval if self.problems else self._interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)

    def shutdown(self) -> None:
        self._stopping.set()

    def readiness_problems(self) -> list[str]:
        """Empty when every watch can be served (not before the first check)."""
        return list(self.problems) if self.checked else ["checking the operator's permissions"]
