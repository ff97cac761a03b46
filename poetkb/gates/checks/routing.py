"""Routing checks: key affinity, bounded upstream attempts, no retried POSTs, health avoidance, host isolation."""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from typing import Any

from poetkb.gates import params as p
from poetkb.gates.checks.base import (
    CollectContext,
    Kind,
    Outcome,
    counter_deltas,
    counter_errors,
    declare,
    identity,
    listing,
    log_problem,
    no_evidence,
    path_only,
    plural,
    precheck,
    with_nonce,
)
from poetkb.gates.evidence import CheckEvidence
from poetkb.gates.probes import RequestSpec
from poetkb.gates.records import shown


# -- same_key_same_backend ---------------------------------------------------------------------------
def collect_same_key(ctx: CollectContext, params: p.SameKeySameBackend) -> None:
    per_key = max(1, params.requests // params.keys)
    specs = [RequestSpec(method=params.method, path=ctx.url(f"{params.path}?key=k{k}"), step=f"key:k{k}")
             for _ in range(per_key) for k in range(params.keys)]
    random.Random(params.keys * 7919 + per_key).shuffle(specs)
    ctx.send_many(specs, concurrency=params.concurrency)


def _backend(ev: CheckEvidence, name: str | None) -> str | None:
    return ev.address_of(name) or name


def evaluate_same_key(ev: CheckEvidence, params: p.SameKeySameBackend) -> Outcome:
    expected = ("every request for a key reaches the backend the first one did"
                + (f", and the keys spread over at least {params.min_backends} backends"
                   if params.min_backends > 1 else ""))
    bad = precheck(ev, expected, ["captures.jsonl"]) or (None if ev.exchanges else log_problem(ev, expected))
    if bad:
        return bad
    groups: dict[str, list[str | None]] = defaultdict(list)
    if ev.exchanges:
        for ex in sorted(ev.exchanges, key=lambda e: e.seq):
            key = shown(ex.path)
            ok = ex.response is not None and ex.response.status < 500
            groups[key].append(_backend(ev, ex.upstream) if ok else None)
    elif ev.log is not None and ev.log.records:
        for rec in ev.log.records:
            addrs = rec.upstream_addrs
            groups[rec.uri].append(addrs[-1] if addrs and (rec.status or 0) < 500 else None)
    if not groups:
        return no_evidence(expected, "no requests were captured for this check")
    total = sum(len(v) for v in groups.values())
    failed = sum(1 for v in groups.values() for b in v if b is None)
    split: list[tuple[str, int, int, str, list[str]]] = []
    firsts = set()
    for key, backends in groups.items():
        known = [b for b in backends if b is not None]
        if not known:
            continue
        first = known[0]
        firsts.add(first)
        others = [b for b in known if b != first]
        if others:
            split.append((key, len(others), len(backends), first, sorted(set(others))))
    details: dict[str, Any] = {"keys": len(groups), "requests": total, "failed_requests": failed,
                               "keys_split": len(split), "backends": sorted(firsts)}
    observed = (f"{len(groups) - len(split)} of {len(groups)} keys stayed on one backend; "
                f"keys landed on {plural(len(firsts), 'backend')} ({listing(sorted(firsts))})")
    if split:
        key, n, of, first, others = max(split, key=lambda s: s[1])
        return Outcome("fail", expected, observed,
                       f"{len(split)} of {len(groups)} keys were split across backends; e.g. {n} of {of} requests "
                       f"for {key} reached a different backend than the first ({first}): {listing(others)}",
                       details, total)
    if failed:
        return Outcome("fail", expected, observed,
                       f"{failed} of {total} requests got no answer from a backend (error or 5xx), so their "
                       "backend cannot be told", details, total)
    if len(firsts) < params.min_backends:
        return Outcome("fail", expected, observed,
                       f"all {len(groups)} keys landed on {listing(sorted(firsts))}; expected at least "
                       f"{params.min_backends} backends to share the keys", details, total)
    return Outcome("pass", expected, observed, "", details, total)


# -- upstream_attempts_bounded / no_retry_non_idempotent -------------------------------------------
def _paths(params: Any) -> list[str]:
    return [path_only(x) for x in [params.path, *params.also_paths]]


def _fault_on(spec: p.FaultSpec, params: Any) -> p.FaultSpec:
    """``spec`` limited to the check's paths (all of them) when it names none itself."""
    return spec if spec.paths else spec.model_copy(update={"paths": _paths(params)})


def _sequential_with_counters(ctx: CollectContext, methods: list[str], params: Any, requests: int,
                              fault: p.FaultSpec, timeout: float) -> None:
    ctx.counters("r0")
    paths = [params.path, *params.also_paths]
    with ctx.fault(_fault_on(fault, params)):
        n = 0
        for _ in range(requests):
            for path in paths:
                for method in methods:
                    n += 1
                    body = "poet" if method in ("POST", "PUT", "PATCH") else None
                    ctx.send(method, path, step=f"attempt:{n}", body=body, timeout=timeout)
                    ctx.counters(f"r{n}")
        time.sleep(0.3)  # let retries still in flight at the edge reach the upstreams
        ctx.counters("end")
    ctx.notes["requests"] = n


def collect_attempts(ctx: CollectContext, params: p.UpstreamAttemptsBounded) -> None:
    """Requests one at a time on every path (backend) named, counting attempts at the upstreams after each.

    Not covered: a retry count on a backend that retries only failed connections (HAProxy ``retry-on
    conn-failure``): the upstreams cannot refuse a connection on demand, and a reset after connecting is never
    retried there. Nor is the retry *time* bound probed (NGINX ``proxy_next_upstream_timeout``): where it binds,
    a probe would wait out two default read timeouts.
    """
    _sequential_with_counters(ctx, [params.method], params, params.requests, params.fault, params.timeout_s)


def collect_no_retry(ctx: CollectContext, params: p.NoRetryNonIdempotent) -> None:
    _sequential_with_counters(ctx, params.methods, params, params.requests, params.fault, 6.0)


def _attempts(ev: CheckEvidence, path: str | list[str] | None, max_attempts: int, expected: str) -> Outcome:
    """Upstream attempts per request, from the gate's counters or (for evidence from elsewhere) the access log;
    ``path`` None counts every logged request (a foreign log is not filtered by the demo's fault path)."""
    bad = precheck(ev, expected, ["counters.jsonl", "captures.jsonl"]) or (
        None if ev.counters else log_problem(ev, expected))
    if bad:
        return bad
    errors = counter_errors(ev.counters)
    if errors:
        return Outcome("error", expected, "upstream counters unreadable",
                       f"upstream counters could not be read: {listing(errors, 2)}")
    n = int(ev.notes.get("requests") or len(ev.exchanges))
    per_request: list[int] = []
    for i in range(1, n + 1):
        delta = counter_deltas(ev.counters, f"r{i - 1}", f"r{i}", _only(path))
        if delta is None:
            break
        per_request.append(sum(delta.values()))
    total = counter_deltas(ev.counters, "r0", "end", _only(path))
    if not per_request or total is None:
        # evidence from elsewhere: count attempts in the access log
        if ev.log is not None and ev.log.records:
            wanted = _only(path)
            per_request = [max(1, len(r.attempts)) for r in ev.log.records
                           if wanted is None or path_only(r.uri) in wanted]
            total_attempts = sum(per_request)
        else:
            return no_evidence(expected, "no upstream counters or access-log lines for this check's requests")
    else:
        total_attempts = sum(total.values())
    if not per_request:
        return no_evidence(expected, f"no request for {_shown(path)} reached the edge's log or the upstreams")
    worst = max(per_request)
    statuses = Counter(str(e.status) if e.response else (e.error_type or "error") for e in ev.exchanges)
    details = {"requests": len(per_request), "attempts_per_request": per_request, "total_attempts": total_attempts,
               "max_attempts": worst, "client_statuses": dict(statuses),
               "by_upstream": total if total is not None else {}}
    observed = (f"{total_attempts} upstream attempts for {plural(len(per_request), 'request')} "
                f"(at most {worst} for one request); clients got {listing(f'{k} x{v}' for k, v in statuses.items())}")
    over = [i + 1 for i, a in enumerate(per_request) if a > max_attempts]
    if over or total_attempts > max_attempts * len(per_request):
        where = f"request {over[0]} produced {per_request[over[0] - 1]} attempts" if over else \
            f"{total_attempts} attempts reached the upstreams in all"
        return Outcome("fail", expected, observed,
                       f"{len(over) or 'some'} of {len(per_request)} requests for {_shown(path)} went to the "
                       f"upstreams more than {max_attempts} time{'s' if max_attempts != 1 else ''}: {where} "
                       f"(upstream counters over the run: {listing(f'{k}={v}' for k, v in (total or {}).items())})",
                       details, len(per_request))
    return Outcome("pass", expected, observed, "", details, len(per_request))


def evaluate_attempts(ev: CheckEvidence, params: p.UpstreamAttemptsBounded) -> Outcome:
    expected = (f"at most {params.max_attempts} upstream attempts per {params.method} request while "
                f"{_fault(params.fault)}")
    return _attempts(ev, _paths(params), params.max_attempts, expected)


def evaluate_no_retry(ev: CheckEvidence, params: p.NoRetryNonIdempotent) -> Outcome:
    expected = (f"each {'/'.join(params.methods)} request reaches the upstreams at most {params.max_attempts} "
                f"time{'s' if params.max_attempts != 1 else ''}, even when {_fault(params.fault)}")
    return _attempts(ev, _paths(params), params.max_attempts, expected)


def _only(path: str | list[str] | None) -> list[str] | None:
    if path is None:
        return None
    return [path_only(path)] if isinstance(path, str) else [path_only(x) for x in path]


def _shown(path: str | list[str] | None) -> str:
    return "any path" if path is None else listing(_only(path) or [])


def _fault(spec: p.FaultSpec) -> str:
    what = spec.action if spec.action != "none" else (f"status {spec.status}" if spec.status else
                                                        f"{spec.latency_ms} ms latency")
    who = {"all": "all upstreams", "healthy": "the healthy upstreams"}.get(spec.target, f"the {spec.target} upstream")
    return f"{who} {what}"


# -- unhealthy_backend_avoided ---------------------------------------------------------------------
def collect_unhealthy(ctx: CollectContext, params: p.UnhealthyBackendAvoided) -> None:
    """Warm up, then measure, with the fault on every path (backend) named and a distinct URI per request.

    Backup servers are covered only by a fault on the primary and the backup together (``target: "faulty,
    healthy-a"``); a connection reset is not used (HAProxy 2.6 does not count a reset it retried elsewhere).
    """
    paths = [params.path, *params.also_paths]
    with ctx.fault(_fault_on(params.fault, params)):
        # a distinct URI per request: behind a hash on the URI, one URI would only ever reach one server;
        # the paths in turn, so each location (backend) sees the failing server
        for i in range(params.warmup):
            path = paths[i % len(paths)]
            ctx.send("GET", ctx.url(path, f"-w{i}"), nonce=False, step=f"warmup:{i + 1}")
        ctx.counters("warm")
        for i in range(params.requests):
            path = paths[i % len(paths)]
            ctx.send("GET", ctx.url(path, f"-m{i}"), nonce=False, step=f"measure:{i + 1}")
        ctx.counters("after")
    ctx.notes["faulty"] = sorted(u.name for u in ctx.faults.select(params.fault.target))


def evaluate_unhealthy(ev: CheckEvidence, params: p.UnhealthyBackendAvoided) -> Outcome:
    expected = (f"after {params.warmup} warm-up requests, at most {params.max_faulty_share:.0%} of requests reach "
                f"the failing upstream and at least {params.min_success_ratio:.0%} succeed")
    bad = precheck(ev, expected, ["counters.jsonl", "captures.jsonl"])
    if bad:
        return bad
    errors = counter_errors(ev.counters)
    if errors:
        return Outcome("error", expected, "upstream counters unreadable", listing(errors, 2))
    measured = ev.steps("measure")
    delta = counter_deltas(ev.counters, "warm", "after", _paths(params))
    if not measured or delta is None:
        return no_evidence(expected, "no measured requests or counter snapshots for this check")
    named = {t.strip() for t in params.fault.target.split(",")}
    faulty = set(ev.notes.get("faulty") or [u.name for u in ev.upstreams if u.role in named or u.name in named])
    to_faulty = sum(v for k, v in delta.items() if k in faulty)
    ok = sum(1 for e in measured if e.response is not None and e.response.status < 500)
    share = to_faulty / len(measured)
    details: dict[str, Any] = {"measured": len(measured), "reached_failing": to_faulty, "succeeded": ok,
                               "by_upstream": delta}
    observed = (f"{to_faulty} of {len(measured)} measured requests reached the failing upstream "
                f"({listing(sorted(faulty))}); {ok} succeeded")
    if share > params.max_faulty_share:
        return Outcome("fail", expected, observed,
                       f"the failing upstream kept receiving traffic after warm-up: {to_faulty} of {len(measured)} "
                       f"requests ({share:.0%}) were still sent to {listing(sorted(faulty))}, so passive health "
                       "checking did not take it out", details, len(measured))
    if params.also_paths:
        # each location (backend) on its own: one that keeps a failing server in rotation is not hidden by others
        for path in _paths(params):
            mine = [e for e in measured if path_only(e.path) == path]
            per = counter_deltas(ev.counters, "warm", "after", path) or {}
            hits = sum(v for k, v in per.items() if k in faulty)
            details.setdefault("by_path", {})[path] = {"measured": len(mine), "reached_failing": hits}
            if mine and hits / len(mine) > params.max_faulty_share:
                return Outcome("fail", expected, observed,
                               f"on {path} the failing upstream kept receiving traffic after warm-up: {hits} of "
                               f"{len(mine)} requests were still sent to {listing(sorted(faulty))}, so passive "
                               "health checking there did not take it out", details, len(measured))
    if ok / len(measured) < params.min_success_ratio:
        failed = [e.describe() for e in measured if e.response is None or e.response.status >= 500]
        return Outcome("fail", expected, observed,
                       f"{len(measured) - ok} of {len(measured)} requests failed although a healthy upstream was "
                       f"available: {listing(failed)}", details, len(measured))
    return Outcome("pass", expected, observed, "", details, len(measured))


# -- host_isolated -----------------------------------------------------------------------------------
def collect_hosts(ctx: CollectContext, params: p.HostIsolated) -> None:
    for host in params.hosts:
        ctx.send("GET", params.path, step=f"host:{host}", host=host)
    if params.cache_path:
        from poetkb.gates.checks.cache import STORE_SETTLE_S

        for host in params.hosts:
            ctx.send("GET", params.cache_path, step=f"cache:{host}", host=host)
            time.sleep(STORE_SETTLE_S)  # a cache that ignores the host would answer the next host from it
    if params.unknown_host:
        ctx.send("GET", params.path, step="unknown", host=params.unknown_host)


def evaluate_hosts(ev: CheckEvidence, params: p.HostIsolated) -> Outcome:
    expected = (f"each of {listing(params.hosts)} is answered as itself"
                + (", with its own cache entries" if params.cache_path else "")
                + (f"; an unknown host gets {listing(params.unknown_expect_status)}" if params.unknown_host else ""))
    bad = precheck(ev, expected, ["captures.jsonl"])
    if bad:
        return bad
    if not ev.exchanges:
        return no_evidence(expected, "no requests were captured for this check")
    problems: list[str] = []
    seen: dict[str, str] = {}
    for host in params.hosts:
        got = ev.steps(f"host:{host}")
        if not got:
            problems.append(f"no request for host {host} was captured")
            continue
        ex = got[0]
        if ex.response is None or ex.response.status >= 400:
            problems.append(f"host {host}: {ex.describe()}")
            continue
        received = (ex.received_headers() or {}).get("host", "")
        seen[host] = received
        if received.split(":")[0] != host:
            problems.append(f"a request for host {host} reached the upstream as host {received or '(none)'}")
        if params.identity_header:
            vhost = ex.header(params.identity_header)
            want = params.expect_identity.get(host)
            if want is not None and vhost != want:
                problems.append(f"host {host} was answered by virtual host {vhost or '(none)'} "
                                f"({params.identity_header}), expected {want}")
    if params.identity_header and not params.expect_identity:
        vhosts = [ev.steps(f"host:{h}")[0].header(params.identity_header) for h in params.hosts
                  if ev.steps(f"host:{h}")]
        if len(set(vhosts)) < len(vhosts):
            problems.append(f"hosts {listing(params.hosts)} were answered by the same virtual host "
                            f"({params.identity_header}: {vhosts[0]})")
    if params.cache_path:
        ids = {h: identity(ev.steps(f"cache:{h}")[0]) if ev.steps(f"cache:{h}") else None for h in params.hosts}
        known = [i for i in ids.values() if i]
        if len(known) != len(set(known)):
            problems.append(f"hosts {listing(params.hosts)} were served the same cached response for "
                            f"{params.cache_path} ({known[0]})")
    if params.unknown_host:
        got = ev.steps("unknown")
        if got and got[0].status not in params.unknown_expect_status:
            problems.append(f"unknown host {params.unknown_host} got {got[0].describe()}, "
                            f"expected {listing(params.unknown_expect_status)}")
    observed = "; ".join(f"{h} reached the upstream as {r or '?'}" for h, r in seen.items()) or "no answer"
    details = {"received_hosts": seen}
    if problems:
        return Outcome("fail", expected, observed, "; ".join(problems), details, len(ev.exchanges))
    return Outcome("pass", expected, observed, "", details, len(ev.exchanges))


#: the check kinds this module implements, each declared once with its parameters, evidence, collector and
#: evaluator (:mod:`poetkb.gates.checks.registry` finds them; ``poet gate kinds`` lists them)
KINDS = declare(
    Kind("same_key_same_backend", p.SameKeySameBackend, ("http_capture", "access_log"),
         collect=collect_same_key, evaluate=evaluate_same_key),
    Kind("upstream_attempts_bounded", p.UpstreamAttemptsBounded, ("upstream_counters", "http_capture"),
         collect=collect_attempts, evaluate=evaluate_attempts),
    Kind("no_retry_non_idempotent", p.NoRetryNonIdempotent, ("upstream_counters", "http_capture"),
         collect=collect_no_retry, evaluate=evaluate_no_retry),
    Kind("unhealthy_backend_avoided", p.UnhealthyBackendAvoided, ("upstream_counters", "http_capture"),
         collect=collect_unhealthy, evaluate=evaluate_unhealthy),
    Kind("host_isolated", p.HostIsolated, ("http_capture",),
         collect=collect_hosts, evaluate=evaluate_hosts),
)


__all__ = ["KINDS", "with_nonce"]
