"""Cachefleet cache node: the semantic cache data plane."""

from cachefleet_contract import __version__

__all__ = ["__version__"]
