"""The peers' default decision rules, on the same vectors as Cachefleet.

- **GPTCache** (`gptcache` 0.1.44 from PyPI, its documented similar-search setup): SQLite
  scalar store + faiss `IDMap,Flat` L2 index (top-1) + `SearchDistanceEvaluation` +
  `Config(similarity_threshold=0.8)`. Its data manager keeps only 1,000 entries by default
  (LRU eviction); that is a capacity setting, not the decision rule, so the harness sizes it
  to hold the whole warm set. The adapter hits when the evaluation rank
  `4 - distance` reaches `(max - min) * similarity_threshold = 3.2`; faiss returns squared L2,
  so on unit vectors this is cosine >= 0.6. The package runs for real here; without it the
  rule is re-stated and the result says so.
- **RedisVL** `SemanticCache` default: the nearest entry (num_results=1) hits when its
  cosine *distance* `1 - cos` is at most `distance_threshold=0.1`. Re-stated (needs a Redis
  with the query engine, which this stack does not run).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cachefleet_node.embedders.base import Vectors

__all__ = [
    "GPTCACHE_DEFAULT_THRESHOLD",
    "REDISVL_DEFAULT_DISTANCE",
    "GptCachePeer",
    "top1_cosine",
]

GPTCACHE_DEFAULT_THRESHOLD = 0.8
GPTCACHE_MAX_DISTANCE = 4.0
REDISVL_DEFAULT_DISTANCE = 0.1
GPTCACHE_MIN_CAPACITY = 1000  # GPTCache's default `max_size`


def top1_cosine(queries: Vectors, stored: Vectors) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest stored row per query: (index, cosine similarity)."""
    best_index = np.zeros(len(queries), dtype=np.int64)
    best_score = np.full(len(queries), -1.0, dtype=np.float32)
    for start in range(0, len(queries), 1024):
        scores = queries[start : start + 1024] @ stored.T
        index = scores.argmax(axis=1)
        best_index[start : start + 1024] = index
        best_score[start : start + 1024] = scores[np.arange(len(index)), index]
    return best_index, best_score


class GptCachePeer:
    """A GPTCache instance (the real package when installed) over precomputed vectors."""

    def __init__(self, texts: Sequence[str], vectors: Vectors) -> None:
        self._rows = {text: i for i, text in enumerate(texts)}
        self._vectors = vectors
        self.implementation = "re-statement"
        self.version = ""
        self._cache: Any = None
        try:
            import gptcache

            self.version = str(getattr(gptcache, "__version__", ""))
            self.implementation = f"gptcache {self.version} (PyPI)"
        except ImportError:
            return
        self._cache = self._new_cache()

    def _embed(self, text: str, **_: Any) -> Vectors:
        row: Vectors = self._vectors[self._rows[text]]
        return row

    def _new_cache(self) -> Any:
        from gptcache import Cache, Config
        from gptcache.manager import CacheBase, VectorBase, get_data_manager
        from gptcache.processor.pre import get_prompt
        from gptcache.similarity_evaluation.distance import SearchDistanceEvaluation

        folder = Path(tempfile.mkdtemp(prefix="cachefleet-gptcache-"))
        # registered before GPTCache's own exit hook, so it runs after it (LIFO)
        atexit.register(shutil.rmtree, folder, True)
        manager = get_data_manager(
            CacheBase("sqlite", sql_url=f"sqlite:///{folder / 'gptcache.db'}"),
            VectorBase(
                "faiss",
                dimension=int(self._vectors.shape[1]),
                index_path=str(folder / "faiss.index"),
            ),
            max_size=max(GPTCACHE_MIN_CAPACITY, 2 * len(self._rows)),
        )
        cache = Cache()
        cache.init(
            pre_embedding_func=get_prompt,
            embedding_func=self._embed,
            data_manager=manager,
            similarity_evaluation=SearchDistanceEvaluation(),
            config=Config(similarity_threshold=GPTCACHE_DEFAULT_THRESHOLD),
        )
        return cache

    def reset(self) -> None:
        """An empty cache (stream mode)."""
        if self._cache is not None:
            self._cache = self._new_cache()

    def warm(self, prompts: Sequence[str], answers: Sequence[str]) -> None:
        """Store prompts with their answers (GPTCache's bulk `import_data`)."""
        if self._cache is not None:
            self._cache.import_data(list(prompts), list(answers))

    def put(self, prompt: str, answer: str) -> None:
        """Store one answer."""
        if self._cache is not None:
            from gptcache.adapter.api import put

            put(prompt, answer, cache_obj=self._cache)

    def get(self, prompt: str) -> str | None:
        """GPTCache's own `get` at its default threshold."""
        from gptcache.adapter.api import get

        result = get(prompt, cache_obj=self._cache)
        return None if result is None else str(result)

    def rank(self, prompt: str) -> tuple[float, str] | None:
        """Top-1 evaluation rank in [0, 4] and the stored answer, via the package's parts."""
        cache = self._cache
        hits = cache.data_manager.search(self._embed(prompt), top_k=1)
        if not hits:
            return None
        data = cache.data_manager.get_scalar_data(hits[0])
        if data is None:
            return None
        rank = cache.similarity_evaluation.evaluation({}, {"search_result": hits[0]})
        return float(rank), str(data.answers[0].answer)

    @property
    def real(self) -> bool:
        """Whether the package itself runs (else the harness re-states the rule)."""
        return self._cache is not None

    @staticmethod
    def threshold_for_cosine(cosine: float) -> float:
        """GPTCache `similarity_threshold` equivalent to a cosine bound on unit vectors."""
        return (GPTCACHE_MAX_DISTANCE - (2 - 2 * cosine)) / GPTCACHE_MAX_DISTANCE
