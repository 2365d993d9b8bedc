"""Credentials through the `kubernetes` package (adapters/credentials.py): every kind of
kubeconfig user, the in-cluster ServiceAccount, and clear errors. The apiserver side is in
e2e/test_operator_credentials.py."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from cachefleet_operator.adapters.credentials import (
    CredentialsError,
    bearer_parts,
    in_cluster,
    load_access,
)

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def kubeconfig(tmp_path: Path, user: dict[str, Any], **context: Any) -> Path:
    (tmp_path / "ca.crt").write_text(CA)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "prod",
                "cluster": {"server": "https://10.0.0.1:6443/", "certificate-authority": "ca.crt"},
            }
        ],
        "users": [{"name": "me", "user": user}],
        "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "me", **context}}],
        "current-context": "prod",
    }
    path = tmp_path / "config"
    path.write_text(json.dumps(config))
    return path


def plugin(tmp_path: Path, token: str, expires_in_s: int) -> tuple[dict[str, Any], Path]:
    """An exec user whose plugin prints `token`, valid that long; and its log of runs."""
    runs = tmp_path / "runs"
    script = tmp_path / "get-token"
    script.write_text(
        f"""#!{sys.executable}
import datetime, json
open({str(runs)!r}, "a").write("run\\n")
expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds={expires_in_s})
print(json.dumps({{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
    "status": {{"token": {token!r}, "expirationTimestamp": expiry.strftime("%Y-%m-%dT%H:%M:%SZ")}}}}))
"""
    )
    script.chmod(0o700)
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": str(script),
            "interactiveMode": "Never",
        }
    }
    return user, runs


def test_a_token_user_with_a_relative_ca_and_a_namespace(tmp_path: Path) -> None:
    access = load_access(str(kubeconfig(tmp_path, {"token": "s3cret"}, namespace="team-a")))
    assert access.server == "https://10.0.0.1:6443"
    assert Path(access.ca_file or "").read_text() == CA
    assert access.authorization() == "Bearer s3cret"
    assert access.default_namespace == "team-a"
    assert "s3cret" not in repr(access)
    assert bearer_parts(access.authorization()) == {"scheme": "Bearer", "token": "s3cret"}


def test_inline_client_certificates_become_private_files(tmp_path: Path) -> None:
    data = {
        "client-certificate-data": base64.b64encode(b"CERT").decode(),
        "client-key-data": base64.b64encode(b"KEY").decode(),
    }
    access = load_access(str(kubeconfig(tmp_path, data)))
    assert Path(access.cert_file or "").read_bytes() == b"CERT"
    assert Path(access.key_file or "").read_bytes() == b"KEY"
    assert access.authorization() is None


def test_basic_auth_reaches_kopf_as_user_and_password(tmp_path: Path) -> None:
    access = load_access(str(kubeconfig(tmp_path, {"username": "ann", "password": "pw:1"})))
    assert bearer_parts(access.authorization()) == {"username": "ann", "password": "pw:1"}


def test_an_exec_plugin_runs_once_and_again_when_its_credential_expires(
    tmp_path: Path,
) -> None:
    user, runs = plugin(tmp_path, "from-plugin", expires_in_s=3600)
    access = load_access(str(kubeconfig(tmp_path, user)))
    assert access.authorization() == "Bearer from-plugin"
    assert access.authorization() == "Bearer from-plugin"
    assert runs.read_text().count("run") == 1  # cached while valid
    (tmp_path / "short").mkdir()
    short, short_runs = plugin(tmp_path / "short", "short-lived", expires_in_s=1)
    access = load_access(str(kubeconfig(tmp_path / "short", short)))
    access.authorization()
    access.authorization()  # within the 5 min renewal margin: renewed on every use
    assert short_runs.read_text().count("run") >= 3


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ({}, "gave no credential"),
        (
            {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "/nonexistent"}},
            "gave no credential",
        ),
    ],
)
def test_a_context_without_a_usable_credential_is_refused(
    tmp_path: Path, user: dict[str, Any], message: str
) -> None:
    with pytest.raises(CredentialsError, match=message):
        load_access(str(kubeconfig(tmp_path, user)))


def test_unreadable_kubeconfigs_are_refused_with_the_path(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="no such file"):
        load_access(str(tmp_path / "missing"))
    broken = tmp_path / "broken"
    broken.write_text("clusters: [\n")
    with pytest.raises(CredentialsError, match=str(broken)):
        load_access(str(broken))
    no_context = tmp_path / "empty"
    no_context.write_text(json.dumps({"apiVersion": "v1", "kind": "Config"}))
    with pytest.raises(CredentialsError, match=str(no_context)):
        load_access(str(no_context))


def test_the_in_cluster_service_account_token_is_re_read(tmp_path: Path) -> None:
    environ = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    assert in_cluster(tmp_path, environ) is None  # no token: not in a pod
    (tmp_path / "token").write_text("first")
    (tmp_path / "ca.crt").write_text(CA)
    (tmp_path / "namespace").write_text("cachefleet-system\n")
    access = in_cluster(tmp_path, environ)
    assert access is not None
    assert access.server == "https://[fd00::1]:443"
    assert access.default_namespace == "cachefleet-system"
    assert bearer_parts(access.authorization()) == {"scheme": "bearer", "token": "first"}
    assert in_cluster(tmp_path, {}) is None  # no service host
