"""Build and run tests/gitops/kstatus, the real kstatus library (what Flux's health checks use).

The Go module next to this file wraps `status.Compute` of `sigs.k8s.io/cli-utils` and of
Flux's fork `github.com/fluxcd/cli-utils` (pinned in its go.mod, sums in go.sum). `build()`
compiles it with the same Go toolchain and environment as the control-plane binaries
(e2e/cluster: `gomod.go_binary`, `gomod.go_env`, `build.Toolchain`) into
`~/.cache/cachefleet/kstatus/<key>/kstatus`, where the key hashes go.mod, go.sum, main.go, the
flags and the toolchain: a second run finds the binary and returns at once. A cold build
(module downloads and the standard library included) took 35-50 s on 2 cores.

    PYTHONPATH=e2e .venv/bin/python tests/gitops/kstatus_tool.py OBJECT.yaml ...

prints what kstatus says of each object (stdin when no file is named).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cluster import gomod
from cluster.build import BuildError, Toolchain
from cluster.versions import cache_root

MODULE_DIR = Path(__file__).resolve().parent / "kstatus"
SOURCES = ("go.mod", "go.sum", "main.go")
#: Bump when the way the binary is built changes in a way the hashed inputs do not show.
RECIPE = "1"
BUILD_FLAGS = ("-mod=readonly", "-trimpath", "-ldflags=-s -w")
#: A cold build takes 35-50 s on 2 cores; fail (do not hang) well before the test timeout.
BUILD_DEADLINE_S = float(os.environ.get("CACHEFLEET_KSTATUS_BUILD_DEADLINE", "240"))
HEARTBEAT_S = 15.0


@dataclass(frozen=True)
class Verdict:
    """kstatus's result for one object: status (Current, InProgress, Failed, Terminating,
    Unknown) and message."""

    status: str
    message: str


def binary_path(toolchain: Toolchain | None = None) -> Path:
    """Where the binary for the current sources and toolchain lives (built or not)."""
    toolchain = toolchain or Toolchain.detect()
    inputs = hashlib.sha256()
    for part in (
        RECIPE,
        *((MODULE_DIR / name).read_text() for name in SOURCES),
        " ".join(BUILD_FLAGS),
        f"{toolchain.version} {toolchain.goos}/{toolchain.goarch} cgo=0",
    ):
        inputs.update(part.encode() + b"\0")
    return cache_root() / "kstatus" / inputs.hexdigest()[:16] / "kstatus"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One build per key at a time (parallel pytest sessions share the cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"kstatus: another build holds {path}; waiting for it", flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build(*, deadline_s: float = BUILD_DEADLINE_S) -> Path:
    """The kstatus binary, built unless already cached. Raises BuildError (no Go, no module
    proxy, a compile error, or the deadline passed)."""
    toolchain = Toolchain.detect()
    target = binary_path(toolchain)
    if os.access(target, os.X_OK):
        return target
    with _locked(target.parent.parent / f".{target.parent.name}.lock"):
        if os.access(target, os.X_OK):
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"kstatus.partial-{os.getpid()}")
        log = target.with_name("build.log")
        cmd = [gomod.go_binary(), "build", "-v", *BUILD_FLAGS, "-o", str(partial), "."]
        print(
            f"kstatus: building {MODULE_DIR.relative_to(MODULE_DIR.parents[2])} with "
            f"{toolchain.version} (cold: 35-50 s on 2 cores; log: {log})",
            flush=True,
        )
        started = time.monotonic()
        with log.open("w") as sink:
            sink.write(f"$ {' '.join(cmd)}\n")
            sink.flush()
            proc = subprocess.Popen(
                cmd,
                cwd=MODULE_DIR,
                env=gomod.go_env() | {"CGO_ENABLED": "0"},
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            last_beat = started
            try:
                while proc.poll() is None:
                    now = time.monotonic()
                    if now - started > deadline_s:
                        raise BuildError(
                            f"kstatus: go build passed its {deadline_s:.0f} s deadline "
                            f"(see {log}; CACHEFLEET_KSTATUS_BUILD_DEADLINE sets it)"
                        )
                    if now - last_beat >= HEARTBEAT_S:
                        last_beat = now
                        done = sum(
                            not line.startswith(("$ ", "go: "))
                            for line in log.read_text().splitlines()
                        )
                        print(f"kstatus:   ... {now - started:3.0f} s, {done} packages", flush=True)
                    time.sleep(0.5)
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    partial.unlink(missing_ok=True)
        if proc.returncode != 0:
            partial.unlink(missing_ok=True)
            tail = "\n".join(log.read_text().splitlines()[-30:])
            raise BuildError(f"kstatus: go build failed (exit {proc.returncode}):\n{tail}")
        partial.rename(target)
        print(f"kstatus: built in {time.monotonic() - started:.0f} s: {target}", flush=True)
    return target


def versions(binary: Path) -> list[str]:
    """`<module> <version>` of both kstatus libraries linked into the binary."""
    out = subprocess.run(
        [str(binary), "-version"], capture_output=True, text=True, timeout=30, check=True
    )
    return out.stdout.split("\n")[:-1]


def compute(binary: Path, objects: Sequence[Mapping[str, Any]]) -> list[Verdict]:
    """kstatus's verdict on each object, in order. Raises AssertionError where Flux's fork
    and upstream disagree, or where status.Compute refuses an object."""
    stream = "\n".join(json.dumps(obj) for obj in objects)
    out = subprocess.run(
        [str(binary)], input=stream, capture_output=True, text=True, timeout=120, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"kstatus exited {out.returncode}: {out.stderr.strip()}")
    results = json.loads(out.stdout)
    assert len(results) == len(objects), (len(results), len(objects))
    verdicts = []
    for obj, result in zip(objects, results, strict=True):
        flux = result.pop("flux")
        assert flux == result, f"Flux's kstatus differs from upstream: {flux} != {result}"
        assert "error" not in result, f"{result['error']}: {json.dumps(obj)}"
        verdicts.append(Verdict(result["status"], result["message"]))
    return verdicts


@dataclass(frozen=True)
class KStatus:
    """A built kstatus binary: `kstatus(obj)` for one object, `kstatus.many(objs)` for many
    (one process)."""

    binary: Path

    def __call__(self, obj: Mapping[str, Any]) -> Verdict:
        [verdict] = compute(self.binary, [obj])
        return verdict

    def many(self, objects: Sequence[Mapping[str, Any]]) -> list[Verdict]:
        return compute(self.binary, objects)

    def versions(self) -> list[str]:
        return versions(self.binary)


def required(*, in_ci: bool) -> KStatus:
    """The built tool, for the `kstatus` fixture. Without it (no Go, no module proxy, a
    compile error): fail with CI=true, where the kstatus matrix must run; else skip with the
    reason."""
    try:
        return KStatus(build())
    except (BuildError, OSError) as error:
        message = f"the kstatus library (Go, tests/gitops/kstatus) could not be built: {error}"
        if in_ci:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def main(argv: list[str]) -> int:
    """CLI: build (or reuse) the binary, then run it on the files named, or stdin."""
    try:
        binary = build()
    except BuildError as error:
        print(error, file=sys.stderr)
        return 1
    print("; ".join(versions(binary)), file=sys.stderr)
    return subprocess.run([str(binary), *argv], check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
