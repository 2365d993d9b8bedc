"""Benchmarks and training harnesses of the cache node: `python -m cachefleet_bench`.

Not part of the installed distribution: `make` targets and the tests put `bench/` on the
import path. The node never imports this package.
"""

from __future__ import annotations

from pathlib import Path

import cachefleet_node

__all__ = ["NODE_DATA"]

#: The node's shipped data (`cachefleet_node/core/data/`), which `lexicon` and
#: `train-verifier` write: in the checkout, the node is installed editable.
NODE_DATA = Path(cachefleet_node.__file__).resolve().parent / "core" / "data"
