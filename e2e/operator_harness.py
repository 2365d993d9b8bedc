"""Run the operator (`cachefleet-operator`, a real subprocess) against a test control plane.

Also: install the CRDs, read conditions, and start a real cache node process from the node
ConfigMap the operator rendered (so the tests exercise the config the operator produces).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cluster import Cluster, Kubectl, wait_for
from cluster.process import ManagedProcess, free_ports, log_tail
from log_exposure import record_log

ROOT = Path(__file__).resolve().parents[1]
CRDS = ROOT / "crds"
EXAMPLES = ROOT / "examples"
CRD_NAMES = (
    "semanticcaches.cachefleet.io",
    "modelversions.cachefleet.io",
    "cacheinvalidations.cachefleet.io",
)
FIELD_MANAGER = "cachefleet-operator"


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def install_crds(kubectl: Kubectl) -> None:
    """Apply crds/ and wait until every kind is served."""
    # --force-conflicts: a chart test of the same session may have installed them with helm.
    kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=cachefleet-e2e",
        "-f", str(CRDS),
    )  # fmt: skip

    def established(name: str) -> bool:
        conditions = kubectl.json("get", "crd", name).get("status", {}).get("conditions", [])
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    for name in CRD_NAMES:
        wait_for(lambda name=name: established(name), timeout_s=60, what=f"{name} Established")
    wait_for(
        lambda: kubectl.run("get", "scache,mv,cinv", "-A", check=False).returncode == 0,
        timeout_s=30,
        what="the cachefleet.io resources to be served",
    )


@dataclass
class OperatorProcess:
    """A running `cachefleet-operator` and the port of its probes and metrics."""

    process: ManagedProcess
    http_port: int
    log: Path

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.http_port}{path}", timeout=5
            ) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as error:
            return int(error.code), error.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        """A sample of /metrics (0 if absent)."""
        wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
        series = f"{name}{{{wanted}}}" if labels else name
        for line in self.get("/metrics")[1].splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            if key == series or (labels and _same_series(key, name, labels)):
                return float(value)
        return 0.0

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.process.popen.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def tail(self, lines: int = 40) -> str:
        return log_tail(self.log, lines)

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, as Kubernetes stops a pod; returns the exit code."""
        popen = self.process.popen
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()
                raise
        return int(popen.returncode)


def _same_series(key: str, name: str, labels: dict[str, str]) -> bool:
    if not key.startswith(name + "{"):
        return False
    body = key[len(name) + 1 : -1]
    pairs = dict(item.split("=", 1) for item in body.split(",") if "=" in item)
    return all(pairs.get(k) == f'"{v}"' for k, v in labels.items())


def start_operator(
    cluster: Cluster,
    workdir: Path,
    *,
    namespaces: Sequence[str] = (),
    extra: Sequence[str] = (),
    name: str = "operator",
    kubeconfig: Path | None = None,
    wait_ready: bool = True,
) -> OperatorProcess:
    """Start the operator as a subprocess with the cluster's admin kubeconfig; wait for /readyz
    to say ready (or, with `wait_ready=False`, to answer at all).

    Always with `--node-endpoints-from-annotation`: kwok's pods have made-up IPs from the pod
    CIDR (private addresses), so node URLs must never come from EndpointSlices here; a test
    names its real, loopback node processes in the annotation.
    """
    (port,) = free_ports(1)
    scope = [arg for ns in namespaces for arg in ("--namespace", ns)] or ["--all-namespaces"]
    binary = Path(sys.executable).with_name("cachefleet-operator")
    argv = [
        str(binary),
        *scope,
        f"--kubeconfig={kubeconfig or cluster.kubeconfig}",
        "--http-host=127.0.0.1",
        f"--http-port={port}",
        "--node-endpoints-from-annotation",
        *extra,
    ]
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KUBECONFIG", "CACHEFLEET_OPERATOR_"))
    }
    log = workdir / f"{name}.log"
    record_log(log)
    process = ManagedProcess(name, argv, log, ports=[port], tie_to_parent=True, env=env)
    operator = OperatorProcess(process=process, http_port=port, log=log)

    def ready() -> bool:
        if process.exited() is not None:
            raise RuntimeError(f"operator exited:\n{operator.tail()}")
        code = operator.get("/readyz")[0]
        return code == 200 or (not wait_ready and code == 503)

    try:
        wait_for(ready, timeout_s=60, what="operator /readyz")
    except Exception:
        operator.stop()
        raise
    return operator


@contextmanager
def running_operator(
    cluster: Cluster,
    workdir: Path,
    *,
    namespaces: Sequence[str],
    extra: Sequence[str] = (),
    kubeconfig: Path | None = None,
    wait_ready: bool = True,
) -> Iterator[OperatorProcess]:
    operator = start_operator(
        cluster,
        workdir,
        namespaces=namespaces,
        extra=extra,
        kubeconfig=kubeconfig,
        wait_ready=wait_ready,
    )
    try:
        yield operator
    finally:
        code = operator.stop()
        assert code == 0, f"operator exited with {code} on SIGTERM:\n{operator.tail()}"


# --- reading objects ------------------------------------------------------------------------


def condition(obj: dict[str, Any], condition_type: str) -> dict[str, Any] | None:
    for item in obj.get("status", {}).get("conditions", []):
        if item["type"] == condition_type:
            return dict(item)
    return None


def wait_condition(
    kubectl: Kubectl,
    kind: str,
    name: str,
    namespace: str,
    condition_type: str,
    status: str,
    *,
    reason: str | None = None,
    timeout_s: float = 60,
) -> dict[str, Any]:
    """Wait until the object's condition has that status (and reason); return the object."""

    def probe() -> dict[str, Any] | None:
        obj: dict[str, Any] = kubectl.json("get", kind, name, "-n", namespace)
        found = condition(obj, condition_type)
        if found and found["status"] == status and (reason is None or found["reason"] == reason):
            return obj
        return None

    what = f"{kind}/{name} {condition_type}={status}" + (f" ({reason})" if reason else "")
    return wait_for(probe, timeout_s=timeout_s, what=what)


def events(kubectl: Kubectl, namespace: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.json("get", "events", "-n", namespace)["items"]
    return [e for e in items if e["involvedObject"]["name"] == name]


def wait_event(
    kubectl: Kubectl, namespace: str, name: str, reason: str, timeout_s: float = 30
) -> dict[str, Any]:
    """Wait for an Event with that reason about the object; return it."""
    return wait_for(
        lambda: next((e for e in events(kubectl, namespace, name) if e["reason"] == reason), None),
        timeout_s=timeout_s,
        what=f"a {reason} Event about {name}",
    )


def in_namespace(doc: dict[str, Any], namespace: str) -> dict[str, Any]:
    return {**doc, "metadata": {**doc["metadata"], "namespace": namespace}}


# --- a real cache node from the operator's rendered config -----------------------------------


def node_config_from_configmap(
    kubectl: Kubectl,
    namespace: str,
    cache: str,
    *,
    workdir: Path,
    redis_url: str,
    upstream: str,
    model_dir: str,
) -> dict[str, Any]:
    """The node.yaml the operator rendered for `cache`, with what a pod would get from its
    environment and volumes replaced by local equivalents (Redis URL from the Secret, model)."""
    configmap = kubectl.json("get", "configmap", f"{cache}-node", "-n", namespace)
    config: dict[str, Any] = yaml.safe_load(configmap["data"]["node.yaml"])
    config["data_dir"] = str(workdir / f"{cache}-data")
    config["redis"] = {**config.get("redis", {}), "url": redis_url}
    config["upstream"] = {**config.get("upstream", {}), "base_url": upstream}
    embedding = {**config.get("embedding", {}), "model_dir": model_dir}
    embedding.pop("hub_cache_dir", None)
    config["embedding"] = embedding
    config["deadlines"] = {"redis_ms": 1000, "milvus_ms": 3000, "embedder_ms": 3000}
    return config


def json_patch(kubectl: Kubectl, kind: str, name: str, namespace: str, patch: Any) -> None:
    kubectl("patch", kind, name, "-n", namespace, "--type=merge", "-p", json.dumps(patch))


def monotonic() -> float:
    return time.monotonic()


# --- real data-plane processes: redis-server, the stub upstream, cache nodes ------------------


@contextmanager
def redis_process(workdir: Path) -> Iterator[str]:
    """A real redis-server on a free loopback port; yields its URL."""
    import shutil

    from node_harness import RedisServer, _spawn_redis, free_port, require

    require(
        shutil.which("redis-server") is not None, "redis-server not installed (make system-deps)"
    )
    port = free_port()
    server = RedisServer(port=port, process=_spawn_redis(port, workdir), workdir=workdir)
    try:
        yield server.url
    finally:
        server.stop()


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextmanager
def stub_upstream(workdir: Path) -> Iterator[str]:
    """`cachefleet_node.demo.stub_upstream` (the paid LLM's stand-in) as a process; yields
    its OpenAI base URL."""
    (port,) = free_ports(1)
    argv = [sys.executable, "-m", "cachefleet_node.demo.stub_upstream", "--port", str(port)]
    log = workdir / "stub.log"
    record_log(log)
    process = ManagedProcess("stub", argv, log, ports=[port], tie_to_parent=True)
    try:
        wait_for(
            lambda: _http_ok(f"http://127.0.0.1:{port}/_stub/stats"),
            timeout_s=30,
            what="stub upstream",
        )
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.popen.terminate()
        process.popen.wait(timeout=15)


@contextmanager
def cache_node(config: dict[str, Any], workdir: Path, name: str) -> Iterator[str]:
    """A `cachefleet-node serve` process from `config`; yields its base URL once /readyz is 200."""
    from node_harness import spawn_node

    node = spawn_node(config, workdir, name)
    try:

        def ready() -> bool:
            if node.process.poll() is not None:
                raise RuntimeError(f"node exited:\n{node.log_path.read_text()[-3000:]}")
            return _http_ok(f"{node.url}/readyz")

        wait_for(ready, timeout_s=120, what=f"cache node {name} /readyz")
        yield node.url
    finally:
        node.stop()


def chat(node_url: str, content: str, model: str = "gpt-4o-mini") -> tuple[str, dict[str, Any]]:
    """One chat completion through the node: (x-cachefleet-cache header, body)."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": content}]})
    request = urllib.request.Request(
        f"{node_url}/v1/chat/completions",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.headers.get("x-cachefleet-cache", ""), json.loads(response.read())


def node_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def model_dir() -> str:
    """The embedding model directory ($CACHEFLEET_EMBEDDING_MODEL_DIR), or skip (fail in CI)."""
    from node_harness import require

    value = os.environ.get("CACHEFLEET_EMBEDDING_MODEL_DIR", "")
    require(
        bool(value) and (Path(value) / "onnx" / "model.onnx").is_file(),
        "CACHEFLEET_EMBEDDING_MODEL_DIR does not point at the all-MiniLM-L6-v2 ONNX model",
    )
    return value
