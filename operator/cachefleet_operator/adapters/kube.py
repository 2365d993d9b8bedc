"""A small async Kubernetes client for exactly what the operator does, over the `kubernetes`
package's REST client.

Server-side apply of children and of `/status`, get, list by label, delete with a uid
precondition, and core/v1 Events. kopf watches and handles the custom resources with its own
aiohttp client; this one makes the operator's writes. Both use the same `ClusterAccess`.

The requests go through `kubernetes.client.ApiClient.call_api` (urllib3: TLS, proxy, pooling)
on a small thread pool; the credential is taken fresh for each request in that thread, so an
expired exec credential is renewed without blocking the event loop. The typed layer here (one
path scheme for every resource, `ApiError`) is all that is hand-written. Measured against the
alternatives (`e2e/bench_kube_client.py`, docs/benchmarks/kube-client.json): the package's
client in threads applies about 2-3x faster than httpx did on the same apiserver.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import urllib3
from kubernetes import client as kube_client
from kubernetes.client.exceptions import ApiException, ApiValueError

from cachefleet_operator.adapters.credentials import ClusterAccess, CredentialsError

__all__ = [
    "CACHEINVALIDATIONS",
    "CONFIGMAPS",
    "DEPLOYMENTS",
    "ENDPOINTSLICES",
    "EVENTS",
    "HORIZONTALPODAUTOSCALERS",
    "LEASES",
    "MILVUSES",
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
#: The Milvus Operator's kind (its CRD may not be installed: see `KubeClient.serves`).
MILVUSES = ResourceType("milvus.io", "v1beta1", "milvuses", "Milvus")

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
        MILVUSES,
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


#: Requests in flight at once (the apiserver's per-client fairness is far above this).
MAX_IN_FLIGHT = 8


class KubeClient:
    """The operator's API calls. Every method raises `ApiError` on failure."""

    def __init__(
        self, access: ClusterAccess, *, timeout: float = 30.0, user_agent: str = "cachefleet"
    ) -> None:
        self.access = access
        configuration = access.configuration
        configuration.connection_pool_maxsize = MAX_IN_FLIGHT
        self._api = kube_client.ApiClient(configuration)
        self._user_agent = user_agent
        self._timeout = (min(timeout, 10.0), timeout)  # (connect, read), seconds
        self._deadline_s = timeout
        self._threads = ThreadPoolExecutor(MAX_IN_FLIGHT, thread_name_prefix="kube-client")

    async def aclose(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self._api.close)

    def _call(self, method: str, url: str, content_type: str, body: Any) -> Any:
        """One request, blocking (in a pool thread): the credential, the call, the answer."""
        headers = {
            "Accept": "application/json",
            "User-Agent": self._user_agent,
            "Content-Type": content_type,
        }
        authorization = self.access.authorization()
        if authorization:
            headers["Authorization"] = authorization
        try:
            response = self._api.call_api(
                method, url, header_params=headers, body=body, _request_timeout=self._timeout
            )
            data = response.read()
        except urllib3.exceptions.HTTPError as error:  # refused, reset, timed out
            raise ApiError(0, type(error).__name__, f"{method} {url}: {error}") from error
        if response.status >= 400:
            try:
                answer = json.loads(data)
                reason, message = str(answer.get("reason", "")), str(answer.get("message", ""))
            except (ValueError, AttributeError):
                reason, message = "", data.decode(errors="replace")[:500]
            raise ApiError(response.status, reason or str(response.reason), message)
        return json.loads(data) if data else None

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        url = self.access.server + path + (f"?{urlencode(params)}" if params else "")
        call = asyncio.get_running_loop().run_in_executor(
            self._threads, self._call, method, url, content_type, body
        )
        try:
            return await asyncio.wait_for(call, self._deadline_s + 5)
        except ApiException as error:  # TLS failures and requests it cannot form
            raise ApiError(0, "Unreachable", f"{method} {path}: {error.reason}") from error
        except CredentialsError as error:  # retried: a plugin may answer next time
            raise ApiError(0, "CredentialsUnavailable", f"{method} {path}: {error}") from error
        except (TimeoutError, ApiValueError, OSError) as error:
            raise ApiError(0, type(error).__name__, f"{method} {path}: {error}") from error

    async def get(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None if it does not exist."""
        try:
            result: dict[str, Any] = await self._request("GET", rt.path(namespace, name))
        except ApiError as error:
            if error.not_found:
                return None
            raise
        return result

    async def serves(self, rt: ResourceType) -> bool:
        """Whether the API server serves the resource (a custom one: its CRD is installed),
        from API discovery (`/apis/<group>/<version>`, open to every authenticated user)."""
        try:
            answer = await self._request("GET", f"/apis/{rt.group}/{rt.version}")
        except ApiError as error:
            if error.not_found:
                return False
            raise
        return any(item.get("name") == rt.plural for item in answer.get("resources") or [])

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
