"""The Argo CD health checks (Lua) on recorded SemanticCache and ModelVersion objects.

The fixtures in fixtures/ are objects whose status the operator's own status functions wrote;
each is validated against the API models here, and against the real CRD on a kube-apiserver
in e2e/test_gitops_examples.py.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import lupa.lua51 as lua51
import pytest
import yaml
from gitops_health import (
    ARGO_STATUSES,
    ARGOCD_CM,
    FIXTURES,
    KINDS,
    argocd_cm_text,
    argocd_health,
    fixture,
    health_script,
    run_health_script,
)

from cachefleet_operator.api.v1alpha1 import ModelVersion, SemanticCache

# fixture → (Argo CD status, text the message must contain)
EXPECTED = {
    "semanticcache-healthy.yaml": ("Healthy", "3/3 cache nodes ready"),
    "semanticcache-no-status.yaml": ("Progressing", "Waiting for the operator"),
    "semanticcache-progressing-generation.yaml": ("Progressing", "observe generation 3"),
    "semanticcache-progressing-rollout.yaml": ("Progressing", "Deployment chat-node: 0/3 ready"),
    "semanticcache-progressing-pending.yaml": ("Progressing", "not checked by a cache node yet"),
    "semanticcache-degraded-stalled.yaml": ("Degraded", "Secret openai"),
    "semanticcache-degraded-not-ready.yaml": ("Degraded", "external Redis is unreachable"),
    "semanticcache-suspended.yaml": ("Suspended", "spec.paused"),
    "modelversion-healthy.yaml": ("Healthy", "serving cache namespace gpt-4o-mini-"),
    "modelversion-no-status.yaml": ("Progressing", "Waiting for the operator"),
    "modelversion-progressing-generation.yaml": ("Progressing", "observe generation 2"),
    "modelversion-degraded.yaml": ("Degraded", "Extra inputs are not permitted"),
}
MODELS = {"SemanticCache": SemanticCache, "ModelVersion": ModelVersion}


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(path.name for path in FIXTURES.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_has_the_shape_of_the_api(name: str) -> None:
    obj = fixture(name)
    parsed = MODELS[obj["kind"]].model_validate(obj)
    if "status" in obj:  # the recorded status round-trips through the model unchanged
        assert parsed.status.to_api() == obj["status"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_health_of_recorded_objects(name: str) -> None:
    obj = fixture(name)
    status, text = EXPECTED[name]
    verdict = argocd_health(obj["kind"], obj)
    assert verdict["status"] == status, verdict
    assert text in verdict["message"], verdict


def test_degraded_carries_the_ready_message_verbatim() -> None:
    obj = fixture("semanticcache-degraded-not-ready.yaml")
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"
    assert argocd_health("SemanticCache", obj) == {
        "status": "Degraded",
        "message": ready["message"],
    }


# --- rule order, on objects built from the healthy fixture ---------------------------------


def _with(base: dict[str, Any], **conditions: str) -> dict[str, Any]:
    """`base` with the given condition statuses (`Ready="False"`), other conditions kept."""
    obj = copy.deepcopy(base)
    for condition in obj["status"]["conditions"]:
        if condition["type"] in conditions:
            condition["status"] = conditions[condition["type"]]
            condition["message"] = f"{condition['type']} is {condition['status']}"
    return obj


@pytest.fixture
def healthy() -> dict[str, Any]:
    return fixture("semanticcache-healthy.yaml")


def test_generation_mismatch_wins_over_everything(healthy: dict[str, Any]) -> None:
    obj = _with(healthy, Stalled="True", Ready="False")
    obj["spec"]["paused"] = True
    obj["metadata"]["generation"] = obj["status"]["observedGeneration"] + 1
    assert argocd_health("SemanticCache", obj)["status"] == "Progressing"


def test_a_status_without_observed_generation_is_not_observed(healthy: dict[str, Any]) -> None:
    del healthy["status"]["observedGeneration"]
    assert argocd_health("SemanticCache", healthy)["status"] == "Progressing"
    healthy["status"] = {}
    assert argocd_health("SemanticCache", healthy)["status"] == "Progressing"


def test_paused_is_suspended_even_when_stalled(healthy: dict[str, Any]) -> None:
    obj = _with(healthy, Stalled="True", Ready="False")
    obj["spec"]["paused"] = True
    assert argocd_health("SemanticCache", obj)["status"] == "Suspended"


def test_stalled_is_degraded_even_if_ready(healthy: dict[str, Any]) -> None:
    verdict = argocd_health("SemanticCache", _with(healthy, Stalled="True"))
    assert verdict == {"status": "Degraded", "message": "Stalled is True"}


def test_ready_wins_over_reconciling(healthy: dict[str, Any]) -> None:
    # A rollout that keeps enough nodes serving: Argo CD may move on to the next sync wave.
    obj = _with(healthy, Reconciling="True")
    assert argocd_health("SemanticCache", obj)["status"] == "Healthy"


def test_reconciling_wins_over_not_ready(healthy: dict[str, Any]) -> None:
    verdict = argocd_health("SemanticCache", _with(healthy, Reconciling="True", Ready="False"))
    assert verdict == {"status": "Progressing", "message": "Reconciling is True"}


@pytest.mark.parametrize("ready", ["Unknown", None])
def test_ready_unknown_or_missing_is_progressing(
    healthy: dict[str, Any], ready: str | None
) -> None:
    obj = _with(healthy, Ready=ready or "Unknown")
    if ready is None:
        obj["status"]["conditions"] = [
            c for c in obj["status"]["conditions"] if c["type"] != "Ready"
        ]
    assert argocd_health("SemanticCache", obj)["status"] == "Progressing"


def test_empty_message_falls_back_to_the_reason(healthy: dict[str, Any]) -> None:
    obj = _with(healthy, Ready="False")
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    ready["message"], ready["reason"] = "", "NodesNotReady"
    assert argocd_health("SemanticCache", obj) == {"status": "Degraded", "message": "NodesNotReady"}


def test_object_without_generation_is_judged_by_its_conditions(healthy: dict[str, Any]) -> None:
    del healthy["metadata"]["generation"]
    assert argocd_health("SemanticCache", healthy)["status"] == "Healthy"


# --- both scripts, and how they are installed ----------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_both_kinds_apply_the_same_rules(name: str) -> None:
    obj = fixture(name)
    verdicts = {kind: argocd_health(kind, obj)["status"] for kind in KINDS}
    assert verdicts["SemanticCache"] == verdicts["ModelVersion"]
    assert verdicts["SemanticCache"] in ARGO_STATUSES


@pytest.mark.parametrize("kind", KINDS)
def test_scripts_use_nothing_argo_cd_does_not_open(kind: str) -> None:
    script = health_script(kind)
    for name in ("os.", "io.", "require", "dofile", "loadstring", "print("):
        assert name not in script, f"{kind} health.lua uses {name}"


@pytest.mark.parametrize("call", ["os.time()", "io.open('/etc/passwd')", "require('os')"])
def test_the_sandbox_refuses_what_argo_cd_refuses(call: str) -> None:
    with pytest.raises(lua51.LuaError, match="a nil value"):
        run_health_script(f"return {{status = 'Healthy', message = tostring({call})}}", {})


def test_argocd_cm_snippet_holds_the_scripts() -> None:
    expected = argocd_cm_text()
    if os.environ.get("CACHEFLEET_UPDATE_GOLDEN"):
        ARGOCD_CM.write_text(expected, encoding="utf-8")
    assert ARGOCD_CM.read_text(encoding="utf-8") == expected, (
        f"regenerate with CACHEFLEET_UPDATE_GOLDEN=1 ({ARGOCD_CM})"
    )
    config_map = yaml.safe_load(expected)
    for kind in KINDS:
        key = f"resource.customizations.health.cachefleet.io_{kind}"
        assert config_map["data"][key] == health_script(kind)
