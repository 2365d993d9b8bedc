"""Names of everything the node stores in Redis and Milvus: a public contract.

The node writes under these names, and tools that read or clean a fleet's tiers import the
same functions; the layout must not change silently.
All parts that end up in names are validated identifiers or hex digests.

Redis (all keys carry a TTL, so `maxmemory-policy volatile-lru`/`allkeys-lru` both work):
- `{p}:e:{namespace}:{tenant}:{entry_id}` — one cache entry (payload stored once): a chat
  answer set, or the float32 vector of one `/v1/embeddings` input item (entry id
  `core.keys.embedding_entry_id`; no partition, no prompt, no request to replay).
- `{p}:idx:{namespace}` — sorted set of the namespace's entry keys scored by expiry time
  (entry counts and purges without a keyspace SCAN; TTL = longest entry TTL).
- `{p}:t:{namespace}:{tag}` — set of entry keys carrying a tag (TTL = longest entry TTL).
- `{p}:hits:{namespace}` — sorted set of the namespace's entry keys scored by served hits
  (fleet-wide; the fraction orders ties newest first; TTL = longest entry TTL).
- `{p}:namespaces` — sorted set of the cache namespaces holding entries, scored by their
  latest expiry (TTL = longest entry TTL).
- `{p}:emb:{space}:{sha256(text)}` — a cached embedding (float32 bytes).
- `{p}:lease:{namespace}:{tenant}:{entry_id}` — single flight across nodes: a random token
  held by the node calling the upstream for that exact key (SET NX, TTL = upstream deadline
  plus the write deadline; deleted by its holder only, token-checked).
- `{p}:ns:active` — hash: configured namespace name -> active cache namespace (switches).
- `{p}:embedding:active` — string: the embedding space that serves lookups (migrations).
- `{p}:stats:{namespace}` — hash of fleet-wide counters.
  These three are the fleet's state: their TTL (`FLEET_STATE_TTL_S`) is renewed on every
  write and by every running node every 10 minutes, so they outlive any outage of the fleet
  short of a month and vanish a month after the last node; a cache deleted with
  `deletionPolicy: Delete` removes them at once.
- `{p}:events` — pub/sub channel for invalidations and namespace switches.

Milvus: one collection per embedding space, `{collection_prefix}_{space}`, partition key
`namespace`; rows carry entry id, tenant, model, partition fingerprint and expiry.
"""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "FLEET_STATE_TTL_S",
    "active_namespaces_key",
    "embedding_active_key",
    "embedding_key",
    "embedding_space",
    "entry_key",
    "entry_pattern",
    "events_channel",
    "hit_score",
    "hits_key",
    "index_key",
    "lease_key",
    "milvus_collection",
    "namespaces_key",
    "stats_key",
    "tag_key",
    "text_digest",
]

#: Lifetime of the fleet's state keys (switches, counters) after their last renewal.
FLEET_STATE_TTL_S = 30 * 24 * 3600


def text_digest(text: str) -> str:
    """SHA-256 hex digest of a text (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def embedding_space(model_id: str, dim: int) -> str:
    """Identity of a vector space: readable model slug plus a short hash of (model, dim)."""
    slug = re.sub(r"[^a-z0-9]+", "_", model_id.lower().rsplit("/", 1)[-1]).strip("_")[:24]
    digest = hashlib.sha256(f"{model_id}\x00{dim}".encode()).hexdigest()[:8]
    return f"{slug}_{dim}_{digest}"


def entry_key(prefix: str, namespace: str, tenant: str, entry_id: str) -> str:
    """Redis key of one cache entry."""
    return f"{prefix}:e:{namespace}:{tenant}:{entry_id}"


def lease_key(prefix: str, namespace: str, tenant: str, entry_id: str) -> str:
    """Redis key of the lease of the node fetching an entry's answer upstream."""
    return f"{prefix}:lease:{namespace}:{tenant}:{entry_id}"


def entry_pattern(prefix: str, namespace: str, tenant: str | None = None) -> str:
    """SCAN pattern over the entries of a namespace, optionally of one tenant."""
    return f"{prefix}:e:{namespace}:{tenant or '*'}:*"


def index_key(prefix: str, namespace: str) -> str:
    """Redis sorted set of a namespace's entry keys, scored by expiry (UNIX seconds)."""
    return f"{prefix}:idx:{namespace}"


def tag_key(prefix: str, namespace: str, tag: str) -> str:
    """Redis set of the entry keys that carry `tag` in `namespace`."""
    return f"{prefix}:t:{namespace}:{tag}"


def hits_key(prefix: str, namespace: str) -> str:
    """Redis sorted set of a namespace's entry keys scored by fleet-wide served hits."""
    return f"{prefix}:hits:{namespace}"


def hit_score(hits: int, created_at: float) -> float:
    """Score of an entry in `hits_key`: its hits, plus a fraction that orders ties newest first.

    The fraction is `created_at / 1e10` (below 1 until the year 2286); read hits back with
    `int(score)`.
    """
    return hits + created_at / 1e10


def namespaces_key(prefix: str) -> str:
    """Redis sorted set of the cache namespaces holding entries, scored by latest expiry."""
    return f"{prefix}:namespaces"


def embedding_key(prefix: str, space: str, text: str) -> str:
    """Redis key of a cached embedding of `text` in vector space `space`."""
    return f"{prefix}:emb:{space}:{text_digest(text)}"


def active_namespaces_key(prefix: str) -> str:
    """Redis hash mapping configured namespace names to their active cache namespace."""
    return f"{prefix}:ns:active"


def embedding_active_key(prefix: str) -> str:
    """Redis string: the embedding space that serves lookups (set by an embedding switch)."""
    return f"{prefix}:embedding:active"


def stats_key(prefix: str, namespace: str) -> str:
    """Redis hash of fleet-wide counters of a namespace."""
    return f"{prefix}:stats:{namespace}"


def events_channel(prefix: str) -> str:
    """Redis pub/sub channel of coherence events."""
    return f"{prefix}:events"


def milvus_collection(collection_prefix: str, space: str) -> str:
    """Milvus collection holding the vectors of one embedding space."""
    return f"{collection_prefix}_{space}"
