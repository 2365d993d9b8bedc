"""Orchestration over the adapters: reconcilers, the work queue, stats collection, purge."""
