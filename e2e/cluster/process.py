"""Start, identify and stop the server processes of one control plane, by PID only."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (held open together so none repeats)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_open(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _die_with_parent() -> None:
    """Child side of Popen: get SIGKILL when the parent dies without stopping us.

    SIGKILL, not SIGTERM: with etcd gone at the same moment, kube-apiserver's graceful
    shutdown hangs on its storage connection, and nothing is left to wait for it.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _start_ticks(pid: int) -> int | None:
    """The process start time from /proc (to tell our PID from a recycled one)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime), counted after the ")" that closes the command name.
    return int(stat.rsplit(")", 1)[1].split()[19])


@dataclass
class ProcessRecord:
    """What is needed to find (and only find) a process we started, from another process."""

    name: str
    pid: int
    start_ticks: int
    executable: str
    log: str
    ports: list[int]

    def alive(self) -> bool:
        """True while the PID still denotes the very process we started."""
        if _start_ticks(self.pid) != self.start_ticks:
            return False
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return False
        return stat.rsplit(")", 1)[1].split()[0] != "Z"

    def signal(self, sig: int) -> None:
        """Send ``sig`` if the PID is still ours; a vanished process is fine."""
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class ManagedProcess:
    """One server we started: its Popen (when we are the parent) and its record."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log: Path,
        *,
        ports: list[int],
        tie_to_parent: bool,
        env: dict[str, str] | None = None,
    ) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as sink:
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, not the servers
                preexec_fn=_die_with_parent if tie_to_parent else None,
                env=env,
            )
        ticks = _start_ticks(self.popen.pid)
        self.record = ProcessRecord(
            name=name,
            pid=self.popen.pid,
            start_ticks=ticks if ticks is not None else -1,
            executable=argv[0],
            log=str(log),
            ports=ports,
        )

    def exited(self) -> int | None:
        """The exit code once the process has ended, else None."""
        return self.popen.poll()

    def log_tail(self, lines: int = 25) -> str:
        """The last lines of the process's log, for error messages."""
        return log_tail(Path(self.record.log), lines)


def log_tail(path: Path, lines: int = 25) -> str:
    """Last ``lines`` lines of a log file ('' if unreadable)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def stop_all(records: list[ProcessRecord], *, grace_s: float = 15.0) -> list[str]:
    """SIGTERM the processes (in the given order), then SIGKILL any that outlive ``grace_s``.

    Returns the names of processes that had to be killed. A zombie counts as stopped (its
    parent reaps it); the start-time check guards records read from a state file against PID
    reuse.
    """
    killed: list[str] = []
    for record in records:
        record.signal(signal.SIGTERM)
        if not _wait(record.alive, grace_s):
            record.signal(signal.SIGKILL)
            killed.append(record.name)
            _wait(record.alive, 5.0)
    return killed


def _wait(alive: Callable[[], bool], timeout_s: float) -> bool:
    """Wait for ``alive()`` to turn false; True if it did in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            return True
        time.sleep(0.1)
    return not alive()
