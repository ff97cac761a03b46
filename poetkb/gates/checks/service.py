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

import contextlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from poetkb.gates import params as p
from poetkb.gates.checks.base import (
    CollectContext,
    CollectError,
    Kind,
    Outcome,
    declare,
    listing,
    no_evidence,
    plural,
    precheck,
)
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
        return jwt.encode(admin_claims, "", algorithm="none", headers={"kid": kid})
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
    table: dict[str, dict[str, Any]] = {
        "expired": {"exp": now - params.max_leeway_s - 120, "iat": now - 3600},
        "not_yet_valid": {"nbf": now + params.max_leeway_s + 600},
        "missing_exp": {"exp": None},
        "wrong_issuer": {"iss": "https://another-issuer.poet.test"},
        "wrong_audience": {"aud": "another-service"},
    }
    return table[case]


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
_CASES: dict[str, dict[str, Any]] = {"mock_auth_in_production": {"mock_auth": True, "environment": "production"},
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


# -- data: invariants checked in the database ------------------------------------------------------------------
def _new_account(prober: Prober, ctx: CollectContext, token: str, balance: int, step: str) -> int:
    body, headers = _json({"owner": f"gate-{ctx.nonce}", "balance": balance})
    exchange = prober.send(RequestSpec(method="POST", path=ctx.url("/api/accounts"), headers={**headers,
                           **_bearer(token)}, body=body, step=step))
    data = exchange.body_json
    if exchange.status != 201 or not data or "id" not in data:
        raise CollectError(f"the service did not create an account: {exchange.describe()}"
                           + (f" ({exchange.error})" if exchange.error else ""))
    return int(data["id"])


def _balances(dsn: str, ids: list[int]) -> dict[str, Any]:
    rows = _db(dsn, "SELECT id, balance, counter FROM accounts WHERE id = ANY(%s) ORDER BY id", (ids,))
    return {str(r[0]): {"balance": int(r[1]), "counter": int(r[2])} for r in rows}


def _transfer_spec(ctx: CollectContext, token: str, source: int, dest: int, amount: int, step: str) -> RequestSpec:
    body, headers = _json({"from": source, "to": dest, "amount": amount})
    return RequestSpec(method="POST", path=ctx.url("/api/transfers"), headers={**headers, **_bearer(token)},
                       body=body, step=step)


def collect_updates(ctx: CollectContext, params: p.ConcurrentUpdatesConsistent) -> None:
    def body(state: Any, admin: _Admin, prober: Prober) -> None:
        token = admin.token({"exp": int(time.time()) + 600})
        ids = [_new_account(prober, ctx, token, 1000, "setup") for _ in range(3)]
        ctx.notes["accounts"] = ids
        ctx.notes["initial"] = {str(i): 1000 for i in ids}
        inc = [RequestSpec(method="POST", path=ctx.url(f"/api/accounts/{ids[0]}/increment"), headers=_bearer(token),
                           step="increment") for _ in range(params.increments)]
        prober.send_many(inc, concurrency=params.concurrency)
        pairs = [(0, 1), (1, 2), (2, 0), (1, 0), (2, 1), (0, 2)]  # every direction, so transfers cross
        specs = [_transfer_spec(ctx, token, ids[pairs[n % 6][0]], ids[pairs[n % 6][1]], 1 + n % 7, f"transfer:{n}")
                 for n in range(params.transfers)]
        prober.send_many(specs, concurrency=params.concurrency)
        ctx.notes["db"] = _balances(state.dsn, ids)

    _run(ctx, body, timeout=15.0)


def _transfer_effects(exchanges: list[Any]) -> tuple[dict[str, int], int]:
    """Balance changes the successful transfers (by their responses) imply, and how many succeeded."""
    delta: dict[str, int] = {}
    ok = 0
    for e in exchanges:
        data = e.body_json if e.status == 200 else None
        if not data:
            continue
        ok += 1
        delta[str(data["from"])] = delta.get(str(data["from"]), 0) - int(data["amount"])
        delta[str(data["to"])] = delta.get(str(data["to"]), 0) + int(data["amount"])
    return delta, ok


def evaluate_updates(ev: CheckEvidence, params: p.ConcurrentUpdatesConsistent) -> Outcome:
    expected = (f"after {params.increments} concurrent increments the counter in the database equals the number "
                f"acknowledged; after {params.transfers} concurrent transfers every balance equals its start plus "
                "the acknowledged transfers, and the total is unchanged")
    bad = precheck(ev, expected, _CAPTURES)
    if bad:
        return bad
    db, initial = ev.notes.get("db"), ev.notes.get("initial")
    increments, transfers = ev.steps("increment"), ev.steps("transfer")
    if not isinstance(db, dict) or not isinstance(initial, dict) or not increments:
        return no_evidence(expected, "the database state after the traffic was not recorded")
    first = str(ev.notes["accounts"][0])
    acked = sum(1 for e in increments if e.status == 200)
    counter = db.get(first, {}).get("counter")
    delta, ok = _transfer_effects(transfers)
    want = {k: v + delta.get(k, 0) for k, v in initial.items()}
    got = {k: db.get(k, {}).get("balance") for k in initial}
    total_before, total_after = sum(initial.values()), sum(v for v in got.values() if v is not None)
    details = {"increments_acknowledged": acked, "counter": counter, "transfers_acknowledged": ok,
               "balances_expected": want, "balances": got, "total_before": total_before, "total_after": total_after,
               "increment_statuses": _statuses(increments), "transfer_statuses": _statuses(transfers)}
    observed = (f"counter {counter} after {acked} acknowledged increments; balances {got} (expected {want}); "
                f"total {total_after} (was {total_before})")
    problems = []
    if counter != acked:
        problems.append(f"{acked} increments were acknowledged but the counter in the database is {counter}: "
                        f"{acked - (counter or 0)} updates were lost")
    if total_after != total_before:
        problems.append(f"money was not conserved: the accounts held {total_before} before and {total_after} after")
    if got != want:
        problems.append(f"balances differ from the acknowledged transfers: {got} instead of {want}")
    if acked == 0 or ok == 0:
        problems.append(f"nothing was acknowledged (increments: {_statuses(increments)}; transfers: "
                        f"{_statuses(transfers)}), so nothing is proven")
    if problems:
        return Outcome("fail", expected, observed, "; ".join(problems), details, len(increments) + len(transfers))
    return Outcome("pass", expected, observed, "", details, len(increments) + len(transfers))


def collect_rollback(ctx: CollectContext, params: p.RollbackNoPartialWrite) -> None:
    def body(state: Any, admin: _Admin, prober: Prober) -> None:
        token = admin.token()
        source = _new_account(prober, ctx, token, 1000, "setup")
        ctx.notes["account"] = source
        ctx.notes["before"] = _balances(state.dsn, [source])
        missing = int(_db(state.dsn, "SELECT coalesce(max(id), 0) + 1000000 FROM accounts")[0][0])
        for _ in range(params.attempts):
            prober.send(_transfer_spec(ctx, token, source, missing, 100, "failing"))
        ctx.notes["after"] = _balances(state.dsn, [source])

    _run(ctx, body)


def evaluate_rollback(ev: CheckEvidence, params: p.RollbackNoPartialWrite) -> Outcome:
    expected = "a transfer whose credit fails (the destination does not exist) is refused and its debit rolled back"
    bad = precheck(ev, expected, _CAPTURES)
    if bad:
        return bad
    before, after, failing = ev.notes.get("before"), ev.notes.get("after"), ev.steps("failing")
    if not isinstance(before, dict) or not isinstance(after, dict) or not failing:
        return no_evidence(expected, "the database state around the failing transfers was not recorded")
    key = str(ev.notes.get("account"))
    b, a = before.get(key, {}).get("balance"), after.get(key, {}).get("balance")
    details = {"balance_before": b, "balance_after": a, "statuses": _statuses(failing)}
    observed = f"{len(failing)} failing transfers answered {_statuses(failing)}; balance {b} -> {a}"
    if a != b:
        return Outcome("fail", expected, observed, f"the failed transfers left a partial write: the source balance "
                       f"went from {b} to {a} although no transfer completed", details, len(failing))
    served = [e for e in failing if e.status is not None and e.status < 400]
    if served:
        return Outcome("fail", expected, observed, "a transfer to an account that does not exist was acknowledged",
                       details, len(failing))
    return Outcome("pass", expected, observed, "", details, len(failing))


def collect_ids(ctx: CollectContext, params: p.IdsUniqueConcurrent) -> None:
    def body(state: Any, admin: _Admin, prober: Prober) -> None:
        token = admin.token({"exp": int(time.time()) + 600})
        account = _new_account(prober, ctx, token, 0, "setup")
        payload, headers = _json({"account_id": account})
        specs = [RequestSpec(method="POST", path=ctx.url("/api/orders"), headers={**headers, **_bearer(token)},
                             body=payload, step="order") for _ in range(params.orders)]
        prober.send_many(specs, concurrency=params.concurrency)
        rows = _db(state.dsn, "SELECT number, count(*) FROM orders WHERE account_id = %s GROUP BY number "
                              "HAVING count(*) > 1", (account,))
        total = _db(state.dsn, "SELECT count(*), count(DISTINCT number) FROM orders WHERE account_id = %s", (account,))
        ctx.notes["db"] = {"rows": int(total[0][0]), "distinct_numbers": int(total[0][1]),
                           "duplicates": {str(r[0]): int(r[1]) for r in rows[:20]}}

    _run(ctx, body, timeout=15.0)


def evaluate_ids(ev: CheckEvidence, params: p.IdsUniqueConcurrent) -> Outcome:
    expected = f"{params.orders} orders created concurrently get distinct numbers, in the answers and in the database"
    bad = precheck(ev, expected, _CAPTURES)
    if bad:
        return bad
    db, orders = ev.notes.get("db"), ev.steps("order")
    if not isinstance(db, dict) or not orders:
        return no_evidence(expected, "the orders and the database state were not recorded")
    numbers = [e.body_json.get("number") for e in orders if e.status == 201 and e.body_json]
    repeated = sorted({n for n in numbers if n is not None and numbers.count(n) > 1})
    details = {"acknowledged": len(numbers), "rows": db["rows"], "distinct_numbers": db["distinct_numbers"],
               "duplicates_in_db": db["duplicates"], "statuses": _statuses(orders)}
    observed = f"{len(numbers)} orders acknowledged; {db['rows']} rows with {db['distinct_numbers']} distinct numbers"
    problems = []
    if repeated:
        problems.append(f"{plural(len(repeated), 'number')} were given to more than one order: {listing(repeated, 5)}")
    if db["rows"] != db["distinct_numbers"]:
        problems.append(f"the database holds {db['rows']} orders with only {db['distinct_numbers']} distinct numbers")
    if not numbers:
        problems.append(f"no order was acknowledged ({_statuses(orders)})")
    if problems:
        return Outcome("fail", expected, observed, "; ".join(problems), details, len(orders))
    return Outcome("pass", expected, observed, "", details, len(orders))


def collect_deadlock(ctx: CollectContext, params: p.DeadlockRetried) -> None:
    def body(state: Any, admin: _Admin, prober: Prober) -> None:
        token = admin.token({"exp": int(time.time()) + 600})
        a = _new_account(prober, ctx, token, 1000, "setup")
        b = _new_account(prober, ctx, token, 1000, "setup")
        ctx.notes["accounts"], ctx.notes["initial"] = [a, b], {str(a): 1000, str(b): 1000}
        deadlocks = "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        before = int(_db(state.dsn, deadlocks)[0][0])
        specs = [_transfer_spec(ctx, token, a if n % 2 else b, b if n % 2 else a, 1 + n % 5, f"transfer:{n}")
                 for n in range(params.transfers)]
        prober.send_many(specs, concurrency=params.concurrency)
        ctx.notes["db"] = _balances(state.dsn, [a, b])
        ctx.notes["deadlocks_in_db"] = int(_db(state.dsn, deadlocks)[0][0]) - before

    _run(ctx, body, timeout=15.0)


def evaluate_deadlock(ev: CheckEvidence, params: p.DeadlockRetried) -> Outcome:
    expected = (f"{params.transfers} opposite transfers between two accounts, {params.concurrency} at a time, all "
                "succeed (deadlocks avoided by lock order or retried) and the balances match them")
    bad = precheck(ev, expected, _CAPTURES)
    if bad:
        return bad
    db, initial, transfers = ev.notes.get("db"), ev.notes.get("initial"), ev.steps("transfer")
    if not isinstance(db, dict) or not isinstance(initial, dict) or not transfers:
        return no_evidence(expected, "the transfers and the database state were not recorded")
    delta, ok = _transfer_effects(transfers)
    want = {k: v + delta.get(k, 0) for k, v in initial.items()}
    got = {k: db.get(k, {}).get("balance") for k in initial}
    failed = [e for e in transfers if e.status != 200]
    details = {"acknowledged": ok, "statuses": _statuses(transfers), "deadlocks_in_db": ev.notes.get("deadlocks_in_db"),
               "balances": got, "balances_expected": want}
    observed = (f"{ok} of {len(transfers)} transfers acknowledged ({_statuses(transfers)}); "
                f"{ev.notes.get('deadlocks_in_db')} deadlocks detected by the database")
    problems = []
    if failed:
        sample = failed[0].body_json or {}
        problems.append(f"{len(failed)} of {len(transfers)} transfers failed ({_statuses(failed)}; first: "
                        f"{str(sample.get('error', failed[0].error or ''))[:120]}): deadlock victims were not retried")
    if got != want:
        problems.append(f"balances {got} do not match the acknowledged transfers ({want})")
    if problems:
        return Outcome("fail", expected, observed, "; ".join(problems), details, len(transfers))
    return Outcome("pass", expected, observed, "", details, len(transfers))


def collect_pool(ctx: CollectContext, params: p.PoolExhaustionGraceful) -> None:
    def body(state: Any, admin: _Admin, prober: Prober) -> None:
        token = admin.token({"exp": int(time.time()) + 600})
        account = _new_account(prober, ctx, token, 0, "setup")
        admin.service("PUT", "/fault", {"slow_query_ms": params.slow_query_ms})
        specs = [RequestSpec(path=ctx.url(f"/api/accounts/{account}"), headers=_bearer(token), step="flood",
                             timeout=params.max_latency_ms / 1000 + 2) for _ in range(params.requests)]
        prober.send_many(specs, concurrency=params.concurrency)
        admin.service("DELETE", "/fault")
        time.sleep(0.2)
        prober.send(RequestSpec(path=ctx.url(f"/api/accounts/{account}"), headers=_bearer(token), step="after",
                                timeout=params.max_latency_ms / 1000 + 2))
        ctx.notes["pool"] = admin.service("GET", "/pool")

    _run(ctx, body, timeout=params.max_latency_ms / 1000 + 2)


def evaluate_pool(ev: CheckEvidence, params: p.PoolExhaustionGraceful) -> Outcome:
    expected = (f"with every connection held by {params.slow_query_ms} ms queries, {params.requests} concurrent "
                f"requests each finish within {params.max_latency_ms:g} ms, those without a connection refused with "
                f"{', '.join(map(str, params.expect_status))}; served normally once the load drops")
    bad = precheck(ev, expected, _CAPTURES)
    if bad:
        return bad
    flood, after = ev.steps("flood"), ev.steps("after")
    if not flood or not after:
        return no_evidence(expected, "the flood and the request after it were not captured")
    slow = [e for e in flood if e.elapsed_ms is None or e.elapsed_ms > params.max_latency_ms or e.status is None]
    shed = [e for e in flood if e.status in params.expect_status]
    worst = max((e.elapsed_ms or 0.0) for e in flood)
    details = {"statuses": _statuses(flood), "shed": len(shed), "worst_ms": round(worst, 1),
               "after": after[0].status, "pool": ev.notes.get("pool")}
    observed = f"{_statuses(flood)}; worst {worst:.0f} ms; after the load: {after[0].describe()}"
    problems = []
    if slow:
        problems.append(f"{len(slow)} of {len(flood)} requests waited longer than {params.max_latency_ms:g} ms or got "
                        f"no answer (worst {worst:.0f} ms): requests queue for a connection without a bound")
    elif not shed:
        problems.append("no request was refused while every connection was busy, so exhaustion was not reached")
    other = [e for e in flood if e.status not in (200, *params.expect_status)]
    if other:
        problems.append(f"{len(other)} requests failed otherwise ({_statuses(other)})")
    if after[0].status != 200:
        problems.append(f"the service did not recover once the load dropped ({after[0].describe()})")
    if problems:
        return Outcome("fail", expected, observed, "; ".join(problems), details, len(flood) + 1)
    return Outcome("pass", expected, observed, "", details, len(flood) + 1)


# -- resilience ----------------------------------------------------------------------------------------------
def collect_restart(ctx: CollectContext, params: p.DatabaseRestartRecovered) -> None:
    from poetkb.demo.service.tier import start_database, stop_database

    def body(state: Any, admin: _Admin, prober: Prober) -> None:
        token = admin.token({"exp": int(time.time()) + 600})
        try:
            account = _new_account(prober, ctx, token, 0, "setup")
        except CollectError as exc:
            # not serving even before the restart (a flawed pool broken by an earlier outage): that is the finding
            ctx.notes["setup_error"] = str(exc)
            return
        path = ctx.url(f"/api/accounts/{account}")
        for _ in range(3):  # every pooled connection is used once before the restart
            prober.send(RequestSpec(path=path, headers=_bearer(token), step="before"))
        stop_database(state)
        try:
            prober.send(RequestSpec(path=path, headers=_bearer(token), step="down", timeout=10))
        finally:
            start_database(state)
        started = time.monotonic()
        recovered = None
        for attempt in range(int(params.within_s / 0.25) + 1):
            exchange = prober.send(RequestSpec(path=path, headers=_bearer(token), step=f"after:{attempt}", timeout=5))
            if exchange.status == 200:
                recovered = round(time.monotonic() - started, 3)
                break
            if time.monotonic() - started > params.within_s:
                break
            time.sleep(0.25)
        # a flawed pool may recover on one connection and not the others: three more requests
        for _ in range(3):
            prober.send(RequestSpec(path=path, headers=_bearer(token), step="settled", timeout=5))
        ctx.notes["recovered_after_s"] = recovered

    _run(ctx, body)


def evaluate_restart(ev: CheckEvidence, params: p.DatabaseRestartRecovered) -> Outcome:
    expected = (f"while the database is down requests fail fast; within {params.within_s:g} s of its restart the "
                "service serves again, every pooled connection replaced, without a restart of the service")
    bad = precheck(ev, expected, _CAPTURES)
    if bad:
        return bad
    if ev.notes.get("setup_error"):
        setup = ev.steps("setup")
        return Outcome("fail", expected, f"before the restart: {_statuses(setup)}", "the service was not serving "
                       f"even before the restart ({ev.notes['setup_error']})", {"setup": _statuses(setup)}, len(setup))
    before, down, settled = ev.steps("before"), ev.steps("down"), ev.steps("settled")
    if not before or not down or not settled:
        return no_evidence(expected, "the restart experiment was not recorded whole")
    recovered = ev.notes.get("recovered_after_s")
    details = {"before": _statuses(before), "down": down[0].status or down[0].error_type,
               "down_ms": down[0].elapsed_ms, "recovered_after_s": recovered, "settled": _statuses(settled)}
    observed = (f"down: {down[0].describe()} in {down[0].elapsed_ms or 0:.0f} ms; "
                + (f"served again after {recovered} s" if recovered is not None else "never served again")
                + f"; then {_statuses(settled)}")
    problems = []
    if any(e.status != 200 for e in before):
        problems.append(f"the service failed before the restart ({_statuses(before)})")
    if down[0].status is not None and down[0].status < 400:
        problems.append("a request was served while the database was down")
    if down[0].elapsed_ms is None or down[0].elapsed_ms > 5000:
        problems.append("the request during the outage did not fail fast")
    if recovered is None:
        problems.append(f"the service did not serve again within {params.within_s:g} s of the database restart")
    bad_after = [e for e in settled if e.status != 200]
    if bad_after:
        problems.append(f"{len(bad_after)} of {len(settled)} requests after recovery failed ({_statuses(bad_after)}): "
                        "broken pooled connections were not replaced")
    if problems:
        return Outcome("fail", expected, observed, "; ".join(problems), details, len(before) + len(settled) + 1)
    return Outcome("pass", expected, observed, "", details, len(before) + len(settled) + 1)


def collect_slow_dependency(ctx: CollectContext, params: p.SlowDependencyIsolated) -> None:
    def body(state: Any, admin: _Admin, prober: Prober) -> None:
        token = admin.token({"exp": int(time.time()) + 600})
        admin.service("PUT", "/fault", {"dependency_latency_ms": params.dependency_latency_ms})
        timeout = params.dependency_latency_ms / 1000 + 5
        uses = [RequestSpec(path=ctx.url("/api/dependency"), headers=_bearer(token), step="dependent",
                            timeout=timeout) for _ in range(params.requests)]
        # requests that do not need the dependency (authenticated, nothing else)
        others = [RequestSpec(path=ctx.url("/api/ping"), headers=_bearer(token), step="independent",
                              timeout=timeout) for _ in range(params.requests)]
        prober.send_many(uses + others, concurrency=min(2 * params.requests, 16))
        prober.send(RequestSpec(path=ctx.url("/live"), step="health", timeout=timeout))

    _run(ctx, body, timeout=params.dependency_latency_ms / 1000 + 5)


def evaluate_slow_dependency(ev: CheckEvidence, params: p.SlowDependencyIsolated) -> Outcome:
    expected = (f"with the dependency answering after {params.dependency_latency_ms} ms, calls to it end within "
                f"{params.max_latency_ms:g} ms (timeout), and requests that do not use it and health stay fast")
    bad = precheck(ev, expected, _CAPTURES)
    if bad:
        return bad
    dependent, independent, health_ = ev.steps("dependent"), ev.steps("independent"), ev.steps("health")
    if not dependent or not independent or not health_:
        return no_evidence(expected, "the requests during the slow dependency were not captured")
    worst_dep = max((e.elapsed_ms or 1e9) for e in dependent)
    worst_ind = max((e.elapsed_ms or 1e9) for e in [*independent, *health_])
    details = {"dependent": _statuses(dependent), "worst_dependent_ms": round(worst_dep, 1),
               "independent": _statuses(independent), "worst_independent_ms": round(worst_ind, 1)}
    observed = (f"dependent: {_statuses(dependent)}, worst {worst_dep:.0f} ms; others: {_statuses(independent)}, "
                f"worst {worst_ind:.0f} ms")
    problems = []
    if worst_dep > params.max_latency_ms:
        problems.append(f"calls to the slow dependency took up to {worst_dep:.0f} ms (limit "
                        f"{params.max_latency_ms:g}): no timeout cuts them off")
    if worst_ind > params.max_latency_ms or any(e.status != 200 for e in [*independent, *health_]):
        problems.append(f"requests that do not use the dependency suffered ({_statuses(independent)}, worst "
                        f"{worst_ind:.0f} ms)")
    if problems:
        return Outcome("fail", expected, observed, "; ".join(problems), details, len(dependent) + len(independent))
    return Outcome("pass", expected, observed, "", details, len(dependent) + len(independent))


def collect_threads(ctx: CollectContext, params: p.ThreadsBounded) -> None:
    def body(state: Any, admin: _Admin, prober: Prober) -> None:
        token = admin.token({"exp": int(time.time()) + 600})
        admin.service("PUT", "/fault", {"dependency_latency_ms": params.dependency_latency_ms})
        peak = [0]
        stop = threading.Event()

        def watch() -> None:
            for _ in range(400):  # bounded: at most 400 polls of 25 ms
                if stop.is_set():
                    return
                with contextlib.suppress(Exception):  # a refused poll is just not a sample
                    peak[0] = max(peak[0], int(admin.service("GET", "/counters").get("threads", 0)))
                time.sleep(0.025)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        specs = [RequestSpec(path=ctx.url("/api/dependency"), headers=_bearer(token), step="burst",
                             timeout=params.max_latency_ms / 1000 + 2) for _ in range(params.requests)]
        try:
            prober.send_many(specs, concurrency=min(params.requests, 64))
        finally:
            stop.set()
            watcher.join(timeout=5)
        ctx.notes["peak_threads"] = peak[0]
        ctx.notes["shed"] = admin.service("GET", "/counters").get("shed")

    _run(ctx, body, timeout=params.max_latency_ms / 1000 + 2)


def evaluate_threads(ev: CheckEvidence, params: p.ThreadsBounded) -> Outcome:
    expected = (f"a burst of {params.requests} concurrent slow requests keeps the service at {params.max_threads} "
                f"threads or fewer, sheds the excess at once (503/429) and answers every request within "
                f"{params.max_latency_ms:g} ms")
    bad = precheck(ev, expected, _CAPTURES)
    if bad:
        return bad
    burst = ev.steps("burst")
    peak = ev.notes.get("peak_threads")
    if not burst or peak is None:
        return no_evidence(expected, "the burst and the thread count were not recorded")
    shed = [e for e in burst if e.status in (503, 429)]
    slow = [e for e in burst if e.elapsed_ms is None or e.elapsed_ms > params.max_latency_ms or e.status is None]
    details = {"statuses": _statuses(burst), "peak_threads": peak, "shed": len(shed)}
    observed = f"{_statuses(burst)}; peak {peak} threads"
    problems = []
    if peak > params.max_threads:
        problems.append(f"the service grew to {peak} threads (limit {params.max_threads}): workers are not bounded")
    if not shed:
        problems.append(f"none of {len(burst)} concurrent requests was shed: the excess queued instead")
    if slow:
        problems.append(f"{len(slow)} requests took longer than {params.max_latency_ms:g} ms or got no answer")
    if problems:
        return Outcome("fail", expected, observed, "; ".join(problems), details, len(burst))
    return Outcome("pass", expected, observed, "", details, len(burst))


# -- perf: a short bounded load, judged by poetkb.load ---------------------------------------------------------
def collect_load(ctx: CollectContext, params: p.ServiceLoadSlo) -> None:
    def body(state: Any, admin: _Admin, prober: Prober) -> None:
        token = admin.token({"exp": int(time.time()) + 600})
        specs = [RequestSpec(path=ctx.url(params.path), headers=_bearer(token), step="load", timeout=5)
                 for _ in range(params.requests)]
        started = time.monotonic()
        prober.send_many(specs, concurrency=params.concurrency)
        ctx.notes["load_duration_s"] = round(time.monotonic() - started, 3)

    _run(ctx, body, timeout=5.0)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered) + 0.5)) - 1))]


def evaluate_load(ev: CheckEvidence, params: p.ServiceLoadSlo) -> Outcome:
    from poetkb.load.checks import evaluate_check
    from poetkb.load.metrics import MetricsSummary, PhaseMetrics

    expected = {"latency": f"{params.percentile} at most {params.max_ms:g} ms",
                "error_rate": f"error rate at most {params.max_rate:.2%}",
                "throughput": f"at least {params.min_rps:g} requests/s"}[params.slo]
    expected += f" over {params.requests} requests, {params.concurrency} at a time"
    bad = precheck(ev, expected, _CAPTURES)
    if bad:
        return bad
    load, duration = ev.steps("load"), ev.notes.get("load_duration_s")
    if not load or not duration:
        return no_evidence(expected, "the load run was not recorded")
    latencies = [e.elapsed_ms for e in load if e.elapsed_ms is not None]
    errors = sum(1 for e in load if e.status is None or e.status >= 400)
    ok = len(load) - errors
    window = PhaseMetrics(p50_ms=_percentile(latencies, 50), p90_ms=_percentile(latencies, 90),
                          p95_ms=_percentile(latencies, 95), p99_ms=_percentile(latencies, 99),
                          error_rate=errors / len(load), throughput_rps=round(ok / float(duration), 2),
                          requests=len(load), duration_s=float(duration))
    summary = MetricsSummary(source="the gate's load on the demo service", format="samples",
                             phases={"steady": window}, sample_count=len(latencies), samples_ms=latencies[:5000],
                             **window.model_dump())
    slos: dict[str, tuple[str, dict[str, Any]]] = {
        "latency": ("slo_latency", {"percentile": params.percentile, "max_ms": params.max_ms}),
        "error_rate": ("slo_error_rate", {"max_rate": params.max_rate}),
        "throughput": ("slo_throughput", {"min_rps": params.min_rps})}
    kind, check = slos[params.slo]
    verdict, observed, wanted, diagnosis = evaluate_check(kind, {**check, "phase": "steady"}, summary)
    details = {"p50_ms": window.p50_ms, "p95_ms": window.p95_ms, "p99_ms": window.p99_ms,
               "error_rate": window.error_rate, "throughput_rps": window.throughput_rps,
               "statuses": _statuses(load), "duration_s": duration}
    shown = (f"p95 {window.p95_ms:.1f} ms, p99 {window.p99_ms:.1f} ms, error rate {window.error_rate:.2%}, "
             f"{window.throughput_rps:g} requests/s ({_statuses(load)})")
    return Outcome(verdict, expected, shown, "" if verdict == "pass" else diagnosis, details, len(load))


# -- migrations ------------------------------------------------------------------------------------------------
def collect_migration_lock(ctx: CollectContext, params: p.MigrationLockBounded) -> None:
    import httpx

    def body(state: Any, admin: _Admin, prober: Prober) -> None:
        token = admin.token({"exp": int(time.time()) + 600})
        account = _new_account(prober, ctx, token, 0, "setup")
        # applied by an earlier run, the migration would return at once without waiting for any lock and prove
        # nothing (a false pass on the second run): undo it first, so every run tests the lock wait
        _undo_migration(state.dsn, "003_accounts_note", "ALTER TABLE accounts DROP COLUMN IF EXISTS note")
        held_at = time.monotonic()
        admin.service("PUT", "/fault", {"hold_read_s": params.hold_read_s})
        time.sleep(0.2)  # the long read has its lock
        outcome: dict[str, Any] = {}

        def migrate() -> None:
            started = time.monotonic()
            try:
                with httpx.Client(timeout=params.hold_read_s + 10, trust_env=False) as client:
                    response = client.post(state.admin_url + "/migrate", json={"name": "003_accounts_note"})
                outcome.update(response.json() if response.status_code == 200 else {"status": response.status_code})
            except httpx.HTTPError as exc:
                outcome["error"] = f"{type(exc).__name__}: {exc}"
            outcome["wall_ms"] = round((time.monotonic() - started) * 1000, 1)

        runner = threading.Thread(target=migrate, daemon=True)
        runner.start()
        time.sleep(0.2)  # the migration now waits for its lock (or has given up)
        spacing = params.hold_read_s / params.reads
        for _ in range(params.reads):
            prober.send(RequestSpec(path=ctx.url(f"/api/accounts/{account}"), headers=_bearer(token), step="read",
                                    timeout=params.hold_read_s + 5))
            time.sleep(spacing)
        runner.join(timeout=params.hold_read_s + 15)
        ctx.notes["migration"] = outcome
        ctx.sleep_until(held_at + params.hold_read_s + 0.3)  # the long read is over: the migration can now apply
        ctx.notes["retry"] = admin.service("POST", "/migrate", {"name": "003_accounts_note"})

    _run(ctx, body, timeout=params.hold_read_s + 5)


def _undo_migration(dsn: str, name: str, undo_sql: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute("SET lock_timeout = '5s'")
        conn.execute(undo_sql)  # type: ignore[arg-type]  # a constant of this module
        conn.execute("DELETE FROM schema_migrations WHERE name = %s", (name,))


def evaluate_migration_lock(ev: CheckEvidence, params: p.MigrationLockBounded) -> Outcome:
    expected = (f"while a {params.hold_read_s:g} s read holds the table, the migration gives up its lock wait and "
                f"reads stall at most {params.max_stall_ms:g} ms; it applies once the read is over")
    bad = precheck(ev, expected, _CAPTURES)
    if bad:
        return bad
    reads, migration, retry = ev.steps("read"), ev.notes.get("migration"), ev.notes.get("retry")
    if not reads or not isinstance(migration, dict) or not isinstance(retry, dict):
        return no_evidence(expected, "the migration experiment was not recorded whole")
    if migration.get("already"):
        return no_evidence(expected, "the migration was already applied when the long read began, so no lock wait "
                                     "was tested")
    worst = max((e.elapsed_ms or 1e9) for e in reads)
    failed = [e for e in reads if e.status != 200]
    details = {"reads": _statuses(reads), "worst_read_ms": round(worst, 1), "migration": migration, "retry": retry}
    observed = (f"reads {_statuses(reads)}, worst {worst:.0f} ms; migration during the read: "
                f"{'applied' if migration.get('applied') else migration.get('reason', migration.get('error', '?'))} "
                f"after {migration.get('wall_ms', 0):.0f} ms; afterwards applied: {bool(retry.get('applied'))}")
    problems = []
    if worst > params.max_stall_ms or failed:
        problems.append(f"reads stalled behind the waiting migration: worst {worst:.0f} ms (limit "
                        f"{params.max_stall_ms:g}), {len(failed)} of {len(reads)} failed ({_statuses(reads)})")
    if float(migration.get("wall_ms") or 0) > params.max_stall_ms:
        problems.append(f"the migration waited {float(migration.get('wall_ms') or 0):.0f} ms for its lock: no "
                        "bounded lock wait")
    if not retry.get("applied"):
        problems.append("the migration was not applied once the long read was over")
    if problems:
        return Outcome("fail", expected, observed, "; ".join(problems), details, len(reads))
    return Outcome("pass", expected, observed, "", details, len(reads))


#: the check kinds this module implements, each declared once with its parameters, evidence, collector and
#: evaluator (:mod:`poetkb.gates.checks.registry` finds them; ``poet gate kinds`` lists them)
KINDS = declare(
    Kind("jwt_forgery_rejected", p.JwtForgeryRejected, ("http_capture",),
         collect=collect_forgery, evaluate=evaluate_forgery, traffic=False, service=True),
    Kind("jwt_claims_enforced", p.JwtClaimsEnforced, ("http_capture",),
         collect=collect_claims, evaluate=evaluate_claims, traffic=False, service=True),
    Kind("jwks_rotation_bounded", p.JwksRotationBounded, ("http_capture",),
         collect=collect_rotation, evaluate=evaluate_rotation, traffic=False, service=True),
    Kind("jwks_outage_fails_closed", p.JwksOutageFailsClosed, ("http_capture",),
         collect=collect_outage, evaluate=evaluate_outage, traffic=False, service=True),
    Kind("unsafe_config_refused", p.UnsafeConfigRefused, ("http_capture",),
         collect=collect_config, evaluate=evaluate_config, traffic=False, service=True),
    Kind("concurrent_updates_consistent", p.ConcurrentUpdatesConsistent, ("http_capture",),
         collect=collect_updates, evaluate=evaluate_updates, traffic=False, service=True),
    Kind("rollback_no_partial_write", p.RollbackNoPartialWrite, ("http_capture",),
         collect=collect_rollback, evaluate=evaluate_rollback, traffic=False, service=True),
    Kind("ids_unique_concurrent", p.IdsUniqueConcurrent, ("http_capture",),
         collect=collect_ids, evaluate=evaluate_ids, traffic=False, service=True),
    Kind("deadlock_retried", p.DeadlockRetried, ("http_capture",),
         collect=collect_deadlock, evaluate=evaluate_deadlock, traffic=False, service=True),
    Kind("pool_exhaustion_graceful", p.PoolExhaustionGraceful, ("http_capture",),
         collect=collect_pool, evaluate=evaluate_pool, traffic=False, service=True),
    Kind("database_restart_recovered", p.DatabaseRestartRecovered, ("http_capture",),
         collect=collect_restart, evaluate=evaluate_restart, traffic=False, service=True),
    Kind("slow_dependency_isolated", p.SlowDependencyIsolated, ("http_capture",),
         collect=collect_slow_dependency, evaluate=evaluate_slow_dependency, traffic=False, service=True),
    Kind("threads_bounded", p.ThreadsBounded, ("http_capture",),
         collect=collect_threads, evaluate=evaluate_threads, traffic=False, service=True),
    Kind("service_load_slo", p.ServiceLoadSlo, ("http_capture",),
         collect=collect_load, evaluate=evaluate_load, traffic=False, service=True),
    Kind("migration_lock_bounded", p.MigrationLockBounded, ("http_capture",),
         collect=collect_migration_lock, evaluate=evaluate_migration_lock, traffic=False, service=True),
)
