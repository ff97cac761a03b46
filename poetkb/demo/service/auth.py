"""Bearer-token verification: RS256 JWTs checked against the issuer's JWKS, through a bounded key cache.

The verifier fixes the algorithm on the server (RS256), takes keys only from
the configured JWKS (never from the token: ``jwk``, ``jku`` and ``x5u`` headers
are ignored), and requires ``exp``, ``iss`` and ``aud`` with a leeway of 30 s.
Keys are cached for ``ttl_s``; a token with an unknown ``kid`` triggers at
most one refetch per ``min_refetch_s`` (so junk kids cannot hammer the issuer),
and while the JWKS endpoint is down the cached keys keep serving up to
``stale_max_s`` past their lifetime, after which every token is refused (fail
closed). Flaws of the seeded-fault variants are written next to the right code.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import urllib.request
from base64 import urlsafe_b64decode
from dataclasses import dataclass
from typing import Any

from poetkb.demo.service.variants import Flaws

ALGORITHMS = ["RS256"]
LEEWAY_S = 30


class AuthError(Exception):
    """The token is refused; the message is the reason logged and returned (never the token)."""


@dataclass
class JwksStats:
    fetches: int = 0
    failures: int = 0


class JwksCache:
    """The issuer's public keys by kid, refreshed at most once per ``min_refetch_s``."""

    def __init__(self, url: str, *, ttl_s: float, min_refetch_s: float, stale_max_s: float, timeout_s: float,
                 unbounded: bool = False) -> None:
        self.url = url
        self.ttl_s = ttl_s
        self.min_refetch_s = min_refetch_s
        self.stale_max_s = stale_max_s
        self.timeout_s = timeout_s
        self.unbounded = unbounded
        self.keys: dict[str, Any] = {}
        self.fetched_at = 0.0
        self.tried_at = 0.0
        self.lock = threading.Lock()
        self.stats = JwksStats()

    def _fetch(self) -> None:
        import jwt

        self.tried_at = time.monotonic()
        self.stats.fetches += 1
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout_s) as response:  # noqa: S310 - loopback
                data = json.loads(response.read(256 * 1024))
            keys = {k["kid"]: jwt.PyJWK(k).key for k in data.get("keys", []) if k.get("kid")}
        except (OSError, ValueError, KeyError, jwt.PyJWKError) as exc:
            self.stats.failures += 1
            raise AuthError(f"the key set could not be fetched: {type(exc).__name__}") from exc
        self.keys, self.fetched_at = keys, time.monotonic()

    def key(self, kid: str) -> Any:
        with self.lock:
            now = time.monotonic()
            expired = now - self.fetched_at > self.ttl_s
            unknown = kid not in self.keys
            may_fetch = self.unbounded or now - self.tried_at >= self.min_refetch_s
            if (expired or unknown) and may_fetch:
                try:
                    self._fetch()
                except AuthError:
                    if now - self.fetched_at > self.ttl_s + self.stale_max_s:
                        self.keys = {}  # too old to trust: fail closed
                    if kid not in self.keys:
                        raise
            if now - self.fetched_at > self.ttl_s + self.stale_max_s:
                raise AuthError("the cached key set is too old and the issuer cannot be reached")
            if kid not in self.keys:
                raise AuthError("unknown key id")
            return self.keys[kid]

    def flush(self) -> None:
        with self.lock:
            self.keys, self.fetched_at, self.tried_at = {}, 0.0, 0.0


class Verifier:
    """Checks a bearer token and returns its claims, or raises :class:`AuthError` with the reason."""

    def __init__(self, cache: JwksCache, *, issuer: str, audience: str, flaws: Flaws) -> None:
        self.cache = cache
        self.issuer = issuer
        self.audience = audience
        self.flaws = flaws

    def verify(self, token: str) -> dict[str, Any]:
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"malformed token: {type(exc).__name__}") from exc
        alg = str(header.get("alg", ""))
        options: dict[str, Any] = {"require": ["exp", "iss", "aud"]}
        if self.flaws.expiry_unchecked:
            options.update(verify_exp=False, verify_nbf=False, require=["iss", "aud"])
        if self.flaws.audience_unchecked:
            options.update(verify_aud=False, verify_iss=False, require=["exp"])
        decode: dict[str, Any] = {"audience": self.audience, "issuer": self.issuer, "leeway": LEEWAY_S,
                                  "options": options}
        try:
            if self.flaws.alg_none_accepted and alg.lower() == "none":
                # the flaw: the token switches verification off
                return jwt.decode(token, options={"verify_signature": False})
            if self.flaws.embedded_jwk_trusted and isinstance(header.get("jwk"), dict):
                # the flaw: the token supplies the key that verifies it
                return jwt.decode(token, jwt.PyJWK(header["jwk"]).key, algorithms=[alg], **decode)
            if self.flaws.alg_from_token and alg.startswith("HS"):
                # the flaw: the algorithm comes from the token, and the public key becomes an HMAC secret
                return self._hmac_with_public_key(token, header, decode)
            if alg not in ALGORITHMS:
                raise AuthError(f"algorithm {alg or '(none)'} is not allowed")
            key = self.cache.key(str(header.get("kid", "")))
            return jwt.decode(token, key, algorithms=ALGORITHMS, **decode)
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise AuthError("token not yet valid") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError("wrong audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthError("wrong issuer") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"missing claim {exc.claim}") from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthError("bad signature") from exc
        except (jwt.PyJWTError, jwt.PyJWKError, ValueError) as exc:
            raise AuthError(f"invalid token: {type(exc).__name__}") from exc

    def _hmac_with_public_key(self, token: str, header: dict[str, Any], decode: dict[str, Any]) -> dict[str, Any]:
        import jwt
        from cryptography.hazmat.primitives import serialization

        key = self.cache.key(str(header.get("kid", ""))) if header.get("kid") else next(iter(self.cache.keys.values()))
        pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        signing_input, _, signature = token.rpartition(".")
        expected = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, urlsafe_b64decode(signature + "=" * (-len(signature) % 4))):
            raise AuthError("bad signature")
        return jwt.decode(token, options={"verify_signature": False})
