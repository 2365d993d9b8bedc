"""The operator's settings: environment variables (`CACHEFLEET_OPERATOR_*`) and CLI flags."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cachefleet_operator.domain.durations import parse_duration

__all__ = ["OperatorConfig"]


def _seconds(value: object) -> float:
    if isinstance(value, str | int | float):
        return parse_duration(value)
    raise ValueError("expected a duration such as 60, 90s, 15m or 1h")


def _names(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


Seconds = Annotated[float, BeforeValidator(_seconds)]


class OperatorConfig(BaseSettings):
    """Everything the operator process can be told; see docs/operator.md."""

    model_config = SettingsConfigDict(env_prefix="CACHEFLEET_OPERATOR_", extra="forbid")

    namespaces: Annotated[list[str], NoDecode, BeforeValidator(_names)] = Field(
        default_factory=list,
        description="Namespaces to watch (comma-separated in the environment).",
    )
    all_namespaces: bool = Field(False, description="Watch every namespace (cluster scope).")
    kubeconfig: str | None = Field(
        None, description="Kubeconfig file; default: in-cluster, then $KUBECONFIG, ~/.kube/config."
    )
    http_host: str = Field("0.0.0.0", description="Address of /healthz, /readyz and /metrics.")  # noqa: S104
    http_port: int = Field(8080, ge=0, le=65535, description="Port of /healthz, /readyz, /metrics.")
    log_level: str = Field("info", description="debug, info, warning or error.")
    workers: int = Field(4, ge=1, le=64, description="Concurrent reconciles.")
    resync_interval: Seconds = Field(
        600.0, gt=0, description="Re-reconcile every object this often even without events."
    )
    stats_interval: Seconds = Field(
        60.0,
        gt=0,
        description="How often node stats are collected; also the least time between two "
        "hit-rate status writes of one cache.",
    )
    hit_rate_window: Seconds = Field(
        900.0, gt=0, description="Window of `status.hitRate` and `HitRateBelowTarget`."
    )
    purge_timeout: Seconds = Field(
        600.0,
        ge=0,
        description="With deletionPolicy Delete: how long deletion waits for a node to purge "
        "the cached data before it gives up (Warning Event) and lets the object go.",
    )
    node_endpoints_from_annotation: bool = Field(
        False,
        description="TEST/DEV ONLY: read node URLs from the `cachefleet.io/node-endpoints` "
        "annotation instead of the node Service's EndpointSlices.",
    )
    node_timeout: Seconds = Field(5.0, gt=0, description="Timeout of one request to a node.")
    stats_concurrency: int = Field(8, ge=1, le=256, description="Caches collected at once.")

    @model_validator(mode="after")
    def _one_scope(self) -> OperatorConfig:
        if self.all_namespaces and self.namespaces:
            raise ValueError("give either namespaces or all_namespaces, not both")
        return self

    @property
    def scoped(self) -> bool:
        """Whether a watch scope was given."""
        return self.all_namespaces or bool(self.namespaces)
