"""Watch the children (only ours: a server-side label selector, see lifecycle.configure).

A deleted, edited or progressing child re-reconciles its SemanticCache within a second:
deleted children come back, drifted fields are re-applied, readiness shows up in status.
"""

from __future__ import annotations

from typing import Any

import kopf

from cachefleet_operator.domain.render import owned_kinds
from cachefleet_operator.services.controller import Controller

__all__ = ["on_child_event"]


async def on_child_event(
    body: kopf.Body, memo: kopf.Memo, resource: kopf.Resource, **_: Any
) -> None:
    controller: Controller = memo["controller"]
    controller.child_event(resource.kind or resource.plural, body)


for _kind in owned_kinds():
    kopf.on.event(_kind.api_version, _kind.plural, id=f"child-{_kind.plural}")(on_child_event)
