"""Protocol checks: honest status on upstream faults, Content-Length, hop-by-hop headers, framing, X-Forwarded-For."""

from __future__ import annotations

from collections import Counter
from urllib.parse import urlsplit

from poetkb.gates import params as p
from poetkb.gates.checks.base import (
    CollectContext,
    Kind,
    Outcome,
    counter_errors,
    declare,
    listing,
    no_evidence,
    path_only,
    plural,
    precheck,
)
from poetkb.gates.evidence import CheckEvidence
from poetkb.gates.probes import RequestSpec, raw_exchange
from poetkb.gates.records import HttpExchange


# -- status_on_upstream_fault ------------------------------------------------------------------------
def collect_status(ctx: CollectContext, params: p.StatusOnUpstreamFault) -> None:
    """Requests while the fault lasts: on every path named, through every vantage, all at the same moment
    (each location and virtual host carries its own timeouts; a widened one answers late, and 200)."""
    import threading

    paths = [params.path, *params.also_paths]
    fault = params.fault
    if not fault.paths:
        fault = fault.model_copy(update={"paths": [path_only(x) for x in paths]})
    probers = [ctx.prober, *(ctx.vantage_prober(v) for v in params.also_via)]
    body = "poet" if params.method in ("POST", "PUT", "PATCH") else None
    with ctx.fault(fault):
        threads = []
        for k, prober in enumerate(probers):
            for j, path in enumerate(paths):
                specs = [RequestSpec(method=params.method, path=ctx.url(path, f"-{k}-{j}-{i}"),
                                     step=f"fault:{k}.{j}.{i + 1}", body=body, timeout=params.timeout_s)
                         for i in range(params.requests)]
                threads.append(threading.Thread(target=prober.send_many, args=(specs,), daemon=True))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(params.timeout_s * params.requests + 5.0)


def _fault_words(spec: p.FaultSpec) -> str:
    who = {"all": "every upstream", "faulty": "the faulty upstream", "healthy": "the healthy upstreams"}.get(
        spec.target, f"upstream {spec.target}")
    if spec.action == "reset":
        return f"{who} reset the connection"
    if spec.action == "close":
        return f"{who} closed the connection without answering"
    if spec.action == "hang":
        return f"{who} never answered"
    if spec.status:
        return f"{who} answered {spec.status}"
    return f"{who} answered after {spec.latency_ms} ms"


def evaluate_status(ev: CheckEvidence, params: p.StatusOnUpstreamFault) -> Outcome:
    expected = f"status {listing(params.expect_status)} while {_fault_words(params.fault)}" + (
        f", within {params.max_latency_ms:g} ms" if params.max_latency_ms else "")
    bad = precheck(ev, expected, ["captures.jsonl"])
    if bad:
        return bad
    got = ev.steps("fault")
    if not got:
        return no_evidence(expected, "no requests were captured for this check")
    outcomes = Counter(str(e.status) if e.response else (e.error_type or "error") for e in got)
    quarantined = _quarantined(got, params)
    excused = {id(e) for e in quarantined}
    wrong = [e for e in got if e.status not in params.expect_status and id(e) not in excused]
    slowest = max((e.elapsed_ms or 0) for e in got)
    details = {"outcomes": dict(outcomes), "slowest_ms": slowest, "quarantined": len(quarantined)}
    observed = f"{listing(f'{k} x{v}' for k, v in outcomes.items())} (slowest {slowest:.0f} ms)" + (
        f"; {len(quarantined)} answered at once by an edge that had taken the timed-out servers out" if quarantined
        else "")
    slow = [e for e in got if params.max_latency_ms and (e.elapsed_ms or 0) > params.max_latency_ms]
    if not wrong and slow:
        return Outcome("fail", expected, observed,
                       f"{len(slow)} of {len(got)} requests took longer than {params.max_latency_ms:g} ms (slowest "
                       f"{slowest:.0f} ms) while {_fault_words(params.fault)}: the edge waits too long before it "
                       "answers", details, len(got))
    if not wrong:
        return Outcome("pass", expected, observed, "", details, len(got))
    first = wrong[0]
    if first.response is None:
        why = (f"{first.error_type or 'error'} after {first.elapsed_ms or 0:.0f} ms"
               + (": the edge never gave up on the upstream (no read timeout?)" if "Timeout" in (first.error_type or "")
                  else ": the edge dropped the client connection instead of answering"))
    elif 200 <= first.response.status < 300:
        why = f"{first.response.status}: the edge hides the failure behind a success page"
    else:
        why = f"status {first.response.status}"
    return Outcome("fail", expected, observed,
                   f"{len(wrong)} of {len(got)} requests for {params.path} got {why}, while "
                   f"{_fault_words(params.fault)}; expected {listing(params.expect_status)}", details, len(got))


#: what an edge answers at once while every server of a group is marked failed (NGINX: "no live upstreams",
#: 502; HAProxy: no server available, 503)
_NO_LIVE_SERVER = (502, 503)


def _quarantined(got: list[HttpExchange], params: p.StatusOnUpstreamFault) -> list[HttpExchange]:
    """Requests answered 502/503 because the edge's passive health had taken the hanging servers out.

    While every upstream hangs, the edge's read timeout answers 504, and each timeout counts as a failure of that
    server (NGINX ``max_fails``, HAProxy ``observe layer7``). A request that starts after the group's servers were
    all marked failed is answered at once with 502 or 503 instead. That is the timeout enforced, seen a second
    time, not a failure: it counts only when a request on the same path (location) had already got its 504
    before this one started, and when 504 is the status the check expects. An edge that never times out (no 504
    at all) or answers 502 from the start is still caught.
    """
    if params.fault.action != "hang" or 504 not in params.expect_status:
        return []

    def location(ex: HttpExchange) -> str:  # step "fault:<prober>.<path>.<n>": the path's index
        parts = ex.step.split(":", 1)[-1].split(".")
        return parts[1] if len(parts) == 3 else ""

    timed_out: dict[str, float] = {}
    for ex in got:
        if ex.status == 504 and ex.elapsed_ms is not None:
            done = ex.started + ex.elapsed_ms / 1000
            where = location(ex)
            timed_out[where] = min(done, timed_out.get(where, done))
    return [ex for ex in got
            if ex.status in _NO_LIVE_SERVER and ex.status not in params.expect_status
            and location(ex) in timed_out and ex.started >= timed_out[location(ex)] - 0.05]


# -- content_length_matches --------------------------------------------------------------------------
def collect_length(ctx: CollectContext, params: p.ContentLengthMatches) -> None:
    for path in params.paths:
        for r in range(params.repeat):
            for method in params.methods:
                ctx.send(method, path, step=f"len:{method}:{path}:{r + 1}", headers={"Accept-Encoding": "identity"})


def evaluate_length(ev: CheckEvidence, params: p.ContentLengthMatches) -> Outcome:
    expected = "every body is exactly Content-Length bytes (or chunked), HEAD carries the GET length or none"
    bad = precheck(ev, expected, ["captures.jsonl"])
    if bad:
        return bad
    got = [e for e in ev.exchanges if e.step.startswith("len:")]
    if not got:
        got = list(ev.exchanges)
    if not got:
        return no_evidence(expected, "no requests were captured for this check")
    problems: list[str] = []
    get_length: dict[str, str] = {}
    for ex in sorted(got, key=lambda e: e.seq):
        label = f"{ex.request.method} {ex.path}"
        if ex.response is None:
            problems.append(f"{label}: {ex.error_type}: {ex.error}")
            continue
        if params.expect_status and ex.response.status not in params.expect_status:
            problems.append(f"{label}: status {ex.response.status}, expected {listing(params.expect_status)}")
            continue
        declared = ex.header("content-length")
        if ex.request.method == "HEAD":
            if ex.response.body_size:
                problems.append(f"{label}: a HEAD response carried {ex.response.body_size} body bytes")
            continue
        if declared is not None:
            if "," in declared or not declared.strip().isdigit():
                problems.append(f"{label}: malformed Content-Length {declared!r}")
            elif int(declared) != ex.response.body_size:
                problems.append(f"{label}: Content-Length {declared} but {ex.response.body_size} body bytes")
            get_length[ex.path] = declared
    for ex in got:
        if ex.request.method == "HEAD" and ex.response is not None:
            declared = ex.header("content-length")
            if declared is not None and ex.path in get_length and declared != get_length[ex.path]:
                problems.append(f"HEAD {ex.path}: Content-Length {declared}, the GET said {get_length[ex.path]}")
    observed = (f"{len(got) - len(problems)} of {len(got)} responses framed consistently" if problems
                else f"all {len(got)} responses framed consistently")
    details = {"responses": len(got), "problems": problems[:20]}
    if problems:
        return Outcome("fail", expected, observed, f"{plural(len(problems), 'framing problem')}: {listing(problems)}",
                       details, len(got))
    return Outcome("pass", expected, observed, "", details, len(got))


# -- hop_by_hop_stripped -----------------------------------------------------------------------------
NOMINATED = "X-Poet-Nominated"


def _hop_headers(params: p.HopByHopStripped, marker: str) -> dict[str, str]:
    headers = {name: f"{marker}-{name.lower()}" for name in params.headers if name.lower() != "connection"}
    # the client's own Connection field must not reach the upstream either: it names TE (as RFC 9110 asks of a
    # client sending TE), a token no proxy writes for itself, so an upstream that sees it saw the client's field
    headers["Connection"] = "te" if "te" in {k.lower() for k in headers} else "keep-alive"
    return headers


def _connection_leak(ex: HttpExchange) -> bool:
    """True when the upstream received a Connection field naming TE: the client's field, forwarded."""
    received = ex.received_headers() or {}
    tokens = {t.strip().lower() for t in received.get("connection", "").split(",")}
    return "te" in tokens and "te" in ex.request.headers.get("connection", "").lower()


def collect_hop(ctx: CollectContext, params: p.HopByHopStripped) -> None:
    """Hop-by-hop headers with a marker, ``Connection: te``, and a header the Connection field names.

    Not covered (and not needed): NGINX replacing the client's Connection field by its own ``close`` when
    ``proxy_set_header Connection ""`` is missing; no client value reaches the upstream then.
    """
    marker = f"poethop{ctx.nonce.replace('-', '')}"
    ctx.notes["marker"] = marker
    ctx.send("GET", params.path, step="hop", headers=_hop_headers(params, marker))
    if any(name.lower() == "connection" for name in params.headers):
        ctx.send("GET", params.path, step="nominated",
                 headers={"Connection": f"keep-alive, {NOMINATED}", NOMINATED: f"{marker}-nominated"})


def _leaks(ex: HttpExchange, marker: str) -> list[str] | None:
    received = ex.received_headers()
    if received is None:
        return None
    return sorted(name for name, value in received.items() if marker in value or name == NOMINATED.lower())


def evaluate_hop(ev: CheckEvidence, params: p.HopByHopStripped) -> Outcome:
    expected = (f"none of {listing(params.headers, 6)} reaches the upstream; a header that Connection names is "
                "dropped, or the request refused")
    bad = precheck(ev, expected, ["captures.jsonl"])
    if bad:
        return bad
    got = ev.steps("hop")
    if not got:
        return no_evidence(expected, "no request was captured for this check")
    marker = str(ev.notes.get("marker") or "poethop")
    ex = got[0]
    if ex.response is None or ex.response.status >= 400:
        return Outcome("fail", expected, ex.describe(),
                       f"a request carrying standard hop-by-hop headers was refused or failed: {ex.describe()}")
    leaked = _leaks(ex, marker)
    if leaked is None:
        return Outcome("error", expected, "no echo of the received headers",
                       "the upstream's answer carries no echo of the headers it received (is the target the demo?)")
    if _connection_leak(ex):
        leaked = sorted({*leaked, "connection"})
    problems = []
    if leaked:
        problems.append(f"{plural(len(leaked), 'hop-by-hop header')} reached the upstream with the client's values: "
                        f"{listing(leaked, 6)}")
    back = sorted(h for h in params.response_must_not_have if ex.header(h) is not None)
    if back:
        problems.append(f"the response to the client carried {listing(back)}")
    nominated = ev.steps("nominated")
    nominated_outcome = "not sent"
    if nominated:
        n = nominated[0]
        nominated_outcome = n.describe()
        if n.response is None or n.response.status >= 500:
            problems.append(f"a request whose Connection header names {NOMINATED} failed: {n.describe()}")
        elif n.response.status < 400 and (_leaks(n, marker) or []):
            problems.append(f"{NOMINATED}, named by the client's Connection header, reached the upstream")
    details = {"leaked": leaked, "response_hop_headers": back, "nominated": nominated_outcome}
    observed = (f"the upstream received {listing(leaked)}" if leaked else "no hop-by-hop header reached the upstream")
    observed += f"; a Connection-named header: {nominated_outcome}"
    if problems:
        return Outcome("fail", expected, observed, "; ".join(problems), details, 1 + len(nominated))
    return Outcome("pass", expected, observed, "", details, 1 + len(nominated))


# -- ambiguous_framing_rejected ----------------------------------------------------------------------
def framing_payload(case: str, host: str, path: str, smuggle_path: str) -> bytes:
    """A request whose framing is ambiguous in the way ``case`` names, hiding a second request."""
    smuggled = f"GET {smuggle_path} HTTP/1.1\r\nHost: {host}\r\n\r\n"
    trailer = f"0\r\n\r\n{smuggled}"
    line = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
    if case == "cl_and_te":
        size = f"{len(smuggled):x}\r\n"
        body = f"{size}{smuggled}\r\n0\r\n\r\n"
        head = f"{line}Content-Length: {len(size)}\r\nTransfer-Encoding: chunked\r\n"
    elif case == "duplicate_content_length":
        body = f"hello{smuggled}"
        head = f"{line}Content-Length: 5\r\nContent-Length: {len(body)}\r\n"
    elif case == "content_length_list":
        body = f"hello{smuggled}"
        head = f"{line}Content-Length: 5, {len(body)}\r\n"
    elif case == "te_not_chunked_last":
        body = trailer
        head = f"{line}Transfer-Encoding: chunked, identity\r\nContent-Length: {len(body)}\r\n"
    elif case == "te_obfuscated":
        body = trailer
        head = f"{line}Transfer-Encoding: xchunked\r\nContent-Length: {len(body)}\r\n"
    elif case == "te_on_http10":
        body = trailer
        head = f"POST {path} HTTP/1.0\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
    elif case == "invalid_chunk_size":
        body = f"zz\r\nhello\r\n{trailer}"
        head = f"{line}Transfer-Encoding: chunked\r\n"
    elif case == "space_before_colon":
        body = trailer
        head = f"{line}Transfer-Encoding : chunked\r\nContent-Length: {len(body)}\r\n"
    else:
        raise ValueError(f"unknown framing case {case!r}")
    return f"{head}Connection: keep-alive\r\n\r\n{body}".encode()


def collect_framing(ctx: CollectContext, params: p.AmbiguousFramingRejected) -> None:
    base = ctx.target.base_url or ""
    host = urlsplit(base).netloc or "localhost"
    if ctx.router is not None:  # a user's own configuration: the Host its route answers to
        from poetkb.gates.probes import RequestSpec

        host = ctx.router(RequestSpec(path=params.path)).host or host
    smuggle = {case: f"/smuggled-{ctx.nonce}-{case}" for case in params.cases}
    ctx.notes["smuggled_paths"] = smuggle
    has_counters = ctx.faults_ is not None and bool(ctx.faults_.upstreams)
    if has_counters:
        ctx.counters("before")
    for n, case in enumerate(params.cases, start=1):
        payload = framing_payload(case, host, ctx.url(params.path, f"-{case}"), smuggle[case])
        exchange = raw_exchange(base, payload, timeout=params.timeout_s, check_id=ctx.check_id,
                                step=f"case:{case}", seq=n)
        ctx.writer.exchange(exchange)
    if has_counters:
        ctx.counters("after")


def _framing_verdict(ex: HttpExchange, case: str, params: p.AmbiguousFramingRejected) -> str | None:
    """None when the edge handled ``case`` safely, else what went wrong."""
    if ex.response is None:
        if ex.closed or "reset" in (ex.error or "").lower():
            return None  # the edge dropped the connection: rejected without an answer
        return f"no answer and no close within the timeout ({ex.error or 'timed out'})"
    status = ex.response.status
    if status in params.expect_status:
        return None
    if 200 <= status < 300:
        if case not in params.allow_normalized:
            return f"forwarded and answered {status} instead of rejecting it"
        received = ex.received_headers() or {}
        if "transfer-encoding" in received and "content-length" in received:
            return "forwarded with both Content-Length and Transfer-Encoding to the upstream"
        if "," in received.get("content-length", ""):
            return f"forwarded with Content-Length {received['content-length']!r}"
        return None
    return f"answered {status}, expected {listing(params.expect_status)}"


def evaluate_framing(ev: CheckEvidence, params: p.AmbiguousFramingRejected) -> Outcome:
    expected = (f"each ambiguous request is rejected ({listing(params.expect_status)} or a closed connection)"
                + (f" or, for {listing(params.allow_normalized)}, forwarded with one framing" if params.allow_normalized
                   else "") + "; a smuggled request never reaches an upstream")
    bad = precheck(ev, expected, ["captures.jsonl"])
    if bad:
        return bad
    problems: list[str] = []
    seen = 0
    for case in params.cases:
        got = ev.steps(f"case:{case}")
        if not got:
            problems.append(f"{case}: not captured")
            continue
        seen += 1
        why = _framing_verdict(got[0], case, params)
        if why:
            problems.append(f"{case}: {why}")
    if seen == 0:
        return no_evidence(expected, "no framing case was captured")
    smuggled_paths: dict[str, str] = ev.notes.get("smuggled_paths") or {}
    if ev.counters and not counter_errors(ev.counters):
        after = [s for s in ev.counters if s.label == "after"]
        reached = sorted({case for snap in after for item in snap.recent() for case, sp in smuggled_paths.items()
                          if str(item.get("path", "")).startswith(sp)}
                         | {case for snap in after for case, sp in smuggled_paths.items()
                            if any(k.startswith(sp) for k in snap.by_path())})
        for hidden in reached:
            problems.append(f"{hidden}: the hidden request {smuggled_paths[hidden]} reached an upstream (smuggled)")
    details = {"cases": list(params.cases), "problems": problems}
    observed = "; ".join(problems) if problems else f"all {seen} cases were handled safely"
    if problems:
        return Outcome("fail", expected, observed, f"{plural(len(problems), 'unsafe case')}: {listing(problems, 4)}",
                       details, seen)
    return Outcome("pass", expected, observed, "", details, seen)


# -- forwarded_for_appended --------------------------------------------------------------------------
def collect_xff(ctx: CollectContext, params: p.ForwardedForAppended) -> None:
    ctx.send("GET", params.path, step="with", headers={params.header: params.incoming})
    ctx.send("GET", params.path, step="without")


def evaluate_xff(ev: CheckEvidence, params: p.ForwardedForAppended) -> Outcome:
    want_with = f"{params.incoming}, {params.client_address}"
    expected = (f"the upstream receives {params.header}: {want_with} when the client sent {params.incoming}, "
                f"and {params.client_address} when it sent none")
    bad = precheck(ev, expected, ["captures.jsonl"])
    if bad:
        return bad
    with_, without = ev.steps("with"), ev.steps("without")
    if not with_ or not without:
        return no_evidence(expected, "the requests with and without the header were not both captured")
    got: dict[str, str | None] = {}
    for name, ex in (("with", with_[0]), ("without", without[0])):
        if ex.response is None or ex.response.status >= 400:
            return Outcome("fail", expected, ex.describe(), f"the request failed: {ex.describe()}")
        received = ex.received_headers()
        if received is None:
            return Outcome("error", expected, "no echo", "the upstream's answer carries no echo of received headers")
        got[name] = received.get(params.header.lower())
    chain = [part.strip() for part in (got["with"] or "").split(",") if part.strip()]
    observed = f"with: {got['with'] or '(none)'}; without: {got['without'] or '(none)'}"
    details = {"with": got["with"], "without": got["without"]}
    if chain[:-1] != [params.incoming] or (chain[-1:] != [params.client_address]):
        if chain == [params.incoming]:
            why = "the edge passed the client's value through without appending the client address (spoofable)"
        elif params.incoming not in chain:
            why = "the edge replaced the incoming chain instead of appending to it"
        else:
            why = f"the chain is {', '.join(chain) or '(empty)'}"
        return Outcome("fail", expected, observed,
                       f"the upstream received {params.header}: {got['with'] or '(none)'}; expected {want_with}: {why}",
                       details, 2)
    if (got["without"] or "").strip() != params.client_address:
        return Outcome("fail", expected, observed,
                       f"without an incoming header the upstream received {got['without'] or '(none)'}, "
                       f"expected {params.client_address}", details, 2)
    return Outcome("pass", expected, observed, "", details, 2)


#: the check kinds this module implements, each declared once with its parameters, evidence, collector and
#: evaluator (:mod:`poetkb.gates.checks.registry` finds them; ``poet gate kinds`` lists them)
KINDS = declare(
    Kind("status_on_upstream_fault", p.StatusOnUpstreamFault, ("http_capture",),
         collect=collect_status, evaluate=evaluate_status),
    Kind("content_length_matches", p.ContentLengthMatches, ("http_capture",),
         collect=collect_length, evaluate=evaluate_length),
    Kind("hop_by_hop_stripped", p.HopByHopStripped, ("http_capture",),
         collect=collect_hop, evaluate=evaluate_hop),
    Kind("ambiguous_framing_rejected", p.AmbiguousFramingRejected, ("http_capture", "upstream_counters"),
         collect=collect_framing, evaluate=evaluate_framing),
    Kind("forwarded_for_appended", p.ForwardedForAppended, ("http_capture",),
         collect=collect_xff, evaluate=evaluate_xff),
)
