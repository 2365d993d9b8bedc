"""Where the local model comes from: a configured directory, or a download by hub id.

Downloads use the Hugging Face layout `{endpoint}/{model_id}/resolve/{revision}/{file}` and land
in `{hub_cache_dir}/{model_id with / as --}/{revision}/`. Each file is written to a temporary
file and renamed into place, so a file that exists is complete and is never fetched again.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path
from typing import IO

import httpx
import structlog

from cachefleet_node.config import MODEL_DIR_ENV, EmbeddingConfig
from cachefleet_node.embedders.base import EmbeddingUnavailable, redact_url

__all__ = [
    "DOWNLOAD_FILES",
    "REQUIRED_FILES",
    "check_model_dir",
    "default_cache_root",
    "download_model",
    "model_cache_dir",
    "resolve_model_dir",
]

log = structlog.get_logger(__name__)

REQUIRED_FILES = ("onnx/model.onnx", "tokenizer.json")
DOWNLOAD_FILES = ("tokenizer.json", "config.json", "onnx/model.onnx")

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_CHUNK_BYTES = 1 << 20
_PROGRESS_EVERY_S = 2.0


def default_cache_root() -> Path:
    """`~/.cache/cachefleet/models`."""
    return Path.home() / ".cache" / "cachefleet" / "models"


def model_cache_dir(cache_root: Path, model_id: str, revision: str) -> Path:
    """Directory of one downloaded model revision under `cache_root`."""
    parts = []
    for setting, value in (("model_id", model_id), ("revision", revision)):
        name = value.replace("/", "--")
        if not _SAFE_NAME.fullmatch(name):
            raise EmbeddingUnavailable(f"embedding.{setting} {value!r} is not a valid hub name")
        parts.append(name)
    return cache_root.joinpath(*parts)


def check_model_dir(path: Path) -> None:
    """Raise `EmbeddingUnavailable` naming the first model file missing from `path`."""
    for name in REQUIRED_FILES:
        if not (path / name).is_file():
            raise EmbeddingUnavailable(
                f"embedding model directory {path} has no {name}: set embedding.model_dir or "
                f"{MODEL_DIR_ENV} to a directory holding {' and '.join(REQUIRED_FILES)}"
            )


def resolve_model_dir(config: EmbeddingConfig) -> Path:
    """The configured model directory, checked; else the hub download (blocking I/O)."""
    if config.model_dir:
        path = Path(config.model_dir).expanduser()
        check_model_dir(path)
        return path
    root = Path(config.hub_cache_dir).expanduser() if config.hub_cache_dir else None
    return download_model(config.model_id, config.revision, config.hub_endpoint, root)


def download_model(
    model_id: str,
    revision: str,
    endpoint: str,
    cache_root: Path | None = None,
    *,
    timeout_s: float = 30.0,
) -> Path:
    """Download the model files unless already cached; return the model directory (blocking)."""
    target = model_cache_dir(cache_root or default_cache_root(), model_id, revision)
    todo = [name for name in DOWNLOAD_FILES if not (target / name).is_file()]
    if not todo:
        log.debug("embedding model cached", model_id=model_id, path=str(target))
        return target
    base = f"{endpoint.rstrip('/')}/{model_id}/resolve/{revision}"
    timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0))
    try:
        with httpx.Client(follow_redirects=True, timeout=timeout) as client:
            for name in todo:
                _fetch(client, f"{base}/{name}", target / name, name)
    except _DownloadFailed as exc:
        raise EmbeddingUnavailable(
            f"could not download {model_id} from {redact_url(endpoint)} ({exc}): set "
            f"embedding.model_dir or {MODEL_DIR_ENV} to a local copy"
        ) from exc
    except OSError as exc:
        raise EmbeddingUnavailable(
            f"cannot write the model cache {target} ({exc.strerror or exc}): set "
            f"embedding.hub_cache_dir to a writable directory, or embedding.model_dir or "
            f"{MODEL_DIR_ENV} to a local copy"
        ) from exc
    check_model_dir(target)
    return target


class _DownloadFailed(Exception):
    """One file could not be fetched; the message is the short reason."""


def _fetch(client: httpx.Client, url: str, dest: Path, name: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            _stream_to(client, url, out, name)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


def _stream_to(client: httpx.Client, url: str, out: IO[bytes], name: str) -> None:
    started = time.monotonic()
    try:
        with client.stream("GET", url) as response:
            if response.status_code != httpx.codes.OK:
                raise _DownloadFailed(f"HTTP {response.status_code} for {name}")
            total = int(response.headers.get("content-length", 0)) or None
            log.info("downloading embedding model file", file=name, bytes_total=total)
            next_report = started + _PROGRESS_EVERY_S
            for chunk in response.iter_bytes(_CHUNK_BYTES):
                out.write(chunk)
                now = time.monotonic()
                if now >= next_report:
                    next_report = now + _PROGRESS_EVERY_S
                    log.info(
                        "embedding model download progress",
                        file=name,
                        bytes_done=response.num_bytes_downloaded,
                        bytes_total=total,
                    )
            if total is not None and response.num_bytes_downloaded != total:
                raise _DownloadFailed(f"{name} ended after {response.num_bytes_downloaded} bytes")
    except httpx.HTTPError as exc:
        raise _DownloadFailed(f"{type(exc).__name__}: {exc}") from exc
    log.info(
        "downloaded embedding model file",
        file=name,
        bytes_done=response.num_bytes_downloaded,
        seconds=round(time.monotonic() - started, 2),
    )
