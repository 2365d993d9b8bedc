"""Which configured namespace serves a model, and which cache namespace is active (pure)."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping

from cachefleet_node.config import NamespaceConfig

__all__ = ["NamespaceRouter"]


class NamespaceRouter:
    """Maps model names to configured namespaces; tracks switched (active) cache namespaces.

    A configured namespace `name` stores its entries under its `cache_namespace` (default:
    `name`) until a switch (model-version rollover) points it at another cache namespace.
    """

    def __init__(self, namespaces: list[NamespaceConfig]) -> None:
        self._namespaces = list(namespaces)
        self._by_name = {ns.name: ns for ns in namespaces}
        self._active: dict[str, str] = {}

    @property
    def namespaces(self) -> list[NamespaceConfig]:
        """Configured namespaces, in match order."""
        return list(self._namespaces)

    def get(self, name: str) -> NamespaceConfig | None:
        """A configured namespace by name."""
        return self._by_name.get(name)

    def resolve(self, model: str) -> NamespaceConfig | None:
        """First configured namespace whose model patterns match, or None."""
        for ns in self._namespaces:
            if any(fnmatch.fnmatchcase(model, pattern) for pattern in ns.models):
                return ns
        return None

    def configured(self, name: str) -> str:
        """The cache namespace the configuration gives `name`."""
        ns = self._by_name.get(name)
        return (ns.cache_namespace or ns.name) if ns is not None else name

    def active(self, name: str) -> str:
        """The cache namespace currently active for configured namespace `name`."""
        return self._active.get(name, self.configured(name))

    def set_active(self, name: str, namespace: str) -> bool:
        """Point `name` at cache namespace `namespace`; return whether anything changed."""
        if name not in self._by_name:
            return False
        changed = self.active(name) != namespace
        if namespace == self.configured(name):
            self._active.pop(name, None)
        else:
            self._active[name] = namespace
        return changed

    def replace_active(self, mapping: Mapping[str, str]) -> None:
        """Replace every switch at once (state reloaded from the shared store)."""
        self._active = {
            k: v for k, v in mapping.items() if k in self._by_name and v != self.configured(k)
        }

    def all_active(self) -> dict[str, str]:
        """Configured name -> active cache namespace, for every configured namespace."""
        return {ns.name: self.active(ns.name) for ns in self._namespaces}
