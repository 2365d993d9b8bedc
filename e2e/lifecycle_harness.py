"""Real data-plane fleets for the model-version lifecycle tests (issue 5).

- `milvus_process`: a Milvus Lite gRPC server (`milvus-lite server`) shared by the nodes;
- `NodeFleet`: cache node processes started from the node ConfigMap the operator rendered,
  on fixed loopback ports, named in the cache's `cachefleet.io/node-endpoints` annotation. As
  in a cluster: a ConfigMap change rewrites the nodes' config files in place (a ConfigMap
  volume), and a change of the node Deployment's pod template (`cachefleet.io/config-hash`)
  is a rollout: the nodes restart with FRESH data dirs (the pods' emptyDir);
- clients for the proxy and the cache API, and direct reads of Redis keys and Milvus rows.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cluster import Kubectl, wait_for
from cluster.process import ManagedProcess, free_ports, log_tail
from log_exposure import record_log, register_secret
from operator_harness import json_patch

ENDPOINTS_ANNOTATION = "cachefleet.io/node-endpoints"
CONFIG_HASH_ANNOTATION = "cachefleet.io/config-hash"
UPSTREAM_KEY = "stub-upstream-key"
register_secret(UPSTREAM_KEY)
TEST_DEADLINES = {"redis_ms": 1000, "milvus_ms": 3000, "embedder_ms": 3000}


@contextmanager
def milvus_process(workdir: Path) -> Iterator[str]:
    """`milvus-lite server` on a free loopback port; yields its `http://` URI."""
    binary = Path(sys.executable).with_name("milvus-lite")
    if not binary.exists():
        import pytest

        pytest.skip("milvus-lite is not installed in the virtualenv (make venv)")
    (port,) = free_ports(1)
    data = workdir / "milvus"
    data.mkdir(parents=True, exist_ok=True)
    record_log(workdir / "milvus.log")
    process = ManagedProcess(
        "milvus",
        [
            str(binary),
            "server",
            "--data-dir",
            str(data),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        workdir / "milvus.log",
        ports=[port],
        tie_to_parent=True,
    )

    def listening() -> bool:
        if process.exited() is not None:
            raise RuntimeError(f"milvus-lite exited:\n{process.log_tail()}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            return sock.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(listening, timeout_s=60, what="milvus-lite server")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.popen.terminate()
        try:
            process.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.popen.kill()
            process.popen.wait()


# --- HTTP helpers ---------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def cache(self) -> str:
        return self.headers.get("x-cachefleet-cache", "")

    @property
    def namespace(self) -> str:
        return self.headers.get("x-cachefleet-namespace", "")


def request(
    method: str,
    url: str,
    body: Any = None,
    *,
    key: str | None = None,
    timeout: float = 60.0,
) -> Reply:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            raw = response.read()
            return Reply(
                int(response.status),
                {k.lower(): v for k, v in response.headers.items()},
                json.loads(raw) if raw else None,
            )
    except urllib.error.HTTPError as error:
        raw = error.read()
        return Reply(
            int(error.code),
            {k.lower(): v for k, v in error.headers.items()},
            json.loads(raw) if raw else None,
        )


def chat_body(content: str, model: str = "gpt-4o-mini") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}]}


def chat(url: str, content: str, *, key: str | None = None) -> Reply:
    """One chat completion through a node's proxy."""
    return request("POST", f"{url}/v1/chat/completions", chat_body(content), key=key)


def first_chat(url: str, content: str, *, key: str | None = None, tries: int = 10) -> Reply:
    """A chat that went through the cache: a `bypass` (a tier not reachable yet on a node
    that just started: the cache fails open and stores nothing) is sent again."""
    reply = chat(url, content, key=key)
    for _ in range(tries):
        if reply.cache != "bypass":
            break
        time.sleep(0.5)
        reply = chat(url, content, key=key)
    return reply


def lookup(url: str, content: str, *, key: str | None = None) -> Reply:
    """`POST /v1/cache/lookup`: what the cache would answer, without calling the upstream."""
    return request("POST", f"{url}/v1/cache/lookup", chat_body(content), key=key)


def store(url: str, content: str, answer: str, *, key: str | None = None) -> Reply:
    """`POST /v1/cache/store` an answer for a prompt (fills a namespace without the upstream)."""
    response = {
        "id": "chatcmpl-stored",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 20, "total_tokens": 32},
    }
    return request(
        "POST",
        f"{url}/v1/cache/store",
        {"request": chat_body(content), "response": response},
        key=key,
    )


def get_json(url: str, *, key: str | None = None) -> Any:
    reply = request("GET", url, key=key, timeout=10)
    if reply.status != 200:
        raise RuntimeError(f"GET {url}: HTTP {reply.status}: {reply.body}")
    return reply.body


def stub_calls(upstream: str) -> int:
    """Upstream calls the stub has answered (its base URL ends with /v1)."""
    return int(get_json(upstream.removesuffix("/v1") + "/_stub/stats")["calls"])


# --- a fleet of node processes --------------------------------------------------------------


@dataclass
class NodeFleet:
    """Cache node processes started from the operator's rendered ConfigMap."""

    kubectl: Kubectl
    namespace: str
    cache: str
    workdir: Path
    redis_url: str
    model_dir: str
    size: int = 2
    env: dict[str, str] = field(default_factory=dict)
    ports: list[int] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    config_hash: str = ""
    config_text: str = ""
    restarts: int = 0  # rollouts: pod-template changes seen by `sync`, and `rollout` calls
    generation: int = 0  # data dirs in use: `<cache>-data-<index>-g<generation>`

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    def rendered(self) -> str:
        configmap = self.kubectl.json(
            "get", "configmap", f"{self.cache}-node", "-n", self.namespace
        )
        return str(configmap["data"]["node.yaml"])

    def rendered_hash(self) -> str:
        """The node Deployment's pod-template config hash (a change is a rollout)."""
        deployment = self.kubectl.json(
            "get", "deployment", f"{self.cache}-node", "-n", self.namespace
        )
        annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
        return str(annotations.get(CONFIG_HASH_ANNOTATION, ""))

    def _config(self, text: str, index: int) -> dict[str, Any]:
        config: dict[str, Any] = yaml.safe_load(text)
        config["node_id"] = f"{self.cache}-{index}"
        config["data_dir"] = str(self.workdir / f"{self.cache}-data-{index}-g{self.generation}")
        config["server"] = {"host": "127.0.0.1", "port": self.ports[index]}
        config["redis"] = {**config.get("redis", {}), "url": self.redis_url}
        for key in ("embedding", "embedding_next"):
            if config.get(key):
                part = {**config[key], "model_dir": self.model_dir}
                part.pop("hub_cache_dir", None)
                config[key] = part
        config["deadlines"] = {**config.get("deadlines", {}), **TEST_DEADLINES}
        return config

    def start(self) -> list[str]:
        """Start the nodes from the current ConfigMap; annotate the cache with their URLs."""
        if not self.ports:
            self.ports = free_ports(self.size)
        self.config_hash = self.rendered_hash()
        config_text = self.config_text = self.rendered()
        env = {
            **os.environ,
            "CACHEFLEET_EMBEDDING_MODEL_DIR": self.model_dir,
            "CACHEFLEET_UPSTREAM_API_KEY": UPSTREAM_KEY,
            **self.env,
        }
        binary = Path(sys.executable).with_name("cachefleet-node")
        self.processes = []
        for index in range(self.size):
            self._write_config(config_text, index)
            log = self.workdir / f"{self.cache}-node-{index}.log"
            record_log(log)
            with log.open("ab") as sink:
                self.processes.append(
                    subprocess.Popen(
                        [str(binary), "serve", "--config", str(self._config_path(index))],
                        stdout=sink,
                        stderr=subprocess.STDOUT,
                        env=env,
                    )
                )
        for index, url in enumerate(self.urls):
            wait_for(lambda i=index, u=url: self._ready(i, u), timeout_s=180, what=f"node {url}")
        json_patch(
            self.kubectl,
            "scache",
            self.cache,
            self.namespace,
            {"metadata": {"annotations": {ENDPOINTS_ANNOTATION: ",".join(self.urls)}}},
        )
        return self.urls

    def _config_path(self, index: int) -> Path:
        return self.workdir / f"{self.cache}-node-{index}.yaml"

    def _write_config(self, text: str, index: int) -> None:
        """Replace the file at once (a ConfigMap volume swaps a symlink): a node that reads
        it meanwhile sees the old or the new file, never half of one."""
        path = self._config_path(index)
        staged = path.with_suffix(".yaml.new")
        staged.write_text(yaml.safe_dump(self._config(text, index)))
        staged.replace(path)

    def _ready(self, index: int, url: str) -> bool:
        if self.processes[index].poll() is not None:
            raise RuntimeError(f"node {url} exited:\n{self.log(index)}")
        try:
            return request("GET", f"{url}/readyz", timeout=2).status == 200
        except OSError:
            return False

    def log(self, index: int, lines: int = 40) -> str:
        return log_tail(self.workdir / f"{self.cache}-node-{index}.log", lines)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes = []

    def sync(self) -> bool:
        """What the kubelet and the Deployment controller do: a changed ConfigMap rewrites the
        running nodes' config files in place; a changed pod template (config hash) is a
        rollout: the nodes restart (same ports) with fresh data dirs. True on a rollout."""
        if self.rendered_hash() != self.config_hash:
            self.rollout()
            return True
        text = self.rendered()
        if text != self.config_text:
            self.config_text = text
            for index in range(self.size):
                self._write_config(text, index)
        return False

    def rollout(self) -> None:
        """Replace every node (a rollout, a drain, a rescheduled pod): new processes on the
        same ports, each with a new, empty data dir, as pods with an emptyDir volume get."""
        self.stop()
        self.generation += 1
        self.start()
        self.restarts += 1

    def namespaces(self, index: int = 0) -> dict[str, Any]:
        result: dict[str, Any] = get_json(f"{self.urls[index]}/v1/cache/namespaces")
        return result

    def active(self) -> list[dict[str, str]]:
        """Every node's `active` map."""
        return [dict(self.namespaces(i)["active"]) for i in range(len(self.urls))]

    def node_log_lines(self, event: str) -> list[dict[str, Any]]:
        """JSON log lines of that event from every node's log."""
        found = []
        for index in range(self.size):
            path = self.workdir / f"{self.cache}-node-{index}.log"
            for line in path.read_text(errors="replace").splitlines():
                if event not in line:
                    continue
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue
        return found


@contextmanager
def node_fleet(**kwargs: Any) -> Iterator[NodeFleet]:
    fleet = NodeFleet(**kwargs)
    try:
        yield fleet
    finally:
        fleet.stop()


# --- the shared tiers, read directly --------------------------------------------------------


def redis_keys(redis_url: str, pattern: str = "*") -> list[str]:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return sorted(key.decode() for key in client.scan_iter(match=pattern, count=1000))
    finally:
        client.close()


def milvus_rows(uri: str, collection: str, namespace: str) -> int:
    """Rows of `namespace` in a collection (0 if the collection does not exist).

    Connects the way the nodes do (no keepalive pings on idle connections: the server answers
    them with GOAWAY "too many pings") and tries a refused connection again, twice."""
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    for attempt in range(3):
        try:
            client = MilvusClient(
                uri=uri,
                timeout=10,
                grpc_options={"grpc.keepalive_permit_without_calls": False},
            )
        except MilvusException:
            if attempt == 2:
                raise
            time.sleep(0.5)
            continue
        try:
            if not client.has_collection(collection):
                return 0
            rows = client.query(
                collection, filter=f'namespace == "{namespace}"', output_fields=["count(*)"]
            )
            return int(rows[0]["count(*)"]) if rows else 0
        finally:
            client.close()
    raise AssertionError("unreachable")


def shared_tier_manifests(
    namespace: str,
    name: str,
    *,
    redis_url: str,
    milvus_uri: str,
    upstream: str,
    model_versions: Sequence[str],
    replicas: int = 2,
    extra_spec: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """A Secret with the Redis URL and a SemanticCache on external Redis and Milvus."""
    spec: dict[str, Any] = {
        "modelVersions": [{"name": mv} for mv in model_versions],
        "exactTier": {"external": {"urlSecretRef": {"name": f"{name}-redis", "key": "url"}}},
        "semanticTier": {"external": {"uri": milvus_uri}},
        "nodes": {"replicas": replicas},
        "upstream": {"baseURL": upstream},
        **(extra_spec or {}),
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{name}-redis", "namespace": namespace},
            "stringData": {"url": redis_url},
        },
        {
            "apiVersion": "cachefleet.io/v1alpha1",
            "kind": "SemanticCache",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        },
    ]


def model_version_manifest(
    namespace: str, name: str = "gpt-4o-mini", **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "cachefleet.io/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": "gpt-4o-mini",
            "version": "2024-07-18",
            "requestModels": ["gpt-4o-mini"],
            **spec,
        },
    }


# --- reading a SemanticCache -----------------------------------------------------------------


def scache(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any]:
    """The SemanticCache as stored."""
    result: dict[str, Any] = kubectl.json("get", "scache", name, "-n", ns)
    return result


def active_namespace(
    kubectl: Kubectl, ns: str, name: str, model_version: str = "gpt-4o-mini"
) -> str | None:
    """The cache namespace the fleet serves `model_version` from (status), if any."""
    for item in scache(kubectl, ns, name).get("status", {}).get("activeNamespaces", []):
        if item["modelVersion"] == model_version:
            return str(item["cacheNamespace"])
    return None
