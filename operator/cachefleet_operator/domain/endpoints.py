"""Where a fleet's cache nodes answer: from EndpointSlices, or (test/dev) from an annotation."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "ENDPOINTS_ANNOTATION",
    "SERVICE_NAME_LABEL",
    "annotation_endpoints",
    "endpoint_slice_urls",
]

#: Test/dev only (honoured with `--node-endpoints-from-annotation`): comma-separated base URLs.
ENDPOINTS_ANNOTATION = "cachefleet.io/node-endpoints"
#: The label the EndpointSlice controller puts on a Service's slices.
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def annotation_endpoints(value: str | None) -> list[str]:
    """The base URLs in the annotation (`http://127.0.0.1:8081,http://...`); bad ones raise."""
    urls: list[str] = []
    for item in (value or "").split(","):
        url = item.strip().rstrip("/")
        if not url:
            continue
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{ENDPOINTS_ANNOTATION}: {item.strip()!r} is not an http(s) URL")
        if url not in urls:
            urls.append(url)
    return urls


def _host(address: str) -> str:
    try:
        if ipaddress.ip_address(address).version == 6:
            return f"[{address}]"
    except ValueError:
        pass
    return address


def endpoint_slice_urls(slices: Iterable[Mapping[str, Any]], port_name: str = "http") -> list[str]:
    """`http://<ip>:<port>` of every ready endpoint of the slices (the port named `port_name`)."""
    urls: list[str] = []
    for item in slices:
        if item.get("addressType") not in ("IPv4", "IPv6"):
            continue
        ports = [p for p in item.get("ports") or [] if p.get("port")]
        named = [p for p in ports if p.get("name") == port_name] or ports[:1]
        if not named:
            continue
        port = int(named[0]["port"])
        for endpoint in item.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            for address in (endpoint.get("addresses") or [])[:1]:
                url = f"http://{_host(address)}:{port}"
                if url not in urls:
                    urls.append(url)
    return urls
