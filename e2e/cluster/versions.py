"""Pinned versions of the local control plane and where their binaries are cached."""

from __future__ import annotations

import hashlib
import os
import platform
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

TOOLS_DIR = Path(__file__).resolve().parent.parent / "tools"
VERSIONS_FILE = TOOLS_DIR / "versions.toml"

#: Module path of every pinned component, keyed as in versions.toml.
MODULES = {
    "kubernetes": "k8s.io/kubernetes",
    "etcd": "go.etcd.io/etcd/server/v3",
    "kwok": "sigs.k8s.io/kwok",
    "helm": "helm.sh/helm/v3",
}

_SEMVER = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")


@dataclass(frozen=True)
class Versions:
    """The four pinned releases (tags as the Go proxy spells them, e.g. ``v1.36.3``)."""

    kubernetes: str
    etcd: str
    kwok: str
    helm: str

    @classmethod
    def load(cls, path: Path = VERSIONS_FILE) -> Versions:
        """Read and validate ``versions.toml``."""
        data = tomllib.loads(path.read_text())
        missing = sorted(set(MODULES) - set(data))
        if missing:
            raise ValueError(f"{path}: missing pins {missing}")
        for key in MODULES:
            if not _SEMVER.match(str(data[key])):
                raise ValueError(f"{path}: {key} = {data[key]!r} is not a vX.Y.Z release tag")
        return cls(**{key: str(data[key]) for key in MODULES})

    def as_dict(self) -> dict[str, str]:
        """Pins keyed as in versions.toml."""
        return {key: getattr(self, key) for key in MODULES}

    @property
    def kube_minor(self) -> tuple[int, int, int]:
        """(major, minor, patch) of the Kubernetes release."""
        match = _SEMVER.match(self.kubernetes)
        assert match is not None  # validated in load()
        major, minor, patch = match.groups()
        return int(major), int(minor), int(patch)

    @property
    def staging_version(self) -> str:
        """Tag of the k8s.io staging modules for this release (v1.36.3 -> v0.36.3)."""
        _, minor, patch = self.kube_minor
        return f"v0.{minor}.{patch}"


def cache_root() -> Path:
    """Root of everything Cachefleet caches outside the repository."""
    override = os.environ.get("CACHEFLEET_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "cachefleet"


def versions_key(versions: Versions, build_inputs: bytes) -> str:
    """Directory name for one set of binaries: readable pins plus a hash of the build inputs.

    ``build_inputs`` covers go.mod, go.sum, flags and the Go toolchain, so changing any of them
    builds into a new directory instead of reusing stale binaries.
    """
    digest = hashlib.sha256(build_inputs).hexdigest()[:10]
    pins = "_".join(f"{name}-{tag}" for name, tag in versions.as_dict().items())
    return f"{pins}_{platform.machine()}_{digest}"
