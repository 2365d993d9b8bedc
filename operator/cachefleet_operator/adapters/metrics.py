"""The operator's Prometheus metrics (own registry, served on /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["OperatorMetrics"]

_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_ROLLOVER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class OperatorMetrics:
    """Counters, gauges and histograms named `cachefleet_operator_*`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.reconciles = Counter(
            "cachefleet_operator_reconciles",
            "Reconcile passes by kind and result (success, stalled, error).",
            ["kind", "result"],
            registry=r,
        )
        self.errors = Counter(
            "cachefleet_operator_reconcile_errors",
            "Reconcile passes that failed, by kind and error reason.",
            ["kind", "reason"],
            registry=r,
        )
        self.retries = Counter(
            "cachefleet_operator_reconcile_retries",
            "Passes retried with exponential backoff (2 s doubling to 5 min, jittered), by kind "
            "and reason (a switch not verified, nodes unreachable, an apiserver error, …).",
            ["kind", "reason"],
            registry=r,
        )
        self.duration = Histogram(
            "cachefleet_operator_reconcile_duration_seconds",
            "Time of one reconcile pass.",
            ["kind"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.caches = Gauge(
            "cachefleet_operator_managed_caches",
            "SemanticCaches the operator manages, by the status of their Ready condition.",
            ["ready"],
            registry=r,
        )
        self.status_writes = Counter(
            "cachefleet_operator_status_writes",
            "Status writes by kind and result (written, failed).",
            ["kind", "result"],
            registry=r,
        )
        self.children_applied = Counter(
            "cachefleet_operator_children_applied",
            "Server-side applies of children, by kind.",
            ["kind"],
            registry=r,
        )
        self.children_pruned = Counter(
            "cachefleet_operator_children_pruned",
            "Children deleted because the spec no longer renders them, by kind.",
            ["kind"],
            registry=r,
        )
        self.stats_collections = Counter(
            "cachefleet_operator_stats_collections",
            "Collections of node stats by result (ok, partial, unreachable, no_endpoints).",
            ["result"],
            registry=r,
        )
        self.events = Counter(
            "cachefleet_operator_events_posted",
            "Kubernetes Events posted, by type.",
            ["type"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "cachefleet_operator_queue_depth",
            "Objects due for a reconcile and waiting for a worker (the backlog).",
            registry=r,
        )
        self.watch_events = Counter(
            "cachefleet_operator_watch_events",
            "Watch events received, by resource.",
            ["resource"],
            registry=r,
        )
        self.last_watch_event = Gauge(
            "cachefleet_operator_last_watch_event_timestamp_seconds",
            "When the last watch event of a resource arrived (alert on a dead watch).",
            ["resource"],
            registry=r,
        )

        self.rollovers = Counter(
            "cachefleet_operator_rollovers",
            "Namespace switches completed on every node of a fleet, by policy (Rollover, "
            "Flush, Keep with an epoch bump; rollbacks count under their policy).",
            ["policy"],
            registry=r,
        )
        self.rollover_duration = Histogram(
            "cachefleet_operator_rollover_duration_seconds",
            "From the pass that saw an identity change to every node serving the new namespace.",
            ["policy"],
            buckets=_ROLLOVER_BUCKETS,
            registry=r,
        )
        self.purged_entries = Counter(
            "cachefleet_operator_purged_entries",
            "Entries removed from the exact tier by the operator, by reason (retention, flush, "
            "invalidation, deletion).",
            ["reason"],
            registry=r,
        )
        self.reembedded_entries = Counter(
            "cachefleet_operator_reembedded_entries",
            "Entries re-embedded into a new embedding space (embedding-model migrations).",
            registry=r,
        )
        self.reembed_progress = Gauge(
            "cachefleet_operator_reembed_progress_ratio",
            "Progress of a fleet's re-embedding, 0 to 1 (1 once switched).",
            ["namespace", "cache"],
            registry=r,
        )
        self.invalidations = Counter(
            "cachefleet_operator_invalidations",
            "CacheInvalidation runs by result (succeeded, failed, dry_run).",
            ["result"],
            registry=r,
        )

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)
