"""The cache node's configuration loader. The models are the contract's
(`cachefleet_contract.config`, also what the operator renders); this module re-exports them
for the node's own modules and adds the loader: YAML file, then `CACHEFLEET_*` environment
variables, then command-line overrides, validated once at start-up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cachefleet_contract.config import (
    ENV_PREFIX,
    MODEL_DIR_ENV,
    AuthConfig,
    EmbeddingConfig,
    GuardsConfig,
    ModelPrice,
    NamespaceConfig,
    NodeConfig,
    TenantKey,
    UpstreamConfig,
    VerifierConfig,
)

# The contract's models the node's modules use, re-exported so they import their settings from
# one place; the loader below is the node's own.
__all__ = [
    "MODEL_DIR_ENV",
    "AuthConfig",
    "ConfigError",
    "EmbeddingConfig",
    "GuardsConfig",
    "ModelPrice",
    "NamespaceConfig",
    "NodeConfig",
    "TenantKey",
    "UpstreamConfig",
    "VerifierConfig",
    "format_validation_error",
    "load_node_config",
]


class ConfigError(ValueError):
    """Raised when the configuration is invalid; the message names the bad field."""


def format_validation_error(error: ValidationError, prefix: str = "") -> str:
    """Render a pydantic error as `field.path: message` lines."""
    lines = []
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"]) or "(root)"
        lines.append(f"{prefix}{path}: {item['msg']}")
    return "\n".join(lines)


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """`CACHEFLEET_REDIS__URL=…` becomes `{"redis": {"url": …}}`; values parse as YAML scalars."""
    result: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        try:
            value = yaml.safe_load(raw) if raw else raw
        except yaml.YAMLError:
            value = raw
        if path[-1] in {"url", "token", "uri", "base_url", "remote_url"}:
            value = raw  # never reinterpret URLs or secrets
        node = result
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return result


def load_node_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> NodeConfig:
    """Load YAML (optional), apply environment then explicit overrides, validate.

    Raises `ConfigError` whose message names each bad field.
    """
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        data = loaded
    data = _deep_merge(data, _env_overrides(env))
    model_dir = env.get(MODEL_DIR_ENV)
    embedding = data.get("embedding", {})
    # Only fill a mapping (or a missing section); anything else is left for validation to name.
    if model_dir and isinstance(embedding, dict) and not embedding.get("model_dir"):
        data = _deep_merge(data, {"embedding": {"model_dir": model_dir}})
    if overrides:
        data = _deep_merge(data, overrides)
    try:
        return NodeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("invalid configuration:\n" + format_validation_error(exc, "  ")) from exc
