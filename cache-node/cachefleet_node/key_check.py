"""No cached answer without a key the upstream accepts (pass-through mode).

Without tenant keys the node forwards each caller's `Authorization` header upstream, so on a
miss the upstream decides who may read a paid answer. A hit must not widen that: it is served
only to a credential the upstream accepted recently. `KeyVerdicts` keeps, per SHA-256 of the
header (never the key itself), the upstream's last verdict for a bounded time:

- every upstream response teaches it: 2xx accepted, 401/403 rejected;
- a hit for a credential without a fresh verdict asks the upstream once with a cheap
  authenticated call (`GET /models`, concurrent hits for one key share it): 200 accepts,
  401/403 rejects — the caller gets the upstream's own error body — and anything else (no such
  route, an outage, a timeout) decides nothing: the request then goes upstream like a miss,
  where the upstream checks the key itself.

`auth.serve_hits_without_key_check` turns this off for an internal, key-less shared cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass

import httpx
import structlog

from cachefleet_node.config import AuthConfig
from cachefleet_node.metrics import NodeMetrics
from cachefleet_node.upstream import Upstream

__all__ = ["KeyVerdicts", "Rejection"]

log = structlog.get_logger(__name__)

MAX_VERDICTS = 100_000


@dataclass(frozen=True, slots=True)
class Rejection:
    """The upstream refused the credential: its status, body and content type."""

    status: int
    body: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class _Verdict:
    accepted: bool
    expires_at: float
    rejection: Rejection | None = None


_UNDECIDED = "undecided"


class KeyVerdicts:
    """The upstream's recent verdicts on callers' credentials, by digest."""

    def __init__(self, config: AuthConfig, upstream: Upstream, metrics: NodeMetrics) -> None:
        self._config = config
        self._upstream = upstream
        self._metrics = metrics
        self._verdicts: OrderedDict[str, _Verdict] = OrderedDict()
        self._pending: dict[str, asyncio.Future[_Verdict | str]] = {}

    @staticmethod
    def digest(authorization: str | None) -> str:
        """The key under which a credential's verdict is kept (the header is never stored)."""
        return hashlib.sha256((authorization or "").strip().encode()).hexdigest()

    def learn_accepted(self, authorization: str | None) -> None:
        """The upstream answered a forwarded request with this credential (2xx)."""
        self._store(self.digest(authorization), _Verdict(True, self._until(True)))

    def learn_rejected(self, authorization: str | None, rejection: Rejection) -> None:
        """The upstream refused a forwarded request with this credential (401/403)."""
        self._store(self.digest(authorization), _Verdict(False, self._until(False), rejection))

    async def check(self, authorization: str | None) -> Rejection | bool:
        """True: the upstream accepts this credential, serve the hit; a `Rejection`: answer
        with the upstream's error; False: undecided, send the request upstream."""
        key = self.digest(authorization)
        verdict = self._fresh(key)
        if verdict is not None:
            self._metrics.key_checks.labels("accepted" if verdict.accepted else "rejected").inc()
            return True if verdict.accepted else (verdict.rejection or False)
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._pending[key] = pending
            try:
                result = await self._ask(authorization)
                if isinstance(result, _Verdict):
                    self._store(key, result)
                pending.set_result(result)
            except BaseException as exc:
                pending.set_exception(exc)
                raise
            finally:
                del self._pending[key]
        result = await asyncio.shield(pending)
        if isinstance(result, str):
            self._metrics.key_checks.labels(_UNDECIDED).inc()
            return False
        self._metrics.key_checks.labels("verified" if result.accepted else "rejected").inc()
        return True if result.accepted else (result.rejection or False)

    async def _ask(self, authorization: str | None) -> _Verdict | str:
        try:
            response = await self._upstream.check_credential(
                authorization, self._config.key_check_timeout_s
            )
        except httpx.HTTPError as exc:
            log.warning("key_check_failed", error=type(exc).__name__)
            return _UNDECIDED
        if response.status_code == 200:
            return _Verdict(True, self._until(True))
        if response.status_code in (401, 403):
            content_type = response.headers.get("content-type", "application/json")
            rejection = Rejection(response.status_code, response.content, content_type)
            return _Verdict(False, self._until(False), rejection)
        log.info("key_check_undecided", status=response.status_code)
        return _UNDECIDED

    def _until(self, accepted: bool) -> float:
        ttl = self._config.key_verdict_ttl_s if accepted else self._config.rejected_key_ttl_s
        return time.monotonic() + ttl

    def _fresh(self, key: str) -> _Verdict | None:
        verdict = self._verdicts.get(key)
        if verdict is None:
            return None
        if verdict.expires_at <= time.monotonic():
            del self._verdicts[key]
            return None
        return verdict

    def _store(self, key: str, verdict: _Verdict) -> None:
        self._verdicts[key] = verdict
        self._verdicts.move_to_end(key)
        while len(self._verdicts) > MAX_VERDICTS:
            self._verdicts.popitem(last=False)
