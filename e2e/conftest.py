"""pytest fixtures that start a real Kubernetes control plane (e2e/cluster, docs/development.md).

``kube_api`` (marker ``apiserver``): etcd + kube-apiserver. ``kube_cluster`` (marker ``cluster``):
also controller-manager, scheduler and kwok with fake CPU and GPU nodes. Both are session-scoped,
start on free loopback ports in a temp dir and are torn down at the end of the session, on
Ctrl-C/SIGTERM and when a test fails. ``fresh_kube_cluster`` (marker ``cluster``) is a full
profile of one test's own. They only ever hand out kubeconfigs they wrote themselves.

When the binaries are missing (no Go, failed build), tests using them skip with the reason —
except with CI=true, where they fail.
"""

from __future__ import annotations

import os
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

import log_exposure
from cluster import BinariesUnavailable, Cluster, ControlPlane, Profile, locate, wait_for

IN_CI = os.environ.get("CI", "").lower() == "true"

_FIXTURE_MARKERS = {
    "kube_api": "apiserver",
    "kube_cluster": "cluster",
    "fresh_kube_cluster": "cluster",
}


def _sigterm(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into KeyboardInterrupt so pytest runs fixture teardown (stops servers)."""
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    log_exposure.install(config)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by the control plane they use, so `-m "not cluster"` deselects them."""
    for item in items:
        for fixture, marker in _FIXTURE_MARKERS.items():
            if fixture in getattr(item, "fixturenames", ()) and not item.get_closest_marker(marker):
                item.add_marker(getattr(pytest.mark, marker))


def _start(profile: Profile) -> Iterator[Cluster]:
    try:
        binaries = locate()
    except BinariesUnavailable as error:
        message = f"local Kubernetes control plane unavailable: {error}"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    plane = ControlPlane(profile, binaries=binaries)
    cluster = plane.start()
    try:
        cluster.assert_ours(cluster.kubeconfig)
        cluster.assert_ours(cluster.user.kubeconfig)
        yield cluster
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kube_api() -> Iterator[Cluster]:
    """etcd + kube-apiserver (RBAC, admin and non-admin tokens); no controllers."""
    yield from _start(Profile.API)


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[Cluster]:
    """The full profile: controllers, scheduler, kwok with fake CPU and GPU nodes."""
    yield from _start(Profile.FULL)


@pytest.fixture
def fresh_kube_cluster() -> Iterator[Cluster]:
    """A full profile of its own, empty, stopped after the test: what `make cluster-up` starts
    (the same ControlPlane), for a test that must begin from an empty cluster."""
    yield from _start(Profile.FULL)


def _namespace(cluster: Cluster, *, wait_for_sa: bool) -> Iterator[str]:
    name = f"e2e-{secrets.token_hex(4)}"
    cluster.kubectl("create", "namespace", name)
    if wait_for_sa:  # pods are admitted only once the namespace's default ServiceAccount exists
        wait_for(
            lambda: (
                cluster.kubectl.run("get", "sa", "default", "-n", name, check=False).returncode == 0
            ),
            timeout_s=60,
            what=f"ServiceAccount {name}/default",
        )
    yield name
    cluster.kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def api_namespace(kube_api: Cluster) -> Iterator[str]:
    """A fresh namespace on the api profile."""
    yield from _namespace(kube_api, wait_for_sa=False)


@pytest.fixture
def cluster_namespace(kube_cluster: Cluster) -> Iterator[str]:
    """A fresh namespace on the full profile, ready for Pods."""
    yield from _namespace(kube_cluster, wait_for_sa=True)


# --- the shared tiers and the stub upstream for fleet tests (real processes) -----------------


@pytest.fixture(scope="module")
def milvus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Milvus Lite server process for one test module."""
    from lifecycle_harness import milvus_process

    with milvus_process(tmp_path_factory.mktemp("milvus")) as uri:
        yield uri


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The stub upstream (counts its calls) for one test module."""
    from operator_harness import stub_upstream

    with stub_upstream(tmp_path_factory.mktemp("stub")) as url:
        yield url


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A fresh redis-server for one test."""
    from operator_harness import redis_process

    with redis_process(tmp_path) as url:
        yield url
