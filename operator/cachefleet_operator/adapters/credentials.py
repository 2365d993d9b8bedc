"""How the operator reaches the Kubernetes API: a kubeconfig or the in-cluster ServiceAccount.

The `kubernetes` package loads the credentials, so every kubeconfig that kubectl accepts works:
tokens and token files, client certificates (by file or inline), exec plugins (EKS
`aws eks get-token`, GKE `gke-gcloud-auth-plugin`, AKS `kubelogin`; re-run when the credential
they printed expires), auth-provider plugins (OIDC, GCP), and the in-cluster ServiceAccount
(its projected token re-read as the kubelet rotates it).

One `ClusterAccess` serves both kopf (through its login handler) and the operator's own client,
so they always act as the same identity.
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client as kube_client
from kubernetes import config as kube_config
from kubernetes.config import incluster_config

__all__ = ["ClusterAccess", "CredentialsError", "bearer_parts", "in_cluster", "load_access"]

SERVICE_ACCOUNT_DIR = Path(incluster_config.SERVICE_TOKEN_FILENAME).parent


class CredentialsError(RuntimeError):
    """No usable kubeconfig or in-cluster credentials."""


@dataclass(frozen=True)
class ClusterAccess:
    """API server address and credentials, as the `kubernetes` package loaded them."""

    configuration: kube_client.Configuration
    default_namespace: str | None = None
    source: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def server(self) -> str:
        return str(self.configuration.host).rstrip("/")

    @property
    def ca_file(self) -> str | None:
        return self.configuration.ssl_ca_cert

    @property
    def insecure(self) -> bool:
        return not self.configuration.verify_ssl

    @property
    def cert_file(self) -> str | None:
        return self.configuration.cert_file

    @property
    def key_file(self) -> str | None:
        return self.configuration.key_file

    @property
    def proxy(self) -> str | None:
        return self.configuration.proxy

    def authorization(self) -> str | None:
        """The `Authorization` header value, fresh: an expired exec or auth-provider credential
        is renewed (the plugin runs, so this may block: call it off the event loop), a token
        file is re-read. Thread-safe."""
        with self._lock:
            try:
                value = self.configuration.get_api_key_with_prefix(
                    "BearerToken", alias="authorization"
                )
            except Exception as error:  # a plugin that fails: say which, not its output
                raise CredentialsError(
                    f"{self.source}: cannot renew the credential ({type(error).__name__})"
                ) from error
        return str(value).strip() if value else None


def bearer_parts(authorization: str | None) -> dict[str, Any]:
    """An `Authorization` value as kopf's `ConnectionInfo` fields (scheme/token or user/pass)."""
    if not authorization:
        return {}
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() == "basic":
        username, _, password = base64.b64decode(credential).decode().partition(":")
        return {"username": username, "password": password}
    return {"scheme": scheme, "token": credential}


def _from_kubeconfig(path: Path) -> ClusterAccess:
    if not path.is_file():
        raise CredentialsError(f"cannot read kubeconfig {path}: no such file")
    configuration = kube_client.Configuration()
    try:
        _, current = kube_config.list_kube_config_contexts(str(path))
        kube_config.load_kube_config(
            config_file=str(path), client_configuration=configuration, persist_config=False
        )
    except Exception as error:  # ConfigException, YAML errors, a plugin that fails
        raise CredentialsError(f"kubeconfig {path}: {error}") from error
    if not configuration.host or configuration.host == kube_client.Configuration().host:
        raise CredentialsError(f"kubeconfig {path}: the current context has no cluster server")
    if not configuration.api_key and not configuration.cert_file:
        raise CredentialsError(
            f"kubeconfig {path}: the current context gave no credential (no token, no client "
            "certificate; an exec or auth-provider plugin that failed logs why)"
        )
    namespace = (current or {}).get("context", {}).get("namespace")
    return ClusterAccess(configuration, default_namespace=namespace, source=f"kubeconfig {path}")


def in_cluster(
    service_account_dir: Path = SERVICE_ACCOUNT_DIR, environ: Mapping[str, str] = os.environ
) -> ClusterAccess | None:
    """The pod's ServiceAccount (token re-read every minute), or None outside a pod."""
    configuration = kube_client.Configuration()
    loader = incluster_config.InClusterConfigLoader(
        token_filename=str(service_account_dir / "token"),
        cert_filename=str(service_account_dir / "ca.crt"),
        environ=environ,
    )
    try:
        loader.load_and_set(configuration)
    except kube_config.ConfigException:
        return None  # not in a pod (no service host, no token file)
    namespace_file = service_account_dir / "namespace"
    return ClusterAccess(
        configuration,
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
    access = in_cluster()
    if access is not None:
        return access
    default = Path("~/.kube/config").expanduser()
    if default.is_file():
        return _from_kubeconfig(default)
    raise CredentialsError(
        "no Kubernetes credentials: pass --kubeconfig, set KUBECONFIG, or run in a pod"
    )
