"""Text embedders of the cache node: local ONNX, remote TEI/OpenAI, and the embedding cache."""

from cachefleet_node.embedders.base import (
    EmbedBudget,
    Embedder,
    EmbedderBusy,
    EmbeddingError,
    EmbeddingTimeout,
    EmbeddingUnavailable,
    MicroBatcher,
    Vectors,
)
from cachefleet_node.embedders.cached import CachingEmbedder
from cachefleet_node.embedders.factory import build_embedder
from cachefleet_node.embedders.hub import download_model, resolve_model_dir
from cachefleet_node.embedders.local import OnnxEmbedder, OnnxModel
from cachefleet_node.embedders.remote import RemoteEmbedder, RemoteService

__all__ = [
    "CachingEmbedder",
    "EmbedBudget",
    "Embedder",
    "EmbedderBusy",
    "EmbeddingError",
    "EmbeddingTimeout",
    "EmbeddingUnavailable",
    "MicroBatcher",
    "OnnxEmbedder",
    "OnnxModel",
    "RemoteEmbedder",
    "RemoteService",
    "Vectors",
    "build_embedder",
    "download_model",
    "resolve_model_dir",
]
