"""Cachefleet cache node: the semantic cache data plane."""

__version__ = "0.1.0"
