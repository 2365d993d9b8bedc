"""The model-version lifecycle of one fleet, one bounded step per pass (issue 5).

The pure state machine is `domain.lifecycle` (a module per step); this package runs its steps
against the fleet's nodes, a module per step as well:

```
runner     plan_cache (pure), then each step below in this order, on a `FleetPass`
switching  Switching: POST /namespaces/switch ─► poll GET /namespaces on every node until all
           report the new namespace (else: hold the node ConfigMap, retry) ─► switched (pure)
warmup     Warming: one POST /warm batch (≈3 s at the rate) ─► warmed (pure)
switching  converge: a node serving a ModelVersion from another namespace (a stale persisted
           switch) is switched back
purge      due purges: POST /invalidate {retired_only} on every node ─► purged
embedding  Preparing (GET: every node loaded the next model live from its ConfigMap, no
           restart) ─► Reembedding (one POST /reembed batch) ─► Switching (POST
           /embedding/switch, verified by the switching loop) ─► done
```

Each step is a small service built from the shared `ServiceContext`; it reads the pass's
`FleetPass` (cache, node URLs, admin key, node answers so far) and records into its
`LifecycleStep`. The caller writes the resulting lifecycle into status; a crash between two
steps repeats the last one, which is idempotent. The node ConfigMap follows the lifecycle
(`FleetView`) and never names a namespace before every node reported it active.
"""

from cachefleet_operator.services.lifecycle.runner import LifecycleRunner

__all__ = ["LifecycleRunner"]
