"""Service-tier checks: forged tokens, claims, key rotation, unsafe configuration, and database invariants.

These kinds drive the demo's service tier (``poet demo up --tier service``):
its address, issuer and database come from the tier's state file. Tokens are
made with PyJWT: valid ones are signed by the tier's issuer through its admin
API (the gate never holds the issuer's private key), forged ones with a key the
gate makes for the run. Database invariants are read straight from PostgreSQL
after the traffic, so a service cannot report its own consistency. What a
collector saw (statuses through the captures, database figures, handler
counts, exit codes) is kept in the check's notes and captures; evaluators judge
only that.

Service checks run one at a time (a module lock): a fault one injects (a slow
database, an issuer outage) must not land on another's traffic.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from poetkb.gates import params as p
from poetkb.gates.checks.base import CollectContext, CollectError, Outcome, listing, no_evidence, plural, precheck
from poetkb.gates.evidence import CheckEvidence
from poetkb.gates.probes import Prober, RequestSpec

_LOCK = threading.Lock()
_CAPTURES = ["captures.jsonl"]


# -- plumbing ---------------------------------------------------------------------------------------------
def _state() -> Any:
    from poetkb.demo.service.tier import load_service_state

    state = load_service_state()
    if state is None:
        raise CollectError("the service tier is not running; start it with `poet demo up --tier service` "
                           "(or --tier all)")
    return state


class _Admin:
    """Calls to the service's and the issuer's admin APIs (not evidence themselves; results go to notes)."""

    def __init__(self, state: Any) -> None:
        import httpx

        self.state = state
        self.client = httpx.Client(timeout=10.0, trust_env=False)

    def token(self, claims: dict[str, Any] | None = None, kid: str | None = None) -> str:
        body: dict[str, Any] = {"claims": claims or {}}
        if kid:
            body["kid"] = kid
        response = self.client.post(self.state.issuer_admin_url + "/token", json=body)
        if response.status_code != 200:
            raise CollectError(f"the issuer did not sign a token: HTTP {response.status_code}")
        return str(response.json()["token"])

    def service(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        response = self.client.request(method, self.state.admin_url + path, json=body)
        if response.status_code != 200:
            raise CollectError(f"the service admin API answered {method} {path} with HTTP {response.status_code}")
        data = response.json()
        return data if isinstance(data, dict) else {}

    def issuer(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        response = self.client.request(method, self.state.issuer_admin_url + path, json=body)
        if response.status_code != 200:
            raise CollectError(f"the issuer admin API answered {method} {path} with HTTP {response.status_code}")
        data = response.json()
        return data if isinstance(data, dict) else {}

    def handled(self, marker: str) -> int:
        return int(self.service("GET", f"/counters?marker={marker}").get("handled", 0))

    def close(self) -> None:
        self.client.close()


def _run(ctx: CollectContext, body: Any, *, timeout: float = 10.0) -> None:
    """Run ``body(state, admin, prober)`` holding the service lock; heal faults whatever happens."""
    state = _state()
    if not _LOCK.acquire(timeout=120):
        raise CollectError("another service check held the service tier for over 120 s")
    admin = _Admin(state)
    try:
        prober = ctx.prober_for(state.service_url, verify=False, timeout=timeout)
        ctx.notes["service"] = {"url": state.service_url, "variant": state.variant}
        body(state, admin, prober)
    finally:
        try:
            admin.service("DELETE", "/fault")
        except Exception as exc:  # noqa: BLE001 - a failed heal is recorded, the check goes on to be judged
            ctx.notes["heal_error"] = f"{type(exc).__name__}: {exc}"
        admin.close()
        _LOCK.release()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _db(dsn: str, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        return list(conn.execute(sql, args).fetchall())


def _json(body: dict[str, Any]) -> tuple[str, dict[str, str]]:
    return json.dumps(body), {"Content-Type": "application/json"}


def _statuses(exchanges: list[Any]) -> str:
    counts: dict[str, int] = {}
    for e in exchanges:
        key = str(e.status) if e.status is not None else (e.error_type or "error")
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k} x{v}" for k, v in sorted(counts.items()))


# -- forged tokens ----------------------------------------------------------------------------------------
def _foreign_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _forge(kind: str, valid: str, admin: _Admin, state: Any) -> str:
    """One forged or malformed token, made with PyJWT."""
    import jwt

    header = jwt.get_unverified_header(valid)
    claims = jwt.decode(valid, options={"verify_signature": False})
    kid = str(header.get("kid", ""))
    admin_claims = {**claims, "sub": "admin", "role": "admin"}
    if kind == "alg_none":
        return jwt.encode(admin_claims, None, algorithm="none", headers={"kid": kid})
    if kind == "stripped_signature":
        return valid.rsplit(".", 1)[0] + "."
    if kind == "garbage":
        return "not-a.valid.token"
    foreign = _foreign_key()
    if kind == "tampered_payload":
        # the issuer's real signature on a payload it never signed (same header, sub changed to admin)
        other = jwt.encode(admin_claims, foreign, algorithm="RS256", headers={"kid": kid})
        return other.rsplit(".", 1)[0] + "." + valid.rsplit(".", 1)[1]
    if kind == "foreign_key":
        return jwt.encode(admin_claims, foreign, algorithm="RS256", headers={"kid": kid})
    if kind == "hs256_public_key":
        from jwt.algorithms import HMACAlgorithm

        class PublicKeyAsSecret(HMACAlgorithm):
            """PyJWT's HMAC, minus its refusal to use a PEM public key as the secret (that is the attack)."""

            def prepare_key(self, key: Any) -> bytes:
                return key if isinstance(key, bytes) else str(key).encode()

        pem = admin.issuer("GET", "/public.pem")["pem"].encode()
        jws = jwt.PyJWS(algorithms=[])
        jws.register_algorithm("HS256", PublicKeyAsSecret(HMACAlgorithm.SHA256))
        return jws.encode(json.dumps(admin_claims).encode(), pem, algorithm="HS256", headers={"kid": kid})
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(foreign.public_key()))
    extra: dict[str, Any] = {"kid": "attacker-key"}
    if kind == "embedded_jwk":
        extra["jwk"] = public
    elif kind == "jku_foreign":
        extra["jku"] = "http://127.0.0.1:9/attacker/jwks.json"
    elif kind == "x5u_foreign":
        extra["x5u"] = "http://127.0.0.1:9/attacker/cert.pem"
    return jwt.encode(admin_claims, foreign, algorithm="RS256", headers=extra)


def collect_forgery(ctx: CollectContext, params: p.JwtForgeryRejected) -> None:
    def body(state: Any, admin: _Admin, prober: Prober) -> None:
        valid = admin.token()
        marker = ctx.nonce + "-forged"
        prober.send(RequestSpec(path=ctx.url(params.path, "-valid"), headers=_bearer(valid), step="valid"))
        for kind in params.forgeries:
            token = _forge(kind, valid, admin, state)
            prober.send(RequestSpec(path=ctx.url(params.path, "-forged"), headers=_bearer(token),
                                    step=f"forged:{kind}"))
        ctx.notes["handled_forged"] = admin.handled(marker)
        ctx.notes["handled_valid"] = admin.handled(ctx.nonce + "-valid")

    _run(ctx, body)


def evaluate_forgery(ev: CheckEvidence, params: p.JwtForgeryRejected) -> Outcome:
    expected = ("every forged or malformed token gets 401 and reaches no handler; a valid token is served "
                f"({len(params.forgeries)} forgeries)")
    bad = precheck(ev, expected, _CAPTURES)
    if bad:
        return bad
    valid = ev.steps("valid")
    forged = ev.steps("forged")
    if not valid or len(forged) < len(params.forgeries):
        return no_evidence(expected, "the valid and forged requests were not all captured")
    details = {e.step.split(":", 1)[1]: e.status or e.error_type for e in forged}
    details["valid"] = valid[0].status
    details["handled_forged"] = ev.notes.get("handled_forged")
    observed = f"valid: {valid[0].describe()}; forged: {_statuses(forged)}"
    if valid[0].status != 200:
        return Outcome("fail", expected, observed, f"a valid token was refused ({valid[0].describe()}), so the "
                       "refusals prove nothing", details, len(forged) + 1)
    accepted = [e.step.split(":", 1)[1] for e in forged if e.status is not None and e.status < 400]
    wrong = [f"{e.step.split(':', 1)[1]} -> {e.status or e.error_type}" for e in forged
             if e.status != 401 and not (e.status is not None and e.status < 400)]
    handled = ev.notes.get("handled_forged")
    if accepted:
        return Outcome("fail", expected, observed,
                       f"{plural(len(accepted), 'forged token')} were accepted: {listing(accepted, 4)}"
                       + (f"; the handler ran {handled} times for forged tokens" if handled else ""),
                       details, len(forged) + 1)
    if handled:
        return Outcome("fail", expected, observed, f"the handler ran {handled} times for forged tokens although "
                       "every response was an error", details, len(forged) + 1)
    if wrong:
        return Outcome("fail", expected, observed, f"forged tokens were refused with the wrong status (401 "
                       f"expected): {listing(wrong, 4)}", details, len(forged) + 1)
    if handled is None:
        return no_evidence(expected, "the service's handler count for forged tokens was not recorded")
    return Outcome("pass", expected, observed, "", details, len(forged) + 1)


# -- claims -----------------------------------------------------------------------------------------------
def _claims(case: str, params: p.JwtClaimsEnforced) -> dict[str, Any]:
    now = int(time.time())
    return {
        "expired": {"exp": now - params.max_leeway_s - 120, "iat": now - 3600},
        "not_yet_valid": {"nbf": now + params.max_leeway_s + 600},
        "missing_exp": {"exp": None},
        "wrong_issuer": {"iss": "https://another-issuer.poet.test"},
        "wrong_audience": {"aud": "another-service"},
    }[case]


def collect_claims(ctx: CollectContext, params: p.JwtClaimsEnforced) -> None:
    def body(state: Any, admin: _Admin, prober: Prober) -> None:
        prober.send(RequestSpec(path=ctx.url(params.path, "-valid"), headers=_bearer(admin.token()), step="valid"))
        within = {"exp": int(time.time()) - 10}
        prober.send(RequestSpec(path=ctx.url(params.path, "-valid"), headers=_bearer(admin.token(within)),
                                step="within_leeway"))
        for case in params.cases:
            token = admin.token(_claims(case, params))
            prober.send(RequestSpec(path=ctx.url(params.path, "-bad"), headers=_bearer(token), step=f"bad:{case}"))
        ctx.notes["handled_bad"] = admin.handled(ctx.nonce + "-bad")

    _run(ctx, body)


def evaluate_claims(ev: CheckEvidence, params: p.JwtClaimsEnforced) -> Outcome:
    expected = (f"validly signed tokens with a bad claim ({', '.join(params.cases)}) get 401; a valid token and "
                "one expired 10 s ago (within the leeway) are served")
    bad = precheck(ev, expected, _CAPTURES)
    if bad:
        return bad
    valid, within, cases = ev.steps("valid"), ev.steps("within_leeway"), ev.steps("bad")
    if not valid or len(cases) < len(params.cases):
        return no_evidence(expected, "the requests of every case were not captured")
    details: dict[str, Any] = {e.step.split(":", 1)[1]: e.status or e.error_type for e in cases}
    details.update(valid=valid[0].status, within_leeway=within[0].status if within else None,
                   handled_bad=ev.notes.get("handled_bad"))
    observed = f"valid: {valid[0].describe()}; bad claims: {_statuses(cases)}"
    if valid[0].status != 200:
        return Outcome("fail", expected, observed, f"a valid token was refused ({valid[0].describe()})", details)
    accepted = [e.step.split(":", 1)[1] for e in cases if e.status != 401]
    if accepted:
        return Outcome("fail", expected, observed, "tokens with a bad claim were not refused with 401: "
                       + listing([f"{c} -> {details[c]}" for c in accepted], 5), details, len(cases) + 2)
    if ev.notes.get("handled_bad"):
        return Outcome("fail", expected, observed, f"the handler ran {ev.notes['handled_bad']} times for tokens "
                       "with bad claims", details, len(cases) + 2)
    if within and within[0].status != 200:
        return Outcome("fail", expected, observed, f"a token expired 10 s ago was refused ({within[0].describe()}): "
                       "no leeway for clock skew", details, len(cases) + 2)
    return Outcome("pass", expected, observed, "", details, len(cases) + 2)


# -- key rotation, refetch bound, outage ---------------------------------------------------------------------
def collect_rotation(ctx: CollectContext, params: p.JwksRotationBounded) -> None:
    import jwt

    def body(state: Any, admin: _Admin, prober: Prober) -> None:
        prober.send(RequestSpec(path=ctx.url(params.path), headers=_bearer(admin.token()), step="before"))
        kid = admin.issuer("POST", "/rotate")["kid"]
        rotated = admin.token(kid=kid)
        started = time.monotonic()
        accepted_after = None
        for attempt in range(int(params.within_s / 0.25) + 1):
            exchange = prober.send(RequestSpec(path=ctx.url(params.path), headers=_bearer(rotated),
                                               step=f"rotated:{attempt}"))
            if exchange.status == 200:
                accepted_after = round(time.monotonic() - started, 3)
                break
            time.sleep(0.25)
        ctx.notes["rotated_accepted_after_s"] = accepted_after
        foreign = _foreign_key()
        before = int(admin.issuer("GET", "/counters")["jwks_fetches"])
        claims = jwt.decode(rotated, options={"verify_signature": False})
        for index in range(params.junk_tokens):
            junk = jwt.encode(claims, foreign, algorithm="RS256", headers={"kid": f"junk-{ctx.nonce}-{index}"})
            prober.send(RequestSpec(path=ctx.url(params.path, "-junk"), headers=_bearer(junk), step="junk"))
        ctx.notes["jwks_fetches_for_junk"] = int(admin.issuer("GET", "/counters")["jwks_fetches"]) - before
        if params.outage:
            admin.service("PUT", "/fault", {"jwks_down": True})
            prober.send(RequestSpec(path=ctx.url(params.path), headers=_bearer(rotated), step="outage"))
            admin.service("DELETE", "/fault")

    _run(ctx, body)


def evaluate_rotation(ev: CheckEvidence, params: p.JwksRotationBounded) -> Outcome:
    expected = (f"a token signed with a new key is served within {params.within_s:g} s of the rotation; "
                f"{params.junk_tokens} tokens with unknown key ids cause at most {params.max_refetches} key-set "
                "fetches" + ("; during an issuer outage a token with a cached key is still served" if params.outage
                             else ""))
    bad = precheck(ev, expected, _CAPTURES)
    if bad:
        return bad
    before, junk = ev.steps("before"), ev.steps("junk")
    if not before or "jwks_fetches_for_junk" not in ev.notes:
        return no_evidence(expected, "the rotation experiment was not recorded")
    after = ev.notes.get("rotated_accepted_after_s")
    fetches = int(ev.notes["jwks_fetches_for_junk"])
    outage = ev.steps("outage")
    details = {"rotated_accepted_after_s": after, "jwks_fetches_for_junk": fetches,
               "junk": _statuses(junk), "outage": outage[0].status if outage else None}
    observed = (f"rotated key {'served after ' + str(after) + ' s' if after is not None else 'never served'}; "
                f"{fetches} key-set fetches for {len(junk)} junk tokens"
                + (f"; during the outage: {outage[0].describe()}" if outage else ""))
    problems = []
    if before[0].status != 200:
        problems.append(f"a valid token was refused before the rotation ({before[0].describe()})")
    if after is None:
        problems.append(f"a token signed with the rotated key was not served within {params.within_s:g} s")
    if fetches > params.max_refetches:
        problems.append(f"{len(junk)} tokens with unknown key ids made the service fetch the key set {fetches} times "
                        f"(at most {params.max_refetches} allowed): refetching is not rate-limited")
    served_junk = [e for e in junk if e.status is not None and e.status < 400]
    if served_junk:
        problems.append(f"{len(served_junk)} tokens with unknown key ids were served")
    if params.outage and (not outage or outage[0].status != 200):
        problems.append("during the issuer outage a token with a cached key was not served ("
                        + (outage[0].describe() if outage else "not sent") + ")")
    if problems:
        return Outcome("fail", expected, observed, "; ".join(problems), details, len(junk) + 2)
    return Outcome("pass", expected, observed, "", details, len(junk) + 2)


def collect_outage(ctx: CollectContext, params: p.JwksOutageFailsClosed) -> None:
    def body(state: Any, admin: _Admin, prober: Prober) -> None:
        token = admin.token()
        prober.send(RequestSpec(path=ctx.url(params.path), headers=_bearer(token), step="before"))
        admin.service("PUT", "/fault", {"jwks_down": True})
        admin.service("POST", "/jwks/flush")
        prober.send(RequestSpec(path=ctx.url(params.path, "-down"), headers=_bearer(token), step="down"))
        ctx.notes["handled_down"] = admin.handled(ctx.nonce + "-down")
        admin.service("DELETE", "/fault")
        time.sleep(1.1)  # the refetch bound of the good service
        prober.send(RequestSpec(path=ctx.url(params.path), headers=_bearer(token), step="after"))

    _run(ctx, body)


def evaluate_outage(ev: CheckEvidence, params: p.JwksOutageFailsClosed) -> Outcome:
    expected = (f"with the key set unavailable and no cached key a valid token is refused with "
                f"{', '.join(map(str, params.expect_status))}, and served again once the issuer is back")
    bad = precheck(ev, expected, _CAPTURES)
    if bad:
        return bad
    before, down, after = ev.steps("before"), ev.steps("down"), ev.steps("after")
    if not (before and down and after):
        return no_evidence(expected, "the outage experiment was not recorded whole")
    observed = f"before: {before[0].describe()}; during: {down[0].describe()}; after: {after[0].describe()}"
    details = {"before": before[0].status, "down": down[0].status or down[0].error_type, "after": after[0].status}
    if before[0].status != 200:
        return Outcome("fail", expected, observed, "a valid token was refused before the outage", details, 3)
    if down[0].status is not None and down[0].status < 400 or ev.notes.get("handled_down"):
        return Outcome("fail", expected, observed, "a token was served although no key could verify it: the "
                       "service fails open", details, 3)
    if down[0].status not in params.expect_status:
        return Outcome("fail", expected, observed, f"the refusal during the outage was {down[0].describe()}, "
                       f"expected one of {', '.join(map(str, params.expect_status))}", details, 3)
    if after[0].status != 200:
        return Outcome("fail", expected, observed, f"the service did not recover after the outage "
                       f"({after[0].describe()})", details, 3)
    return Outcome("pass", expected, observed, "", details, 3)


# -- unsafe configuration ------------------------------------------------------------------------------------
_CASES = {"mock_auth_in_production": {"mock_auth": True, "environment": "production"},
          "missing_issuer": {"issuer": ""}, "missing_audience": {"audience": ""}, "missing_jwks_url": {"jwks_url": ""}}
_NAMES = {"mock_auth_in_production": "mock_auth", "missing_issuer": "issuer", "missing_audience": "audience",
          "missing_jwks_url": "jwks_url"}


def collect_config(ctx: CollectContext, params: p.UnsafeConfigRefused) -> None:
    def body(state: Any, admin: _Admin, prober: Prober) -> None:
        base = json.loads(Path(state.settings_path).read_text(encoding="utf-8"))
        runs: dict[str, Any] = {}
        with tempfile.TemporaryDirectory(prefix="poet-config-") as tmp:
            for case in ["as_deployed", *params.cases]:
                settings = {**base, **_CASES.get(case, {})}
                path = Path(tmp) / f"{case}.json"
                path.write_text(json.dumps(settings), encoding="utf-8")
                try:
                    done = subprocess.run([sys.executable, "-m", "poetkb.demo.service.app", "--settings", str(path),
                                           "--check-config"], capture_output=True, text=True, timeout=30)
                    runs[case] = {"exit": done.returncode, "stderr": done.stderr.strip()[-400:]}
                except subprocess.TimeoutExpired:
                    runs[case] = {"exit": None, "stderr": "did not exit within 30 s"}
        ctx.notes["startups"] = runs
        if params.probe_mock_header:
            prober.send(RequestSpec(path=ctx.url(params.path, "-mock"), headers={"X-Mock-User": "admin"}, step="mock"))
            ctx.notes["handled_mock"] = admin.handled(ctx.nonce + "-mock")

    _run(ctx, body)


def evaluate_config(ev: CheckEvidence, params: p.UnsafeConfigRefused) -> Outcome:
    expected = ("the service refuses to start (non-zero exit naming the setting) with "
                + ", ".join(params.cases) + (", and a running service ignores the mock-auth header"
                                             if params.probe_mock_header else ""))
    if ev.collect_error:
        return precheck(ev, expected, []) or no_evidence(expected, "collection failed")
    runs = ev.notes.get("startups")
    if not isinstance(runs, dict) or not all(c in runs for c in params.cases):
        return no_evidence(expected, "the start-up attempts were not recorded")
    details: dict[str, Any] = {c: runs[c].get("exit") for c in runs}
    started = [c for c in params.cases if runs[c].get("exit") == 0]
    silent = [c for c in params.cases if runs[c].get("exit") not in (0, None)
              and _NAMES[c] not in str(runs[c].get("stderr", ""))]
    hung = [c for c in params.cases if runs[c].get("exit") is None]
    observed = ", ".join(f"{c}: exit {runs[c].get('exit')}" for c in params.cases)
    problems = []
    if runs.get("as_deployed", {}).get("exit") not in (0, None) and "as_deployed" in runs:
        problems.append(f"the deployed settings themselves were refused ({runs['as_deployed'].get('stderr')})")
    if started:
        problems.append(f"the service accepted unsafe settings at start-up: {listing(started, 4)}")
    if hung:
        problems.append(f"the start-up check did not finish for {listing(hung, 4)}")
    if silent:
        problems.append(f"the refusal did not name the setting for {listing(silent, 4)}")
    if params.probe_mock_header:
        mock = ev.steps("mock")
        if not mock:
            return no_evidence(expected, "the mock-auth probe was not captured")
        details["mock_header"] = mock[0].status
        observed += f"; X-Mock-User without a token: {mock[0].describe()}"
        if mock[0].status is not None and mock[0].status < 400 or ev.notes.get("handled_mock"):
            problems.append("the running service honoured the mock-auth header (X-Mock-User: admin was served)")
    if problems:
        return Outcome("fail", expected, observed, "; ".join(problems), details, len(params.cases))
    return Outcome("pass", expected, observed, "", details, len(params.cases))


COLLECTORS: dict[str, Any] = {
    "jwt_forgery_rejected": collect_forgery,
    "jwt_claims_enforced": collect_claims,
    "jwks_rotation_bounded": collect_rotation,
    "jwks_outage_fails_closed": collect_outage,
    "unsafe_config_refused": collect_config,
}
EVALUATORS: dict[str, Any] = {
    "jwt_forgery_rejected": evaluate_forgery,
    "jwt_claims_enforced": evaluate_claims,
    "jwks_rotation_bounded": evaluate_rotation,
    "jwks_outage_fails_closed": evaluate_outage,
    "unsafe_config_refused": evaluate_config,
}
