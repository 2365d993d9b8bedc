"""kopf handlers: decorators only. Importing this package registers them with kopf."""

from cachefleet_operator.handlers import children, lifecycle, modelversion, semanticcache

__all__ = ["children", "lifecycle", "modelversion", "semanticcache"]
