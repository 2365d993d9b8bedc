"""The Milvus tier against a real Milvus server: nodes of one fleet starting together."""

from __future__ import annotations

import asyncio
import uuid

from cachefleet_node.tiers.milvus_store import MilvusVectorStore
from node_harness import MilvusServer


async def test_nodes_creating_one_collection_at_once_all_connect(
    milvus_server: MilvusServer,
) -> None:
    for _ in range(3):
        collection = "race" + uuid.uuid4().hex[:12]
        stores = [MilvusVectorStore(milvus_server.uri, None, collection, 8) for _ in range(3)]
        try:
            # every node finds no collection and creates it: none may give up
            await asyncio.wait_for(asyncio.gather(*(s.connect() for s in stores)), 60)
            assert all(store.connected for store in stores)
        finally:
            for store in stores:
                await store.close()
