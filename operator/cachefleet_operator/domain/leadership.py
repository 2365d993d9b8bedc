"""Leader election on a `coordination.k8s.io/v1` Lease: the decisions, without I/O.

One operator process holds the Lease and reconciles; the others stand by. The holder renews
`spec.renewTime` every retry period; a Lease whose holder has not renewed it for
`leaseDurationSeconds` is free, and the first standby to replace it (with the
`resourceVersion` it read: the API server refuses a second, concurrent taker) leads. The rules
are client-go's `leaderelection` package's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

__all__ = ["LeaseState", "Move", "lease_manifest", "next_move", "parse_lease"]


class Move(Enum):
    """What an elector does after reading the Lease."""

    CREATE = "create"  # no Lease yet: create it, holding it
    RENEW = "renew"  # ours: renew it
    TAKE = "take"  # expired or released: replace it, holding it
    WAIT = "wait"  # someone else holds it: stand by


@dataclass(frozen=True, slots=True)
class LeaseState:
    """What a Lease says."""

    holder: str | None
    renewed_at: datetime | None
    acquired_at: str | None  # as written (kept on renewal)
    duration_s: int
    transitions: int
    resource_version: str | None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_lease(obj: Mapping[str, Any] | None) -> LeaseState | None:
    """The state of a Lease object (None when there is none)."""
    if obj is None:
        return None
    spec = obj.get("spec") or {}
    duration = spec.get("leaseDurationSeconds")
    transitions = spec.get("leaseTransitions")
    return LeaseState(
        holder=spec.get("holderIdentity") or None,
        renewed_at=_time(spec.get("renewTime")),
        acquired_at=spec.get("acquireTime") or None,
        duration_s=duration if isinstance(duration, int) and duration > 0 else 0,
        transitions=transitions if isinstance(transitions, int) else 0,
        resource_version=(obj.get("metadata") or {}).get("resourceVersion"),
    )


def next_move(state: LeaseState | None, identity: str, now: datetime) -> Move:
    """Create, renew, take or wait."""
    if state is None:
        return Move.CREATE
    if state.holder == identity:
        return Move.RENEW
    if state.holder is None or state.renewed_at is None:
        return Move.TAKE  # released
    if now >= state.renewed_at + timedelta(seconds=state.duration_s):
        return Move.TAKE  # its holder stopped renewing
    return Move.WAIT


def _micro(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_manifest(
    *,
    name: str,
    namespace: str,
    identity: str,
    duration_s: int,
    now: datetime,
    previous: LeaseState | None,
    release: bool = False,
) -> dict[str, Any]:
    """The Lease to write: held by `identity` and renewed now, or (`release`) given up so a
    standby takes it at once. A change of holder counts a transition and sets `acquireTime`."""
    taking = previous is None or previous.holder != identity
    spec: dict[str, Any] = {
        "holderIdentity": None if release else identity,
        "leaseDurationSeconds": duration_s,
        "renewTime": None if release else _micro(now),
        "leaseTransitions": (previous.transitions if previous else 0)
        + (1 if taking and previous else 0),
    }
    if taking and not release:
        spec["acquireTime"] = _micro(now)
    elif previous is not None and previous.acquired_at and not release:
        spec["acquireTime"] = previous.acquired_at
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if previous is not None and previous.resource_version:
        metadata["resourceVersion"] = previous.resource_version
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": spec,
    }
