"""Builds the configured embedder, wrapped in the embedding cache."""

from __future__ import annotations

import redis.asyncio

from cachefleet_node.config import EmbeddingConfig
from cachefleet_node.embedders.base import Embedder
from cachefleet_node.embedders.cached import CachingEmbedder
from cachefleet_node.embedders.local import OnnxEmbedder
from cachefleet_node.embedders.remote import RemoteEmbedder
from cachefleet_node.memory import MemoryBudget

__all__ = ["build_embedder"]


async def build_embedder(
    config: EmbeddingConfig,
    redis: redis.asyncio.Redis | None,
    key_prefix: str,
    redis_deadline_s: float,
    memory_budget: MemoryBudget,
) -> CachingEmbedder:
    """Start the local or remote embedder and put the LRU + Redis embedding cache in front
    (its LRU charged to `memory_budget`, the node's in-process budget).

    Raises `EmbeddingUnavailable` when the model or the service cannot be reached.
    """
    inner: Embedder
    if config.kind == "remote":
        inner = await RemoteEmbedder.from_config(config)
    else:
        inner = await OnnxEmbedder.from_config(config)
    return CachingEmbedder(
        inner,
        redis,
        key_prefix,
        ttl_s=config.cache_ttl_s,
        local_entries=config.local_cache_entries,
        redis_deadline_s=redis_deadline_s,
        memory_budget=memory_budget,
    )
