"""Start and stop a real Kubernetes control plane on loopback ports, without Docker.

Profile ``api``: etcd + kube-apiserver (seconds to start). Profile ``full``: also
kube-controller-manager, kube-scheduler and kwok with fake CPU and GPU nodes, so Deployments get
Pods, Pods get scheduled and report Ready, owner references are garbage-collected, and claims of
the default StorageClass ``standard`` get a volume (storage.py).
"""

from __future__ import annotations

import atexit
import contextlib
import enum
import json
import os
import secrets
import shutil
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from . import pki as pki_mod
from .binaries import Binaries, BinariesUnavailable, find_kubectl, locate
from .kube import Kubectl, kubeconfig_nonce, kubeconfig_server, write_kubeconfig
from .nodes import KWOK_ANNOTATION, NodeSpec, default_nodes
from .process import ManagedProcess, ProcessRecord, free_ports, port_open, stop_all
from .storage import CONTROLLER_MANAGER_FLAG, remove_volume_dirs, storage_class

STATE_FILE = "state.json"
TEMP_PREFIX = "cachefleet-k8s-"
ADMIN_USER = "cachefleet-admin"
#: The non-admin identity: authenticated, in no privileged group, bound to nothing by default.
DEV_USER = "cachefleet-dev"
DEV_GROUP = "cachefleet:developers"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"


class Profile(enum.StrEnum):
    """Which components run."""

    API = "api"
    FULL = "full"


class StartupError(RuntimeError):
    """A component did not become ready; the message includes the tail of its log."""


class NotOurs(RuntimeError):
    """A kubeconfig or state directory that this package did not create."""


@dataclass(frozen=True)
class Credentials:
    """One identity: user name, bearer token and a kubeconfig that uses it."""

    user: str
    token: str
    kubeconfig: Path
    groups: tuple[str, ...]


@dataclass
class Cluster:
    """A running control plane, as handed to tests and printed by ``python -m cluster up``."""

    profile: Profile
    workdir: Path
    server: str
    ca_cert: Path
    admin: Credentials
    user: Credentials
    nonce: str
    binaries: Binaries
    nodes: list[str] = field(default_factory=list)
    startup_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (system:masters)."""
        return self.admin.kubeconfig

    @property
    def kubectl(self) -> Kubectl:
        """kubectl as the admin."""
        self.assert_ours(self.admin.kubeconfig)
        return Kubectl(self.binaries.kubectl, self.admin.kubeconfig)

    @property
    def user_kubectl(self) -> Kubectl:
        """kubectl as the non-admin user."""
        self.assert_ours(self.user.kubeconfig)
        return Kubectl(self.binaries.kubectl, self.user.kubeconfig)

    def env(self) -> dict[str, str]:
        """Environment variables that point a client (kopf, kubectl) at this cluster."""
        return {"KUBECONFIG": str(self.kubeconfig)}

    def assert_ours(self, kubeconfig: Path) -> None:
        """Refuse any kubeconfig that this control plane did not write."""
        if kubeconfig_nonce(kubeconfig) != self.nonce:
            raise NotOurs(f"{kubeconfig} was not created by this control plane; refusing to use it")
        if kubeconfig_server(kubeconfig) != self.server:
            raise NotOurs(f"{kubeconfig} points at another server than {self.server}")


def _https_get(url: str, *, ca: Path | None, token: str | None = None) -> tuple[int, str]:
    """GET over HTTPS (verified against ``ca`` when given); (status, body), 0 when unreachable."""
    if ca is not None:
        context = ssl.create_default_context(cafile=str(ca))
    else:  # kube-controller-manager/scheduler serve /healthz with a self-signed certificate
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
        with opener.open(request, timeout=5) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode(errors="replace")
    except (OSError, ssl.SSLError):
        return 0, ""


class ControlPlane:
    """Owns the processes of one control plane and the directory they live in."""

    def __init__(
        self,
        profile: Profile | str = Profile.API,
        workdir: Path | None = None,
        *,
        binaries: Binaries | None = None,
        nodes: list[NodeSpec] | None = None,
        tie_to_parent: bool = True,
        remove_workdir: bool | None = None,
    ) -> None:
        self.profile = Profile(profile)
        self.binaries = binaries or locate()
        self.nodes = nodes if nodes is not None else default_nodes()
        self._own_tmp = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{self.profile}-"))
        self.remove_workdir = self._own_tmp if remove_workdir is None else remove_workdir
        self.tie_to_parent = tie_to_parent
        self.processes: list[ManagedProcess] = []
        self.cluster: Cluster | None = None
        self._stopped = False
        self._detached = False

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout_s: float = 180.0) -> Cluster:
        """Start every component of the profile; stop what was started if anything fails."""
        sweep_stale_tempdirs()
        atexit.register(self.stop)
        try:
            return self._start(timeout_s)
        except BaseException:
            self.stop()
            raise

    def detach(self) -> None:
        """Leave the processes running after this Python process exits (``cluster up``)."""
        atexit.unregister(self.stop)
        self._stopped = True
        self._detached = True
        self._write_state()  # no owner any more: sweep_stale_tempdirs() leaves it alone

    def stop(self) -> None:
        """Stop our processes (newest first), check their ports closed, remove the temp dir."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        if self.cluster is not None and self.profile is Profile.FULL:
            remove_volume_dirs(self.cluster.kubectl)
        records = [proc.record for proc in reversed(self.processes)]
        stop_all(records)
        for proc in self.processes:
            with contextlib.suppress(Exception):
                proc.popen.wait(timeout=5)
        busy = [p for r in records for p in r.ports if port_open(p)]
        if busy:
            print(f"cluster: warning: ports still open after stop: {busy}")
        if self.remove_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            (self.workdir / STATE_FILE).unlink(missing_ok=True)

    # -- internals -----------------------------------------------------------------------

    def _start(self, timeout_s: float) -> Cluster:
        t0 = time.monotonic()
        times: dict[str, float] = {}
        work = self.workdir
        work.mkdir(parents=True, exist_ok=True)
        keys = pki_mod.generate(work / "pki")
        full = self.profile is Profile.FULL
        etcd_port, peer_port, api_port, *extra = free_ports(6 if full else 3)
        server = f"https://127.0.0.1:{api_port}"
        nonce = secrets.token_hex(16)
        identities: dict[str, tuple[str, tuple[str, ...]]] = {
            ADMIN_USER: (ADMIN_USER, ("system:masters",)),
            DEV_USER: (DEV_USER, (DEV_GROUP,)),
        }
        if full:  # each component under its own name (audit, managedFields), all privileged
            identities |= {
                "kcm": ("system:kube-controller-manager", ("system:masters",)),
                "scheduler": ("system:kube-scheduler", ("system:masters",)),
                "kwok": ("kwok-controller", ("system:masters",)),
            }
        tokens = {key: secrets.token_urlsafe(24) for key in identities}
        lines = [
            f'{tokens[key]},{user},{key}-uid,"{",".join(groups)}"'
            for key, (user, groups) in identities.items()
        ]
        token_file = work / "tokens.csv"
        token_file.write_text("\n".join(lines) + "\n")
        token_file.chmod(0o600)
        configs = {
            key: write_kubeconfig(
                work / ("kubeconfig" if key == ADMIN_USER else f"{key}.kubeconfig"),
                server=server,
                ca_cert=keys.ca_cert,
                user=identities[key][0],
                token=tokens[key],
                nonce=nonce,
            )
            for key in identities
        }
        self.cluster = Cluster(
            profile=self.profile,
            workdir=work,
            server=server,
            ca_cert=keys.ca_cert,
            admin=Credentials(
                ADMIN_USER, tokens[ADMIN_USER], configs[ADMIN_USER], ("system:masters",)
            ),
            user=Credentials(DEV_USER, tokens[DEV_USER], configs[DEV_USER], (DEV_GROUP,)),
            nonce=nonce,
            binaries=self.binaries,
            startup_seconds=times,
        )

        etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=cachefleet-e2e",
                f"--data-dir={work / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=cachefleet-e2e={peer_url}",
                "--unsafe-no-fsync=true",  # throw-away data: no fsync, much faster on CI disks
                "--log-level=warn",
            ],
            ports=[etcd_port, peer_port],
        )
        self._wait_http("etcd", f"{etcd_url}/health", timeout_s, ca=None, expect='"health":"true"')
        times["etcd"] = round(time.monotonic() - t0, 2)

        admission = [] if full else ["--disable-admission-plugins=ServiceAccount"]
        self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--tls-cert-file={keys.serving_cert}",
                f"--tls-private-key-file={keys.serving_key}",
                f"--client-ca-file={keys.ca_cert}",
                # Published in kube-system/extension-apiserver-authentication, which the
                # controller-manager and scheduler read for their own /healthz servers.
                f"--requestheader-client-ca-file={keys.ca_cert}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--cert-dir={work / 'apiserver-certs'}",
                f"--token-auth-file={token_file}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={keys.sa_pub}",
                f"--service-account-signing-key-file={keys.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                # Single loopback apiserver: no kubernetes Endpoints to reconcile, no APF queues.
                "--endpoint-reconciler-type=none",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                *admission,
            ],
            ports=[api_port],
        )
        self._wait_http(
            "kube-apiserver",
            f"{server}/readyz",
            timeout_s,
            ca=keys.ca_cert,
            token=tokens[ADMIN_USER],
        )
        times["kube-apiserver"] = round(time.monotonic() - t0, 2)

        if full:
            self._start_controllers(work, keys, configs, extra, timeout_s)
            times["controllers"] = round(time.monotonic() - t0, 2)
            self._create_nodes(timeout_s)
            times["nodes"] = round(time.monotonic() - t0, 2)
        times["total"] = round(time.monotonic() - t0, 2)
        self._write_state()
        return self.cluster

    def _start_controllers(
        self,
        work: Path,
        keys: pki_mod.Pki,
        configs: dict[str, Path],
        ports: list[int],
        timeout_s: float,
    ) -> None:
        kcm_port, sched_port, kwok_port = ports
        common = ["--bind-address=127.0.0.1", "--leader-elect=false", "--profiling=false"]
        self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={configs['kcm']}",
                f"--authentication-kubeconfig={configs['kcm']}",
                f"--authorization-kubeconfig={configs['kcm']}",
                f"--secure-port={kcm_port}",
                f"--cert-dir={work / 'kcm-certs'}",
                *common,
                f"--service-account-private-key-file={keys.sa_key}",
                f"--root-ca-file={keys.ca_cert}",
                f"--cluster-signing-cert-file={keys.ca_cert}",
                f"--cluster-signing-key-file={keys.ca_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--use-service-account-credentials=false",
                "--concurrent-gc-syncs=5",
                CONTROLLER_MANAGER_FLAG,  # volumes for the default StorageClass (storage.py)
            ],
            ports=[kcm_port],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(self.binaries.kube_scheduler),
                f"--kubeconfig={configs['scheduler']}",
                f"--authentication-kubeconfig={configs['scheduler']}",
                f"--authorization-kubeconfig={configs['scheduler']}",
                f"--secure-port={sched_port}",
                f"--cert-dir={work / 'scheduler-certs'}",
                *common,
            ],
            ports=[sched_port],
        )
        key, value = KWOK_ANNOTATION
        self._spawn(
            "kwok",
            [
                str(self.binaries.kwok),
                f"--kubeconfig={configs['kwok']}",
                f"--config={self.binaries.kwok_stages}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={key}={value}",
                f"--server-address=127.0.0.1:{kwok_port}",
                "--node-ip=10.0.0.1",
                f"--cidr={POD_CIDR}",
                "--node-lease-duration-seconds=40",
            ],
            ports=[kwok_port],
        )
        self._wait_http(
            "kube-controller-manager", f"https://127.0.0.1:{kcm_port}/healthz", timeout_s, ca=None
        )
        self._wait_http(
            "kube-scheduler", f"https://127.0.0.1:{sched_port}/healthz", timeout_s, ca=None
        )
        self._wait_http("kwok", f"http://127.0.0.1:{kwok_port}/healthz", timeout_s, ca=None)

    def _create_nodes(self, timeout_s: float) -> None:
        assert self.cluster is not None
        kubectl = self.cluster.kubectl
        kubectl.create([storage_class(), *(node.manifest() for node in self.nodes)])
        names = [node.name for node in self.nodes]
        self.cluster.nodes = names

        def all_ready() -> bool:
            items = kubectl.json("get", "nodes", *names)["items"]
            return len(items) == len(names) and all(
                any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in n["status"].get("conditions", [])
                )
                for n in items
            )

        self._wait("kwok nodes Ready", all_ready, timeout_s)
        # Pods need the namespace's default ServiceAccount (made by kube-controller-manager).
        self._wait(
            "default ServiceAccount",
            lambda: (
                kubectl.run(
                    "get", "serviceaccount", "default", "-n", "default", check=False
                ).returncode
                == 0
            ),
            timeout_s,
        )

    def _spawn(self, name: str, argv: list[str], *, ports: list[int]) -> ManagedProcess:
        proc = ManagedProcess(
            name,
            argv,
            self.workdir / "logs" / f"{name}.log",
            ports=ports,
            tie_to_parent=self.tie_to_parent,
        )
        self.processes.append(proc)
        self._write_state()
        return proc

    def _wait_http(
        self,
        name: str,
        url: str,
        timeout_s: float,
        *,
        ca: Path | None,
        token: str | None = None,
        expect: str = "ok",
    ) -> None:
        def ready() -> bool:
            if url.startswith("https://"):
                status, body = _https_get(url, ca=ca, token=token)
            else:
                status, body = _http_get(url)
            return status == 200 and expect in body

        self._wait(f"{name} ({url})", ready, timeout_s)

    def _wait(self, what: str, probe: Callable[[], bool], timeout_s: float) -> None:
        """Poll ``probe`` while checking that no component has died."""

        def check() -> bool:
            for proc in self.processes:
                code = proc.exited()
                if code is not None:
                    raise StartupError(
                        f"{proc.record.name} exited with {code} while waiting for {what}; "
                        f"log {proc.record.log}:\n{proc.log_tail()}"
                    )
            return bool(probe())

        deadline = time.monotonic() + timeout_s
        while True:
            if check():
                return
            if time.monotonic() >= deadline:
                tails = "\n".join(f"--- {p.record.name}:\n{p.log_tail(10)}" for p in self.processes)
                raise StartupError(f"timed out after {timeout_s:.0f}s waiting for {what}\n{tails}")
            time.sleep(0.2)

    def _write_state(self) -> None:
        """Record PIDs and paths so another process (``python -m cluster down``) can stop them."""
        cluster = self.cluster
        state = {
            "profile": str(self.profile),
            "owner_pid": None if self._detached else os.getpid(),
            "nonce": cluster.nonce if cluster else None,
            "server": cluster.server if cluster else None,
            "kubeconfig": str(cluster.kubeconfig) if cluster else None,
            "user_kubeconfig": str(cluster.user.kubeconfig) if cluster else None,
            "nodes": cluster.nodes if cluster else [],
            "startup_seconds": cluster.startup_seconds if cluster else {},
            "processes": [proc.record.as_dict() for proc in self.processes],
        }
        target = self.workdir / STATE_FILE
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(target)


def _http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode(errors="replace")
    except OSError:
        return 0, ""


def read_state(workdir: Path) -> dict[str, object] | None:
    """The state file of a control plane started in ``workdir`` (None if there is none)."""
    try:
        data = json.loads((workdir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def state_records(state: dict[str, object]) -> list[ProcessRecord]:
    """Process records from a state file, with sanity checks."""
    raw = state.get("processes")
    if not isinstance(raw, list):
        raise NotOurs("state file has no process list")
    return [ProcessRecord(**item) for item in raw]


def stop_from_state(workdir: Path, *, remove: bool = True) -> list[str]:
    """Stop a control plane started by another process (``python -m cluster up``).

    Only PIDs listed in the state file whose start time still matches are signalled.
    Returns the names of the components that were still running.
    """
    state = read_state(workdir)
    if state is None:
        return []
    kubeconfig = state.get("kubeconfig")
    if isinstance(kubeconfig, str) and kubeconfig_nonce(Path(kubeconfig)) != state.get("nonce"):
        raise NotOurs(f"{workdir} does not hold a control plane started by this package")
    records = state_records(state)
    running = [r.name for r in records if r.alive()]
    if isinstance(kubeconfig, str) and state.get("profile") == Profile.FULL and running:
        with contextlib.suppress(BinariesUnavailable):
            remove_volume_dirs(Kubectl(find_kubectl(), Path(kubeconfig)))
    stop_all(list(reversed(records)))
    busy = [p for r in records for p in r.ports if port_open(p)]
    if busy:
        print(f"cluster: warning: ports still open after stop: {busy}")
    if remove:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        (workdir / STATE_FILE).unlink(missing_ok=True)
    return running


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_tempdirs() -> list[Path]:
    """Remove temp control planes whose owning process died without cleaning up (SIGKILL).

    Only directories named like ours, holding our state file, whose owner PID is gone; any
    server still listed there as running (same PID and start time) is stopped first.
    """
    removed: list[Path] = []
    for candidate in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        state = read_state(candidate)
        owner = state.get("owner_pid") if state else None
        if not isinstance(owner, int) or owner == os.getpid() or _pid_alive(owner):
            continue
        with contextlib.suppress(NotOurs, OSError, TypeError):
            stop_from_state(candidate, remove=True)
            removed.append(candidate)
    return removed
