"""Checks judged from evidence other tools produce: load summaries, JUnit results, metric snapshots, manual.

- The load kinds (``slo_latency`` ... ``burst_recovery``) delegate to the
  load-test module (:func:`poetkb.load.checks.evaluate_check`) over the
  summaries attached to the evidence; without either, the verdict is
  ``no-evidence``.
- ``tests_pass`` reads JUnit XML and keeps the test cases linked to the
  obligation: its id in the test's name or class name (dots or underscores), a
  ``<property name="obligation" value="ID"/>``, or the ``match`` pattern.
- ``metric_threshold`` compares one aggregated metric of a Prometheus snapshot.
- ``manual`` is never passed by a gate (handled before any evaluator runs).
"""

from __future__ import annotations

import operator
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from poetkb.errors import InputError
from poetkb.gates import params as p
from poetkb.gates.checks.base import (
    CollectContext,
    CollectError,
    Kind,
    Outcome,
    declare,
    error,
    listing,
    no_evidence,
    precheck,
)
from poetkb.gates.evidence import CheckEvidence
from poetkb.safefile import EVIDENCE_FILE_LIMIT, read_bytes


# -- load kinds --------------------------------------------------------------------------------------
def _load_evaluator(kind: str) -> Any:
    def evaluate(ev: CheckEvidence, params: p.LoadCheckParams) -> Outcome:
        expected = f"{kind} holds on the load-test summary"
        bad = precheck(ev, expected, [])
        if bad:
            return bad
        if not ev.load_summaries:
            return no_evidence(expected, "no load-test summary was given; pass one with `poet gate evaluate "
                                         "--evidence SUMMARY.json`")
        try:
            from poetkb.load.checks import evaluate_check
            from poetkb.load.metrics import read_metrics
        except ImportError:
            return no_evidence(expected, "the load-test module (poetkb.load) is not available to judge summaries")
        from poetkb.errors import PoetError

        verdicts = []
        for path in ev.load_summaries:
            try:
                summary = read_metrics(path)
            except PoetError as exc:
                return error(expected, f"{path.name}: {exc.message}")
            verdict, observed, wanted, diagnosis = evaluate_check(kind, params.model_dump(exclude_none=True), summary)
            verdicts.append((verdict, observed, wanted, diagnosis, path.name))
        order = {"fail": 0, "error": 1, "no-evidence": 2, "pass": 3}
        verdict, observed, wanted, diagnosis, name = min(verdicts, key=lambda v: order.get(v[0], 1))
        return Outcome(verdict, _words(wanted) or expected, _words(observed), diagnosis,
                       {"summary": name, "observed": observed, "expected": wanted}, len(verdicts))

    return evaluate


def _words(data: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in data.items())


# -- tests_pass --------------------------------------------------------------------------------------
def _linked(case: ET.Element, obligation_id: str, pattern: re.Pattern[str] | None) -> bool:
    name = f"{case.get('classname', '')}::{case.get('name', '')}"
    if pattern is not None:
        return bool(pattern.search(name))
    forms = {obligation_id, obligation_id.replace(".", "_")}
    if any(form in name for form in forms):
        return True
    return any(prop.get("name") in ("obligation", "obligations", "requirements") and obligation_id in
               re.split(r"[\s,]+", prop.get("value", "")) for prop in case.iter("property"))


def evaluate_tests(ev: CheckEvidence, params: p.TestsPass) -> Outcome:
    obligation_id = ev.check_id.split("#", 1)[0]
    expected = f"at least {params.min_tests} test{'s' if params.min_tests != 1 else ''} linked to {obligation_id} pass"
    bad = precheck(ev, expected, [])
    if bad:
        return bad
    if not ev.test_results:
        return no_evidence(expected, "no JUnit test results were given; pass them with `poet gate evaluate "
                                     "--evidence results.xml`")
    pattern = re.compile(params.match) if params.match else None
    passed: list[str] = []
    failed: list[str] = []
    skipped = 0
    for path in ev.test_results:
        try:
            data = read_bytes(path, limit=EVIDENCE_FILE_LIMIT)
            root = ET.fromstring(data)  # noqa: S314 - CI-produced results, expat guards entity expansion
        except ET.ParseError as exc:
            return error(expected, f"{path.name} is not readable JUnit XML: {exc}")
        except InputError as exc:
            return error(expected, exc.message)
        for case in root.iter("testcase"):
            if not _linked(case, obligation_id, pattern):
                continue
            name = case.get("name", "?")
            if case.find("skipped") is not None:
                skipped += 1
            elif case.find("failure") is not None or case.find("error") is not None:
                failed.append(name)
            else:
                passed.append(name)
    details = {"passed": len(passed), "failed": failed, "skipped": skipped}
    observed = f"{len(passed)} passed, {len(failed)} failed, {skipped} skipped"
    if failed:
        return Outcome("fail", expected, observed, f"{len(failed)} linked tests failed: {listing(failed)}", details,
                       len(passed) + len(failed))
    if not passed:
        return no_evidence(expected, f"no test in {listing(p.name for p in ev.test_results)} is linked to "
                                     f"{obligation_id} (by name, class or an `obligation` property)")
    if len(passed) < params.min_tests:
        return Outcome("fail", expected, observed,
                       f"only {len(passed)} linked tests ran, {params.min_tests} are required", details, len(passed))
    return Outcome("pass", expected, observed, "", details, len(passed))


# -- metric_threshold --------------------------------------------------------------------------------
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
        "!=": operator.ne}


def collect_threshold(ctx: CollectContext, params: p.MetricThreshold) -> None:
    if not ctx.target.metrics_url:
        raise CollectError("no metrics endpoint is known; pass --metrics-url URL")
    ctx.metrics("snapshot")


def evaluate_threshold(ev: CheckEvidence, params: p.MetricThreshold) -> Outcome:
    from poetkb.gates.checks.observability import series

    labels = ",".join(f'{k}="{v}"' for k, v in params.labels.items())
    shown = f"{params.aggregate}({params.metric}{{{labels}}})" if labels else f"{params.aggregate}({params.metric})"
    expected = f"{shown} {params.op} {params.value:g}"
    bad = precheck(ev, expected, [f for f in ev.files if f.startswith("metrics/")])
    if bad:
        return bad
    if not ev.metrics:
        return no_evidence(expected, "no metrics snapshot was given (--metrics-url, or a .prom file as evidence)")
    text = ev.metrics.get("snapshot") or ev.metrics.get("after") or next(iter(ev.metrics.values()))
    try:
        values = series(text, params.metric, params.labels)
    except ValueError as exc:
        return error(expected, f"the metrics snapshot is not valid Prometheus text: {exc}")
    if not values:
        return no_evidence(expected, f"the snapshot has no series {params.metric}"
                                     + (f" with {labels}" if labels else ""))
    agg = {"sum": sum(values), "max": max(values), "min": min(values), "avg": sum(values) / len(values),
           "count": float(len(values))}[params.aggregate]
    observed = f"{shown} = {agg:g} over {len(values)} series"
    details = {"value": agg, "series": len(values)}
    if _OPS[params.op](agg, params.value):
        return Outcome("pass", expected, observed, "", details, len(values))
    return Outcome("fail", expected, observed, f"{shown} is {agg:g}, expected {params.op} {params.value:g}", details,
                   len(values))


#: the check kinds this module implements, each declared once with its parameters, evidence, collector and
#: evaluator (:mod:`poetkb.gates.checks.registry` finds them; ``poet gate kinds`` lists them)
KINDS = declare(
    Kind("slo_latency", p.LoadCheckParams, ("load_summary",),
         collect=None, evaluate=_load_evaluator("slo_latency"), traffic=False,
         summary="Latency percentiles of a load test are within the SLO (judged by poetkb.load)."),
    Kind("slo_error_rate", p.LoadCheckParams, ("load_summary",),
         collect=None, evaluate=_load_evaluator("slo_error_rate"), traffic=False,
         summary="The error rate of a load test is within the SLO (judged by poetkb.load)."),
    Kind("slo_throughput", p.LoadCheckParams, ("load_summary",),
         collect=None, evaluate=_load_evaluator("slo_throughput"), traffic=False,
         summary="A load test reaches the required throughput (judged by poetkb.load)."),
    Kind("baseline_regression", p.LoadCheckParams, ("load_summary",),
         collect=None, evaluate=_load_evaluator("baseline_regression"), traffic=False,
         summary="A load test does not regress against its baseline (judged by poetkb.load)."),
    Kind("soak_drift", p.LoadCheckParams, ("load_summary",),
         collect=None, evaluate=_load_evaluator("soak_drift"), traffic=False,
         summary="Latency and memory do not drift during a soak test (judged by poetkb.load)."),
    Kind("burst_recovery", p.LoadCheckParams, ("load_summary",),
         collect=None, evaluate=_load_evaluator("burst_recovery"), traffic=False,
         summary="Latency and errors recover in time after a burst (judged by poetkb.load)."),
    Kind("tests_pass", p.TestsPass, ("test_results",),
         collect=None, evaluate=evaluate_tests, traffic=False),
    Kind("metric_threshold", p.MetricThreshold, ("metrics",),
         collect=collect_threshold, evaluate=evaluate_threshold, traffic=False),
    Kind("manual", p.Manual, (),
         collect=None, evaluate=None, traffic=False),
)


__all__ = ["KINDS", "Path"]
