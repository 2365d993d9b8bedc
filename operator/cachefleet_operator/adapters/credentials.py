"""How the operator reaches the Kubernetes API: a kubeconfig or the in-cluster ServiceAccount.

One `ClusterAccess` serves both kopf (through its login handler) and the operator's own client,
so they always act as the same identity. Supported: bearer tokens (static, or the projected
ServiceAccount token file re-read when the kubelet rotates it), client certificates, CA
certificates by file or inline data, `insecure-skip-tls-verify`. Not supported: exec and
auth-provider plugins (use a token).
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ClusterAccess", "CredentialsError", "load_access"]

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class CredentialsError(RuntimeError):
    """No usable kubeconfig or in-cluster credentials."""


@dataclass(frozen=True)
class ClusterAccess:
    """API server address and credentials. `*_data` fields are base64, as in a kubeconfig."""

    server: str
    ca_file: str | None = None
    ca_data: str | None = None
    insecure: bool = False
    token: str | None = None
    token_file: str | None = None
    cert_file: str | None = None
    cert_data: str | None = None
    key_file: str | None = None
    key_data: str | None = None
    default_namespace: str | None = None
    source: str = ""

    def current_token(self) -> str | None:
        """The bearer token; a token file is read each time (the kubelet rotates it)."""
        if self.token_file:
            return Path(self.token_file).read_text(encoding="utf-8").strip()
        return self.token

    def ssl_context(self) -> ssl.SSLContext | bool:
        """TLS settings for httpx: verify against the CA, present the client certificate."""
        if self.insecure:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif self.ca_file or self.ca_data:
            cadata = base64.b64decode(self.ca_data).decode() if self.ca_data else None
            context = ssl.create_default_context(cafile=self.ca_file, cadata=cadata)
        else:
            context = ssl.create_default_context()
        cert = self.cert_file or (_materialise(self.cert_data) if self.cert_data else None)
        key = self.key_file or (_materialise(self.key_data) if self.key_data else None)
        if cert:
            context.load_cert_chain(cert, key)
        return context


def _materialise(data: str) -> str:
    """Inline certificate data as a private temporary file (ssl loads chains from files)."""
    handle, path = tempfile.mkstemp(prefix="cachefleet-operator-", suffix=".pem")
    with os.fdopen(handle, "wb") as file:
        file.write(base64.b64decode(data))
    os.chmod(path, 0o600)
    return path


def _from_kubeconfig(path: Path) -> ClusterAccess:
    try:
        config: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise CredentialsError(f"cannot read kubeconfig {path}: {error}") from error
    current = config.get("current-context")
    contexts = {item["name"]: item.get("context") or {} for item in config.get("contexts", [])}
    clusters = {item["name"]: item.get("cluster") or {} for item in config.get("clusters", [])}
    users = {item["name"]: item.get("user") or {} for item in config.get("users", [])}
    if not current or current not in contexts:
        raise CredentialsError(f"kubeconfig {path}: no current-context")
    context = contexts[current]
    cluster = clusters.get(context.get("cluster", ""))
    if not cluster or not cluster.get("server"):
        raise CredentialsError(f"kubeconfig {path}: context {current} has no cluster server")
    user = users.get(context.get("user", ""), {})
    if "exec" in user or "auth-provider" in user:
        raise CredentialsError(
            f"kubeconfig {path}: exec/auth-provider credentials are not supported; use a token"
        )

    def relative(value: str | None) -> str | None:
        if not value:
            return None
        return str((path.parent / value).resolve()) if not os.path.isabs(value) else value

    return ClusterAccess(
        server=str(cluster["server"]).rstrip("/"),
        ca_file=relative(cluster.get("certificate-authority")),
        ca_data=cluster.get("certificate-authority-data"),
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        token=user.get("token"),
        token_file=relative(user.get("tokenFile")),
        cert_file=relative(user.get("client-certificate")),
        cert_data=user.get("client-certificate-data"),
        key_file=relative(user.get("client-key")),
        key_data=user.get("client-key-data"),
        default_namespace=context.get("namespace"),
        source=f"kubeconfig {path}",
    )


def _in_cluster() -> ClusterAccess | None:
    host, port = (
        os.environ.get("KUBERNETES_SERVICE_HOST"),
        os.environ.get("KUBERNETES_SERVICE_PORT"),
    )
    token = SERVICE_ACCOUNT_DIR / "token"
    if not host or not port or not token.is_file():
        return None
    if ":" in host:
        host = f"[{host}]"
    namespace_file = SERVICE_ACCOUNT_DIR / "namespace"
    return ClusterAccess(
        server=f"https://{host}:{port}",
        ca_file=str(SERVICE_ACCOUNT_DIR / "ca.crt"),
        token_file=str(token),
        default_namespace=(
            namespace_file.read_text().strip() if namespace_file.is_file() else None
        ),
        source="in-cluster ServiceAccount",
    )


def load_access(kubeconfig: str | None = None) -> ClusterAccess:
    """`kubeconfig` if given, else `$KUBECONFIG`, else in-cluster, else `~/.kube/config`."""
    if kubeconfig:
        return _from_kubeconfig(Path(kubeconfig).expanduser())
    env = os.environ.get("KUBECONFIG")
    if env:
        return _from_kubeconfig(Path(env.split(os.pathsep)[0]).expanduser())
    access = _in_cluster()
    if access is not None:
        return access
    default = Path("~/.kube/config").expanduser()
    if default.is_file():
        return _from_kubeconfig(default)
    raise CredentialsError(
        "no Kubernetes credentials: pass --kubeconfig, set KUBECONFIG, or run in a pod"
    )
