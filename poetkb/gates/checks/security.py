"""Security checks: the TLS chain verifies against the test CA; the mTLS listener requires a client certificate."""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import subprocess
import time
from urllib.parse import urlsplit

from poetkb.gates import params as p
from poetkb.gates.checks.base import (
    CollectContext,
    CollectError,
    Kind,
    Outcome,
    declare,
    listing,
    no_evidence,
    precheck,
)
from poetkb.gates.evidence import CheckEvidence
from poetkb.gates.probes import RequestSpec, connect_address
from poetkb.gates.records import TlsHandshake

_VERSIONS = {"TLSv1": 1, "TLSv1.1": 2, "TLSv1.2": 3, "TLSv1.3": 4}


def _name(parts: object) -> str:
    """``CN=edge.test, O=poetkb`` from the tuple form ``getpeercert()`` returns."""
    if not isinstance(parts, tuple):
        return ""
    return ", ".join(f"{k}={v}" for rdn in parts for k, v in rdn)


def _chain(host: str, port: int, server_name: str) -> list[str]:
    """Subjects of the certificates the server sends, from ``openssl s_client -showcerts`` (empty without it)."""
    binary = shutil.which("openssl")
    if not binary:
        return []
    try:
        address = connect_address(host)
        where = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        out = subprocess.run([binary, "s_client", "-connect", where, "-servername", server_name,
                              "-showcerts"], input=b"", capture_output=True, timeout=8)
    except (OSError, subprocess.TimeoutExpired):
        return []
    text = out.stdout.decode("utf-8", "replace")
    section = text.split("Certificate chain", 1)[-1].split("\n---\n", 1)[0]
    return [m.group(1).strip() for m in re.finditer(r"^\s*\d+\s+s:(.*)$", section, re.M)]


def handshake(url: str, *, ca_cert: str | None, server_name: str, cert: tuple[str, str] | None = None,
              timeout: float = 5.0) -> TlsHandshake:
    """One verified TLS handshake; failures are recorded with their reason, never raised."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 443
    context = ssl.create_default_context(cafile=ca_cert) if ca_cert else ssl.create_default_context()
    if cert:
        context.load_cert_chain(*cert)
    record: dict[str, object] = {"address": f"{host}:{port}", "server_name": server_name, "client_cert": bool(cert)}
    try:
        with socket.create_connection((connect_address(host), port), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=server_name) as tls:
            peer = tls.getpeercert() or {}
            not_after = peer.get("notAfter")
            days = (ssl.cert_time_to_seconds(str(not_after)) - time.time()) / 86400 if not_after else None
            cipher = tls.cipher()
            record.update(ok=True, verified=True, version=tls.version(), cipher=cipher[0] if cipher else None,
                          peer_subject=_name(peer.get("subject")), peer_issuer=_name(peer.get("issuer")),
                          not_after=str(not_after) if not_after else None,
                          days_left=round(days, 2) if days is not None else None)
    except ssl.SSLCertVerificationError as exc:
        record.update(ok=False, verified=False, error=f"certificate verify failed: {exc.verify_message}")
    except (ssl.SSLError, OSError) as exc:
        record.update(ok=False, verified=False, error=f"{type(exc).__name__}: {exc}")
    record["chain"] = _chain(host, port, server_name)
    return TlsHandshake.model_validate(record)


# -- tls_chain_valid -----------------------------------------------------------------------------------
def collect_tls(ctx: CollectContext, params: p.TlsChainValid) -> None:
    url, ca = ctx.target.tls_url, ctx.target.ca_cert
    if not url:
        raise CollectError("no TLS listener is known; run against the demo edge or pass --tls-url")
    if not ca:
        raise CollectError("no CA certificate to verify against; run against the demo edge or pass --ca-cert")
    record = handshake(url, ca_cert=ca, server_name=params.server_name)
    ctx.writer.handshake(record.model_copy(update={"check": ctx.check_id, "step": "verify"}))
    prober = ctx.prober_for(url, verify=ca)
    prober.send(RequestSpec(path=ctx.url(params.path), step="https", host=params.server_name,
                            extensions={"sni_hostname": params.server_name}))


def evaluate_tls(ev: CheckEvidence, params: p.TlsChainValid) -> Outcome:
    expected = (f"the chain for {params.server_name} verifies against the CA, {params.min_version} or newer, "
                f"valid for at least {params.min_days_valid:g} more days")
    bad = precheck(ev, expected, ["tls.jsonl"])
    if bad:
        return bad
    shakes = [h for h in ev.handshakes if h.step == "verify"] or ev.handshakes
    if not shakes:
        return no_evidence(expected, "no TLS handshake was recorded for this check")
    h = shakes[0]
    details = {"version": h.version, "cipher": h.cipher, "subject": h.peer_subject, "issuer": h.peer_issuer,
               "days_left": h.days_left, "chain": h.chain}
    sent = f"the server sent {len(h.chain)} certificate{'s' if len(h.chain) != 1 else ''}" if h.chain else ""
    if not h.ok:
        return Outcome("fail", expected, h.error or "handshake failed",
                       f"the TLS handshake for {params.server_name} at {h.address} failed: {h.error}"
                       + (f" ({sent}: {listing(h.chain, 3)})" if sent else ""), details, 1)
    observed = f"{h.version}, {h.cipher}; subject {h.peer_subject}; issuer {h.peer_issuer}; {h.days_left} days left"
    problems = []
    if _VERSIONS.get(h.version or "", 0) < _VERSIONS[params.min_version]:
        problems.append(f"negotiated {h.version}, older than {params.min_version}")
    if h.days_left is not None and h.days_left < params.min_days_valid:
        problems.append(f"the certificate expires in {h.days_left:.1f} days (at {h.not_after})")
    if h.chain and len(h.chain) < params.min_chain:
        problems.append(f"{sent}, fewer than {params.min_chain}: the chain is incomplete")
    https = ev.steps("https")
    if https and (https[0].response is None or https[0].response.status >= 400):
        problems.append(f"HTTPS request failed: {https[0].describe()}"
                        + (f" ({https[0].error})" if https[0].error else ""))
    if problems:
        return Outcome("fail", expected, observed, "; ".join(problems), details, 1)
    return Outcome("pass", expected, observed, "", details, 1)


# -- mtls_client_required ------------------------------------------------------------------------------
def collect_mtls(ctx: CollectContext, params: p.MtlsClientRequired) -> None:
    t = ctx.target
    if not t.mtls_url:
        raise CollectError("no mTLS listener is known; run against the demo edge or pass --mtls-url")
    if not (t.ca_cert and t.client_cert and t.client_key):
        raise CollectError("the CA and a client certificate and key are needed; run against the demo edge")
    ext = {"sni_hostname": params.server_name}
    without = ctx.prober_for(t.mtls_url, verify=t.ca_cert)
    without.send(RequestSpec(path=ctx.url(params.path), step="without", host=params.server_name, extensions=ext))
    with_cert = ctx.prober_for(t.mtls_url, verify=t.ca_cert, cert=(t.client_cert, t.client_key))
    with_cert.send(RequestSpec(path=ctx.url(params.path), step="with", host=params.server_name, extensions=ext))


def evaluate_mtls(ev: CheckEvidence, params: p.MtlsClientRequired) -> Outcome:
    expected = "a client without a certificate is refused (handshake failure or 4xx); one with a certificate is served"
    bad = precheck(ev, expected, ["captures.jsonl"])
    if bad:
        return bad
    without, with_ = ev.steps("without"), ev.steps("with")
    if not without or not with_:
        return no_evidence(expected, "the requests with and without a client certificate were not both captured")
    a, b = without[0], with_[0]
    observed = f"without a certificate: {a.describe()}; with one: {b.describe()}"
    details = {"without": a.status or a.error_type, "with": b.status or b.error_type}
    if a.response is not None and a.response.status < 400:
        return Outcome("fail", expected, observed,
                       f"a client with no certificate was served ({a.describe()}): the listener does not require "
                       "client certificates", details, 2)
    if b.response is None or b.response.status >= 400:
        return Outcome("fail", expected, observed,
                       f"a client with a valid certificate was refused: {b.describe()}"
                       + (f" ({b.error})" if b.error else ""), details, 2)
    return Outcome("pass", expected, observed, "", details, 2)


#: the check kinds this module implements, each declared once with its parameters, evidence, collector and
#: evaluator (:mod:`poetkb.gates.checks.registry` finds them; ``poet gate kinds`` lists them)
KINDS = declare(
    Kind("tls_chain_valid", p.TlsChainValid, ("tls_handshake",),
         collect=collect_tls, evaluate=evaluate_tls),
    Kind("mtls_client_required", p.MtlsClientRequired, ("tls_handshake", "http_capture"),
         collect=collect_mtls, evaluate=evaluate_mtls),
)
