"""Background refill of a node's in-process semantic tier from its durable semantic tier.

A node that starts empty, or whose L1 was emptied (a coherence reset on (re)subscription, an
embedding switch), serves semantic lookups from the durable tier at once and reads the
stored vectors back into its L1 meanwhile: newest first, until the memory budget (or
`l1.semantic_max_entries`) is full. Refilled vectors are the least recently used items of
the budget until a lookup uses one, so they never push out anything in use. A refill that
sees its index cleared starts again, so a reset never leaves a half-filled L1 behind.
Progress goes to the log: `l1_refill_started`, `l1_refill_progress` (every few seconds),
`l1_refill_done`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import structlog

from cachefleet_node.engine import CacheEngine
from cachefleet_node.tiers.l1_semantic import SemanticIndex, VectorMeta
from cachefleet_node.tiers.milvus_store import MilvusVectorStore, VectorPage

__all__ = ["RefillResult", "refill", "refill_forever"]

log = structlog.get_logger(__name__)

PROGRESS_LOG_S = 2.0
IDLE_S = 1.0  # how often a refill waits for a cleared L1 or a reachable durable tier
RETRY_S = 5.0  # pause after a failed refill
YIELD_ROWS = 512  # rows added between two turns of the event loop (a few ms)


@dataclass(frozen=True, slots=True)
class RefillResult:
    """One complete refill."""

    rows: int  # vectors added to the L1
    read: int  # live rows read from the durable tier
    seconds: float
    full: bool  # stopped by the budget or the bound before the oldest row

    @property
    def rows_per_s(self) -> float:
        """Rows read per second."""
        return self.read / self.seconds if self.seconds > 0 else 0.0


async def refill(index: SemanticIndex, vectors: MilvusVectorStore) -> RefillResult | None:
    """Read `vectors`' live rows into `index`, newest first, until it is full; None when
    the index was cleared (or closed) meanwhile. Raises what the durable tier raises."""
    generation, started = index.generation, time.monotonic()
    added = read = 0
    full = False
    last_log = started
    log.info("l1_refill_started", collection=vectors.collection, held=len(index))
    async with contextlib.aclosing(vectors.scan_recent(time.time())) as pages:
        async for page in pages:
            live = np.flatnonzero(page.expires_at > time.time())
            for start in range(0, len(live), YIELD_ROWS):
                if index.generation != generation:
                    log.info("l1_refill_restarted", reason="l1-cleared", rows=added)
                    return None
                rows = live[start : start + YIELD_ROWS]
                held = len(index)
                full = not index.add_cold(
                    [page.partitions[i] for i in rows.tolist()],
                    page.vectors[rows],
                    _metas(page, rows),
                )
                added += len(index) - held
                if full:
                    break
                await asyncio.sleep(0)
            read += len(page)
            if full:
                break
            if time.monotonic() - last_log >= PROGRESS_LOG_S:
                last_log = time.monotonic()
                log.info(
                    "l1_refill_progress",
                    rows=added,
                    read=read,
                    rows_per_s=round(read / (last_log - started)),
                )
    if index.generation != generation:  # cleared after the last rows were added
        log.info("l1_refill_restarted", reason="l1-cleared", rows=added)
        return None
    seconds = time.monotonic() - started
    result = RefillResult(rows=added, read=read, seconds=seconds, full=full)
    log.info(
        "l1_refill_done",
        collection=vectors.collection,
        rows=added,
        read=read,
        seconds=round(seconds, 2),
        rows_per_s=round(result.rows_per_s),
        full=full,
        held=len(index),
    )
    return result


async def refill_forever(engine: CacheEngine) -> None:
    """Refill the L1 semantic index of the serving space whenever it is new or was cleared
    (until cancelled)."""
    refilled: tuple[SemanticIndex, int] | None = None  # the index and generation filled
    while True:
        index, vectors = engine.l1_semantic, engine.spaces.active.vectors
        if (
            refilled == (index, index.generation)
            or vectors is None
            or not vectors.connected
            or index.max_entries == 0
        ):
            await asyncio.sleep(IDLE_S)
            continue
        try:
            result = await refill(index, vectors)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("l1_refill_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            await asyncio.sleep(RETRY_S)
            continue
        if result is not None:  # None: cleared meanwhile, including after its last rows
            refilled = (index, index.generation)


def _metas(page: VectorPage, rows: npt.NDArray[np.intp]) -> list[VectorMeta]:
    return [
        VectorMeta(
            entry_id=page.entry_ids[i],
            namespace=page.namespaces[i],
            tenant=page.tenants[i],
            prompt=None,
            created_at=created_at,
            expires_at=expires_at,
            tags=page.tags[i],
        )
        for i, created_at, expires_at in zip(
            rows.tolist(),
            page.created_at[rows].tolist(),
            page.expires_at[rows].tolist(),
            strict=True,
        )
    ]
