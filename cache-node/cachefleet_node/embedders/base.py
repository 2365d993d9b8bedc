"""The embedder contract, its errors, and the micro-batcher shared by local and remote embedders.

Every embedder maps texts to L2-normalised float32 rows in one vector space, named by
`space` (see `keyspace.embedding_space`). Vectors of different spaces never mix.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import numpy as np
import numpy.typing as npt
import structlog

__all__ = [
    "EmbedBudget",
    "Embedder",
    "EmbedderBusy",
    "EmbeddingError",
    "EmbeddingTimeout",
    "EmbeddingUnavailable",
    "MicroBatcher",
    "Vectors",
    "empty_vectors",
    "l2_normalize",
    "redact_url",
    "text_window",
]

Vectors = npt.NDArray[np.float32]

log = structlog.get_logger(__name__)


class EmbeddingError(Exception):
    """An embedder failed; the message is user-facing and never carries secrets or text."""


class EmbeddingUnavailable(EmbeddingError):
    """The embedder cannot start: model missing, hub offline, service unreachable."""


class EmbeddingTimeout(EmbeddingError):
    """The batch holding the call ran past its service deadline (the caller gave up on it), or
    the embedder is stuck: every worker in a batch past its deadline, nothing finished for a
    whole queue budget.

    Only a stuck embedder is a failure of the tier (`tier_failure`, fed to its breaker): a
    batch that is merely slow may still finish, and slowness under load is not an outage.
    """

    def __init__(self, message: str, *, tier_failure: bool = True) -> None:
        super().__init__(message)
        self.tier_failure = tier_failure


class EmbedderBusy(EmbeddingError):
    """The call was shed: the queue in front of a working embedder is longer than the call's
    queue budget, or its owner already holds its share of the queue. Not a failure of the
    tier: the queue is moving, the breaker ignores it."""


@dataclass(slots=True)
class EmbedBudget:
    """How long one embed call may take, and where its time went (filled in by the batcher).

    `service_s` is the service deadline per text: the batch that carries the call may run
    `service_s` x its number of texts, counted from the moment the batch starts, before the
    caller gives up (`EmbeddingTimeout`). `queue_s` bounds the wait before that batch starts:
    a call whose estimated wait is longer is shed at once, and a call still queued after
    `queue_s` is dropped (`EmbedderBusy`). Calls answered without the batcher (embedding
    cache hits) leave `queued_s` and `served_s` at None.

    `owner` (the tenant) names the queue share the call takes: the batcher serves owners in
    turn and bounds what each may queue. A shed call's `shed` says why: `queue` (the wait
    ahead of it is past `queue_s`) or `owner` (its owner's share of the queue is full).
    """

    service_s: float
    queue_s: float
    owner: str | None = None  # whose share of the queue the call takes (the tenant)
    queued_s: float | None = None  # seconds waited in the queue
    served_s: float | None = None  # seconds the batch that carried the call ran
    shed: str | None = None  # why the batcher shed the call: `queue` or `owner`


class Embedder(Protocol):
    """Maps texts to unit-length float32 vectors of one vector space."""

    model_id: str
    dim: int
    space: str

    async def embed(self, texts: Sequence[str], budget: EmbedBudget | None = None) -> Vectors:
        """Embed `texts`: shape (len(texts), dim), float32, rows L2-normalised.

        With a `budget`, the call honours its queue and service deadlines: `EmbedderBusy`
        when shed, `EmbeddingTimeout` when the embedder is hung (see `EmbedBudget`).
        """
        ...

    async def aclose(self) -> None:
        """Release threads, connections and pending calls."""
        ...


def l2_normalize(vectors: npt.NDArray[np.floating]) -> Vectors:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    rows = np.asarray(vectors, dtype=np.float32)
    norms = np.asarray(np.linalg.norm(rows, axis=1, keepdims=True), dtype=np.float32)
    return np.divide(rows, np.maximum(norms, np.float32(1e-12)), dtype=np.float32)


def empty_vectors(dim: int) -> Vectors:
    """The result of embedding no texts."""
    return np.zeros((0, dim), dtype=np.float32)


#: Characters kept per token of the model's window when a text is cut before tokenizing:
#: generous (prose and code run 3-5 characters a token), so a cut text still fills the window
#: and embeds exactly like the whole one; only a text that is mostly whitespace or words past
#: the tokenizer's word length is embedded from a prefix shorter than the window.
CHARS_PER_TOKEN = 16


def text_window(max_tokens: int) -> int:
    """Characters of a text that a model reading `max_tokens` tokens can use (the cut)."""
    return max_tokens * CHARS_PER_TOKEN


def redact_url(url: str) -> str:
    """`url` without user info or query, safe for logs and error messages."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "<invalid URL>"
    return str(parsed.copy_with(username=None, password=None, query=None, fragment=None))


@dataclass(eq=False)
class _Batch:
    size: int  # texts
    started_at: float
    allowance_s: float | None  # its callers give up after this long (None: no budget)
    stuck_after_s: float | None  # the embedder is stuck if it runs this long (None: never)


@dataclass(eq=False)
class _Pending:
    texts: list[str]
    future: asyncio.Future[Vectors]
    started: asyncio.Future[None]  # set when a worker takes it
    enqueued_at: float
    budget: EmbedBudget | None
    owner: str | None
    chars: int  # characters of its texts (after the cut)
    batch: _Batch | None = None
    served_s: float | None = None
    queued: bool = True  # still counted in the queue's length


#: Weight of the newest batch in the running estimate of service time per text.
_COST_WEIGHT = 0.3


class MicroBatcher:
    """Coalesces concurrent embed calls into batches of at most `max_batch` texts.

    `concurrency` workers each take whatever is queued as soon as they are free: there is no
    waiting window, so a lone call runs at once and batches form only under load. Callers that
    were cancelled while queued are skipped. `run` gets a non-empty list of texts and returns
    one row per text.

    Fairness: texts are cut to `max_text_chars` on arrival (what the model can read, see
    `text_window`), and a batch holds at most `max_batch_chars` characters (its first call always
    fits), so long texts make short batches and a batch's run time stays bounded. Each owner
    (`EmbedBudget.owner`, the tenant) has its own queue, and a batch takes one call (part) from
    each owner in turn, so a flooding owner delays the others by at most its turn in a batch.
    A call with a budget is shed (`EmbedderBusy`, `shed="owner"`) when its owner already has
    `owner_queue` texts queued (default: four batches); a call larger than that (a request with
    many texts) is admitted only onto an empty owner queue, and its parts still take turns.

    Queue time and service time are kept apart (see `EmbedBudget`): a call with a budget is
    shed (`EmbedderBusy`) when the wait it would have, estimated from the queue ahead and the
    measured service time per text, exceeds its queue budget, or when it is still queued after
    it; it times out (`EmbeddingTimeout`) only when its own batch runs past the service
    deadline, or when every worker is stuck in a batch past its deadline for a whole queue
    budget (the embedder is hung: queued and new calls then fail at once, as tier failures).
    """

    def __init__(
        self,
        run: Callable[[list[str]], Awaitable[Vectors]],
        max_batch: int,
        concurrency: int = 1,
        owner_queue: int | None = None,
        *,
        max_text_chars: int | None = None,
        max_batch_chars: int | None = None,
    ) -> None:
        if max_batch < 1 or concurrency < 1 or (owner_queue is not None and owner_queue < 1):
            raise ValueError("max_batch, concurrency and owner_queue must be at least 1")
        self._run = run
        self._max_batch = max_batch
        self._concurrency = concurrency
        self._owner_queue = owner_queue or 4 * max_batch
        self._max_text_chars = max_text_chars
        self._max_batch_chars = max_batch_chars
        self._queues: OrderedDict[str | None, deque[_Pending]] = OrderedDict()  # next turn first
        self._queued_texts = 0
        self._queued_by_owner: Counter[str | None] = Counter()
        self._running: set[_Batch] = set()
        self._cost_per_text_s: float | None = None  # running estimate; None until measured
        self._ready = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def queued_texts(self) -> int:
        """Texts waiting for a worker."""
        return self._queued_texts

    def queued_for(self, owner: str | None) -> int:
        """Texts of `owner` waiting for a worker."""
        return self._queued_by_owner[owner]

    @property
    def cost_per_text_s(self) -> float | None:
        """Recent service seconds per text (None before the first batch finished)."""
        return self._cost_per_text_s

    async def submit(self, texts: Sequence[str], budget: EmbedBudget | None = None) -> Vectors:
        """Embed `texts` (non-empty) through the shared batches; rows in input order."""
        if self._closed:
            raise EmbeddingError("embedder is closed")
        if self._max_text_chars is not None:
            texts = [text[: self._max_text_chars] for text in texts]
        loop = asyncio.get_running_loop()
        self._start_workers(loop)
        now = loop.time()
        owner = None if budget is None else budget.owner
        if budget is not None:
            if self._stalled(now):
                raise EmbeddingTimeout(self._stall_message(now))
            queued = self._queued_by_owner[owner]
            if queued and queued + len(texts) > self._owner_queue:
                budget.queued_s = 0.0
                budget.shed = "owner"
                raise EmbedderBusy(
                    f"embedder busy: {queued} texts of this tenant already queued "
                    f"(share {self._owner_queue})"
                )
            wait = self.estimated_wait_s(now, owner)
            if wait is not None and wait > budget.queue_s:
                budget.queued_s = 0.0
                budget.shed = "queue"
                raise EmbedderBusy(
                    f"embedder busy: about {wait * 1000:.0f} ms of queue ahead "
                    f"(budget {budget.queue_s * 1000:.0f} ms)"
                )
        chunks = [
            list(texts[at : at + self._max_batch]) for at in range(0, len(texts), self._max_batch)
        ]
        parts = [
            _Pending(
                chunk,
                loop.create_future(),
                loop.create_future(),
                now,
                budget,
                owner,
                sum(map(len, chunk)),
            )
            for chunk in chunks
        ]
        self._queues.setdefault(owner, deque()).extend(parts)
        self._queued_texts += len(texts)
        self._queued_by_owner[owner] += len(texts)
        self._ready.set()
        try:
            if budget is None:
                results = [await part.future for part in parts]
            else:
                results = [await self._await_within(part, budget) for part in parts]
        except BaseException:
            for part in parts:  # drop the queued rest; mark failures of the rest as seen
                self._unqueue(part)
                if not part.future.cancel() and not part.future.cancelled():
                    part.future.exception()
            raise
        return results[0] if len(results) == 1 else np.concatenate(results)

    def estimated_wait_s(self, now: float | None = None, owner: str | None = None) -> float | None:
        """How long a call of `owner` queued now would wait for its batch to start (None: not
        measured).

        Until a worker frees up (the running batches' expected end), then one full batch per
        `max_batch` texts ahead of it, shared among the workers. Owners take turns, so ahead of
        it are its owner's queued texts and, of every other owner, as many (plus its own turn).
        """
        cost = self._cost_per_text_s
        if cost is None:
            return None
        if now is None:
            now = asyncio.get_running_loop().time()
        free_in = 0.0
        if len(self._running) >= self._concurrency:
            free_in = min(
                max(0.0, batch.started_at + batch.size * cost - now) for batch in self._running
            )
        mine = self._queued_by_owner[owner]
        ahead = mine + sum(
            min(count, mine + 1) for other, count in self._queued_by_owner.items() if other != owner
        )
        full_batches = ahead // self._max_batch
        return free_in + full_batches * self._max_batch * cost / self._concurrency

    async def _await_within(self, part: _Pending, budget: EmbedBudget) -> Vectors:
        """The part's rows, within its queue budget and then its batch's service deadline."""
        loop = asyncio.get_running_loop()
        queue_deadline = part.enqueued_at + budget.queue_s
        while not part.started.done() and not part.future.done():
            now = loop.time()
            stalled = self._stalled(now)
            if stalled or now >= queue_deadline:
                budget.queued_s = now - part.enqueued_at
                self._drop(part)
                if stalled:
                    raise EmbeddingTimeout(self._stall_message(now))
                budget.shed = "queue"
                raise EmbedderBusy(
                    f"embedder busy: queued {budget.queued_s * 1000:.0f} ms "
                    f"(budget {budget.queue_s * 1000:.0f} ms)"
                )
            wake = queue_deadline
            stall_at = self._stall_time()
            if stall_at is not None:
                wake = min(wake, stall_at + 1e-3)
            either: list[asyncio.Future[Any]] = [part.started, part.future]
            await asyncio.wait(
                either, timeout=max(0.0, wake - now), return_when=asyncio.FIRST_COMPLETED
            )
        batch = part.batch
        if batch is None:  # failed while queued (the embedder closed)
            budget.queued_s = loop.time() - part.enqueued_at
            return part.future.result()
        budget.queued_s = batch.started_at - part.enqueued_at
        allowance = budget.service_s * batch.size
        remaining = batch.started_at + allowance - loop.time()
        if not part.future.done() and remaining > 0:
            await asyncio.wait([part.future], timeout=remaining)
        if not part.future.done():
            budget.served_s = loop.time() - batch.started_at
            part.future.cancel()
            raise EmbeddingTimeout(
                f"embedding did not finish within {allowance * 1000:.0f} ms "
                f"(a batch of {batch.size} texts)",
                tier_failure=False,  # slow so far; if it never finishes, that is a stall
            )
        budget.served_s = part.served_s
        return part.future.result()

    def _stalled(self, now: float) -> bool:
        """Every worker is stuck: in a batch past its service deadline that has run for at
        least a queue budget, so nothing finished meanwhile. A hung embedder, not a busy one."""
        stall_at = self._stall_time()
        return stall_at is not None and now > stall_at

    def _stall_time(self) -> float | None:
        """When every worker will be stuck if no running batch finishes (None: not while they
        run: a worker is free, or a batch carries no budget)."""
        if len(self._running) < self._concurrency:
            return None
        ends = []
        for batch in self._running:
            if batch.stuck_after_s is None:
                return None
            ends.append(batch.started_at + batch.stuck_after_s)
        return max(ends)

    def _stall_message(self, now: float) -> str:
        oldest = max(now - batch.started_at for batch in self._running)
        return f"embedder stuck: a batch has run for {oldest * 1000:.0f} ms"

    def _drop(self, part: _Pending) -> None:
        self._unqueue(part)
        part.future.cancel()

    def _unqueue(self, part: _Pending) -> None:
        if part.queued:
            part.queued = False
            self._queued_texts -= len(part.texts)
            self._queued_by_owner[part.owner] -= len(part.texts)
            if not self._queued_by_owner[part.owner]:
                del self._queued_by_owner[part.owner]

    async def aclose(self) -> None:
        """Stop the workers; queued and running calls fail with `EmbeddingError`."""
        self._closed = True
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()
        while self._queues:
            _, queue = self._queues.popitem(last=False)
            for item in queue:
                self._unqueue(item)
                _fail(item, EmbeddingError("embedder is closed"))

    def _start_workers(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is loop:
            return
        if self._loop is not None:
            raise RuntimeError("an embedder must be used from one event loop")
        self._loop = loop
        self._workers = [
            loop.create_task(self._work(), name=f"embed-batcher-{index}")
            for index in range(self._concurrency)
        ]

    def _take(self) -> list[_Pending]:
        """The next batch: one call from each owner in turn until it is full; an owner that
        was served moves to the back of the turn."""
        batch: list[_Pending] = []
        size = chars = 0
        char_limit = self._max_batch_chars
        while self._queues:
            owner, queue = next(iter(self._queues.items()))
            item = queue[0]
            taken = not item.future.done()  # else the caller gave up while queued: skip it
            if taken:
                if batch and (
                    size + len(item.texts) > self._max_batch
                    or (char_limit is not None and chars + item.chars > char_limit)
                ):
                    break
                batch.append(item)
                size += len(item.texts)
                chars += item.chars
            queue.popleft()
            self._unqueue(item)
            if not queue:
                del self._queues[owner]
            elif taken:
                self._queues.move_to_end(owner)
        return batch

    async def _work(self) -> None:
        while True:
            while not self._queues:
                self._ready.clear()
                await self._ready.wait()
            batch = self._take()
            if batch:
                await self._run_batch(batch)

    async def _run_batch(self, batch: list[_Pending]) -> None:
        texts = [text for item in batch for text in item.texts]
        loop = asyncio.get_running_loop()
        budgets = [item.budget for item in batch if item.budget is not None]
        allowance = stuck_after = None
        if budgets:
            allowance = min(budget.service_s for budget in budgets) * len(texts)
            stuck_after = max(allowance, min(budget.queue_s for budget in budgets))
        running = _Batch(len(texts), loop.time(), allowance, stuck_after)
        for item in batch:
            item.batch = running
            if not item.started.done():
                item.started.set_result(None)
        self._running.add(running)
        try:
            vectors = await self._run(texts)
        except asyncio.CancelledError:
            for item in batch:
                _fail(item, EmbeddingError("embedder is closed"))
            raise
        except EmbeddingError as exc:
            for item in batch:
                _fail(item, exc)
            return
        except Exception as exc:
            log.exception("embedding batch failed", batch_size=len(texts))
            error = EmbeddingError(f"embedding failed ({type(exc).__name__})")
            for item in batch:
                _fail(item, error)
            return
        finally:
            self._running.discard(running)
        served = loop.time() - running.started_at
        cost = served / len(texts)
        previous = self._cost_per_text_s
        self._cost_per_text_s = (
            cost if previous is None else previous + _COST_WEIGHT * (cost - previous)
        )
        offset = 0
        for item in batch:
            count = len(item.texts)
            item.served_s = served
            if not item.future.done():
                item.future.set_result(vectors[offset : offset + count])
            offset += count


def _fail(item: _Pending, error: EmbeddingError) -> None:
    if not item.future.done():
        item.future.set_exception(error)
