"""``python -m cluster up|down|status|build|gomod`` (run with PYTHONPATH=e2e)."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
from pathlib import Path
from types import FrameType

from . import build, gomod
from .binaries import BinariesUnavailable, find_kubectl, locate
from .control_plane import (
    ControlPlane,
    NotOurs,
    Profile,
    StartupError,
    read_state,
    state_records,
    stop_from_state,
)
from .kube import Kubectl, kubeconfig_nonce
from .versions import cache_root


def default_state_dir() -> Path:
    """Where ``up`` keeps the background cluster, so that ``down`` finds it."""
    return cache_root() / "cluster"


def path_line() -> str | None:
    """`export PATH=...` with the kubectl and helm of the pins first (docs/quickstart.md uses
    both), or None when the binaries are not built."""
    try:
        dirs = dict.fromkeys(str(p.parent) for p in (find_kubectl(), locate().helm))
    except BinariesUnavailable:
        return None
    return f"export PATH={':'.join(dirs)}:$PATH"


def _print_exports(kubeconfig: object) -> None:
    print(f"export KUBECONFIG={kubeconfig}")
    line = path_line()
    if line:
        print(line)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def cmd_up(args: argparse.Namespace) -> int:
    workdir: Path = args.dir
    state = read_state(workdir)
    if state is not None:
        records = state_records(state)
        if records and all(r.alive() for r in records):
            print(f"cluster: already running ({state.get('profile')}) in {workdir}")
            _print_exports(state.get("kubeconfig"))
            return 0
        print(f"cluster: cleaning up a stopped cluster in {workdir}")
        stop_from_state(workdir)
    elif workdir.exists() and any(workdir.iterdir()):
        if kubeconfig_nonce(workdir / "kubeconfig") is None:
            print(
                f"cluster: {workdir} exists and was not made by this tool; refusing",
                file=sys.stderr,
            )
            return 2
        shutil.rmtree(workdir)
    # Stop what was started if interrupted during start-up (also when SIGINT was inherited
    # as ignored, e.g. from a non-interactive shell's background job).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    plane = ControlPlane(args.profile, workdir, tie_to_parent=False, remove_workdir=False)
    print(f"cluster: starting the {plane.profile} profile in {workdir}", flush=True)
    cluster = plane.start()
    plane.detach()
    times = ", ".join(f"{k} {v:.1f}s" for k, v in cluster.startup_seconds.items())
    print(f"cluster: ready ({times})")
    if cluster.nodes:
        print(f"cluster: kwok nodes: {', '.join(cluster.nodes)}")
    print(f"cluster: non-admin kubeconfig ({cluster.user.user}): {cluster.user.kubeconfig}")
    print(f"cluster: logs in {workdir / 'logs'}; stop with `make cluster-down`")
    _print_exports(cluster.kubeconfig)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    try:
        running = stop_from_state(args.dir)
    except NotOurs as error:
        print(f"cluster: {error}", file=sys.stderr)
        return 2
    print(f"cluster: stopped {', '.join(running)}" if running else "cluster: nothing running")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    state = read_state(args.dir)
    if state is None:
        print(f"cluster: not running (no state in {args.dir})")
        return 3
    records = state_records(state)
    for record in records:
        print(
            f"  {record.name:<24} pid {record.pid:<8} {'running' if record.alive() else 'STOPPED'}"
        )
    kubeconfig = Path(str(state.get("kubeconfig")))
    up = bool(records) and all(r.alive() for r in records)
    if up:
        kubectl = Kubectl(find_kubectl(), kubeconfig)
        ready = kubectl.run("get", "--raw", "/readyz", check=False)
        print(f"  /readyz: {ready.stdout.strip() or ready.stderr.strip()}")
        _print_exports(kubeconfig)
    return 0 if up else 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a control plane in the background")
    up.add_argument("--profile", choices=[p.value for p in Profile], default=Profile.FULL.value)
    for name in ("down", "status"):
        sub.add_parser(name, help=f"{name} the background control plane")
    for p in sub.choices.values():
        p.add_argument("--dir", type=Path, default=default_state_dir(), help="state directory")
    b = sub.add_parser("build", help="build the binaries into the versioned cache (make k8s-bins)")
    b.add_argument("--force", action="store_true", help="rebuild even if cached")
    b.add_argument("--soft", action="store_true", help="outside CI, warn instead of failing")
    sub.add_parser("gomod", help="regenerate e2e/tools/go.mod from versions.toml")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            return build.main([f for f in ("--force", "--soft") if getattr(args, f[2:])])
        if args.command == "gomod":
            gomod.generate()
            return 0
        return {"up": cmd_up, "down": cmd_down, "status": cmd_status}[args.command](args)
    except (BinariesUnavailable, StartupError, NotOurs) as error:
        print(f"cluster: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cluster: interrupted; stopped what was started", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
