"""The reconciler services built from one `ServiceContext`: a stored object the models reject
is stalled with the reason in its conditions and one `InvalidSpec` Event, by each reconciler
that owns conditions (the shared `Service` path)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest
from operator_testdata import NAMESPACE, as_read_from_the_api, example

from cachefleet_operator.adapters.kube import ResourceType
from cachefleet_operator.adapters.metrics import OperatorMetrics
from cachefleet_operator.services.context import Outcome, ServiceContext
from cachefleet_operator.services.modelversions import ModelVersionReconciler
from cachefleet_operator.services.semanticcaches import CacheReconciler
from cachefleet_operator.settings import OperatorConfig

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class FakeKube:
    """Serves one stored object; records the status writes."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.statuses: list[tuple[str, dict[str, Any]]] = []

    async def get(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        return self.body

    async def apply_status(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        status: dict[str, Any],
        *,
        field_manager: str,
    ) -> None:
        self.statuses.append((rt.kind, status))


class FakeEvents:
    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []

    async def post_error_once(self, involved: Any, reason: str, message: str) -> None:
        self.errors.append((reason, message))


def context(kube: FakeKube, events: FakeEvents) -> ServiceContext:
    return ServiceContext(
        kube=cast(Any, kube),
        nodes=cast(Any, None),  # an invalid object never reaches the nodes
        access=cast(Any, None),
        events=cast(Any, events),
        metrics=OperatorMetrics(),
        config=OperatorConfig(),
        clock=lambda: NOW,
    )


def with_bad_field(kind: str, name: str) -> dict[str, Any]:
    body = as_read_from_the_api(example(kind, name))
    return {**body, "spec": {**body["spec"], "bogus": True}}


@pytest.mark.parametrize(
    ("kind", "name", "stalled"),
    [
        ("ModelVersion", "gpt-4o-mini", {"Ready": "False", "Resolved": "False", "Stalled": "True"}),
        ("SemanticCache", "chat", {"Ready": "False", "Stalled": "True"}),
    ],
)
async def test_a_stored_object_the_models_reject_is_stalled_with_the_reason(
    kind: str, name: str, stalled: dict[str, str]
) -> None:
    kube, events = FakeKube(with_bad_field(kind, name)), FakeEvents()
    shared = context(kube, events)
    reconciler = (
        ModelVersionReconciler(shared)
        if kind == "ModelVersion"
        else CacheReconciler(shared, collector=cast(Any, None), lifecycle=cast(Any, None))
    )

    outcome = await reconciler.reconcile(NAMESPACE, name)

    assert outcome == Outcome(failure="InvalidSpec", ready="False")
    [(written_kind, status)] = kube.statuses
    assert written_kind == kind
    assert status["observedGeneration"] == 1
    conditions = {c["type"]: c for c in status["conditions"]}
    assert {t: c["status"] for t, c in conditions.items()} == stalled
    assert all(c["reason"] == "InvalidSpec" for c in conditions.values())
    assert all("spec.bogus" in c["message"] for c in conditions.values())
    assert {c["lastTransitionTime"] for c in conditions.values()} == {"2026-03-01T12:00:00Z"}
    [(reason, message)] = events.errors
    assert reason == "InvalidSpec"
    assert message.startswith("spec.bogus: Extra inputs are not permitted")
