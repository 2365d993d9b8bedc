"""L2 semantic tier: vectors in Milvus, shared by every node of a fleet.

Layout decision: one collection per embedding space (model + dimension), with `namespace` as
the partition key. A namespace switch or purge is a filtered delete, not a schema change;
a new embedding model gets a new collection, which is what a re-embedding migration needs.
Every search filters on namespace, tenant, partition fingerprint and expiry, and the caller
re-checks the partition fields of what comes back.

pymilvus is synchronous: calls run on a small dedicated thread pool, and the caller bounds
them with a deadline; every gRPC call also carries its own (`CALL_TIMEOUT_S`), so a hung
server never holds a thread for good. At most `SEARCHES_IN_FLIGHT` lookup searches of a node
wait on Milvus at once (running on its threads or queued for one), counted until Milvus
answers (not until the caller stops waiting); a search past that is shed at once
(`MilvusBusy`, reason `milvus-busy`): queued behind slow searches it would only time out,
feed the breaker and keep it open while the server is merely slow.

Self-healing: a call that finds the collection unloaded (a restarted Milvus server loads
nothing) or missing, or the server unreachable, takes the collection out of service
(`connected` is False: lookups skip it, `/readyz` says why) and one background task reloads
or recreates it, retrying until it answers; then the collection serves again.

Writes are coalesced (`WriteBatcher`): the rows of concurrent `insert` calls go out as one
delete by id plus one insert, one batch at a time (one row per call paid two round trips per
entry); each caller awaits its own rows' outcome.

Milvus Lite (a local `.db` path, an in-process server) is not safe for concurrent writes: two
inserts at once interleave their bytes in its write-ahead log, and the next start drops every
row after the first torn batch. Its writes therefore run one at a time; `close` flushes the
collection to its data files and, with the last collection of that file, stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncGenerator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
import structlog
from pymilvus import DataType, MilvusClient
from pymilvus.exceptions import MilvusException

from cachefleet_node.core.entry import CacheEntry
from cachefleet_node.core.scope import InvalidationScope
from cachefleet_node.tiers.vector_tier import VectorHit, VectorQuery
from cachefleet_node.tiers.write_batch import RETRY_WRITES_FOR_S, WriteBatcher

__all__ = ["MilvusBusy", "MilvusVectorStore", "VectorPage", "VectorRow"]

log = structlog.get_logger(__name__)

CALL_TIMEOUT_S = 10.0  # gRPC deadline of every call (callers on the request path wait less)
MILVUS_THREADS = 4  # the node's threads for Milvus calls (pymilvus is synchronous)
# Lookup searches one node has waiting on Milvus at once: running on those threads or queued
# for one (a short queue rides out a burst; a long one only times out).
SEARCHES_IN_FLIGHT = 4 * MILVUS_THREADS
REPAIR_RETRY_S = (0.25, 2.0)  # first and longest pause between reload attempts
CLOSE_TIMEOUT_S = 15.0  # longest wait for the final flush and the Milvus Lite shutdown
# The vector index of a new collection and each search's effort (issue 17; measured by
# `python -m cachefleet_bench.index_sweep`, docs/benchmarks/scale.md "Index and search
# parameters"): at 160k rows on Milvus 2.3.5, efConstruction 64 built in 124 s where the 240
# of AUTOINDEX (which 2.3 builds as HNSW M=18) took 185 s, and with `ef` 64 both found the
# exact nearest row for every query near a stored one (the server's default: 91.7-94.3%).
INDEX_TYPE = "HNSW"
INDEX_BUILD = {"M": 18, "efConstruction": 64}
SEARCH_EF = 64  # candidates an HNSW search keeps per segment (at least its limit)
CODE_COLLECTION_NOT_FOUND = 100  # Milvus (2.3+) and Milvus Lite error codes
CODE_COLLECTION_NOT_LOADED = 101
CODE_UNREACHABLE = 2  # pymilvus: "Fail connecting to server"
WRITE_BATCH_ROWS = 512  # rows one coalesced write takes (a larger call goes alone)
WRITE_QUEUE_ROWS = 4 * WRITE_BATCH_ROWS  # rows that may wait (~12 KB each as Python lists)
SCAN_BATCH = 4_096  # rows of a scan's page (its query asks for one more; Milvus allows 16,384)
SCAN_FIRST_WINDOW_MS = 60_000  # creation-time window of a scan's first query
_ROW_FIELDS = ["namespace", "tenant", "partition", "tags", "created_at", "expires_at", "vector"]
_embedded_open: dict[str, int] = {}  # Milvus Lite path -> stores open on it (this process)


def collection_fault(exc: BaseException) -> str | None:
    """Why a failed call means the collection cannot serve until it is repaired, or None (a
    slow or refused call: the caller's deadline and breaker deal with it)."""
    if isinstance(exc, MilvusException):
        code, message = exc.code, str(exc.message).lower()
        if code == CODE_COLLECTION_NOT_LOADED or "not loaded" in message or "released" in message:
            return "collection-not-loaded"
        if code == CODE_COLLECTION_NOT_FOUND or (
            "collection" in message and ("not found" in message or "not exist" in message)
        ):
            return "collection-not-found"
        if code == CODE_UNREACHABLE or "fail connecting" in message:
            return "unreachable"
    return None


_TRANSIENT_RPC = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
)


def retryable_write_error(exc: BaseException) -> bool:
    """Whether a failed write may land when sent again: Milvus was down, slow, restarting or
    lost the collection (repaired meanwhile), not a write it refused. Writes are idempotent
    (delete the ids, then insert)."""
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)) or collection_fault(exc):
        return True
    if isinstance(exc, grpc.RpcError):
        return exc.code() in _TRANSIENT_RPC
    if isinstance(exc, MilvusException):
        message = str(exc.message).lower()
        return any(word in message for word in ("timeout", "deadline", "unavailable", "connect"))
    return False


class MilvusBusy(Exception):
    """A lookup search was shed: `SEARCHES_IN_FLIGHT` searches of this node are still waiting
    for Milvus. Not a failure of the tier (the breaker ignores it); the request skips it."""


@dataclass(frozen=True, slots=True)
class VectorRow:
    """One vector and the semantic entry it indexes (the row carries its partition fields)."""

    entry: CacheEntry
    vector: npt.NDArray[np.float32]

    def __post_init__(self) -> None:
        assert self.entry.partition is not None, "only semantic entries have vectors"


def search_effort(index_type: str) -> dict[str, Any]:
    """Search `params` for a collection's vector index (`describe_index`'s `index_type`):
    `ef` for HNSW, and for AUTOINDEX (a collection created before the explicit index: Milvus
    2.3 builds it as HNSW); none (the server's defaults) for any other index."""
    return {"ef": SEARCH_EF} if index_type.upper() in ("HNSW", "AUTOINDEX") else {}


def _quote(value: str) -> str:
    return json.dumps(value)


def scope_filter(scope: InvalidationScope) -> str:
    """Milvus boolean expression selecting the rows of an invalidation scope."""
    parts = [f"namespace == {_quote(scope.namespace)}"]
    if scope.tenant is not None:
        parts.append(f"tenant == {_quote(scope.tenant)}")
    if scope.tags:
        parts.append(
            "(" + " or ".join(f"tags like {_quote('%,' + t + ',%')}" for t in scope.tags) + ")"
        )
    if scope.created_before is not None:
        parts.append(f"created_at < {int(scope.created_before * 1000)}")
    if scope.entry_ids:
        parts.append(_ids_filter(sorted(scope.entry_ids)))
    return " and ".join(parts)


def _ids_filter(entry_ids: list[str]) -> str:
    return "id in [" + ", ".join(_quote(e) for e in entry_ids) + "]"


def _hit(item: dict[str, Any]) -> VectorHit:
    entity = item.get("entity", {})
    raw_vector = entity.get("vector")
    tags = str(entity.get("tags") or "")
    return VectorHit(
        entry_id=str(item.get("id", entity.get("id"))),
        namespace=str(entity.get("namespace")),
        tenant=str(entity.get("tenant")),
        partition=str(entity.get("partition")),
        similarity=float(item.get("distance", 0.0)),
        created_at=float(entity.get("created_at", 0)) / 1000,
        vector=None if raw_vector is None else np.asarray(raw_vector, dtype=np.float32),
        tags=tuple(t for t in tags.split(",") if t),
    )


@dataclass(frozen=True, slots=True)
class VectorPage:
    """Rows of a scan as columns: row i of each (times in seconds)."""

    entry_ids: list[str]
    namespaces: list[str]
    tenants: list[str]
    partitions: list[str]
    tags: list[tuple[str, ...]]
    created_at: npt.NDArray[np.float64]
    expires_at: npt.NDArray[np.float64]
    vectors: npt.NDArray[np.float32]  # (rows, dim)

    def __len__(self) -> int:
        return len(self.entry_ids)


@dataclass(slots=True)
class _Scan:
    """Where a scan stands: the upper end (exclusive, ms) and length of its next
    creation-time window."""

    live: str  # the expiry filter
    batch: int
    upper: int
    span: int = SCAN_FIRST_WINDOW_MS
    first: bool = True

    def consistency(self) -> str | None:
        """The first query waits until Milvus has applied every write made before it
        ("Strong": up to a time tick, ~0.2 s); the next ones, read at a later state, do not
        (the collection's default)."""
        first, self.first = self.first, False
        return "Strong" if first else None


def _page(rows: Any, dim: int, limit: int) -> VectorPage:
    """The columns of a query's first `limit` rows.

    pymilvus (pinned in requirements.lock) returns a lazy list whose item access builds the
    row's vector as a Python list of floats (~50 µs a row at 384 dimensions: most of a
    refill's time). The scalar fields are read from its plain rows (`list` access), the
    vectors in one copy from the response's vector field data.
    """
    plain: list[dict[str, Any]] = list(list.__iter__(rows))[:limit]
    fields = [f for f in getattr(rows, "_lazy_field_data", ()) if f.field_name == "vector"]
    if len(fields) != 1:
        raise TypeError("pymilvus query rows without their vector field data")
    vectors = np.array(fields[0].vectors.float_vector.data, dtype=np.float32)[: len(plain) * dim]
    tags: dict[str, tuple[str, ...]] = {}
    for row in plain:
        text = str(row["tags"] or "")
        if text not in tags:
            tags[text] = tuple(t for t in text.split(",") if t)
    return VectorPage(
        entry_ids=[str(row["id"]) for row in plain],
        namespaces=[str(row["namespace"]) for row in plain],
        tenants=[str(row["tenant"]) for row in plain],
        partitions=[str(row["partition"]) for row in plain],
        tags=[tags[str(row["tags"] or "")] for row in plain],
        created_at=np.array([row["created_at"] for row in plain], dtype=np.float64) / 1000,
        expires_at=np.array([row["expires_at"] for row in plain], dtype=np.float64) / 1000,
        vectors=vectors.reshape(len(plain), dim),
    )


class MilvusVectorStore:
    """Vectors of one embedding space in one Milvus collection."""

    name = "milvus"

    def __init__(self, uri: str, token: str | None, collection: str, dim: int) -> None:
        self._uri = uri
        self._token = token
        self.collection = collection
        self.dim = dim
        self._executor = ThreadPoolExecutor(max_workers=MILVUS_THREADS, thread_name_prefix="milvus")
        self._search_slots = threading.BoundedSemaphore(SEARCHES_IN_FLIGHT)
        # Milvus Lite: writes one at a time, on their own thread (searches never wait for them)
        self.embedded = uri.endswith(".db")
        self._writer = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="milvus-write")
            if self.embedded
            else self._executor
        )
        self._client: MilvusClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # search `params` for the collection's index, read on connect (`search_effort`)
        self.search_params: dict[str, Any] = {}
        self.problem: str | None = None  # why the collection is out of service (None: serving)
        self.recoveries = 0  # times it was brought back after a fault
        self._repair: asyncio.Task[None] | None = None
        self.writes = WriteBatcher[dict[str, Any]](
            "milvus",
            self._write_rows,
            WRITE_BATCH_ROWS,
            WRITE_QUEUE_ROWS,
            retry_for_s=RETRY_WRITES_FOR_S,
            retryable=retryable_write_error,
        )

    @classmethod
    def embedded_uri(cls, data_dir: str) -> str:
        """The Milvus Lite path used when no Milvus URI is configured."""
        path = Path(data_dir) / "milvus.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(path)

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def _call(
        self,
        fn: Any,
        *args: Any,
        write: bool = False,
        slot: threading.BoundedSemaphore | None = None,
        **kwargs: Any,
    ) -> Any:
        """A pymilvus call with a gRPC deadline; a failure that shows the collection cannot
        serve starts its repair, even when the caller stopped waiting for the answer. With
        `slot` (already acquired), the call releases it when it ends, not when its caller
        stops waiting."""
        kwargs.setdefault("timeout", CALL_TIMEOUT_S)
        self._loop = asyncio.get_running_loop()
        try:
            future = (self._writer if write else self._executor).submit(fn, *args, **kwargs)
        except BaseException:
            if slot is not None:
                slot.release()
            raise
        if slot is not None:
            future.add_done_callback(lambda _: slot.release())
        future.add_done_callback(self._observe)
        return await asyncio.wrap_future(future)

    def _observe(self, future: Future[Any]) -> None:
        if future.cancelled() or future.exception() is None:
            return
        fault = collection_fault(future.exception())  # type: ignore[arg-type]
        loop = self._loop
        if fault is not None and loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._out_of_service, fault, future.exception())

    def _out_of_service(self, fault: str, exc: BaseException | None) -> None:
        if self._client is None or self.problem is not None:
            return
        self.problem = fault
        log.warning(
            "milvus_collection_out_of_service",
            collection=self.collection,
            fault=fault,
            error=str(getattr(exc, "message", exc))[:300],
        )
        self._repair = asyncio.get_running_loop().create_task(self._repair_until_serving())

    async def _repair_until_serving(self) -> None:
        """Reconnect, reload (or recreate) the collection until it answers a search again."""
        started, pause, attempts = time.monotonic(), REPAIR_RETRY_S[0], 0
        while (client := self._client) is not None:
            attempts += 1
            try:
                await asyncio.wait_for(
                    self._run(self._ensure_collection, client), 4 * CALL_TIMEOUT_S
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if attempts == 1 or attempts % 10 == 0:
                    log.info(
                        "milvus_repair_failed",
                        collection=self.collection,
                        attempts=attempts,
                        fault=collection_fault(exc) or type(exc).__name__,
                    )
                await asyncio.sleep(pause)
                pause = min(pause * 2, REPAIR_RETRY_S[1])
                continue
            self.problem = None
            self.recoveries += 1
            log.info(
                "milvus_collection_recovered",
                collection=self.collection,
                seconds=round(time.monotonic() - started, 2),
                attempts=attempts,
            )
            return

    @property
    def connected(self) -> bool:
        """Whether the collection is ready for use (connected, loaded, not being repaired)."""
        return self._client is not None and self.problem is None

    def describe(self) -> dict[str, Any]:
        """State for `/readyz`: `connected`, `problem` (why not: `collection-not-loaded`,
        `collection-not-found`, `unreachable`, `connecting`), `recoveries`."""
        problem = "connecting" if self._client is None else self.problem
        return {"connected": self.connected, "problem": problem, "recoveries": self.recoveries}

    def _connect(self) -> MilvusClient:
        # pymilvus pings idle connections every 10 s; gRPC servers with default policy (Milvus
        # Lite's among them) answer a few such pings with GOAWAY "too_many_pings", failing
        # the next call. Ping only while calls are in flight; a dead idle connection costs
        # one failed (fail-open) call, then the channel reconnects.
        kwargs: dict[str, Any] = {
            "uri": self._uri,
            "timeout": CALL_TIMEOUT_S,
            "grpc_options": {"grpc.keepalive_permit_without_calls": False},
        }
        if self._token:
            kwargs["token"] = self._token
        client = MilvusClient(**kwargs)
        self._ensure_collection(client)
        return client

    def _ensure_collection(self, client: MilvusClient) -> None:
        """Create the collection if it is missing, load it, and warm it up (blocking)."""
        timeout = CALL_TIMEOUT_S
        if not client.has_collection(self.collection, timeout=timeout):
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
            schema.add_field("namespace", DataType.VARCHAR, max_length=64, is_partition_key=True)
            schema.add_field("tenant", DataType.VARCHAR, max_length=64)
            schema.add_field("model", DataType.VARCHAR, max_length=256)
            schema.add_field("partition", DataType.VARCHAR, max_length=64)
            schema.add_field("tags", DataType.VARCHAR, max_length=1100)
            schema.add_field("created_at", DataType.INT64)
            schema.add_field("expires_at", DataType.INT64)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
            index = client.prepare_index_params()
            index.add_index("vector", index_type=INDEX_TYPE, metric_type="IP", params=INDEX_BUILD)
            try:
                client.create_collection(
                    self.collection, schema=schema, index_params=index, timeout=timeout
                )
            except MilvusException:
                # another node of the fleet creates the same collection at the same moment
                # (its index may not exist yet): wait for its work rather than fail
                self._wait_for_index(client)
        client.load_collection(self.collection, timeout=timeout)
        if self.embedded:
            # rows Milvus Lite recovered from its write-ahead log (after a crash) sit in an
            # unindexed in-memory table that every search scans: write them out and index
            # them now (nothing to do after a clean close)
            client.flush(self.collection, timeout=timeout)
        index = client.describe_index(self.collection, "vector", timeout=timeout)
        self.search_params = search_effort(str(index.get("index_type", "")))
        # The first search on a freshly loaded collection is slow; pay for it here, not on a
        # request with a deadline (and with the search parameters the lookups will send).
        client.search(
            self.collection,
            data=[[0.0] * self.dim],
            limit=1,
            filter='namespace == ""',
            search_params=self._search_params(1),
            timeout=timeout,
        )

    def _search_params(self, limit: int) -> dict[str, Any]:
        params = dict(self.search_params)
        if "ef" in params:
            params["ef"] = max(params["ef"], limit)  # HNSW keeps at least `limit` candidates
        return {"metric_type": "IP", "params": params}

    def _wait_for_index(self, client: MilvusClient, timeout_s: float = 30.0) -> None:
        """Return once the collection has its vector index (created elsewhere), or re-raise."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if client.has_collection(
                    self.collection, timeout=CALL_TIMEOUT_S
                ) and client.list_indexes(self.collection, timeout=CALL_TIMEOUT_S):
                    return
            except MilvusException:
                pass
            if time.monotonic() > deadline:
                raise ConnectionError(
                    f"collection {self.collection} has no index after {timeout_s}s"
                )
            time.sleep(0.2)

    async def connect(self) -> None:
        """Open the client and create/load the collection (raises on failure)."""
        self._loop = asyncio.get_running_loop()
        client = await self._run(self._connect)
        if self._client is not None:  # connected meanwhile (a retry after a slow attempt)
            await self._run(client.close)
            return
        self._client = client
        if self.embedded:
            _embedded_open[self._uri] = _embedded_open.get(self._uri, 0) + 1
        log.info("milvus_connected", collection=self.collection)

    def _require(self) -> MilvusClient:
        if self._client is None:
            raise ConnectionError("milvus is not connected")
        return self._client

    async def insert(self, rows: list[VectorRow]) -> None:
        """Insert or replace rows (keyed by entry id), in the next coalesced write; a caller
        that stops waiting leaves its rows queued (they are still written)."""
        self._require()
        await self.writes.write(
            [
                {
                    "id": row.entry.entry_id,
                    "namespace": row.entry.namespace,
                    "tenant": row.entry.tenant,
                    "model": row.entry.model,
                    "partition": row.entry.partition,
                    "tags": "," + ",".join(row.entry.tags) + ",",
                    "created_at": int(row.entry.created_at * 1000),
                    "expires_at": int(row.entry.expires_at * 1000),
                    "vector": row.vector.astype(np.float32).tolist(),
                }
                for row in rows
            ]
        )

    async def _write_rows(self, rows: list[dict[str, Any]]) -> None:
        """One coalesced write; of two rows with one id, the later wins."""
        unique = list({row["id"]: row for row in rows}.values())
        await self._call(self._replace, self._require(), unique, write=True)

    def _replace(self, client: MilvusClient, data: list[dict[str, Any]], timeout: float) -> None:
        """Delete the rows' ids, then insert the rows (blocking: on a writer thread).

        Not `upsert`: Milvus 2.3 servers (2.3.5 among them; milvus-io/milvus#30607, fixed by
        #30773) put an upserted row in the partition of its primary key's hash, not of its
        namespace, and every search, count and scoped delete filtered on a namespace reads
        that namespace's partition only, so it misses the row. A delete by id reaches every
        partition. Two writers of one entry id at the same moment may leave two copies of
        the row; deleting that id removes both.
        """
        ids = [row["id"] for row in data]
        client.delete(self.collection, ids=ids, timeout=timeout)
        client.insert(self.collection, data, timeout=timeout)

    async def nearest(self, query: VectorQuery) -> list[VectorHit]:
        """Nearest live rows inside one partition, with their vectors (`VectorTier`); raises
        `MilvusBusy` at once while `SEARCHES_IN_FLIGHT` searches are unanswered."""
        client = self._require()
        if not self._search_slots.acquire(blocking=False):
            raise MilvusBusy(f"{SEARCHES_IN_FLIGHT} searches in flight")
        expression = (
            f"namespace == {_quote(query.namespace)} and tenant == {_quote(query.tenant)} "
            f"and partition == {_quote(query.partition)} "
            f"and expires_at > {int(query.now * 1000)}"
        )
        if query.max_age_s is not None:
            expression += f" and created_at >= {int((query.now - query.max_age_s) * 1000)}"
        result = await self._call(
            client.search,
            self.collection,
            data=[query.vector.astype(np.float32).tolist()],
            limit=query.limit,
            filter=expression,
            output_fields=["namespace", "tenant", "partition", "created_at", "vector"],
            search_params=self._search_params(query.limit),
            slot=self._search_slots,
        )
        return [_hit(item) for item in (result[0] if result else [])]

    async def scan_recent(
        self, now: float, batch: int = SCAN_BATCH
    ) -> AsyncGenerator[VectorPage, None]:
        """The rows live at `now`, with their vectors and expiry, newest first, in pages of
        at most `batch` rows (a node refilling its in-process tier). The next page is read
        while the caller handles this one.

        Rows are read in windows of creation time going back from `now`, one query each: a
        window holding more than `batch` rows is halved and read again, a sparse one doubles
        the next, so each query returns about one batch; an empty window ends the walk if no
        older row is left. Nothing is counted: Milvus Lite counts by scanning every row (12 s
        at 100k rows, past the call's deadline). Rows written after `now` are not read; of a
        millisecond holding more than `batch` rows, `batch` are.
        """
        client = self._require()
        now_ms = int(now * 1000)
        scan = _Scan(f"expires_at > {now_ms}", batch, now_ms + 1)
        pending = asyncio.ensure_future(self._call(self._next_page, client, scan))
        try:
            while (page := await pending) is not None:
                pending = asyncio.ensure_future(self._call(self._next_page, client, scan))
                yield page
        finally:
            pending.cancel()  # a caller that stops early: the read ahead is dropped

    def _next_page(self, client: MilvusClient, scan: _Scan, timeout: float) -> VectorPage | None:
        """The next non-empty window of `scan`, or None past its oldest row (blocking: on
        the pool's thread)."""
        while scan.upper > 0:
            lower = max(scan.upper - scan.span, 0)
            window = f"{scan.live} and created_at >= {lower} and created_at < {scan.upper}"
            rows = client.query(
                self.collection,
                filter=window,
                output_fields=_ROW_FIELDS,
                limit=scan.batch + 1,
                consistency_level=scan.consistency(),
                timeout=timeout,
            )
            if len(rows) > scan.batch and scan.upper - lower > 1:
                scan.span = max((scan.upper - lower) // 2, 1)
                continue
            scan.upper = lower
            if len(rows) < scan.batch // 2:
                scan.span *= 2
            if len(rows):
                return _page(rows, self.dim, scan.batch)
            older = client.query(
                self.collection,
                filter=f"{scan.live} and created_at < {lower}",
                output_fields=["created_at"],
                limit=1,
                consistency_level=scan.consistency(),
                timeout=timeout,
            )
            if not older:
                return None
        return None

    async def search_scope(
        self, scope: InvalidationScope, vector: npt.NDArray[np.float32], limit: int
    ) -> list[VectorHit]:
        """Nearest live rows of a scope across all its partitions (targeted invalidation)."""
        client = self._require()
        expression = f"{scope_filter(scope)} and expires_at > {int(time.time() * 1000)}"
        result = await self._call(
            client.search,
            self.collection,
            data=[vector.astype(np.float32).tolist()],
            limit=limit,
            filter=expression,
            output_fields=["namespace", "tenant", "partition", "created_at", "tags"],
            search_params=self._search_params(limit),
        )
        return [_hit(item) for item in (result[0] if result else [])]

    async def delete_scope(self, scope: InvalidationScope, *, dry_run: bool = False) -> int:
        """Delete (or count) the rows of a scope."""
        client = self._require()
        expression = scope_filter(scope)
        if dry_run:
            return await self._count(client, expression)
        self.writes.discard(  # a queued (or retried) write must not bring a row back
            lambda row: scope.matches(
                row["namespace"],
                row["tenant"],
                tuple(tag for tag in row["tags"].split(",") if tag),
                row["created_at"] / 1000,
                row["id"],
            )
        )
        before = await self._count(client, expression)
        await self._call(client.delete, self.collection, filter=expression, write=True)
        return before

    async def delete_ids(self, entry_ids: list[str], *, dry_run: bool = False) -> int:
        """Delete (or count) rows by entry id; return how many existed."""
        if not entry_ids:
            return 0
        client = self._require()
        if not dry_run:
            doomed = set(entry_ids)
            self.writes.discard(lambda row: row["id"] in doomed)
        found = 0
        for start in range(0, len(entry_ids), 1000):
            batch = entry_ids[start : start + 1000]
            found += await self._count(client, _ids_filter(batch))
            if not dry_run:
                await self._call(client.delete, self.collection, ids=batch, write=True)
        return found

    async def _count(self, client: MilvusClient, expression: str) -> int:
        rows = await self._call(
            client.query, self.collection, filter=expression, output_fields=["count(*)"]
        )
        return int(rows[0]["count(*)"]) if rows else 0

    async def count(self, namespace: str) -> int:
        """Live rows of a namespace."""
        client = self._require()
        expression = f"namespace == {_quote(namespace)} and expires_at > {int(time.time() * 1000)}"
        return await self._count(client, expression)

    async def purge_expired(self) -> None:
        """Delete rows past their expiry."""
        client = self._require()
        await self._call(
            client.delete,
            self.collection,
            filter=f"expires_at <= {int(time.time() * 1000)}",
            write=True,
        )

    async def close(self) -> None:
        """Write the queued rows, close the client and the thread pools; Milvus Lite: make
        every row durable first.

        Milvus Lite keeps recent rows in memory and in its write-ahead log: flush them into
        its data files (after the writes already queued), and stop its server with the last
        collection open on the file, so the next start reads clean files. Bounded by
        `CLOSE_TIMEOUT_S` each; a real Milvus server keeps its own data.
        """
        if self._repair is not None:
            self._repair.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._repair
        await self.writes.drain(CLOSE_TIMEOUT_S)
        client, self._client = self._client, None
        if client is not None:
            try:
                await asyncio.wait_for(self._close_client(client), CLOSE_TIMEOUT_S)
            except Exception as exc:
                log.warning(
                    "milvus_close_incomplete",
                    collection=self.collection,
                    error=f"{type(exc).__name__}: {exc}"[:300],
                )
        if self._writer is not self._executor:
            self._writer.shutdown(wait=False, cancel_futures=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _close_client(self, client: MilvusClient) -> None:
        if not self.embedded:
            await self._run(client.close)
            return
        loop = asyncio.get_running_loop()
        started, flushed = time.monotonic(), True
        try:  # on the writer thread: after every write already queued
            await loop.run_in_executor(
                self._writer, lambda: client.flush(self.collection, timeout=CLOSE_TIMEOUT_S)
            )
        except Exception as exc:
            flushed = False
            log.warning(
                "milvus_lite_flush_failed",
                collection=self.collection,
                error=f"{type(exc).__name__}: {exc}"[:300],
            )
        with contextlib.suppress(Exception):
            await self._run(client.close)
        left = _embedded_open.get(self._uri, 1) - 1
        if left > 0:
            _embedded_open[self._uri] = left
        else:
            _embedded_open.pop(self._uri, None)
            from milvus_lite.server_manager import server_manager_instance

            # closes every collection of the file (their rows into data files) and its lock
            await self._run(server_manager_instance.release_server, self._uri)
        log.info(
            "milvus_lite_closed",
            collection=self.collection,
            flushed=flushed,
            server_stopped=left <= 0,
            seconds=round(time.monotonic() - started, 2),
        )
