"""`make demo-cluster`: Cachefleet on the full local control plane, end to end, step by step.

1. the full local control plane (kube-apiserver, etcd, controller-manager, scheduler, kwok
   with fake CPU/GPU nodes; built from Go modules by `make k8s-bins`);
2. `helm install` of charts/cachefleet: CRDs, RBAC, the operator Deployment (its pod is
   scheduled on a kwok node and marked Ready, but the image cannot run here, so:)
3. the operator runs as a local process with a token of the chart's ServiceAccount (only the
   chart's RBAC), plus a real redis-server and the stub LLM upstream;
4. the examples: a ModelVersion and the dev SemanticCache (external Redis from a Secret,
   Milvus Lite inside each node), pointed at the local Redis and stub;
5. real cache node processes, one per node pod, each run as a pod would: the `node.yaml` the
   operator rendered into the ConfigMap (read back from the cluster) and the Secret values
   its Deployment maps to environment variables; the operator finds them through the
   test/dev `cachefleet.io/node-endpoints` annotation (kwok's pod IPs are fake);
6. a replay of `make demo`'s workload through the nodes, `kubectl get scache` with HIT-RATE;
7. a ModelVersion `version` edit: the rollover to a new cache namespace, in status and in the
   `x-cachefleet-namespace` of fresh responses;
8. teardown of every process it started, by PID (also on Ctrl-C or SIGTERM).

Run: `make demo-cluster` (PYTHONPATH=e2e:tests .venv/bin/python e2e/demo_cluster.py).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import httpx
import yaml

from chart_harness import (
    CHART,
    RELEASE,
    RELEASE_NAMESPACE,
    Helm,
    helm_binary,
    service_account_kubeconfig,
)
from cluster import BinariesUnavailable, Cluster, ControlPlane, Kubectl, Profile, locate, wait_for
from cluster.process import ManagedProcess, free_ports, stop_all
from operator_harness import EXAMPLES, OperatorProcess, documents, start_operator

NAMESPACE = "demo"
CACHE = "dev"
MODEL_VERSION = "gpt-4o-mini"
NEW_VERSION = "2025-01-31"
T = TypeVar("T")


# --- output ------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.steps: list[tuple[str, float]] = []
        self._current: tuple[str, float] | None = None

    def step(self, title: str) -> None:
        now = time.monotonic()
        if self._current is not None:
            self.steps.append((self._current[0], now - self._current[1]))
        self._current = (title, now)
        number = len(self.steps) + 1
        print(f"\n==> [{number}] {title}  (t={now - self.started:.1f}s)", flush=True)

    def finish(self) -> None:
        if self._current is not None:
            self.steps.append((self._current[0], time.monotonic() - self._current[1]))
            self._current = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def say(message: str) -> None:
    print(f"    {message}", flush=True)


def show(kubectl: Kubectl, *args: str) -> str:
    """Run kubectl as the cluster admin and print the command and its output."""
    print(f"    $ kubectl {' '.join(args)}", flush=True)
    out = kubectl(*args)
    for line in out.rstrip().splitlines():
        print(f"      {line}")
    return out


def poll(probe: Callable[[], T | None], what: str, timeout_s: float = 120) -> T:
    return wait_for(probe, timeout_s=timeout_s, interval_s=0.5, what=what)


# --- processes ---------------------------------------------------------------------------------


@dataclass
class Processes:
    """Everything the demo starts besides the control plane, stopped by PID in reverse order."""

    workdir: Path
    started: list[tuple[str, ManagedProcess]] = field(default_factory=list)
    plane: ControlPlane | None = None

    def spawn(
        self, name: str, argv: list[str], *, ports: list[int], env: dict[str, str] | None = None
    ) -> ManagedProcess:
        process = ManagedProcess(
            name, argv, self.workdir / "logs" / f"{name}.log", ports=ports,
            tie_to_parent=True, env=env,
        )  # fmt: skip
        self.started.append((name, process))
        say(f"started {name} (pid {process.popen.pid}), log {process.record.log}")
        return process

    def add(self, name: str, process: ManagedProcess) -> None:
        self.started.append((name, process))

    def stop(self, name: str) -> None:
        for entry in [e for e in self.started if e[0] == name]:
            _stop_one(*entry)
            self.started.remove(entry)

    def stop_all(self) -> None:
        while self.started:
            _stop_one(*self.started.pop())
        if self.plane is not None:
            self.plane.stop()
            self.plane = None
            say("stopped the control plane (etcd, apiserver, controllers, scheduler, kwok)")


def _stop_one(name: str, process: ManagedProcess) -> None:
    if process.popen.poll() is None:
        stop_all([process.record], grace_s=20)
        with contextlib.suppress(Exception):
            process.popen.wait(timeout=5)
        say(f"stopped {name} (pid {process.record.pid})")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _redis_pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(procs: Processes) -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed: run `make system-deps`")
    (port,) = free_ports(1)
    data = procs.workdir / "redis"
    data.mkdir()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(data), "--maxmemory", "256mb",
            "--maxmemory-policy", "volatile-lru"]  # fmt: skip
    process = procs.spawn("redis-server", argv, ports=[port])
    poll(lambda: process.exited() is None and _redis_pong(port), "redis-server", 15)
    return f"redis://127.0.0.1:{port}/0"


def start_stub(procs: Processes, latency_ms: float) -> str:
    (port,) = free_ports(1)
    argv = [sys.executable, "-m", "cachefleet_node.demo.stub_upstream", "--port", str(port),
            "--latency-ms", str(latency_ms), "--token-delay-ms", "2"]  # fmt: skip
    process = procs.spawn("stub-upstream", argv, ports=[port])
    poll(
        lambda: process.exited() is None and _http_ok(f"http://127.0.0.1:{port}/_stub/stats"),
        "the stub upstream",
        30,
    )
    return f"http://127.0.0.1:{port}/v1"


# --- cache nodes from the cluster's objects ------------------------------------------------------


@dataclass
class NodePod:
    """A real node process standing in for one of the node Deployment's (kwok) pods."""

    pod: str
    url: str
    cache_namespaces: dict[str, str]


def rendered_config(kubectl: Kubectl) -> tuple[dict[str, Any], str]:
    """The operator's node.yaml from the ConfigMap, and the Deployment's config hash."""
    configmap = kubectl.json("get", "configmap", f"{CACHE}-node", "-n", NAMESPACE)
    deployment = kubectl.json("get", "deployment", f"{CACHE}-node", "-n", NAMESPACE)
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    return yaml.safe_load(configmap["data"]["node.yaml"]), annotations.get(
        "cachefleet.io/config-hash", "?"
    )


def pod_environment(kubectl: Kubectl) -> dict[str, str]:
    """The node container's environment as the kubelet would give it: literal values, and
    Secret keys (`secretKeyRef`) read from the cluster."""
    deployment = kubectl.json("get", "deployment", f"{CACHE}-node", "-n", NAMESPACE)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env: dict[str, str] = {}
    secrets: dict[str, dict[str, str]] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "secretKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["secretKeyRef"]
            if ref["name"] not in secrets:
                secrets[ref["name"]] = kubectl.json("get", "secret", ref["name"], "-n", NAMESPACE)[
                    "data"
                ]
            env[item["name"]] = base64.b64decode(secrets[ref["name"]][ref["key"]]).decode()
            say(f"env {item['name']} <- Secret {ref['name']}/{ref['key']} (value not printed)")
    return env


def local_config(config: dict[str, Any], pod: str, workdir: Path, port: int) -> dict[str, Any]:
    """The pod's config with what the pod gets from its volumes and network made local:
    loopback and a free port, a data directory for the `data` emptyDir, and the local model
    for the `models` volume. Everything else (tiers, namespaces, thresholds, deadlines,
    upstream) is the operator's, unchanged."""
    local = json.loads(json.dumps(config))
    local["server"] = {**local.get("server", {}), "host": "127.0.0.1", "port": port}
    local["data_dir"] = str(workdir / pod / "data")
    local["node_id"] = pod
    embedding = dict(local.get("embedding", {}))
    model_dir = os.environ.get("CACHEFLEET_EMBEDDING_MODEL_DIR", "")
    if model_dir and (Path(model_dir) / "onnx" / "model.onnx").is_file():
        embedding.pop("hub_cache_dir", None)
        embedding["model_dir"] = model_dir
    else:
        embedding["hub_cache_dir"] = str(workdir / "models")
    local["embedding"] = embedding
    return local


def start_nodes(
    kubectl: Kubectl, procs: Processes, workdir: Path, *, generation: int
) -> list[NodePod]:
    config, config_hash = rendered_config(kubectl)
    env_from_pod = pod_environment(kubectl)
    pods = sorted(
        p["metadata"]["name"]
        for p in kubectl.json(
            "get", "pods", "-n", NAMESPACE,
            "-l", f"app.kubernetes.io/instance={CACHE},app.kubernetes.io/component=node",
        )["items"]
        if p["metadata"].get("annotations", {}).get("cachefleet.io/config-hash") == config_hash
        and not p["metadata"].get("deletionTimestamp")
    )  # fmt: skip
    say(f"config-hash {config_hash}; node pods (kwok): {', '.join(pods)}")
    nodes = []
    for pod in pods:
        (port,) = free_ports(1)
        local = local_config(config, pod, workdir, port)
        path = workdir / f"{pod}.yaml"
        path.write_text(yaml.safe_dump(local, sort_keys=False))
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CACHEFLEET_")},
            **env_from_pod,
            "HOME": str(workdir / pod / "home"),  # the pod's HOME=/tmp emptyDir
        }
        (workdir / pod / "home").mkdir(parents=True, exist_ok=True)
        binary = str(Path(sys.executable).with_name("cachefleet-node"))
        procs.spawn(
            f"node-{generation}-{pod}", [binary, "serve", "--config", str(path)],
            ports=[port], env=env,
        )  # fmt: skip
        namespaces = {n["name"]: n["cache_namespace"] for n in config.get("namespaces", [])}
        nodes.append(NodePod(pod=pod, url=f"http://127.0.0.1:{port}", cache_namespaces=namespaces))
    for node in nodes:
        process = next(p for n, p in procs.started if n == f"node-{generation}-{node.pod}")

        def ready(node: NodePod = node, process: ManagedProcess = process) -> bool:
            if process.exited() is not None:
                raise SystemExit(f"cache node {node.pod} exited:\n{process.log_tail(30)}")
            return _http_ok(f"{node.url}/readyz")

        poll(ready, f"cache node {node.pod} /readyz", 180)
        say(f"{node.pod}: {node.url} ready (serving {node.cache_namespaces})")
    return nodes


def point_operator_at(kubectl: Kubectl, nodes: list[NodePod]) -> None:
    urls = ",".join(n.url for n in nodes)
    show(
        kubectl, "annotate", "--overwrite", "scache", CACHE, "-n", NAMESPACE,
        f"cachefleet.io/node-endpoints={urls}",
    )  # fmt: skip


# --- traffic -------------------------------------------------------------------------------------


@dataclass
class Answer:
    result: str
    namespace: str
    latency_ms: float
    wrong: bool


_ANSWERED = re.compile(r"^Answer to '(.*?)': ", re.DOTALL)


async def _ask(
    client: httpx.AsyncClient, url: str, system: str, prompt: str, stream: bool,
    owner: dict[str, str], group: str,
) -> Answer:  # fmt: skip
    body = {
        "model": MODEL_VERSION,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}],
        "temperature": 0,
        "stream": stream,
    }
    started = time.perf_counter()
    response = await client.post(f"{url}/v1/chat/completions", json=body)
    latency = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    if stream:
        text = "".join(
            (choice.get("delta") or {}).get("content") or ""
            for block in response.text.split("\n\n")
            if block.startswith("data: {")
            for choice in json.loads(block[6:]).get("choices", [])
        )
    else:
        text = response.json()["choices"][0]["message"]["content"]
    match = _ANSWERED.match(text)
    result = response.headers.get("x-cachefleet-cache", "?")
    wrong = bool(result.startswith("hit") and match and owner.get(match.group(1), group) != group)
    return Answer(result, response.headers.get("x-cachefleet-namespace", "?"), latency, wrong)


async def replay(nodes: list[NodePod], seed: int, concurrency: int) -> list[Answer]:
    """`make demo`'s workload (paraphrase groups and near misses), round-robin over the
    nodes as their Service would spread it."""
    from cachefleet_node.demo.__main__ import build_requests, load_workload

    workload = load_workload()
    owner = {p: g["id"] for g in workload["groups"] for p in g["prompts"]}
    requests = build_requests(workload, seed, repeats=2)
    say(f"{len(requests)} requests, {concurrency} at a time, 20% streamed, "
        f"round-robin over {len(nodes)} nodes")  # fmt: skip
    semaphore = asyncio.Semaphore(concurrency)
    answers: list[Answer] = []
    async with httpx.AsyncClient(timeout=60, trust_env=False) as client:

        async def one(index: int, item: tuple[str, str, str, bool]) -> None:
            group, system, prompt, stream = item
            async with semaphore:
                url = nodes[index % len(nodes)].url
                answers.append(await _ask(client, url, system, prompt, stream, owner, group))
            if len(answers) % 100 == 0 or len(answers) == len(requests):
                hits = sum(a.result.startswith("hit") for a in answers)
                say(f"{len(answers):4d}/{len(requests)} requests, hit rate so far "
                    f"{hits / len(answers):.1%}")  # fmt: skip

        await asyncio.gather(*(one(i, item) for i, item in enumerate(requests)))
    return answers


def report(answers: list[Answer]) -> None:
    count = len(answers)
    by = {
        r: sum(a.result == r for a in answers)
        for r in ("hit-exact", "hit-semantic", "miss", "bypass")
    }
    hits = [a.latency_ms for a in answers if a.result.startswith("hit")]
    misses = [a.latency_ms for a in answers if not a.result.startswith("hit")]
    say(f"hit rate {(by['hit-exact'] + by['hit-semantic']) / count:.1%} "
        f"(exact {by['hit-exact']}, semantic {by['hit-semantic']}, miss {by['miss']}, "
        f"bypass {by['bypass']}); wrong answers served: {sum(a.wrong for a in answers)}")  # fmt: skip
    if hits and misses:
        say(f"median latency: hits {statistics.median(hits):.1f} ms, "
            f"misses {statistics.median(misses):.1f} ms (stub LLM)")  # fmt: skip


def ask_once(url: str, prompt: str) -> tuple[str, str]:
    body = json.dumps(
        {"model": MODEL_VERSION, "messages": [{"role": "user", "content": prompt}]}
    ).encode()
    request = urllib.request.Request(
        f"{url}/v1/chat/completions", data=body, headers={"content-type": "application/json"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=60) as response:
        return response.headers["x-cachefleet-cache"], response.headers["x-cachefleet-namespace"]


# --- the demo ------------------------------------------------------------------------------------


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), None)


def _ready(kubectl: Kubectl) -> bool:
    obj = kubectl.json("get", "scache", CACHE, "-n", NAMESPACE)
    return (_condition(obj, "Ready") or {}).get("status") == "True"


def _hit_rate_column(kubectl: Kubectl) -> str | None:
    row = kubectl("get", "scache", CACHE, "-n", NAMESPACE).splitlines()[1].split()
    return row[2] if re.fullmatch(r"[01]\.[0-9]{2}", row[2]) else None


def binaries_or_build() -> None:
    try:
        locate()
        return
    except BinariesUnavailable as error:
        say(f"control-plane binaries missing ({error}); building them (`make k8s-bins`)")
    from cluster import build

    if build.main([]) != 0:
        raise SystemExit("could not build the control-plane binaries; see the message above")
    locate()


def run(args: argparse.Namespace, clock: Clock, workdir: Path, procs: Processes) -> None:
    clock.step("control-plane binaries (kube-apiserver, etcd, kwok, helm, ...)")
    binaries_or_build()
    say(f"helm: {helm_binary()}")

    clock.step("start the full local control plane (etcd, apiserver, controllers, scheduler, kwok)")
    procs.plane = ControlPlane(Profile.FULL)
    cluster: Cluster = procs.plane.start()
    kubectl = cluster.kubectl
    say(f"API server {cluster.server}; started in {cluster.startup_seconds['total']:.1f}s")
    say(f"KUBECONFIG={cluster.kubeconfig}")
    show(kubectl, "get", "nodes")

    clock.step("helm install cachefleet charts/cachefleet (CRDs, RBAC, operator Deployment)")
    helm = Helm(helm_binary(), workdir / "helm").for_cluster(cluster)
    print(f"    $ helm install {RELEASE} charts/cachefleet --namespace {RELEASE_NAMESPACE} "
          "--create-namespace --wait")  # fmt: skip
    helm.run("install", RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE,
             "--create-namespace", "--wait", "--timeout=180s")  # fmt: skip
    show(kubectl, "get", "crd", "-l", f"app.kubernetes.io/instance={RELEASE}")
    show(kubectl, "get", "deployment,pods", "-n", RELEASE_NAMESPACE, "-o", "wide")
    say("the operator pod is Ready on a kwok node: kwok runs no containers, so the operator "
        "itself runs next as a local process with the chart's ServiceAccount")  # fmt: skip

    clock.step("redis-server, the stub LLM upstream, and the operator with the chart's credentials")
    redis_url = start_redis(procs)
    upstream = start_stub(procs, args.upstream_latency_ms)
    say(f"redis {redis_url}; upstream {upstream} ({args.upstream_latency_ms:.0f} ms per answer)")
    sa_config = service_account_kubeconfig(
        cluster, RELEASE_NAMESPACE, RELEASE, workdir / "operator-sa.kubeconfig"
    )
    say(f"$ kubectl create token {RELEASE} -n {RELEASE_NAMESPACE}  -> {sa_config.name}")
    operator: OperatorProcess = start_operator(
        cluster, workdir, namespaces=[], kubeconfig=sa_config,
        extra=[f"--stats-interval={args.stats_interval}", "--hit-rate-window=10m",
               f"--lease-namespace={RELEASE_NAMESPACE}", f"--lease-name={RELEASE}"],
    )  # fmt: skip
    procs.add("operator", operator.process)
    say(f"operator (pid {operator.process.popen.pid}) ready on 127.0.0.1:{operator.http_port} as "
        f"system:serviceaccount:{RELEASE_NAMESPACE}:{RELEASE} (--all-namespaces, as the chart)")  # fmt: skip

    clock.step("apply the examples: ModelVersion + SemanticCache (external Redis, Milvus Lite)")
    show(kubectl, "create", "namespace", NAMESPACE)
    model_version = documents(EXAMPLES / "modelversion.yaml")[0]
    secret, cache = documents(EXAMPLES / "semanticcache-dev.yaml")
    secret["stringData"] = {"url": redis_url}
    cache["spec"]["upstream"]["baseURL"] = upstream
    cache["spec"]["nodes"]["replicas"] = args.nodes
    cache["spec"]["deadlines"] = {"redisMs": 500, "milvusMs": 3000, "embedderMs": 3000}
    say("from examples/modelversion.yaml and examples/semanticcache-dev.yaml, with: Secret url "
        f"-> the local Redis; upstream.baseURL -> the stub; nodes.replicas {args.nodes}; "
        "deadlines raised for a shared 2-core machine")  # fmt: skip
    manifests = workdir / "demo.yaml"
    manifests.write_text(yaml.safe_dump_all([model_version, secret, cache], sort_keys=False))
    show(kubectl, "apply", "--server-side", "-n", NAMESPACE, "-f", str(manifests))
    poll(
        lambda: kubectl.run("get", "configmap", f"{CACHE}-node", "-n", NAMESPACE,
                            check=False).returncode == 0,
        "the node ConfigMap",
    )  # fmt: skip
    show(kubectl, "get", "scache,mv", "-n", NAMESPACE)
    show(kubectl, "get", "deployment,pods", "-n", NAMESPACE, "-l",
         f"app.kubernetes.io/instance={CACHE}", "-o", "wide")  # fmt: skip

    clock.step("run the cache nodes as the pods would: rendered ConfigMap + Secret env")
    config, _ = rendered_config(kubectl)
    say(f"node.yaml from ConfigMap {CACHE}-node (rendered by the operator):")
    for line in yaml.safe_dump(config, sort_keys=False).splitlines():
        print(f"      {line}")
    _, config_hash = rendered_config(kubectl)
    poll(lambda: _rolled(kubectl, config_hash, args.nodes), "the node pods Ready (kwok)")
    nodes = start_nodes(kubectl, procs, workdir, generation=1)
    point_operator_at(kubectl, nodes)
    started = time.monotonic()
    poll(lambda: _ready(kubectl), "SemanticCache Ready", 120)
    say(f"Ready {time.monotonic() - started:.1f}s after the nodes were announced")
    show(kubectl, "get", "scache", "-n", NAMESPACE, "-o", "wide")

    clock.step("replay traffic through the nodes")
    answers = asyncio.run(replay(nodes, args.seed, args.concurrency))
    report(answers)
    namespaces = sorted({a.namespace for a in answers})
    say(f"x-cachefleet-namespace of every response: {', '.join(namespaces)}")
    shown = poll(lambda: _hit_rate_column(kubectl), "HIT-RATE in kubectl get scache", 120)
    say(f"the operator collected the nodes' stats: HIT-RATE {shown}")
    show(kubectl, "get", "scache", "-n", NAMESPACE, "-o", "wide")
    status = kubectl.json("get", "scache", CACHE, "-n", NAMESPACE)["status"]
    say(f"status.hitRate {json.dumps(status.get('hitRate'))}")
    say(
        f"status.entries {status.get('entries')}, status.savings {json.dumps(status.get('savings'))}"
    )

    clock.step(f"edit the ModelVersion: version -> {NEW_VERSION} (policy Rollover)")
    before = kubectl.json("get", "mv", MODEL_VERSION, "-n", NAMESPACE)["status"]["cacheNamespace"]
    _, old_hash = rendered_config(kubectl)
    show(kubectl, "get", "mv", "-n", NAMESPACE)
    show(kubectl, "patch", "mv", MODEL_VERSION, "-n", NAMESPACE, "--type=merge",
         "-p", json.dumps({"spec": {"version": NEW_VERSION}}))  # fmt: skip

    def new_namespace() -> str | None:
        status = kubectl.json("get", "mv", MODEL_VERSION, "-n", NAMESPACE).get("status", {})
        current = status.get("cacheNamespace")
        return str(current) if current and current != before else None

    after = poll(new_namespace, "a new cache namespace in ModelVersion status")
    say(f"ModelVersion status.cacheNamespace: {before} -> {after}")
    show(kubectl, "get", "mv", "-n", NAMESPACE)

    def served_namespaces() -> list[str] | None:
        names = [n["cache_namespace"] for n in rendered_config(kubectl)[0]["namespaces"]]
        return names if after in names else None

    served = poll(served_namespaces, "the node ConfigMap re-rendered")
    _, new_hash = rendered_config(kubectl)
    say(f"ConfigMap {CACHE}-node now serves {served}; node Deployment config-hash "
        f"{old_hash} -> {new_hash}")  # fmt: skip
    active = _active_namespaces(nodes)
    if new_hash == old_hash and active and all(after in a.values() for a in active):
        say("the operator switched the running nodes to the new namespace in place: no "
            "restart, no rollout (the hash leaves out what a node takes live); a pod that "
            "starts later reads the new ConfigMap")  # fmt: skip
    else:
        say("the node Deployment rolled; restarting the node processes from the new ConfigMap, "
            "as the new pods would start")  # fmt: skip
        poll(lambda: _rolled(kubectl, new_hash, args.nodes), "the rolled node pods (kwok)", 120)
        for node in nodes:
            procs.stop(f"node-1-{node.pod}")
        nodes = start_nodes(kubectl, procs, workdir, generation=2)
        point_operator_at(kubectl, nodes)
    say("fresh responses (the same question twice, through different nodes):")
    question = "How do I reset my password?"
    for node in (nodes[0], nodes[-1]):
        result, served_from = ask_once(node.url, question)
        say(f"  {node.pod}: x-cachefleet-cache: {result:<13} x-cachefleet-namespace: {served_from}")
        if served_from != after:
            raise SystemExit(f"expected responses from {after}, got {served_from}")

    def on_new_namespace() -> dict[str, Any] | None:
        obj: dict[str, Any] = kubectl.json("get", "scache", CACHE, "-n", NAMESPACE)
        active = obj.get("status", {}).get("activeNamespaces", [])
        ready = (_condition(obj, "Ready") or {}).get("status") == "True"
        return obj if ready and any(a.get("cacheNamespace") == after for a in active) else None

    cache_obj = poll(on_new_namespace, "the SemanticCache status on the new namespace")
    say(
        f"SemanticCache status.activeNamespaces: {json.dumps(cache_obj['status']['activeNamespaces'])}"
    )
    for kind in ("Ready", "RollingOver", "Reconciling"):
        found = _condition(cache_obj, kind)
        if found:
            say(
                f"condition {kind}={found['status']} ({found['reason']}): {found.get('message', '')}"
            )
    mv_status = kubectl.json("get", "mv", MODEL_VERSION, "-n", NAMESPACE)["status"]
    for key, value in mv_status.items():
        if key not in ("conditions", "observedGeneration", "cacheNamespace"):
            say(f"ModelVersion status.{key}: {json.dumps(value)}")
    show(kubectl, "get", "scache,mv", "-n", NAMESPACE, "-o", "wide")
    show(kubectl, "get", "events", "-n", NAMESPACE, "--field-selector",
         f"involvedObject.name={MODEL_VERSION}")  # fmt: skip


def _active_namespaces(nodes: list[NodePod]) -> list[dict[str, str]]:
    found = []
    for node in nodes:
        try:
            with urllib.request.urlopen(f"{node.url}/v1/cache/namespaces", timeout=5) as response:
                found.append(json.loads(response.read())["active"])
        except OSError:
            return []
    return found


def _rolled(kubectl: Kubectl, config_hash: str, replicas: int) -> bool:
    pods = kubectl.json(
        "get", "pods", "-n", NAMESPACE,
        "-l", f"app.kubernetes.io/instance={CACHE},app.kubernetes.io/component=node",
    )["items"]  # fmt: skip
    fresh = [
        p for p in pods
        if p["metadata"].get("annotations", {}).get("cachefleet.io/config-hash") == config_hash
        and not p["metadata"].get("deletionTimestamp")
        and any(c["type"] == "Ready" and c["status"] == "True"
                for c in p.get("status", {}).get("conditions", []))
    ]  # fmt: skip
    return len(fresh) >= replicas


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2, help="cache node replicas (processes)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--upstream-latency-ms", type=float, default=300.0)
    parser.add_argument("--stats-interval", default="2s", help="operator --stats-interval")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started ignoring it
    clock = Clock()
    workdir = Path(tempfile.mkdtemp(prefix="cachefleet-demo-cluster-"))
    procs = Processes(workdir)
    print(f"Cachefleet cluster demo (work directory {workdir})", flush=True)
    code = 0
    try:
        run(args, clock, workdir, procs)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything that was started", flush=True)
        code = 130
    except (Exception, SystemExit) as error:
        print(f"\nFAILED: {error}", file=sys.stderr, flush=True)
        code = 1
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # let teardown finish
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            clock.step("tear down: every process the demo started, by PID")
            procs.stop_all()
            if args.keep or code:
                say(f"logs kept in {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
            clock.finish()
    print("\nTimings:")
    for title, seconds in clock.steps:
        print(f"  {seconds:6.1f}s  {title}")
    print(f"demo-cluster {'finished' if code == 0 else 'stopped'} in {clock.elapsed():.0f}s")
    return code


if __name__ == "__main__":
    sys.exit(main())
