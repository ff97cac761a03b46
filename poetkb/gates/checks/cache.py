"""Cache checks: stable and complete keys, Vary, private responses, TTLs and bounded stale serving.

Every cacheable demo response carries the upstream's name and a per-response
serial in its JSON body, so a cache hit (the same serial again) is told from a
fetch (a new serial) without trusting the edge's own cache-status header. Each
check uses URLs marked with the run's nonce, so entries from earlier runs never
answer for this one.
"""

from __future__ import annotations

import time
from collections import Counter

from poetkb.gates import params as p
from poetkb.gates.checks.base import (
    CollectContext,
    Kind,
    Outcome,
    counter_deltas,
    declare,
    error,
    identity,
    listing,
    no_evidence,
    path_only,
    plural,
    precheck,
)
from poetkb.gates.evidence import CheckEvidence
from poetkb.gates.records import HttpExchange

#: a proxy makes a stored response visible a moment after the client has it (NGINX renames the temporary
#: file once the response is complete); requests meant to hit wait this long after the one that fills
STORE_SETTLE_S = 0.15

_NOISE = {
    "user-agent": "poet-probe/{i}",
    "referer": "http://referrer-{i}.test/page",
    "x-request-id": "poet-noise-{i}",
    "x-forwarded-for": "198.51.100.{i}",
    "cookie": "poet_noise={i}",
}


def _ok(ex: HttpExchange) -> bool:
    return ex.response is not None and 200 <= ex.response.status < 300


def _failed(exchanges: list[HttpExchange]) -> list[str]:
    return [e.describe() for e in exchanges if not _ok(e)]


# -- cache_key_stable --------------------------------------------------------------------------------
def collect_stable(ctx: CollectContext, params: p.CacheKeyStable) -> None:
    if ctx.faults_ is not None and ctx.faults_.upstreams:
        ctx.counters("before")
    for i in range(params.requests):
        headers = {h: _NOISE.get(h.lower(), "poet-{i}").format(i=i + 1) for h in params.variations}
        if params.new_connections:
            headers["Connection"] = "close"  # nor may the key depend on the client connection
        ctx.send("GET", params.path, step=f"noise:{i + 1}", headers=headers)
        if i == 0:
            time.sleep(STORE_SETTLE_S)
    if ctx.faults_ is not None and ctx.faults_.upstreams:
        ctx.counters("after")


def evaluate_stable(ev: CheckEvidence, params: p.CacheKeyStable) -> Outcome:
    expected = (f"{params.requests} requests for {params.path} differing only in {listing(params.variations, 5)}"
                f"{' and their connection' if params.new_connections else ''} share one cache entry "
                f"(at most {params.max_fetches} origin fetch)")
    bad = precheck(ev, expected, ["captures.jsonl"])
    if bad:
        return bad
    got = ev.steps("noise")
    if not got:
        return no_evidence(expected, "no requests were captured for this check")
    failed = _failed(got)
    if failed:
        return Outcome("fail", expected, f"{len(failed)} of {len(got)} requests failed",
                       f"requests for a cacheable URL failed: {listing(failed)}", samples=len(got))
    ids = [identity(e) for e in got]
    if None in ids:
        return error(expected, "responses carry no upstream serial, so hits cannot be told from fetches "
                               "(is the target the poetkb demo edge?)")
    fetches = len(set(ids))
    delta = counter_deltas(ev.counters, "before", "after", path_only(params.path))
    origin = sum(delta.values()) if delta is not None else None
    details = {"requests": len(got), "distinct_responses": fetches, "origin_requests": origin}
    observed = f"{plural(fetches, 'distinct origin response')} for {len(got)} requests" + (
        f"; the upstreams counted {origin}" if origin is not None else "")
    worst = max(fetches, origin or 0)
    if worst > params.max_fetches:
        return Outcome("fail", expected, observed,
                       f"{worst} of {len(got)} requests for {params.path} were fetched from the origin although they "
                       f"differed only in {listing(params.variations, 5)}: the cache key includes a header it "
                       "should not (or the response was not cached)", details, len(got))
    return Outcome("pass", expected, observed, "", details, len(got))


# -- cache_key_complete ------------------------------------------------------------------------------
def collect_complete(ctx: CollectContext, params: p.CacheKeyComplete) -> None:
    if "query" in params.differing:
        ctx.send("GET", f"{params.path}?q=a", step="query:fill")
        time.sleep(STORE_SETTLE_S)
        ctx.send("GET", f"{params.path}?q=a", step="query:repeat")
        ctx.send("GET", f"{params.path}?q=b", step="query:other")
    if "host" in params.differing:
        first, *others = params.hosts
        fill = ctx.send("GET", params.path, step="host:fill", host=first)
        time.sleep(STORE_SETTLE_S)
        for attempt in range(3):  # a loaded edge may make the stored entry visible late: wait for it (bounded)
            if identity(ctx.send("GET", params.path, step="host:repeat", host=first)) == identity(fill):
                break
            time.sleep(STORE_SETTLE_S * 2 * (attempt + 1))
        for other in others:
            ctx.send("GET", params.path, step="host:other", host=other)


def evaluate_complete(ev: CheckEvidence, params: p.CacheKeyComplete) -> Outcome:
    expected = f"requests for {params.path} that differ in {listing(params.differing)} never share a cache entry"
    bad = precheck(ev, expected, ["captures.jsonl"])
    if bad:
        return bad
    problems: list[str] = []
    uncached: list[str] = []
    checked = 0
    for part in params.differing:
        fill, repeat, other = (ev.steps(f"{part}:{s}") for s in ("fill", "repeat", "other"))
        if not (fill and repeat and other):
            return no_evidence(expected, f"the {part} requests were not all captured")
        fill_ex, repeat_ex = fill[0], repeat[-1]
        failed = _failed([fill_ex, repeat_ex, *other])
        if failed:
            problems.append(f"{part}: requests failed: {listing(failed)}")
            continue
        checked += 1
        if identity(fill_ex) is None:
            return error(expected, "responses carry no upstream serial, so hits cannot be told from fetches")
        if identity(repeat_ex) != identity(fill_ex):
            uncached.append(part)
        for other_ex in other:
            body = other_ex.body_json or {}
            if identity(other_ex) == identity(fill_ex):
                if part == "query":
                    problems.append(f"{other_ex.path} was answered with the entry stored for {fill_ex.path} "
                                    f"({identity(fill_ex)}): the query string is missing from the cache key")
                else:
                    sent = other_ex.request.headers.get("host", "?")
                    problems.append(f"host {sent} was answered with the entry stored for "
                                    f"host {params.hosts[0]} ({identity(fill_ex)}): the host is missing from the "
                                    "cache key")
            elif part == "query" and "q=b" not in str(body.get("query", "")):
                problems.append(f"{other_ex.path} got a body for query {body.get('query')!r}")
    details = {"checked": checked, "not_cached": uncached}
    observed = "; ".join(problems) or f"each differing request got its own response ({listing(params.differing)})"
    if problems:
        return Outcome("fail", expected, observed, "; ".join(problems), details, len(ev.exchanges))
    if uncached:
        return Outcome("no-evidence", expected, observed,
                       f"the first response was not reused for an identical request ({listing(uncached)}), so the "
                       f"cache did not store {params.path} and its key cannot be shown complete", details)
    return Outcome("pass", expected, observed, "", details, len(ev.exchanges))


# -- vary_variants_isolated ----------------------------------------------------------------------------
def collect_vary(ctx: CollectContext, params: p.VaryVariantsIsolated) -> None:
    for r in range(params.rounds):
        for value in params.values:
            ctx.send("GET", params.path, step=f"round{r + 1}:{value}", headers={params.header: value})
        if r == 0:
            time.sleep(STORE_SETTLE_S)


def evaluate_vary(ev: CheckEvidence, params: p.VaryVariantsIsolated) -> Outcome:
    expected = f"each {params.header} value gets its own variant of {params.path}, on misses and hits"
    bad = precheck(ev, expected, ["captures.jsonl"])
    if bad:
        return bad
    got = [e for e in ev.exchanges if ":" in e.step]
    if not got:
        return no_evidence(expected, "no requests were captured for this check")
    wrong: dict[str, Counter[str]] = {}
    failed = _failed(got)
    hits = 0
    first_id: dict[str, str | None] = {}
    for ex in sorted(got, key=lambda e: e.seq):
        value = ex.step.split(":", 1)[1]
        if not _ok(ex):
            continue
        variant = str((ex.body_json or {}).get(params.body_field, ""))
        if variant != value:
            wrong.setdefault(value, Counter())[variant or "(none)"] += 1
        ident = identity(ex)
        if value in first_id and ident == first_id[value]:
            hits += 1
        first_id.setdefault(value, ident)
    details = {"responses": len(got), "hits": hits, "wrong": {k: dict(v) for k, v in wrong.items()}}
    observed = f"{len(got) - sum(sum(c.values()) for c in wrong.values())} of {len(got)} responses carried the " \
               f"variant asked for; {hits} were cache hits"
    if wrong:
        value, counts = max(wrong.items(), key=lambda kv: sum(kv[1].values()))
        asked = sum(1 for e in got if e.step.endswith(f":{value}"))
        others = listing(f"{k} x{v}" for k, v in counts.items())
        return Outcome("fail", expected, observed,
                       f"{sum(counts.values())} of {asked} responses for {params.header}: {value} carried another "
                       f"variant's body ({others}): the cache ignores Vary", details, len(got))
    if failed:
        return Outcome("fail", expected, observed, f"requests failed: {listing(failed)}", details, len(got))
    return Outcome("pass", expected, observed, "", details, len(got))


# -- private_not_cached --------------------------------------------------------------------------------
def collect_private(ctx: CollectContext, params: p.PrivateNotCached) -> None:
    for path in params.all_paths():
        for i in range(params.requests):
            ctx.send("GET", path, step=f"private:{path}:{i + 1}")


def evaluate_private(ev: CheckEvidence, params: p.PrivateNotCached) -> Outcome:
    paths = params.all_paths()
    expected = f"every request for {listing(paths)} is fetched from the origin (never served from cache)"
    bad = precheck(ev, expected, ["captures.jsonl"])
    if bad:
        return bad
    problems: list[str] = []
    total = 0
    for path in paths:
        got = ev.steps(f"private:{path}")
        if not got:
            return no_evidence(expected, f"no requests for {path} were captured")
        total += len(got)
        failed = _failed(got)
        if failed:
            problems.append(f"{path}: requests failed: {listing(failed)}")
            continue
        ids = [identity(e) for e in got]
        if None in ids:
            return error(expected, "responses carry no upstream serial, so hits cannot be told from fetches")
        repeated = len(ids) - len(set(ids))
        if repeated:
            cookie = got[0].header("set-cookie")
            shared = f"; the same Set-Cookie ({cookie.split(';')[0]}) went to several clients" if cookie else ""
            problems.append(f"{repeated} of {len(got)} requests for {path} were served a stored copy "
                            f"({Counter(ids).most_common(1)[0][0]}){shared}")
    observed = "; ".join(problems) or f"all {total} responses came from the origin"
    if problems:
        return Outcome("fail", expected, observed, "; ".join(problems), {"requests": total}, total)
    return Outcome("pass", expected, observed, "", {"requests": total}, total)


# -- ttl_honored ---------------------------------------------------------------------------------------
def collect_ttl(ctx: CollectContext, params: p.TtlHonored) -> None:
    start = time.monotonic()
    ctx.send("GET", params.path, step="fill")
    time.sleep(STORE_SETTLE_S)
    ctx.send("GET", params.path, step="fresh")
    ctx.sleep_until(start + params.max_age_s + params.margin_s)
    ctx.send("GET", params.path, step="expired")


def evaluate_ttl(ev: CheckEvidence, params: p.TtlHonored) -> Outcome:
    expected = (f"{params.path} is reused within its {params.max_age_s:g} s lifetime and fetched again after it")
    bad = precheck(ev, expected, ["captures.jsonl"])
    if bad:
        return bad
    fill, fresh, expired = (ev.steps(s) for s in ("fill", "fresh", "expired"))
    if not (fill and fresh and expired):
        return no_evidence(expected, "the fill, fresh and expired requests were not all captured")
    steps = [fill[0], fresh[0], expired[0]]
    failed = _failed(steps)
    if failed:
        return Outcome("fail", expected, f"requests failed: {listing(failed)}", f"requests failed: {listing(failed)}")
    a, b, c = (identity(e) for e in steps)
    if a is None:
        return error(expected, "responses carry no upstream serial, so hits cannot be told from fetches")
    age_b = steps[1].started - steps[0].started
    age_c = steps[2].started - steps[0].started
    details = {"fresh_age_s": round(age_b, 3), "expired_age_s": round(age_c, 3), "fill": a, "fresh": b, "expired": c}
    observed = (f"at {age_b:.2f} s the edge served {'the stored' if b == a else 'a new'} response; at {age_c:.2f} s "
                f"{'still the stored one' if c == a else 'a new one'}")
    if b != a and not params.require_hit:
        return Outcome("pass", expected, observed + " (not stored at all: never served past its lifetime)",
                       "", details, 3)
    if b != a:
        return Outcome("fail", expected, observed,
                       f"a request {age_b:.2f} s after the first, well within max-age {params.max_age_s:g} s, went to "
                       "the origin again: the response was not cached for its lifetime", details, 3)
    if c == a:
        return Outcome("fail", expected, observed,
                       f"the response stored {age_c:.2f} s earlier was still served as fresh, past its "
                       f"{params.max_age_s:g} s lifetime: the cache overrides the origin's TTL", details, 3)
    return Outcome("pass", expected, observed, "", details, 3)


# -- stale_bounded ---------------------------------------------------------------------------------------
def collect_stale(ctx: CollectContext, params: p.StaleBounded) -> None:
    start = time.monotonic()
    ctx.send("GET", params.path, step="fill")
    ctx.sleep_until(start + params.max_age_s + 0.3)
    with ctx.fault(params.fault, params.path):
        ctx.send("GET", params.path, step="within")
        ctx.sleep_until(start + params.max_age_s + params.max_stale_s + params.margin_s)
        ctx.send("GET", params.path, step="beyond")
    deadline = time.monotonic() + params.recover_within_s
    while not _ok(ctx.send("GET", params.path, step="recovered")) and time.monotonic() < deadline:
        ctx.sleep_until(min(deadline, time.monotonic() + 1.0))  # upstreams held out by passive health checks


def evaluate_stale(ev: CheckEvidence, params: p.StaleBounded) -> Outcome:
    limit = params.max_age_s + params.max_stale_s
    expected = (f"with the origin failing, the stored {params.path} is served at most {params.max_stale_s:g} s "
                f"past its {params.max_age_s:g} s lifetime, and fresh content returns once the origin recovers")
    bad = precheck(ev, expected, ["captures.jsonl"])
    if bad:
        return bad
    fill, within, beyond, recovered = (ev.steps(s) for s in ("fill", "within", "beyond", "recovered"))
    if not (fill and within and beyond):
        return no_evidence(expected, "the fill, within and beyond requests were not all captured")
    if not _ok(fill[0]):
        return Outcome("fail", expected, f"fill got {fill[0].describe()}",
                       f"the first request failed before any fault: {fill[0].describe()}")
    stored = identity(fill[0])
    if stored is None:
        return error(expected, "responses carry no upstream serial, so stale copies cannot be recognised")
    w, b = within[0], beyond[0]
    age_w, age_b = w.started - fill[0].started, b.started - fill[0].started
    details = {"within_age_s": round(age_w, 3), "beyond_age_s": round(age_b, 3), "within": w.describe(),
               "beyond": b.describe(), "stored": stored}
    observed = (f"at {age_w:.1f} s: {'stale copy' if identity(w) == stored else w.describe()}; at {age_b:.1f} s: "
                f"{'stale copy' if identity(b) == stored else b.describe()}")
    if identity(b) == stored and _ok(b):
        return Outcome("fail", expected, observed,
                       f"the copy stored {age_b:.1f} s earlier was still served while the origin failed, "
                       f"{age_b - params.max_age_s:.1f} s past its lifetime; stale serving is allowed for "
                       f"{params.max_stale_s:g} s only (limit {limit:g} s)", details, 4)
    if params.require_stale_within and identity(w) != stored:
        return Outcome("fail", expected, observed,
                       f"within the stale window the edge answered {w.describe()} instead of the stored copy",
                       details, 4)
    if recovered and not _ok(recovered[-1]):
        return Outcome("fail", expected, observed,
                       f"{recovered[-1].started - recovered[0].started:.0f} s after the origin recovered the edge "
                       f"still answered {recovered[-1].describe()}", details, 4)
    return Outcome("pass", expected, observed, "", details, 4)


#: the check kinds this module implements, each declared once with its parameters, evidence, collector and
#: evaluator (:mod:`poetkb.gates.checks.registry` finds them; ``poet gate kinds`` lists them)
KINDS = declare(
    Kind("cache_key_stable", p.CacheKeyStable, ("http_capture", "upstream_counters"),
         collect=collect_stable, evaluate=evaluate_stable),
    Kind("cache_key_complete", p.CacheKeyComplete, ("http_capture",),
         collect=collect_complete, evaluate=evaluate_complete),
    Kind("vary_variants_isolated", p.VaryVariantsIsolated, ("http_capture",),
         collect=collect_vary, evaluate=evaluate_vary),
    Kind("private_not_cached", p.PrivateNotCached, ("http_capture",),
         collect=collect_private, evaluate=evaluate_private),
    Kind("ttl_honored", p.TtlHonored, ("http_capture",),
         collect=collect_ttl, evaluate=evaluate_ttl),
    Kind("stale_bounded", p.StaleBounded, ("http_capture",),
         collect=collect_stale, evaluate=evaluate_stale),
)
