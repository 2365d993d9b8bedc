"""Leader election decisions (pure) and the Lease they write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cachefleet_operator.domain.leadership import Move, lease_manifest, next_move, parse_lease

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def lease(holder: str | None, renewed: datetime | None, version: str = "7") -> dict:
    spec: dict = {"leaseDurationSeconds": 15, "leaseTransitions": 2}
    if holder is not None:
        spec["holderIdentity"] = holder
    if renewed is not None:
        spec["renewTime"] = renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        spec["acquireTime"] = "2026-12-01T11:00:00.000000Z"
    return {"metadata": {"name": "l", "namespace": "ns", "resourceVersion": version}, "spec": spec}


def test_no_lease_is_created() -> None:
    assert next_move(parse_lease(None), "me", NOW) is Move.CREATE


def test_our_lease_is_renewed_and_a_live_one_waited_for() -> None:
    assert next_move(parse_lease(lease("me", NOW)), "me", NOW) is Move.RENEW
    fresh = parse_lease(lease("other", NOW - timedelta(seconds=14)))
    assert next_move(fresh, "me", NOW) is Move.WAIT


def test_an_expired_or_released_lease_is_taken() -> None:
    expired = parse_lease(lease("other", NOW - timedelta(seconds=15)))
    assert next_move(expired, "me", NOW) is Move.TAKE
    assert next_move(parse_lease(lease(None, None)), "me", NOW) is Move.TAKE


def test_taking_counts_a_transition_and_keeps_the_version_for_the_server_check() -> None:
    state = parse_lease(lease("other", NOW - timedelta(seconds=30)))
    body = lease_manifest(
        name="l", namespace="ns", identity="me", duration_s=15, now=NOW, previous=state
    )
    assert body["metadata"]["resourceVersion"] == "7"  # a concurrent taker gets a 409
    assert body["spec"]["holderIdentity"] == "me"
    assert body["spec"]["leaseTransitions"] == 3
    assert body["spec"]["acquireTime"] == body["spec"]["renewTime"] == "2026-12-01T12:00:00.000000Z"


def test_renewing_keeps_the_acquire_time_and_releasing_clears_the_holder() -> None:
    state = parse_lease(lease("me", NOW - timedelta(seconds=2)))
    renewed = lease_manifest(
        name="l", namespace="ns", identity="me", duration_s=15, now=NOW, previous=state
    )
    assert renewed["spec"]["acquireTime"] == "2026-12-01T11:00:00.000000Z"
    assert renewed["spec"]["leaseTransitions"] == 2
    released = lease_manifest(
        name="l",
        namespace="ns",
        identity="me",
        duration_s=15,
        now=NOW,
        previous=state,
        release=True,
    )
    assert released["spec"]["holderIdentity"] is None
    assert next_move(parse_lease(released), "other", NOW) is Move.TAKE
