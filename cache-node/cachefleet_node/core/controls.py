"""Per-request cache controls from HTTP headers (pure)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from cachefleet_node.core.errors import RequestError

__all__ = ["TAGS_HEADER", "THRESHOLD_HEADER", "CacheControls", "parse_controls"]

THRESHOLD_HEADER = "x-cachefleet-threshold"
TAGS_HEADER = "x-cachefleet-tags"
TTL_HEADER = "x-cachefleet-ttl"
_TAG = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class CacheControls:
    """What the client asked of the cache for this request."""

    read: bool = True  # `no-cache` skips the lookup but still stores
    write: bool = True  # `no-store` skips the write
    max_age_s: float | None = None  # `max-age=N`: only entries younger than N seconds
    threshold: float | None = None  # override, already clamped to the namespace's range
    threshold_clamped: bool = False
    tags: tuple[str, ...] = ()
    ttl_s: int | None = None  # shorter TTL than the namespace's for this entry


def _parse_cache_control(value: str) -> tuple[bool, bool, float | None]:
    read, write, max_age = True, True, None
    for directive in value.split(","):
        name, _, argument = directive.strip().partition("=")
        name = name.strip().lower()
        if name == "no-cache":
            read = False
        elif name == "no-store":
            write = False
        elif name == "max-age":
            digits = argument.strip().strip('"')
            if not digits.isascii() or not digits.isdigit():
                raise RequestError(
                    400,
                    "cache-control max-age must be a non-negative integer",
                    param="cache-control",
                )
            # RFC 9111 5.2: a delta-seconds too large to represent counts as 2^31
            max_age = float(
                min(int(digits), _MAX_DELTA_SECONDS) if len(digits) <= 10 else _MAX_DELTA_SECONDS
            )
    return read, write, max_age


_MAX_DELTA_SECONDS = 2**31


def parse_controls(
    headers: Mapping[str, str], *, min_threshold: float, max_threshold: float, max_ttl_s: int
) -> CacheControls:
    """Parse `cache-control`, the threshold override, tags and TTL; raise 400 on bad values."""
    read, write, max_age = _parse_cache_control(headers.get("cache-control", ""))

    threshold = None
    clamped = False
    raw_threshold = headers.get(THRESHOLD_HEADER)
    if raw_threshold is not None:
        try:
            requested = float(raw_threshold)
        except ValueError as exc:
            raise RequestError(
                400, f"{THRESHOLD_HEADER} must be a number in (0, 1]", param=THRESHOLD_HEADER
            ) from exc
        if not 0 < requested <= 1:
            raise RequestError(400, f"{THRESHOLD_HEADER} must be in (0, 1]", param=THRESHOLD_HEADER)
        threshold = min(max(requested, min_threshold), max_threshold)
        clamped = threshold != requested

    tags: tuple[str, ...] = ()
    raw_tags = headers.get(TAGS_HEADER)
    if raw_tags:
        tags = tuple(sorted({t.strip() for t in raw_tags.split(",") if t.strip()}))
        bad = [t for t in tags if not _TAG.match(t)]
        if bad or len(tags) > 16:
            raise RequestError(
                400,
                f"{TAGS_HEADER}: up to 16 comma-separated lower-case names ([a-z0-9._-]); "
                f"got {bad or len(tags)}",
                param=TAGS_HEADER,
            )

    ttl = None
    raw_ttl = headers.get(TTL_HEADER)
    if raw_ttl is not None:
        if not raw_ttl.strip().isascii() or not raw_ttl.strip().lstrip("-").isdigit():
            raise RequestError(400, f"{TTL_HEADER} must be an integer", param=TTL_HEADER)
        ttl = int(raw_ttl) if len(raw_ttl.strip()) <= 12 else max_ttl_s
        if not ttl >= 1:
            raise RequestError(400, f"{TTL_HEADER} must be >= 1", param=TTL_HEADER)
        ttl = min(ttl, max_ttl_s)
    return CacheControls(
        read=read,
        write=write,
        max_age_s=max_age,
        threshold=threshold,
        threshold_clamped=clamped,
        tags=tags,
        ttl_s=ttl,
    )
