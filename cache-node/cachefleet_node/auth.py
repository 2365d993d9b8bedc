"""Tenants from API keys. The tenant is derived from the key, never from a client header."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

from cachefleet_node.config import AuthConfig, ConfigError
from cachefleet_node.core.errors import RequestError

__all__ = ["Caller", "TenantResolver"]

DEFAULT_TENANT = "default"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling."""

    tenant: str
    admin: bool
    forward_auth: bool  # forward the caller's Authorization header upstream


class TenantResolver:
    """Maps `Authorization: Bearer <key>` to a tenant via SHA-256 digests of the keys."""

    def __init__(self, config: AuthConfig, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._digests: dict[str, tuple[str, bool]] = {}
        for index, item in enumerate(config.api_keys):
            digest = item.key_sha256
            if item.key_env is not None:
                key = env.get(item.key_env)
                if not key:
                    raise ConfigError(
                        f"auth.api_keys.{index}.key_env: environment variable "
                        f"{item.key_env} is not set"
                    )
                digest = hashlib.sha256(key.encode()).hexdigest()
            assert digest is not None
            self._digests[digest] = (item.tenant, item.admin)

    @property
    def enabled(self) -> bool:
        """Whether API keys are configured."""
        return bool(self._digests)

    def resolve(self, authorization: str | None) -> Caller:
        """The caller behind an Authorization header; 401 for a missing or unknown key."""
        if not self._digests:
            return Caller(tenant=DEFAULT_TENANT, admin=True, forward_auth=True)
        if not authorization or not authorization.lower().startswith("bearer "):
            raise RequestError(
                401,
                "missing API key: send Authorization: Bearer <key>",
                code="invalid_api_key",
                error_type="authentication_error",
            )
        digest = hashlib.sha256(authorization[7:].strip().encode()).hexdigest()
        found = self._digests.get(digest)
        if found is None:
            raise RequestError(
                401, "invalid API key", code="invalid_api_key", error_type="authentication_error"
            )
        return Caller(tenant=found[0], admin=found[1], forward_auth=False)
