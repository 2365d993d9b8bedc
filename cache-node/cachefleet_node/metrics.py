"""Prometheus metrics of a cache node (one registry per node instance)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric

__all__ = ["NodeMetrics"]

_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
_SIMILARITY_BUCKETS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.88, 0.9, 0.92, 0.94, 0.96, 0.98, 0.99, 1.0)
_SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8, 0.9, 0.95, 1.0)
_JUDGE_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01)


class _ScrapeHooks:
    """A collector that exports nothing and runs its hooks when collected. Registered before
    every metric of a fresh registry (which collects in registration order), it refreshes
    gauges of state that changes without a write (evictions, expiry, reads) at each scrape."""

    def __init__(self) -> None:
        self.hooks: list[Callable[[], None]] = []

    def collect(self) -> Iterator[Metric]:
        for hook in self.hooks:
            hook()
        return iter(())


class NodeMetrics:
    """All metrics the node exports; names carry their units."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._scrape_hooks = _ScrapeHooks()
        r.register(self._scrape_hooks)  # first: it runs before the metrics are read
        self.requests = Counter(
            "cachefleet_requests_total",
            "Requests by namespace and cache result (hit-exact, hit-semantic, miss, bypass; "
            "partial: an embeddings batch answered in part from cache).",
            ["namespace", "result", "tier"],
            registry=r,
        )
        self.request_latency = Histogram(
            "cachefleet_request_duration_seconds",
            "Time from request to response head (hits) or end of upstream call (misses).",
            ["result"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tier_latency = Histogram(
            "cachefleet_tier_duration_seconds",
            "Latency of one tier operation (embed, l1_ann, redis, milvus, store_local, upstream).",
            ["tier", "operation"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.similarity = Histogram(
            "cachefleet_semantic_similarity_ratio",
            "Cosine similarity of the best semantic candidate, by outcome (served, rejected).",
            ["outcome"],
            buckets=_SIMILARITY_BUCKETS,
            registry=r,
        )
        self.guard_rejections = Counter(
            "cachefleet_guard_rejections_total",
            "Semantic candidates within reach of the threshold that a guard or the verifier "
            "refused, or whose text differs from the request's past the embedder's window, by "
            "reason.",
            ["reason"],
            registry=r,
        )
        self.coalesced = Counter(
            "cachefleet_coalesced_requests_total",
            "Misses answered from an identical request's upstream call in flight (single flight).",
            registry=r,
        )
        self.fleet_leases = Counter(
            "cachefleet_fleet_leases_total",
            "Redis leases asked for on a miss (single flight across nodes), by outcome.",
            ["outcome"],
            registry=r,
        )
        self.fleet_wait = Histogram(
            "cachefleet_fleet_lease_wait_seconds",
            "Time a miss waited on another node's lease (single flight across nodes), by outcome.",
            ["outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.key_checks = Counter(
            "cachefleet_key_checks_total",
            "Credentials checked before serving a hit without tenant keys, by outcome "
            "(accepted, verified, rejected, undecided).",
            ["outcome"],
            registry=r,
        )
        self.verifier_score = Histogram(
            "cachefleet_verifier_score_ratio",
            "Verifier scores of semantic candidates, by outcome (accepted, refused).",
            ["outcome"],
            buckets=_SCORE_BUCKETS,
            registry=r,
        )
        self.judge_latency = Histogram(
            "cachefleet_semantic_judge_duration_seconds",
            "Time to judge one semantic candidate (guards and verifier).",
            buckets=_JUDGE_BUCKETS,
            registry=r,
        )
        self.shadow_hits = Counter(
            "cachefleet_shadow_hits_total",
            "Semantic hits computed but not served (shadow mode), by namespace.",
            ["namespace"],
            registry=r,
        )
        self.shadow_similarity = Histogram(
            "cachefleet_shadow_similarity_ratio",
            "Cosine similarity of shadow-mode would-be hits, by namespace.",
            ["namespace"],
            buckets=_SIMILARITY_BUCKETS,
            registry=r,
        )
        self.verifications = Counter(
            "cachefleet_verifications_total",
            "Would-be hits checked against the upstream's answer, by verdict (right, wrong).",
            ["namespace", "verdict"],
            registry=r,
        )
        self.calibrated_threshold = Gauge(
            "cachefleet_calibrated_threshold_ratio",
            "Similarity threshold calibrated from verified samples for the target error rate.",
            ["namespace"],
            registry=r,
        )
        self.estimated_false_hit = Gauge(
            "cachefleet_estimated_false_hit_ratio",
            "Estimated share of semantic hits that are wrong at the calibrated threshold.",
            ["namespace"],
            registry=r,
        )
        self.estimated_error = Gauge(
            "cachefleet_estimated_error_ratio",
            "Estimated wrong answers per request at the calibrated threshold.",
            ["namespace"],
            registry=r,
        )
        self.bypasses = Counter(
            "cachefleet_bypass_total",
            "Requests or tier calls that skipped the cache, by reason.",
            ["reason"],
            registry=r,
        )
        self.tier_errors = Counter(
            "cachefleet_tier_errors_total",
            "Tier failures (timeout, error, breaker-open), by tier.",
            ["tier", "kind"],
            registry=r,
        )
        self.embed_queue = Histogram(
            "cachefleet_embed_queue_duration_seconds",
            "Time an embed call waited for its batch to start (shed calls: until shed).",
            ["tier"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.embed_service = Histogram(
            "cachefleet_embed_service_duration_seconds",
            "Run time of the batch that carried an embed call (per call; queue time excluded).",
            ["tier"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.embed_shed = Counter(
            "cachefleet_embed_shed_total",
            "Embed calls shed (embedder-busy; not failures, breakers ignore them), by reason: "
            "the queue ahead exceeded the queue budget, or the tenant's share of the queue was "
            "full.",
            ["tier", "reason"],
            registry=r,
        )
        self.entries = Gauge(
            "cachefleet_entries", "Entries held by an in-process tier.", ["tier"], registry=r
        )
        self.l1_bytes = Gauge(
            "cachefleet_l1_bytes",
            "Bytes held by an in-process tier (charged to the shared L1 budget).",
            ["tier"],
            registry=r,
        )
        self.l1_budget_bytes = Gauge(
            "cachefleet_l1_budget_bytes",
            "Byte budget of all in-process tiers together (config, else a share of the "
            "container's memory limit).",
            registry=r,
        )
        self.evictions = Counter(
            "cachefleet_evictions_total",
            "Entries evicted from an in-process tier.",
            ["tier"],
            registry=r,
        )
        self.writes = Counter(
            "cachefleet_writes_total",
            "Cache writes by outcome (stored, skipped reason, dropped).",
            ["outcome"],
            registry=r,
        )
        self.shared_write_retries = Counter(
            "cachefleet_shared_write_retries_total",
            "Writes into a shared tier that failed (tier down, paused or failing over): sent "
            "again (`retried`) or given up (`abandoned`), in items.",
            ["tier", "outcome"],
            registry=r,
        )
        self.tokens_saved = Counter(
            "cachefleet_tokens_saved_total",
            "Upstream tokens not spent thanks to hits, by kind (prompt, completion).",
            ["namespace", "kind"],
            registry=r,
        )
        self.cost_saved = Counter(
            "cachefleet_cost_saved_dollars_total",
            "Estimated upstream spend avoided by hits, in US dollars (price table in config).",
            ["namespace"],
            registry=r,
        )
        self.invalidated = Counter(
            "cachefleet_invalidated_entries_total",
            "Entries removed by invalidations, by tier.",
            ["tier"],
            registry=r,
        )
        self.coherence_events = Counter(
            "cachefleet_coherence_events_total",
            "Coherence events applied from the bus, by type.",
            ["type"],
            registry=r,
        )
        self.warm_requests = Counter(
            "cachefleet_warm_requests_total",
            "Entries a warm-up batch looked at, by outcome (stored, skipped, failed).",
            ["outcome"],
            registry=r,
        )
        self.reembedded = Counter(
            "cachefleet_reembedded_entries_total",
            "Stored prompts embedded into the next embedding space by re-embedding batches.",
            registry=r,
        )
        self.embedding_switches = Counter(
            "cachefleet_embedding_switches_total",
            "Times this node changed the embedding space that serves lookups.",
            registry=r,
        )
        self.upstream_responses = Counter(
            "cachefleet_upstream_responses_total",
            "Upstream responses by HTTP status class.",
            ["status_class"],
            registry=r,
        )

    def on_scrape(self, hook: Callable[[], None]) -> None:
        """Run `hook` before each collection of the registry (collect it on the event loop's
        thread: hooks read the in-process tiers)."""
        self._scrape_hooks.hooks.append(hook)
