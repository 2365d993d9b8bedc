"""A small kubectl wrapper bound to one kubeconfig, and the kubeconfig files themselves."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

#: Marker extension written into every kubeconfig this package creates.
MARKER_EXTENSION = "cachefleet.dev/e2e-control-plane"

T = TypeVar("T")


class KubectlError(RuntimeError):
    """kubectl exited non-zero; carries its stderr."""

    def __init__(self, args: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        super().__init__(f"kubectl {' '.join(args)} failed ({returncode}): {stderr.strip()}")
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def write_kubeconfig(
    path: Path, *, server: str, ca_cert: Path, user: str, token: str, nonce: str
) -> Path:
    """A single-context kubeconfig (JSON, which kubectl reads as YAML) carrying our marker."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {
            "extensions": [{"name": MARKER_EXTENSION, "extension": {"nonce": nonce}}],
        },
        "clusters": [
            {
                "name": "cachefleet-e2e",
                "cluster": {"server": server, "certificate-authority": str(ca_cert)},
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {
                "name": f"{user}@cachefleet-e2e",
                "context": {"cluster": "cachefleet-e2e", "user": user},
            }
        ],
        "current-context": f"{user}@cachefleet-e2e",
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)
    return path


def kubeconfig_nonce(path: Path) -> str | None:
    """The nonce of our marker in a kubeconfig, or None if it is not one of ours."""
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    for ext in config.get("preferences", {}).get("extensions", []):
        if ext.get("name") == MARKER_EXTENSION:
            nonce = ext.get("extension", {}).get("nonce")
            return str(nonce) if nonce else None
    return None


def kubeconfig_server(path: Path) -> str:
    """The server URL of a single-cluster kubeconfig."""
    config = json.loads(path.read_text())
    return str(config["clusters"][0]["cluster"]["server"])


@dataclass(frozen=True)
class Kubectl:
    """Runs kubectl against exactly one kubeconfig (never the user's default one)."""

    binary: Path
    kubeconfig: Path
    timeout_s: float = 120.0

    def run(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout_s: float | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``kubectl --kubeconfig=<ours> ARGS``; raise KubectlError on failure when ``check``."""
        home = self.kubeconfig.parent
        argv = [
            str(self.binary),
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={home / '.kube-cache'}",
            *args,
        ]
        result = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout_s or self.timeout_s,
            check=False,
            # Nothing from the caller's environment can redirect kubectl to another cluster.
            env={"KUBECONFIG": str(self.kubeconfig), "PATH": "/usr/bin:/bin", "HOME": str(home)},
        )
        if check and result.returncode != 0:
            raise KubectlError(args, result.returncode, result.stdout, result.stderr)
        return result

    def __call__(self, *args: str, input: str | None = None) -> str:
        """Run and return stdout (raises on failure)."""
        return self.run(*args, input=input).stdout

    def json(self, *args: str) -> Any:
        """``kubectl ARGS -o json`` parsed."""
        return json.loads(self.run(*args, "-o", "json").stdout)

    def apply(
        self,
        manifest: Mapping[str, Any] | Sequence[Mapping[str, Any]] | str,
        *,
        server_side: bool = True,
        field_manager: str = "cachefleet-e2e",
        extra: Sequence[str] = (),
    ) -> str:
        """Apply one object, a list of objects or YAML/JSON text (server-side by default)."""
        text = manifest if isinstance(manifest, str) else _as_json(manifest)
        args = ["apply", "-f", "-", f"--field-manager={field_manager}", *extra]
        if server_side:
            args.append("--server-side")
        return self(*args, input=text)

    def create(self, manifest: Mapping[str, Any] | Sequence[Mapping[str, Any]] | str) -> str:
        """``kubectl create -f -`` (keeps fields such as a Node's status on create)."""
        text = manifest if isinstance(manifest, str) else _as_json(manifest)
        return self("create", "-f", "-", input=text)


def _as_json(manifest: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> str:
    if isinstance(manifest, Mapping):
        return json.dumps(manifest)
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(manifest)})


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout_s: float,
    interval_s: float = 0.25,
    what: str = "condition",
) -> T:
    """Poll ``probe`` until it returns a truthy value; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        try:
            value = probe()
        except Exception as error:
            last_error = error
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            hint = f" (last error: {last_error})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}{hint}")
        time.sleep(interval_s)
