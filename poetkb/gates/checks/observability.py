"""Observability checks: complete access logs, metrics that follow traffic, request ids, upstream timings.

Each request these checks send carries its own marker in the query string
(``poet=<nonce>-<n>``), so its access-log line is found by the URI alone,
whatever else the edge served at the same time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from poetkb.gates import params as p
from poetkb.gates.accesslog import AccessRecord
from poetkb.gates.checks.base import (
    NONCE_PARAM,
    CollectContext,
    CollectError,
    Kind,
    Outcome,
    declare,
    error,
    listing,
    log_problem,
    no_evidence,
    plural,
    precheck,
)
from poetkb.gates.evidence import CheckEvidence
from poetkb.gates.records import HttpExchange


def marker_of(text: str) -> str | None:
    """The ``poet=`` marker in a URL or URI, if any."""
    values = parse_qs(urlsplit(text).query).get(NONCE_PARAM)
    return values[0] if values else None


def log_index(records: Iterable[AccessRecord]) -> dict[str, list[AccessRecord]]:
    index: dict[str, list[AccessRecord]] = {}
    for rec in records:
        marker = marker_of(rec.uri)
        if marker:
            index.setdefault(marker, []).append(rec)
    return index


def _need_log(ev: CheckEvidence, expected: str) -> Outcome | None:
    bad = precheck(ev, expected, ["captures.jsonl", "access.log"]) or log_problem(ev, expected)
    if bad:
        return bad
    if ev.log is None:
        return no_evidence(expected, "no access log was captured for this run; pass --access-log PATH "
                                     "(the demo edge provides it)")
    return None


# -- access_log_complete -----------------------------------------------------------------------------
def collect_log(ctx: CollectContext, params: p.AccessLogComplete) -> None:
    if ctx.target.access_log is None:
        raise CollectError("no access log to read; pass --access-log PATH or run against the demo edge")
    for i, spec in enumerate(params.requests):
        ctx.send(spec.method, ctx.url(spec.path, f"-{i}"), nonce=False, step=f"logged:{i}", host=spec.host,
                 headers=spec.headers, body=spec.body)
    if params.fault_requests and params.fault is not None:
        with ctx.fault(params.fault, params.fault_requests[0].path):
            for i, spec in enumerate(params.fault_requests):
                ctx.send(spec.method, ctx.url(spec.path, f"-f{i}"), nonce=False, step=f"logged:f{i}",
                         host=spec.host, headers=spec.headers, body=spec.body)


def evaluate_log(ev: CheckEvidence, params: p.AccessLogComplete) -> Outcome:
    expected = (f"every request, errors included, has one access-log line with {listing(params.fields, 8)} "
                f"({listing(params.non_empty, 6)} never empty)")
    bad = _need_log(ev, expected)
    if bad:
        return bad
    assert ev.log is not None
    sent = ev.steps("logged")
    if not sent:
        return no_evidence(expected, "no requests were captured for this check")
    index = log_index(ev.log.records)
    missing: list[str] = []
    incomplete: list[str] = []
    wrong_status: list[str] = []
    for ex in sent:
        marker = marker_of(ex.request.url)
        found = index.get(marker or "", [])
        outcome = str(ex.status) if ex.response else (ex.error_type or "error")
        if not found:
            missing.append(f"{ex.request.method} {urlsplit(ex.request.url).path} ({outcome})")
            continue
        rec = found[0]
        absent = [f for f in params.fields if not rec.has_key(f)]
        empty = [f for f in params.non_empty if rec.has_key(f) and not rec.has(f)]
        if absent:
            incomplete.append(f"line {rec.line} lacks {listing(absent, 5)}")
        if empty:
            incomplete.append(f"line {rec.line} has an empty {listing(empty, 5)}")
        if ex.response is not None and rec.status is not None and rec.status != ex.response.status:
            wrong_status.append(f"line {rec.line} says {rec.status}, the client got {ex.response.status}")
    details = {"requests": len(sent), "missing": missing, "incomplete": incomplete, "wrong_status": wrong_status}
    observed = (f"{len(sent) - len(missing)} of {len(sent)} requests logged; "
                f"{len(incomplete)} lines incomplete")
    if missing:
        return Outcome("fail", expected, observed,
                       f"{len(missing)} of {len(sent)} requests are missing from the access log: {listing(missing)}",
                       details, len(sent))
    if incomplete or wrong_status:
        return Outcome("fail", expected, observed, "; ".join([*incomplete[:3], *wrong_status[:3]]), details, len(sent))
    return Outcome("pass", expected, observed, "", details, len(sent))


# -- metrics_exposed ---------------------------------------------------------------------------------
def collect_metrics(ctx: CollectContext, params: p.MetricsExposed) -> None:
    if not ctx.target.metrics_url:
        raise CollectError("no metrics endpoint is known; pass --metrics-url URL or run against the demo edge")
    ctx.metrics("before")
    for i in range(params.requests):
        ctx.send("GET", params.path, step=f"traffic:{i + 1}")
    ctx.metrics("after")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {sample name: sum over its series}; also keyed by family name. ValueError if malformed."""
    from prometheus_client.parser import text_string_to_metric_families

    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            sums[sample.name] = sums.get(sample.name, 0.0) + float(sample.value)
        if family.samples:
            sums.setdefault(family.name, sum(float(s.value) for s in family.samples if s.name in
                                              (family.name, f"{family.name}_total")))
    return sums


def series(text: str, metric: str, labels: dict[str, str]) -> list[float]:
    """Values of the series of ``metric`` (sample or family name) whose labels include ``labels``."""
    from prometheus_client.parser import text_string_to_metric_families

    out = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if metric in (sample.name, family.name) and all(sample.labels.get(k) == v for k, v in labels.items()):
                out.append(float(sample.value))
    return out


def _first_present(names: list[str], sums: dict[str, float]) -> str | None:
    for option in names:
        for name in option.split("|"):
            if name.strip() in sums:
                return name.strip()
    return None


def evaluate_metrics(ev: CheckEvidence, params: p.MetricsExposed) -> Outcome:
    expected = (f"the metrics endpoint serves {listing(params.families, 6) or 'metrics'}"
                + (f" and {'|'.join(params.request_counter)} grows by at least {params.requests}"
                   if params.request_counter else ""))
    bad = precheck(ev, expected, [f for f in ev.files if f.startswith("metrics/")])
    if bad:
        return bad
    errors = ev.notes.get("metrics_errors") or []
    if not ev.metrics:
        if errors:
            return Outcome("fail", expected, "no snapshot", f"the metrics endpoint could not be scraped: {errors[0]}")
        return no_evidence(expected, "no metrics snapshot was captured; pass --metrics-url")
    after_text = ev.metrics.get("after") or next(iter(ev.metrics.values()))
    try:
        after = parse_metrics(after_text)
        before = parse_metrics(ev.metrics["before"]) if "before" in ev.metrics else None
    except ValueError as exc:
        return Outcome("fail", expected, "not Prometheus text",
                       f"the metrics snapshot is not valid Prometheus text: {exc}")
    if errors:
        return Outcome("fail", expected, f"{len(after)} series", f"scraping failed: {listing(errors, 2)}")
    absent = [f for f in params.families if _first_present([f], after) is None]
    details: dict[str, Any] = {"series": len(after), "absent": absent}
    observed = f"{len(after)} metric names" + (f"; absent: {listing(absent, 5)}" if absent else "")
    if not after:
        return Outcome("fail", expected, "an empty snapshot", "the metrics endpoint served no metric at all",
                       details)
    if absent:
        return Outcome("fail", expected, observed, f"the metrics endpoint lacks {listing(absent, 5)}", details,
                       len(after))
    if params.request_counter:
        name = _first_present(params.request_counter, after)
        if name is None:
            return Outcome("fail", expected, observed,
                           f"no request counter among {listing(params.request_counter)} is exposed", details)
        if before is None:
            return no_evidence(expected, "no snapshot before the traffic, so the counter's growth is unknown")
        grew = after.get(name, 0.0) - before.get(name, 0.0)
        details.update(counter=name, grew=grew)
        observed += f"; {name} grew by {grew:g}"
        if grew < params.requests:
            return Outcome("fail", expected, observed,
                           f"{name} grew by {grew:g} while {params.requests} requests were served: the metrics do "
                           "not follow traffic", details, len(after))
    return Outcome("pass", expected, observed, "", details, len(after))


# -- request_id_propagated ---------------------------------------------------------------------------
def collect_request_id(ctx: CollectContext, params: p.RequestIdPropagated) -> None:
    for i in range(params.requests):
        ctx.send("GET", ctx.url(params.path, f"-{i}"), nonce=False, step=f"rid:{i}")


def evaluate_request_id(ev: CheckEvidence, params: p.RequestIdPropagated) -> Outcome:
    expected = (f"each request reaches the upstream with its own non-empty {params.header}"
                + (f", returned in {params.response_header}" if params.response_header else "")
                + ", the same id the access log records")
    bad = precheck(ev, expected, ["captures.jsonl", "access.log"]) or log_problem(ev, expected)
    if bad:
        return bad
    sent = ev.steps("rid")
    if not sent:
        return no_evidence(expected, "no requests were captured for this check")
    index = log_index(ev.log.records) if ev.log is not None else {}
    ids: list[str] = []
    problems: list[str] = []
    for ex in sent:
        if ex.response is None or ex.response.status >= 400:
            problems.append(f"request failed: {ex.describe()}")
            continue
        received = ex.received_headers()
        if received is None:
            return error(expected, "the upstream's answer carries no echo of the headers it received")
        rid = received.get(params.header.lower(), "").strip()
        if not rid:
            problems.append(f"{ex.path} reached the upstream without {params.header}")
            continue
        ids.append(rid)
        if params.response_header and ex.header(params.response_header) != rid:
            problems.append(f"the client got {params.response_header}: {ex.header(params.response_header)}, "
                            f"the upstream {rid}")
        if ev.log is not None:
            lines = index.get(marker_of(ex.request.url) or "", [])
            logged = str(lines[0].raw.get(params.log_field) or lines[0].request_id or "") if lines else None
            if logged is None:
                problems.append(f"no access-log line for {ex.path}")
            elif logged != rid:
                problems.append(f"line {lines[0].line} logs request id {logged or '(none)'}, the upstream got {rid}")
    dupes = len(ids) - len(set(ids))
    if dupes:
        problems.append(f"{dupes} of {len(ids)} requests shared a request id with another")
    details = {"requests": len(sent), "with_id": len(ids), "log_checked": ev.log is not None}
    observed = f"{len(ids)} of {len(sent)} requests reached the upstream with {params.header}" + (
        "" if ev.log is not None else " (no access log to compare)")
    if problems:
        return Outcome("fail", expected, observed, f"{plural(len(problems), 'problem')}: {listing(problems)}",
                       details, len(sent))
    return Outcome("pass", expected, observed, "", details, len(sent))


# -- upstream_timing_logged --------------------------------------------------------------------------
def collect_timing(ctx: CollectContext, params: p.UpstreamTimingLogged) -> None:
    if ctx.target.access_log is None:
        raise CollectError("no access log to read; pass --access-log PATH or run against the demo edge")
    for i in range(params.requests):
        ctx.send("GET", ctx.url(params.path, f"-{i}"), nonce=False, step=f"timed:{i}")


def _seconds_factor(rec: AccessRecord, ex: HttpExchange | None) -> float:
    """1.0 when the log writes times in seconds (NGINX), 0.001 for milliseconds (HAProxy).

    Decided from the request's own time, compared with what the client measured, when both are known;
    else from the size of the number (no request takes over 50 s here, nor under 50 ms in ms units).
    """
    logged = rec.request_time
    if logged is not None and ex is not None and ex.elapsed_ms:
        return 1.0 if abs(logged * 1000 - ex.elapsed_ms) <= abs(logged - ex.elapsed_ms) else 0.001
    values = [a.response_time or a.header_time for a in rec.attempts] + [logged]
    return 0.001 if any(v is not None and v > 50 for v in values) else 1.0


def evaluate_timing(ev: CheckEvidence, params: p.UpstreamTimingLogged) -> Outcome:
    floor = f" of at least {params.min_upstream_s:g} s" if params.min_upstream_s > 0 else ""
    expected = (f"each access-log line carries {listing(params.fields, 5)}, with an upstream time{floor} that "
                "does not exceed the request time")
    bad = _need_log(ev, expected)
    if bad:
        return bad
    assert ev.log is not None
    sent: list[HttpExchange] = ev.steps("timed")
    index = log_index(ev.log.records)
    pairs: list[tuple[AccessRecord, HttpExchange | None]] = []
    for ex in sent:
        found = index.get(marker_of(ex.request.url) or "")
        if found:
            pairs.append((found[0], ex))
    if not sent:
        pairs = [(r, None) for r in ev.log.records if r.attempts]
    if not pairs:
        return no_evidence(expected, "no access-log line for this check's requests")
    problems: list[str] = []
    for rec, sent_ex in pairs:
        # ``a|b``: either field will do (HAProxy logs the body time %Td beside the header time, not a total)
        absent = [f for f in params.fields if not any(rec.has(alt) for alt in f.split("|"))]
        if absent:
            problems.append(f"line {rec.line} lacks {listing(absent, 4)}")
            continue
        factor = _seconds_factor(rec, sent_ex)
        times = [(a.response_time if a.response_time is not None else a.header_time) for a in rec.attempts]
        known = [t * factor for t in times if t is not None]
        if not known:
            problems.append(f"line {rec.line} has no numeric upstream response or header time")
            continue
        upstream = sum(known)
        if params.min_upstream_s > 0 and upstream < params.min_upstream_s:
            problems.append(f"line {rec.line} logs {upstream:.3f} s upstream time for a response that took at "
                            f"least {params.min_upstream_s:g} s")
        total = rec.request_time * factor if rec.request_time is not None else None
        if total is not None and upstream > total + 0.05:
            problems.append(f"line {rec.line} logs more upstream time ({upstream:.3f} s) than request time "
                            f"({total:.3f} s)")
    missing = len(sent) - len(pairs) if sent else 0
    if missing:
        problems.append(f"{missing} of {len(sent)} requests have no access-log line")
    details = {"lines": len(pairs), "problems": problems}
    observed = f"{len(pairs)} lines checked" + (f"; {plural(len(problems), 'problem')}" if problems else "")
    if problems:
        return Outcome("fail", expected, observed, listing(problems), details, len(pairs))
    return Outcome("pass", expected, observed, "", details, len(pairs))


#: the check kinds this module implements, each declared once with its parameters, evidence, collector and
#: evaluator (:mod:`poetkb.gates.checks.registry` finds them; ``poet gate kinds`` lists them)
KINDS = declare(
    Kind("access_log_complete", p.AccessLogComplete, ("access_log", "http_capture"),
         collect=collect_log, evaluate=evaluate_log),
    Kind("metrics_exposed", p.MetricsExposed, ("metrics",),
         collect=collect_metrics, evaluate=evaluate_metrics),
    Kind("request_id_propagated", p.RequestIdPropagated, ("http_capture", "access_log"),
         collect=collect_request_id, evaluate=evaluate_request_id),
    Kind("upstream_timing_logged", p.UpstreamTimingLogged, ("access_log",),
         collect=collect_timing, evaluate=evaluate_timing),
)
