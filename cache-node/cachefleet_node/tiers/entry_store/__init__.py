"""L2 exact tier: where entries (payloads) are stored once and shared.

`RedisEntryStore` (`redis_store.py`) is the fleet store (all nodes share it).
`LocalEntryStore` (`local_store.py`) is the embedded default for a single node without Redis:
a SQLite file beside the Milvus Lite file, so the node keeps its answers across restarts with
no extra service. Both implement `EntryStore` (`base.py`).
"""

from cachefleet_node.tiers.entry_store.base import EntryRef, EntryStore
from cachefleet_node.tiers.entry_store.local_store import LocalEntryStore
from cachefleet_node.tiers.entry_store.redis_store import RedisEntryStore

__all__ = ["EntryRef", "EntryStore", "LocalEntryStore", "RedisEntryStore"]
