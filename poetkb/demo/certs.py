"""Certificates for the demo edge, made with the ``openssl`` binary at ``poet demo up``.

A local test CA signs an intermediate CA, which signs the server certificate
(SAN edge.test, other.test, localhost, 127.0.0.1) and a client certificate for
the mTLS listener. Nothing here is ever committed: the files live in
``RUNDIR/certs`` and are made again when missing or close to expiry. Keys are
EC P-256, which openssl makes in milliseconds.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from poetkb.environment import find_binary, install_hint
from poetkb.errors import EnvironmentProblem

DAYS = 30
SERVER_NAMES = ("edge.test", "other.test", "localhost")

_EXT = {
    "ca": "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
          "subjectKeyIdentifier=hash\n",
    "intermediate": "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n"
                    "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n",
    "server": "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
              "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n"
              "subjectAltName={san}\n",
    "client": "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
              "extendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n",
}


@dataclass(frozen=True)
class CertFiles:
    """Paths of the demo's certificates and keys."""

    dir: Path

    @property
    def ca(self) -> Path:
        """The root of the local test CA: what clients trust."""
        return self.dir / "ca.pem"

    @property
    def ca_chain(self) -> Path:
        """Intermediate + root: what the mTLS listener verifies client certificates against."""
        return self.dir / "ca-chain.pem"

    @property
    def server_fullchain(self) -> Path:
        return self.dir / "server-fullchain.pem"

    @property
    def server_leaf(self) -> Path:
        return self.dir / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.dir / "server.key"

    @property
    def haproxy_fullchain(self) -> Path:
        """Leaf + intermediate + key in one file, as HAProxy's ``crt`` wants it."""
        return self.dir / "haproxy-fullchain.pem"

    @property
    def haproxy_leaf(self) -> Path:
        return self.dir / "haproxy-leaf.pem"

    @property
    def client_cert(self) -> Path:
        return self.dir / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.dir / "client.key"

    def complete(self) -> bool:
        paths = (self.ca, self.ca_chain, self.server_fullchain, self.server_leaf, self.server_key,
                 self.haproxy_fullchain, self.haproxy_leaf, self.client_cert, self.client_key)
        return all(p.is_file() and p.stat().st_size > 0 for p in paths)


def _openssl() -> str:
    found = find_binary("openssl")
    if found is None:
        raise EnvironmentProblem("openssl is not installed; the demo needs it to make its test certificates",
                                 hint=install_hint("openssl"))
    return found


def _run(args: list[str], cwd: Path) -> None:
    try:
        subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=True, timeout=30)
    except subprocess.CalledProcessError as exc:
        raise EnvironmentProblem(f"openssl failed ({' '.join(args[1:3])}): {exc.stderr.strip()[-400:]}") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvironmentProblem(f"openssl failed: {exc}") from exc


def _still_valid(cert: Path, openssl: str) -> bool:
    result = subprocess.run([openssl, "x509", "-checkend", "86400", "-noout", "-in", str(cert)],
                            capture_output=True, timeout=10)
    return result.returncode == 0


def ensure_certs(directory: Path, names: Sequence[str] = SERVER_NAMES) -> CertFiles:
    """Make the CA, intermediate, server and client certificates unless valid ones are there already.

    ``names`` are the server certificate's DNS names (the demo's by default; a user's own configuration
    gets certificates for its own server names); 127.0.0.1 is always in it.
    """
    files = CertFiles(directory)
    openssl = _openssl()
    if files.complete() and _still_valid(files.server_leaf, openssl) and _still_valid(files.ca, openssl):
        return files
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    san = ",".join([*(f"DNS:{n}" for n in names), "IP:127.0.0.1"])
    config = "[req]\ndistinguished_name = dn\n[dn]\n" + "".join(
        f"[{n}]\n{t.replace('{san}', san)}" for n, t in _EXT.items())
    (directory / "openssl.cnf").write_text(config)
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-config", "openssl.cnf"]
    _run([openssl, "req", "-x509", "-new", *newkey, "-keyout", "ca.key", "-out", "ca.pem", "-days", str(DAYS),
          "-subj", "/O=poetkb demo/CN=poetkb demo test root CA", "-extensions", "ca"], directory)
    for name, issuer, subject in (
        ("intermediate", "ca", "/O=poetkb demo/CN=poetkb demo intermediate CA"),
        ("server", "intermediate", f"/O=poetkb demo/CN={names[0] if names else 'localhost'}"),
        ("client", "intermediate", "/O=poetkb demo/CN=poetkb demo client"),
    ):
        _run([openssl, "req", "-new", *newkey, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject],
             directory)
        _run([openssl, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.pem", "-CAkey", f"{issuer}.key",
              "-set_serial", str(secrets.randbits(62) + 1), "-days", str(DAYS),
              "-extfile", "openssl.cnf", "-extensions", name, "-out", f"{name}.pem"], directory)
    read = {n: (directory / n).read_text() for n in ("ca.pem", "intermediate.pem", "server.pem", "server.key")}
    files.ca_chain.write_text(read["intermediate.pem"] + read["ca.pem"])
    files.server_fullchain.write_text(read["server.pem"] + read["intermediate.pem"])
    files.haproxy_fullchain.write_text(read["server.pem"] + read["intermediate.pem"] + read["server.key"])
    files.haproxy_leaf.write_text(read["server.pem"] + read["server.key"])
    for key in directory.glob("*.key"):
        key.chmod(0o600)
    return files
