"""The embedded entry store of a node without Redis: a SQLite file. Calls run in a worker
thread."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from cachefleet_node.core.entry import CacheEntry, EntryFormatError
from cachefleet_node.core.scope import InvalidationScope
from cachefleet_node.tiers.entry_store.base import BATCH, EntryRef, live_entries

__all__ = ["LocalEntryStore"]


class LocalEntryStore:
    """Entries in a SQLite file (embedded single-node mode). Calls run in a worker thread."""

    name = "local"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS entries ("
                " namespace TEXT NOT NULL, tenant TEXT NOT NULL, entry_id TEXT NOT NULL,"
                " created REAL NOT NULL, expires REAL NOT NULL, tags TEXT NOT NULL,"
                " blob BLOB NOT NULL, PRIMARY KEY (namespace, tenant, entry_id))"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS by_expiry ON entries (namespace, expires)")
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(entries)")}
            if "hits" not in columns:  # files written before hit counts existed
                self._db.execute("ALTER TABLE entries ADD COLUMN hits INTEGER NOT NULL DEFAULT 0")
            self._db.execute(
                "CREATE INDEX IF NOT EXISTS by_hits ON entries (namespace, hits DESC, created DESC)"
            )

    def _get(self, namespace: str, tenant: str, entry_id: str) -> CacheEntry | None:
        with self._lock:
            row = self._db.execute(
                "SELECT blob FROM entries"
                " WHERE namespace=? AND tenant=? AND entry_id=? AND expires>?",
                (namespace, tenant, entry_id, time.time()),
            ).fetchone()
        if row is None:
            return None
        try:
            return CacheEntry.from_bytes(row[0])
        except EntryFormatError:
            return None

    async def get(self, namespace: str, tenant: str, entry_id: str) -> CacheEntry | None:
        return await asyncio.to_thread(self._get, namespace, tenant, entry_id)

    def _get_many(
        self, namespace: str, tenant: str, entry_ids: Sequence[str]
    ) -> list[CacheEntry | None]:
        found: dict[str, CacheEntry] = {}
        now = time.time()
        with self._lock:
            for start in range(0, len(entry_ids), BATCH):
                batch = list(entry_ids[start : start + BATCH])
                marks = ",".join("?" * len(batch))
                query = (  # placeholders only
                    "SELECT entry_id, blob FROM entries WHERE namespace=? AND tenant=?"  # noqa: S608
                    f" AND expires>? AND entry_id IN ({marks})"
                )
                rows = self._db.execute(query, (namespace, tenant, now, *batch)).fetchall()
                for entry_id, blob in rows:
                    with contextlib.suppress(EntryFormatError):
                        found[str(entry_id)] = CacheEntry.from_bytes(blob)
        return [found.get(entry_id) for entry_id in entry_ids]

    async def get_many(
        self, namespace: str, tenant: str, entry_ids: Sequence[str]
    ) -> list[CacheEntry | None]:
        if not entry_ids:
            return []
        return await asyncio.to_thread(self._get_many, namespace, tenant, list(entry_ids))

    def _put_many(self, entries: Sequence[CacheEntry]) -> None:
        rows = [
            (
                entry.namespace,
                entry.tenant,
                entry.entry_id,
                entry.created_at,
                entry.expires_at,
                "," + ",".join(entry.tags) + ",",
                entry.to_bytes(),
            )
            for entry in entries
        ]
        with self._lock:
            self._db.execute("BEGIN")  # one transaction for the batch (autocommit otherwise)
            try:
                # An upsert, not INSERT OR REPLACE: a replaced entry keeps its hit count.
                self._db.executemany(
                    "INSERT INTO entries"
                    " (namespace, tenant, entry_id, created, expires, tags, blob)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (namespace, tenant, entry_id) DO UPDATE SET"
                    " created=excluded.created, expires=excluded.expires, tags=excluded.tags,"
                    " blob=excluded.blob",
                    rows,
                )
                if random.random() < 0.01:
                    self._db.execute("DELETE FROM entries WHERE expires<=?", (time.time(),))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    async def put(self, entry: CacheEntry) -> None:
        await asyncio.to_thread(self._put_many, [entry])

    async def put_many(self, entries: Sequence[CacheEntry]) -> None:
        if entries:
            await asyncio.to_thread(self._put_many, list(entries))

    def put_later(self, entry: CacheEntry) -> bool:
        """Nothing queued: a local store whose breaker is open (a failing disk) is skipped, and
        the entry stays in the node's own tiers."""
        return False

    def _delete_scope(self, scope: InvalidationScope, dry_run: bool) -> int:
        where = ["namespace=?"]
        args: list[object] = [scope.namespace]
        if scope.tenant is not None:
            where.append("tenant=?")
            args.append(scope.tenant)
        if scope.tags:
            # instr, not LIKE: `_` (allowed in tag names) is a LIKE wildcard.
            where.append("(" + " OR ".join("instr(tags, ?) > 0" for _ in scope.tags) + ")")
            args.extend(f",{tag}," for tag in scope.tags)
        if scope.created_before is not None:
            where.append("created<?")
            args.append(scope.created_before)
        clause = " AND ".join(where)
        now = time.time()
        with self._lock:
            if dry_run:
                row = self._db.execute(
                    f"SELECT COUNT(*) FROM entries WHERE {clause} AND expires>?",  # noqa: S608
                    (*args, now),
                ).fetchone()
                return int(row[0])
            # Count only live entries (as the dry run and the Redis store do); purge the rest.
            self._db.execute(
                f"DELETE FROM entries WHERE {clause} AND expires<=?",  # noqa: S608
                (*args, now),
            )
            cursor = self._db.execute(f"DELETE FROM entries WHERE {clause}", args)  # noqa: S608
            return int(cursor.rowcount)

    async def delete_scope(self, scope: InvalidationScope, *, dry_run: bool = False) -> int:
        return await asyncio.to_thread(self._delete_scope, scope, dry_run)

    def _count(self, namespace: str) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM entries WHERE namespace=? AND expires>?",
                (namespace, time.time()),
            ).fetchone()
        return int(row[0])

    async def count(self, namespace: str) -> int:
        return await asyncio.to_thread(self._count, namespace)

    def _namespaces(self) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT namespace FROM entries WHERE expires>? ORDER BY namespace",
                (time.time(),),
            ).fetchall()
        return [str(row[0]) for row in rows]

    async def namespaces(self) -> list[str]:
        return await asyncio.to_thread(self._namespaces)

    def _add_hits(self, namespace: str, hits: Mapping[EntryRef, int]) -> None:
        with self._lock:
            self._db.executemany(
                "UPDATE entries SET hits=hits+? WHERE namespace=? AND tenant=? AND entry_id=?",
                [
                    (count, namespace, tenant, entry_id)
                    for (tenant, entry_id), count in hits.items()
                ],
            )

    async def add_hits(
        self, namespace: str, hits: Mapping[EntryRef, int], keep_until: float
    ) -> None:
        if hits:
            await asyncio.to_thread(self._add_hits, namespace, dict(hits))

    def _top_entries(self, namespace: str, offset: int, limit: int) -> list[CacheEntry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT blob FROM entries WHERE namespace=?"
                " ORDER BY hits DESC, created DESC, tenant, entry_id LIMIT ? OFFSET ?",
                (namespace, limit, offset),
            ).fetchall()
        return live_entries((row[0] for row in rows), time.time())

    async def top_entries(self, namespace: str, offset: int, limit: int) -> list[CacheEntry]:
        if limit <= 0:
            return []
        return await asyncio.to_thread(self._top_entries, namespace, offset, limit)

    def _ranked_count(self, namespace: str) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM entries WHERE namespace=?", (namespace,)
            ).fetchone()
        return int(row[0])

    async def ranked_count(self, namespace: str) -> int:
        return await asyncio.to_thread(self._ranked_count, namespace)

    def _scan_entries(
        self, namespace: str, cursor: str, limit: int
    ) -> tuple[list[CacheEntry], str]:
        # Primary-key order from the last (tenant, entry id) seen: stable and restartable.
        after = ("", "")
        if cursor:
            tenant, sep, entry_id = cursor.partition(":")
            if not sep or not entry_id:
                raise ValueError("not a cursor of the local entry store")
            after = (tenant, entry_id)
        with self._lock:
            rows = self._db.execute(
                "SELECT tenant, entry_id, blob FROM entries"
                " WHERE namespace=? AND (tenant, entry_id) > (?, ?)"
                " ORDER BY tenant, entry_id LIMIT ?",
                (namespace, *after, limit),
            ).fetchall()
        next_cursor = f"{rows[-1][0]}:{rows[-1][1]}" if len(rows) == limit else ""
        return live_entries((row[2] for row in rows), time.time()), next_cursor

    async def scan_entries(
        self, namespace: str, cursor: str, limit: int
    ) -> tuple[list[CacheEntry], str]:
        return await asyncio.to_thread(self._scan_entries, namespace, cursor, limit)

    def _delete_entries(self, namespace: str, refs: list[EntryRef], dry_run: bool) -> int:
        now = time.time()
        removed = 0
        with self._lock:
            for tenant, entry_id in refs:
                args = (namespace, tenant, entry_id)
                if dry_run:
                    row = self._db.execute(
                        "SELECT COUNT(*) FROM entries"
                        " WHERE namespace=? AND tenant=? AND entry_id=? AND expires>?",
                        (*args, now),
                    ).fetchone()
                    removed += int(row[0])
                    continue
                cursor = self._db.execute(
                    "DELETE FROM entries WHERE namespace=? AND tenant=? AND entry_id=?", args
                )
                removed += int(cursor.rowcount)
        return removed

    async def delete_entries(
        self, namespace: str, refs: Iterable[EntryRef], *, dry_run: bool = False
    ) -> int:
        return await asyncio.to_thread(self._delete_entries, namespace, list(refs), dry_run)

    async def close(self) -> None:
        with self._lock:
            self._db.close()
