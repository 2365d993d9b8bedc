"""Model-version lifecycle (issue 5), pure: which cache namespace each ModelVersion is served
from, and every step that moves a fleet there. One module per step:

- `modelversion`: the rule (`decide_namespace`: an answer identity — version, prompt-template
  hash, epoch — maps to a namespace under a policy) and the ModelVersion level
  (`plan_model_version`: its namespace, the identity last handled, the previous namespaces it
  retains, bounded by `retainPrevious`, dropped after `retainFor`);
- `state`: the part of a SemanticCache's status the lifecycle owns (`Lifecycle`), the result of
  a step (`Plan`) and the `RollingOver` condition summing them up;
- `rollover`: `plan_cache` (start, keep or cancel a rollover per referenced ModelVersion) and
  the switch of every node to the new namespace;
- `warmup`: replaying the most-hit prompts of the old namespace into the new one;
- `purge`: retiring namespaces, bounding their retention, purging them when due;
- `embedding`: the migration to another embedding model (prepare, re-embed, switch).

A SemanticCache's fleet serves each ModelVersion with the policy in force for that cache
(`spec.modelVersions[].policy` overrides):

```
identity changed ──► Rollover/Flush: RolloverProgress(Switching) ──switch + verify──► switched
                 │       └─ Rollover with warm: Warming (batches) ──► done
                 │       old namespace → retainedNamespaces (purgeAfter = now + retainFor;
                 │       Flush: now) ──► purge (retired_only) when due
                 ├─► Keep: same namespace, served identity updated
                 └─► back to a retained identity: Rollback (Switching, no warm, no purge)
embeddingModel changed ──► migration Preparing ──► Reembedding (cursor) ──► Switching ──► done
```

The services do the I/O between steps (node calls) and feed the answers back in. Every state is
written to status, so a restarted operator continues from the last recorded step, and every
step is idempotent (a switch to the namespace already active, a re-embed batch done twice, a
purge of a purged namespace all change nothing).
"""
