"""Operator settings from flags and CACHEFLEET_OPERATOR_* variables; the kopf settings."""

from __future__ import annotations

import kopf
import pytest
from pydantic import ValidationError

from cachefleet_operator.cli import main, parse_config
from cachefleet_operator.handlers.lifecycle import configure


def test_defaults_are_production_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_config(["--namespace", "inference"])
    assert config.namespaces == ["inference"]
    assert not config.all_namespaces
    assert config.stats_interval == 60
    assert config.hit_rate_window == 900
    assert config.resync_interval == 600
    assert not config.node_endpoints_from_annotation  # test/dev only, off unless asked


def test_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CACHEFLEET_OPERATOR_NAMESPACES", "a, b")
    monkeypatch.setenv("CACHEFLEET_OPERATOR_STATS_INTERVAL", "30s")
    monkeypatch.setenv("CACHEFLEET_OPERATOR_NODE_ENDPOINTS_FROM_ANNOTATION", "true")
    config = parse_config([])
    assert config.namespaces == ["a", "b"]
    assert config.stats_interval == 30
    assert config.node_endpoints_from_annotation
    config = parse_config(["-A", "--stats-interval", "2", "--hit-rate-window", "1h"])
    assert config.all_namespaces
    assert config.namespaces == []
    assert (config.stats_interval, config.hit_rate_window) == (2, 3600)


def test_bad_values_are_named() -> None:
    with pytest.raises(ValidationError, match="invalid duration"):
        parse_config(["-n", "x", "--hit-rate-window", "fortnight"])


def test_a_scope_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "--namespace NS" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["-n", "a", "-A"])


def test_kopf_state_lives_under_the_project_prefix() -> None:
    settings = kopf.OperatorSettings()
    configure(settings)
    assert settings.persistence.finalizer == "cachefleet.io/finalizer"
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert settings.persistence.progress_storage.prefix == "cachefleet.io"
    assert isinstance(settings.persistence.diffbase_storage, kopf.AnnotationsDiffBaseStorage)
    assert settings.persistence.diffbase_storage.prefix == "cachefleet.io"
    assert (settings.watching.server_timeout, settings.watching.client_timeout) == (300, 330)
    selectors = dict(settings.watching.label_selectors.items())
    assert len(selectors) == 6
    assert set(selectors.values()) == {"app.kubernetes.io/managed-by=cachefleet-operator"}
