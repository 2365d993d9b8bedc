"""Tokens and dollars a hit saves (pure)."""

from __future__ import annotations

from collections.abc import Mapping

from cachefleet_node.config import ModelPrice

__all__ = ["price_for", "saved_dollars"]


def price_for(model: str, prices: Mapping[str, ModelPrice]) -> ModelPrice | None:
    """Price of a model: exact name, else the longest configured prefix (dated snapshots)."""
    if model in prices:
        return prices[model]
    matches = [name for name in prices if model.startswith(name)]
    return prices[max(matches, key=len)] if matches else None


def saved_dollars(
    model: str, prompt_tokens: int, completion_tokens: int, prices: Mapping[str, ModelPrice]
) -> float:
    """Upstream cost of the tokens a hit did not spend; 0 for unpriced models."""
    price = price_for(model, prices)
    if price is None:
        return 0.0
    return (prompt_tokens * price.input_per_mtok + completion_tokens * price.output_per_mtok) / 1e6
