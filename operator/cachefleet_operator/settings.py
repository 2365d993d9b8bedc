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

    leader_election: bool = Field(
        True,
        description="Run only while holding the Lease `lease_name`: of several operator "
        "processes exactly one acts, the others stand by (and take over when it stops).",
    )
    lease_name: str = Field(
        "cachefleet-operator",
        min_length=1,
        max_length=253,
        description="Name of the coordination.k8s.io Lease the operators elect a leader on.",
    )
    lease_namespace: str | None = Field(
        None,
        description="Namespace of the Lease; default: the pod's own ($POD_NAMESPACE or the "
        "in-cluster service account's), else the first watched namespace, else the "
        "kubeconfig context's, else `default`.",
    )
    lease_duration: Seconds = Field(
        15.0, gt=0, description="A leader that stops renewing is replaced after this long."
    )
    renew_deadline: Seconds = Field(
        10.0, gt=0, description="The leader stops acting when it could not renew for this long."
    )
    retry_period: Seconds = Field(
        2.0, gt=0, description="How often the leader renews and a standby tries to take over."
    )
    identity: str | None = Field(
        None,
        max_length=128,
        description="This process in the Lease; default: $POD_NAME, else host name and pid.",
    )

    @model_validator(mode="after")
    def _one_scope(self) -> OperatorConfig:
        if self.all_namespaces and self.namespaces:
            raise ValueError("give either namespaces or all_namespaces, not both")
        if not self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("need retry_period < renew_deadline < lease_duration")
        return self

    @property
    def scoped(self) -> bool:
        """Whether a watch scope was given."""
        return self.all_namespaces or bool(self.namespaces)
