"""Cachefleet operator: CRD models, pure renderers and (later) the kopf handlers."""
