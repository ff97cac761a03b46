"""Check evaluators are pure functions of evidence: every case file under fixtures/gates/cases is judged as expected."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from poetkb.gates import checks
from poetkb.gates.accesslog import parse
from poetkb.gates.evidence import CheckEvidence
from poetkb.gates.records import CounterSnapshot, HttpExchange, TlsHandshake
from poetkb.gates.schema import UpstreamInfo
from poetkb.models import Check

CASES_DIR = Path(__file__).resolve().parent / "fixtures" / "gates" / "cases"
UPSTREAMS = [UpstreamInfo(name="healthy-a", role="healthy", url="http://127.0.0.1:9101"),
             UpstreamInfo(name="healthy-b", role="healthy", url="http://127.0.0.1:9102"),
             UpstreamInfo(name="faulty", role="faulty", url="http://127.0.0.1:9103")]


def _exchange(spec: dict[str, Any], seq: int) -> HttpExchange:
    """A capture record from a compact case entry (status/upstream/serial/received/body...)."""
    path = spec.get("path", "/echo")
    headers = {k.lower(): str(v) for k, v in (spec.get("headers") or {}).items()}
    record: dict[str, Any] = {
        "check": "case#0", "step": spec.get("step", ""), "seq": seq, "started": spec.get("started", 1000.0 + seq),
        "elapsed_ms": spec.get("elapsed_ms", 5.0),
        "request": {"method": spec.get("method", "GET"), "url": f"http://127.0.0.1:8080{path}",
                    "headers": {k.lower(): str(v) for k, v in (spec.get("request_headers") or {}).items()}},
    }
    if "status" in spec:
        body = spec.get("body")
        if body is None and any(k in spec for k in ("upstream", "serial", "received", "variant", "query")):
            body = {"upstream": spec.get("upstream"), "serial": spec.get("serial", seq),
                    "headers": spec.get("received", {}), "query": spec.get("query", "")}
            if "variant" in spec:
                body["variant"] = spec["variant"]
        if spec.get("upstream"):
            headers.setdefault("x-upstream", spec["upstream"])
        text = json.dumps(body) if isinstance(body, dict) else (body or "")
        record["response"] = {"status": spec["status"], "headers": headers, "body": text,
                              "body_size": spec.get("body_size", len(text.encode()))}
    else:
        record["error_type"] = spec.get("error_type", "ConnectError")
        record["error"] = spec.get("error", "connection refused")
        record["closed"] = spec.get("closed")
    return HttpExchange.model_validate(record)


def _evidence(spec: dict[str, Any]) -> CheckEvidence:
    ev = CheckEvidence(check_id=spec.get("check_id", "case#0"), kind="case", upstreams=UPSTREAMS,
                       notes=spec.get("notes", {}), collect_error=spec.get("collect_error"),
                       problems=spec.get("problems", {}))
    seq = 0
    for entry in spec.get("exchanges", []):
        for _ in range(entry.get("repeat", 1)):
            seq += 1
            ev.exchanges.append(_exchange({k: v for k, v in entry.items() if k != "repeat"}, seq))
    for snap in spec.get("counters", []):
        data = None if "error" in snap else {"name": snap["upstream"], "total": snap.get("total", 0),
                                             "by_path": snap.get("by_path", {}), "recent": snap.get("recent", [])}
        ev.counters.append(CounterSnapshot(label=snap["label"], upstream=snap["upstream"], taken=0.0, data=data,
                                           error=snap.get("error")))
    if "log" in spec:
        ev.log = parse(spec["log"].encode())
    ev.handshakes = [TlsHandshake.model_validate(h) for h in spec.get("handshakes", [])]
    ev.metrics = dict(spec.get("metrics", {}))
    for key in ("test_results", "load_summaries"):
        setattr(ev, key, [CASES_DIR / name for name in spec.get(key, [])])
    return ev


def _cases() -> list[Any]:
    found = []
    for path in sorted(CASES_DIR.glob("*.yaml")):
        for case in yaml.safe_load(path.read_text(encoding="utf-8")):
            found.append(pytest.param(case, id=f"{path.stem}:{case['name']}"))
    return found


@pytest.mark.parametrize("case", _cases())
def test_case(case: dict[str, Any]) -> None:
    """The evaluator gives the expected verdict and its diagnosis names what went wrong."""
    check = Check(kind=case["kind"], params=case.get("params", {}))
    ev = None if case.get("evidence") is None else _evidence(case["evidence"])
    result = checks.evaluate(check, check_id=case.get("check_id", "case#0"), obligation_id="case.obligation",
                             ev=ev)
    expect = case["expect"]
    assert result.verdict == expect["verdict"], result.diagnosis
    for text in expect.get("says", []):
        assert text in result.diagnosis, result.diagnosis
    if result.verdict != "pass":
        assert result.diagnosis, "a verdict other than pass always says why"


def test_every_kind_has_a_case() -> None:
    """Every check kind of the registry is exercised by at least one case file entry."""
    from poetkb.gates.kinds import KINDS

    covered = {case.values[0]["kind"] for case in _cases()}
    assert sorted(set(KINDS) - covered) == []
