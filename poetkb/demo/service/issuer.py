"""The local token issuer and the slow dependency: one small process (the "sidecar") on two loopback ports.

The issuer makes an RSA key at start (and one more at each rotation), serves
the public keys as a JWKS at ``/jwks.json`` and signs tokens with chosen claims
through its admin API, so a gate mints valid tokens without ever holding a
private key. ``PUT /__poet/fault {"jwks_down": true}`` makes the JWKS endpoint
answer 503, like an identity provider outage. It counts JWKS fetches, so a gate
can see how often the service refetches keys.

The dependency answers ``/work`` after the latency its admin API sets, standing
in for a slow downstream service.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_KEYS = 4
ISSUER = "https://issuer.poet.test"
AUDIENCE = "poet-demo-service"


class KeyRing:
    """The issuer's signing keys, newest last; at most ``MAX_KEYS`` are published."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.keys: list[tuple[str, Any]] = []
        self.jwks_fetches = 0
        self.jwks_down = False
        self.rotate()

    def rotate(self) -> str:
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        kid = f"k-{uuid.uuid4().hex[:12]}"
        with self.lock:
            self.keys = [*self.keys, (kid, key)][-MAX_KEYS:]
        return kid

    def jwks(self) -> dict[str, Any]:
        import jwt

        with self.lock:
            keys = list(self.keys)
        out = []
        for kid, key in keys:
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            jwk.update(kid=kid, use="sig", alg="RS256")
            out.append(jwk)
        return {"keys": out}

    def public_pem(self) -> str:
        from cryptography.hazmat.primitives import serialization

        with self.lock:
            _, key = self.keys[-1]
        return key.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def sign(self, claims: dict[str, Any], *, kid: str | None = None) -> str:
        """A token signed with the newest key (or ``kid``); standard claims filled in unless given (None drops)."""
        import jwt

        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "iat": now, "exp": now + 300}
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        with self.lock:
            chosen = next(((k, v) for k, v in self.keys if k == kid), None) if kid else self.keys[-1]
        if chosen is None:
            raise KeyError(kid)
        return jwt.encode(body, chosen[1], algorithm="RS256", headers={"kid": chosen[0]})


def _reply(handler: BaseHTTPRequestHandler, status: int, body: Any) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def _body(handler: BaseHTTPRequestHandler) -> dict[str, Any]:
    length = min(int(handler.headers.get("Content-Length") or 0), 64 * 1024)
    if not length:
        return {}
    data = json.loads(handler.rfile.read(length) or b"{}")
    return data if isinstance(data, dict) else {}


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


def issuer_handler(ring: KeyRing) -> type[BaseHTTPRequestHandler]:
    class Issuer(_Quiet):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = self.path.split("?", 1)[0]
            if path == "/jwks.json":
                with ring.lock:
                    ring.jwks_fetches += 1
                    down = ring.jwks_down
                if down:
                    _reply(self, 503, {"error": "jwks endpoint down (injected)"})
                else:
                    _reply(self, 200, ring.jwks())
            elif path == "/__poet/health":
                _reply(self, 200, {"ok": True})
            elif path == "/__poet/counters":
                with ring.lock:
                    _reply(self, 200, {"jwks_fetches": ring.jwks_fetches, "kids": [k for k, _ in ring.keys],
                                       "jwks_down": ring.jwks_down})
            elif path == "/__poet/public.pem":
                _reply(self, 200, {"pem": ring.public_pem()})
            else:
                _reply(self, 404, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0]
            try:
                body = _body(self)
            except ValueError:
                _reply(self, 400, {"error": "bad json"})
                return
            if path == "/__poet/token":
                try:
                    token = ring.sign(body.get("claims") or {}, kid=body.get("kid"))
                except KeyError:
                    _reply(self, 404, {"error": "unknown kid"})
                    return
                _reply(self, 200, {"token": token})
            elif path == "/__poet/rotate":
                _reply(self, 200, {"kid": ring.rotate()})
            else:
                _reply(self, 404, {"error": "not found"})

        def do_PUT(self) -> None:  # noqa: N802
            if self.path.split("?", 1)[0] != "/__poet/fault":
                _reply(self, 404, {"error": "not found"})
                return
            body = _body(self)
            with ring.lock:
                ring.jwks_down = bool(body.get("jwks_down", False))
            _reply(self, 200, {"jwks_down": ring.jwks_down})

        def do_DELETE(self) -> None:  # noqa: N802
            with ring.lock:
                ring.jwks_down = False
            _reply(self, 200, {"jwks_down": False})

    return Issuer


class Dependency:
    """The slow dependency's state: how long ``/work`` takes, whether it fails, and when each attempt came."""

    def __init__(self) -> None:
        self.latency_ms = 0
        self.fail_status = 0
        self.retry_after_s: float | None = None
        self.calls = 0
        #: one entry per request to /work: the caller's X-Call-Id and when it arrived (bounded)
        self.attempts: deque[dict[str, Any]] = deque(maxlen=5000)
        #: the message broker's side: events received at /publish (kept across heals; bounded), and an outage
        self.broker_down = False
        self.events: deque[dict[str, Any]] = deque(maxlen=20_000)

    def reset(self) -> None:
        self.latency_ms, self.fail_status, self.retry_after_s = 0, 0, None
        self.broker_down = False
        self.attempts.clear()


def dependency_handler(dep: Dependency) -> type[BaseHTTPRequestHandler]:
    class Work(_Quiet):
        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0]
            if path == "/work":
                dep.calls += 1
                dep.attempts.append({"call": str(self.headers.get("X-Call-Id") or "")[:64],
                                     "t": round(time.monotonic(), 4)})
                time.sleep(min(dep.latency_ms, 30_000) / 1000)
                if dep.fail_status:
                    body = json.dumps({"error": "failing on purpose"}).encode()
                    self.send_response(dep.fail_status)
                    if dep.retry_after_s is not None:
                        self.send_header("Retry-After", f"{dep.retry_after_s:g}")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                _reply(self, 200, {"ok": True, "latency_ms": dep.latency_ms})
            elif path == "/__poet/health":
                _reply(self, 200, {"ok": True})
            elif path == "/__poet/attempts":
                _reply(self, 200, {"attempts": list(dep.attempts)})
            elif path == "/__poet/events":
                _reply(self, 200, {"events": list(dep.events)})
            else:
                _reply(self, 404, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path.split("?", 1)[0] != "/publish":
                _reply(self, 404, {"error": "not found"})
                return
            body = _body(self)
            if dep.broker_down:
                _reply(self, 503, {"error": "broker unavailable"})
                return
            dep.events.append({"event_id": str(body.get("event_id", ""))[:80],
                               "account_id": body.get("account_id"), "order_id": body.get("order_id")})
            _reply(self, 200, {"acked": True})

        def do_PUT(self) -> None:  # noqa: N802
            body = _body(self)
            dep.broker_down = bool(body.get("broker_down", False))
            dep.latency_ms = max(0, min(int(body.get("latency_ms", 0)), 30_000))
            status = int(body.get("fail_status", 0))
            dep.fail_status = status if 500 <= status <= 599 or status == 429 else 0
            after = body.get("retry_after_s")
            dep.retry_after_s = max(0.0, min(float(after), 30.0)) if after is not None else None
            _reply(self, 200, {"latency_ms": dep.latency_ms, "fail_status": dep.fail_status})

        def do_DELETE(self) -> None:  # noqa: N802
            dep.reset()
            _reply(self, 200, {"latency_ms": 0})

    return Work


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="the demo service tier's token issuer and slow dependency")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--issuer-port", type=int, required=True)
    parser.add_argument("--dependency-port", type=int, required=True)
    parser.add_argument("--run-dir", required=True, help="marks the process as the demo's (unused otherwise)")
    args = parser.parse_args(argv)
    servers = [ThreadingHTTPServer((args.host, args.issuer_port), issuer_handler(KeyRing())),
               ThreadingHTTPServer((args.host, args.dependency_port), dependency_handler(Dependency()))]
    for server in servers:
        server.daemon_threads = True
    threading.Thread(target=servers[1].serve_forever, daemon=True).start()
    import signal

    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=servers[0].shutdown).start())
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
