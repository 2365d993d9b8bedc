"""Keys and certificates for one throw-away control plane, made with the openssl CLI."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pki:
    """Paths of the generated material (all under one directory, mode 0700)."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    sa_key: Path
    sa_pub: Path


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError(
            "openssl is required to make the control plane's keys (apt-get install openssl)"
        )
    subprocess.run([openssl, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def generate(directory: Path) -> Pki:
    """A CA, a serving certificate for 127.0.0.1/localhost signed by it, and a SA key pair."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    pki = Pki(
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        sa_key=directory / "sa.key",
        sa_pub=directory / "sa.pub",
    )
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", pki.ca_key.name, "-out", pki.ca_cert.name,
        "-days", "30", "-subj", "/CN=cachefleet-e2e-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "req", "-x509", *ec, "-keyout", pki.serving_key.name, "-out", pki.serving_cert.name,
        "-days", "30", "-subj", "/CN=kube-apiserver",
        "-CA", pki.ca_cert.name, "-CAkey", pki.ca_key.name,
        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc",
        "-addext", "basicConstraints=critical,CA:FALSE",
        "-addext", "extendedKeyUsage=serverAuth",
        cwd=directory,
    )  # fmt: skip
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
             "-out", pki.sa_key.name, cwd=directory)  # fmt: skip
    _openssl("pkey", "-in", pki.sa_key.name, "-pubout", "-out", pki.sa_pub.name, cwd=directory)
    for key in (pki.ca_key, pki.serving_key, pki.sa_key):
        key.chmod(0o600)
    return pki
