"""kopf handlers: decorators only. Importing this package registers them with kopf."""

from cachefleet_operator.handlers import (
    cacheinvalidation,
    children,
    lifecycle,
    modelversion,
    semanticcache,
)

__all__ = ["cacheinvalidation", "children", "lifecycle", "modelversion", "semanticcache"]
