"""L2 semantic tier: vectors in Milvus, shared by every node of a fleet.

Layout decision: one collection per embedding space (model + dimension), with `namespace` as
the partition key. A namespace switch or purge is a filtered delete, not a schema change;
a new embedding model gets a new collection, which is what a re-embedding migration needs.
Every search filters on namespace, tenant, partition fingerprint and expiry, and the caller
re-checks the partition fields of what comes back.

pymilvus is synchronous: calls run on a small dedicated thread pool, and the caller bounds
them with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog
from pymilvus import DataType, MilvusClient
from pymilvus.exceptions import MilvusException

from cachefleet_node.core.scope import InvalidationScope

__all__ = ["MilvusVectorStore", "VectorHit", "VectorRow"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class VectorRow:
    """One vector and the partition fields it carries."""

    entry_id: str
    namespace: str
    tenant: str
    model: str
    partition: str
    vector: npt.NDArray[np.float32]
    created_at: float
    expires_at: float
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class VectorHit:
    """A search result with its partition fields, to be re-verified by the caller."""

    entry_id: str
    namespace: str
    tenant: str
    partition: str
    similarity: float
    created_at: float
    vector: npt.NDArray[np.float32] | None
    tags: tuple[str, ...] = ()


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


class MilvusVectorStore:
    """Vectors of one embedding space in one Milvus collection."""

    name = "milvus"

    def __init__(self, uri: str, token: str | None, collection: str, dim: int) -> None:
        self._uri = uri
        self._token = token
        self.collection = collection
        self.dim = dim
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="milvus")
        self._client: MilvusClient | None = None

    @classmethod
    def embedded_uri(cls, data_dir: str) -> str:
        """The Milvus Lite path used when no Milvus URI is configured."""
        path = Path(data_dir) / "milvus.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(path)

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    @property
    def connected(self) -> bool:
        """Whether the collection is ready for use."""
        return self._client is not None

    def _connect(self) -> MilvusClient:
        # pymilvus pings idle connections every 10 s; gRPC servers with default policy (Milvus
        # Lite's among them) answer a few such pings with GOAWAY "too_many_pings", failing
        # the next call. Ping only while calls are in flight; a dead idle connection costs
        # one failed (fail-open) call, then the channel reconnects.
        kwargs: dict[str, Any] = {
            "uri": self._uri,
            "grpc_options": {"grpc.keepalive_permit_without_calls": False},
        }
        if self._token:
            kwargs["token"] = self._token
        client = MilvusClient(**kwargs)
        if not client.has_collection(self.collection):
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
            index.add_index("vector", index_type="AUTOINDEX", metric_type="IP")
            try:
                client.create_collection(self.collection, schema=schema, index_params=index)
            except MilvusException:
                # another node of the fleet creates the same collection at the same moment
                # (its index may not exist yet): wait for its work rather than fail
                self._wait_for_index(client)
        client.load_collection(self.collection)
        # The first search on a freshly loaded collection is slow; pay for it here, not on a
        # request with a deadline.
        client.search(self.collection, data=[[0.0] * self.dim], limit=1, filter='namespace == ""')
        return client

    def _wait_for_index(self, client: MilvusClient, timeout_s: float = 30.0) -> None:
        """Return once the collection has its vector index (created elsewhere), or re-raise."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if client.has_collection(self.collection) and client.list_indexes(self.collection):
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
        self._client = await self._run(self._connect)
        log.info("milvus_connected", collection=self.collection)

    def _require(self) -> MilvusClient:
        if self._client is None:
            raise ConnectionError("milvus is not connected")
        return self._client

    async def insert(self, rows: list[VectorRow]) -> None:
        """Insert or replace rows."""
        client = self._require()
        data = [
            {
                "id": row.entry_id,
                "namespace": row.namespace,
                "tenant": row.tenant,
                "model": row.model,
                "partition": row.partition,
                "tags": "," + ",".join(row.tags) + ",",
                "created_at": int(row.created_at * 1000),
                "expires_at": int(row.expires_at * 1000),
                "vector": row.vector.astype(np.float32).tolist(),
            }
            for row in rows
        ]
        await self._run(client.upsert, self.collection, data)

    async def search(
        self,
        *,
        namespace: str,
        tenant: str,
        partition: str,
        vector: npt.NDArray[np.float32],
        limit: int,
        max_age_s: float | None = None,
        with_vectors: bool = False,
    ) -> list[VectorHit]:
        """Nearest rows inside one partition that have not expired."""
        client = self._require()
        now = time.time()
        expression = (
            f"namespace == {_quote(namespace)} and tenant == {_quote(tenant)} "
            f"and partition == {_quote(partition)} and expires_at > {int(now * 1000)}"
        )
        if max_age_s is not None:
            expression += f" and created_at >= {int((now - max_age_s) * 1000)}"
        fields = ["namespace", "tenant", "partition", "created_at"]
        if with_vectors:
            fields.append("vector")
        result = await self._run(
            client.search,
            self.collection,
            data=[vector.astype(np.float32).tolist()],
            limit=limit,
            filter=expression,
            output_fields=fields,
            search_params={"metric_type": "IP"},
        )
        return [_hit(item) for item in (result[0] if result else [])]

    async def search_scope(
        self, scope: InvalidationScope, vector: npt.NDArray[np.float32], limit: int
    ) -> list[VectorHit]:
        """Nearest live rows of a scope across all its partitions (targeted invalidation)."""
        client = self._require()
        expression = f"{scope_filter(scope)} and expires_at > {int(time.time() * 1000)}"
        result = await self._run(
            client.search,
            self.collection,
            data=[vector.astype(np.float32).tolist()],
            limit=limit,
            filter=expression,
            output_fields=["namespace", "tenant", "partition", "created_at", "tags"],
            search_params={"metric_type": "IP"},
        )
        return [_hit(item) for item in (result[0] if result else [])]

    async def delete_scope(self, scope: InvalidationScope, *, dry_run: bool = False) -> int:
        """Delete (or count) the rows of a scope."""
        client = self._require()
        expression = scope_filter(scope)
        if dry_run:
            return await self._count(client, expression)
        before = await self._count(client, expression)
        await self._run(client.delete, self.collection, filter=expression)
        return before

    async def delete_ids(self, entry_ids: list[str], *, dry_run: bool = False) -> int:
        """Delete (or count) rows by entry id; return how many existed."""
        if not entry_ids:
            return 0
        client = self._require()
        found = 0
        for start in range(0, len(entry_ids), 1000):
            batch = entry_ids[start : start + 1000]
            found += await self._count(client, _ids_filter(batch))
            if not dry_run:
                await self._run(client.delete, self.collection, ids=batch)
        return found

    async def _count(self, client: MilvusClient, expression: str) -> int:
        rows = await self._run(
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
        await self._run(
            client.delete, self.collection, filter=f"expires_at <= {int(time.time() * 1000)}"
        )

    async def close(self) -> None:
        """Close the client and the thread pool."""
        client, self._client = self._client, None
        if client is not None:
            await self._run(client.close)
        self._executor.shutdown(wait=False, cancel_futures=True)
