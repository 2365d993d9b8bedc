"""How the operator reaches a fleet's nodes: their URLs and the admin key for admin routes."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cachefleet_operator.adapters.kube import SECRETS, KubeClient
from cachefleet_operator.api.v1alpha1 import SemanticCache
from cachefleet_operator.api.v1alpha1.semanticcache import Auth
from cachefleet_operator.domain.endpoints import ENDPOINTS_ANNOTATION
from cachefleet_operator.domain.naming import Component, child_name
from cachefleet_operator.services.discovery import NodeDiscovery

__all__ = ["AdminKey", "NodeAccess"]


@dataclass(frozen=True)
class AdminKey:
    """`usable`: admin routes can be called (no auth, or an admin tenant with a key);
    `value`: the bearer key (None without auth)."""

    usable: bool
    value: str | None = None
    problem: str = ""


class NodeAccess:
    """Node URLs (EndpointSlices, or the test/dev annotation) and the admin tenant's key."""

    def __init__(self, kube: KubeClient, discovery: NodeDiscovery) -> None:
        self._kube = kube
        self._discovery = discovery

    async def endpoints(self, cache: SemanticCache) -> list[str]:
        return await self._discovery.endpoints(
            cache.metadata.namespace or "",
            child_name(cache.metadata.name, Component.NODE),
            cache.metadata.annotations.get(ENDPOINTS_ANNOTATION),
        )

    async def admin_key(self, cache: SemanticCache) -> AdminKey:
        """The first `admin` tenant's key from `spec.auth.apiKeysSecretRef` (no auth: none)."""
        return await self.admin_key_for(cache.metadata.namespace or "", cache.spec.auth)

    async def admin_key_for(self, namespace: str, auth: Auth | None) -> AdminKey:
        """`admin_key` of a cache in `namespace` with that `spec.auth`."""
        if auth is None:
            return AdminKey(True)
        admins = [tenant.name for tenant in auth.tenants if tenant.admin]
        secret_name = auth.api_keys_secret_ref.name
        if not admins:
            return AdminKey(False, problem="spec.auth has no admin tenant")
        secret = await self._kube.get(SECRETS, namespace, secret_name)
        value = ((secret or {}).get("data") or {}).get(admins[0])
        if value is None:
            return AdminKey(False, problem=f"Secret {secret_name} has no key {admins[0]}")
        return AdminKey(True, base64.b64decode(value).decode())
