"""A small async Kubernetes client (httpx) for exactly what the operator does.

Server-side apply of children and of `/status`, get, list by label, delete with a uid
precondition, and core/v1 Events. kopf watches and handles the custom resources with its own
aiohttp client; this one makes the operator's writes. Both use the same `ClusterAccess`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from cachefleet_operator.adapters.credentials import ClusterAccess

__all__ = [
    "CACHEINVALIDATIONS",
    "CONFIGMAPS",
    "DEPLOYMENTS",
    "ENDPOINTSLICES",
    "EVENTS",
    "HORIZONTALPODAUTOSCALERS",
    "LEASES",
    "MODELVERSIONS",
    "PODDISRUPTIONBUDGETS",
    "SECRETS",
    "SEMANTICCACHES",
    "SERVICES",
    "STATEFULSETS",
    "ApiError",
    "KubeClient",
    "ResourceType",
    "resource_for",
]


@dataclass(frozen=True)
class ResourceType:
    """One namespaced API resource."""

    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified_name(self) -> str:
        """`plural.group` as RBAC and error messages spell it (`deployments.apps`)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def collection_path(self, namespace: str | None) -> str:
        """The collection in one namespace, or across all of them (None)."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace is None:
            return f"{base}/{self.plural}"
        return f"{base}/namespaces/{namespace}/{self.plural}"

    def path(self, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
        path = self.collection_path(namespace)
        if name is not None:
            path += f"/{name}"
        if subresource is not None:
            path += f"/{subresource}"
        return path


CONFIGMAPS = ResourceType("", "v1", "configmaps", "ConfigMap")
SERVICES = ResourceType("", "v1", "services", "Service")
SECRETS = ResourceType("", "v1", "secrets", "Secret")
EVENTS = ResourceType("", "v1", "events", "Event")
STATEFULSETS = ResourceType("apps", "v1", "statefulsets", "StatefulSet")
DEPLOYMENTS = ResourceType("apps", "v1", "deployments", "Deployment")
PODDISRUPTIONBUDGETS = ResourceType("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget")
HORIZONTALPODAUTOSCALERS = ResourceType(
    "autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler"
)
ENDPOINTSLICES = ResourceType("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")
SEMANTICCACHES = ResourceType("cachefleet.io", "v1alpha1", "semanticcaches", "SemanticCache")
MODELVERSIONS = ResourceType("cachefleet.io", "v1alpha1", "modelversions", "ModelVersion")
CACHEINVALIDATIONS = ResourceType(
    "cachefleet.io", "v1alpha1", "cacheinvalidations", "CacheInvalidation"
)
LEASES = ResourceType("coordination.k8s.io", "v1", "leases", "Lease")

_BY_KIND = {
    (rt.api_version, rt.kind): rt
    for rt in (
        CONFIGMAPS,
        SERVICES,
        SECRETS,
        EVENTS,
        STATEFULSETS,
        DEPLOYMENTS,
        PODDISRUPTIONBUDGETS,
        HORIZONTALPODAUTOSCALERS,
        ENDPOINTSLICES,
        SEMANTICCACHES,
        MODELVERSIONS,
        CACHEINVALIDATIONS,
    )
}


def resource_for(api_version: str, kind: str) -> ResourceType:
    """The resource of a manifest's apiVersion and kind (only the kinds the operator uses)."""
    try:
        return _BY_KIND[(api_version, kind)]
    except KeyError:
        raise ValueError(f"the operator does not manage {kind} ({api_version})") from None


class ApiError(RuntimeError):
    """The API server answered with an error (status 0: it could not be reached)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def retryable(self) -> bool:
        """Worth retrying as is: unreachable, throttled, a conflict, or a server error."""
        return self.status in (0, 409, 429) or self.status >= 500


class _BearerAuth(httpx.Auth):
    def __init__(self, access: ClusterAccess) -> None:
        self._access = access

    def auth_flow(self, request: httpx.Request) -> Any:
        token = self._access.current_token()
        if token:
            request.headers["Authorization"] = f"Bearer {token}"
        yield request


class KubeClient:
    """The operator's API calls. Every method raises `ApiError` on failure."""

    def __init__(
        self, access: ClusterAccess, *, timeout: float = 30.0, user_agent: str = "cachefleet"
    ) -> None:
        self.access = access
        self._client = httpx.AsyncClient(
            base_url=access.server,
            verify=access.ssl_context(),
            auth=_BearerAuth(access),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"User-Agent": user_agent, "Accept": "application/json"},
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        content = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if content is not None else {}
        try:
            response = await self._client.request(
                method, path, params=params, content=content, headers=headers
            )
        except httpx.HTTPError as error:
            raise ApiError(0, type(error).__name__, f"{method} {path}: {error}") from error
        if response.status_code >= 400:
            try:
                data = response.json()
                reason, message = str(data.get("reason", "")), str(data.get("message", ""))
            except ValueError:
                reason, message = response.reason_phrase, response.text[:500]
            raise ApiError(response.status_code, reason or response.reason_phrase, message)
        return response.json() if response.content else None

    async def get(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None if it does not exist."""
        try:
            result: dict[str, Any] = await self._request("GET", rt.path(namespace, name))
        except ApiError as error:
            if error.not_found:
                return None
            raise
        return result

    async def list(
        self, rt: ResourceType, namespace: str, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """Objects of one kind in a namespace, optionally by label selector (all pages)."""
        items: list[dict[str, Any]] = []
        params: dict[str, str] = {"limit": "500"}
        if label_selector:
            params["labelSelector"] = label_selector
        while True:
            page = await self._request("GET", rt.path(namespace), params=params)
            items += page.get("items") or []
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            params["continue"] = token

    async def probe_list(
        self, rt: ResourceType, namespace: str | None, *, label_selector: str | None = None
    ) -> None:
        """One page of at most one object, to learn whether listing is allowed (ApiError if
        not); `namespace=None` lists across all namespaces."""
        params = {"limit": "1"}
        if label_selector:
            params["labelSelector"] = label_selector
        await self._request("GET", rt.collection_path(namespace), params=params)

    async def apply(
        self, manifest: Mapping[str, Any], *, field_manager: str, force: bool = True
    ) -> dict[str, Any]:
        """Server-side apply of a whole object; returns the object as stored."""
        rt = resource_for(manifest["apiVersion"], manifest["kind"])
        metadata = manifest["metadata"]
        result: dict[str, Any] = await self._request(
            "PATCH",
            rt.path(metadata["namespace"], metadata["name"]),
            params={"fieldManager": field_manager, "force": "true" if force else "false"},
            body=manifest,
            content_type="application/apply-patch+yaml",
        )
        return result

    async def apply_status(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        *,
        field_manager: str,
    ) -> dict[str, Any]:
        """Server-side apply of `status` (fields this manager no longer sets are removed)."""
        body = {
            "apiVersion": rt.api_version,
            "kind": rt.kind,
            "metadata": {"name": name, "namespace": namespace},
            "status": dict(status),
        }
        result: dict[str, Any] = await self._request(
            "PATCH",
            rt.path(namespace, name, "status"),
            params={"fieldManager": field_manager, "force": "true"},
            body=body,
            content_type="application/apply-patch+yaml",
        )
        return result

    async def create(
        self, rt: ResourceType, namespace: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Create an object (409 `ApiError` when one by that name exists)."""
        result: dict[str, Any] = await self._request("POST", rt.path(namespace), body=dict(body))
        return result

    async def replace(
        self, rt: ResourceType, namespace: str, name: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Replace an object; with `metadata.resourceVersion` set, only if nobody changed it
        since (409 `ApiError` otherwise)."""
        result: dict[str, Any] = await self._request(
            "PUT", rt.path(namespace, name), body=dict(body)
        )
        return result

    async def delete(
        self, rt: ResourceType, namespace: str, name: str, *, uid: str | None = None
    ) -> bool:
        """Delete (background propagation); False if it was already gone or replaced."""
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": "Background",
        }
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            await self._request("DELETE", rt.path(namespace, name), body=body)
        except ApiError as error:
            if error.not_found or error.status == 409:  # gone, or a new object by that name
                return False
            raise
        return True

    async def post_event(
        self,
        involved: Mapping[str, Any],
        *,
        type: str,
        reason: str,
        message: str,
        component: str,
    ) -> None:
        """A core/v1 Event about `involved` (an object body or its reference fields)."""
        metadata = involved.get("metadata", involved)
        namespace = str(metadata["namespace"])
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        name = str(metadata["name"])
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{name[:200]}.{secrets.token_hex(8)}",
                "namespace": namespace,
            },
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": name,
                "namespace": namespace,
                "uid": metadata.get("uid"),
            },
            "type": type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": component,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self._request("POST", EVENTS.path(namespace), body=event)
