"""Fuzzing the readers of material poetkb did not write: any input gives a result or a PoetError, nothing else.

Hypothesis generates text, bytes and JSON-shaped data for the YAML reader, the JSON reader, service profiles,
catalog files, access logs, HAR files, Prometheus text, metrics files (CSV, JSON, samples, k6 streams) and unified
diffs. A crash (any exception that is not a :class:`~poetkb.errors.PoetError`) fails the test and Hypothesis prints
the smallest input that causes it. Each property is bounded (``max_examples``) so the file runs in well under a
minute.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poetkb.errors import InputError, PoetError

TESTS = Path(__file__).resolve().parent.parent
MINI_CATALOG = TESTS / "fixtures" / "catalog" / "mini"

FUZZ = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
HALF = settings(FUZZ, max_examples=100)
FEW = settings(FUZZ, max_examples=60)

#: characters that mean something to YAML, JSON, CSV, Prometheus text or diffs, plus a few ordinary ones
SYNTAX = "-:[]{}&*!|>'\"#%@`,?\\ \n\t\r.~+=<>/_01289aeEfinNxyz\x00\u00e9\u2028"
#: nesting far past any limit, in JSON and YAML flow style
deep = st.builds(lambda n, opener: opener * n, st.integers(min_value=200, max_value=2000),
                 st.sampled_from(["[", "{", '{"a": ', "[{\"k\": ", "- "]))
#: mostly syntax-heavy and arbitrary text; deep nesting now and then (each costs the YAML scanner a fraction of a second)
texts = st.one_of(st.text(alphabet=SYNTAX, max_size=300), st.text(alphabet=SYNTAX, max_size=300),
                  st.text(max_size=200), st.text(max_size=200), st.text(alphabet=SYNTAX, max_size=60), deep)
numbers = st.integers(min_value=-10**30, max_value=10**30) | st.floats(allow_nan=False, allow_infinity=False)
json_leaf = st.none() | st.booleans() | numbers | st.text(max_size=20)
json_values = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=5), max_leaves=25)
#: numbers as a person or a tool may write them in text: ordinary, huge, negative, special
number_texts = st.sampled_from(["0", "1", "-1", "12.5", "1e999", "-1e999", "nan", "NaN", "inf", "-inf", "Infinity",
                                "1" * 5000, "0x10", "", " ", "N/A", "1,5", "١٢"]) | numbers.map(str)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def written(workdir: Path, name: str, content: str | bytes) -> Path:
    path = workdir / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    return path


def only_poet_errors(call: Any, *args: Any, **kwargs: Any) -> Any:
    """Call and return the result; a PoetError is an accepted outcome (returned as None)."""
    try:
        return call(*args, **kwargs)
    except PoetError:
        return None


# -- YAML and JSON -------------------------------------------------------------------------------------------------
@FUZZ
@given(text=texts, aliases=st.booleans())
def test_yaml_reader_gives_data_or_input_error(text: str, aliases: bool) -> None:
    """Any text through the YAML reader (with or without aliases allowed) is data or an InputError."""
    from poetkb.yamlfile import parse_yaml

    only_poet_errors(parse_yaml, text, file="fuzz.yaml", aliases=aliases)


@FUZZ
@given(text=texts | json_values.map(json.dumps) | st.binary(max_size=200))
def test_json_reader_gives_data_or_input_error(text: str | bytes) -> None:
    """Any text or bytes through the JSON reader is data without NaN or Infinity, or an InputError."""
    from poetkb.yamlfile import loads_json

    data = only_poet_errors(loads_json, text, file="fuzz.json")
    json.dumps(data, allow_nan=False)  # whatever was accepted is finite, valid JSON again


@HALF
@given(text=texts, data=json_values)
def test_profiles_give_a_profile_or_input_error(workdir: Path, text: str, data: Any) -> None:
    """Fuzzed YAML text and JSON-shaped data as a service profile give a profile or an InputError."""
    from poetkb.load.profile import load_profile, parse_profile

    only_poet_errors(load_profile, written(workdir, "profile.yaml", text))
    only_poet_errors(parse_profile, data)
    if isinstance(data, dict):
        base = {"service": "s", "traffic": {"baseline_rps": 1, "peak_rps": 2},
                "slo": {"latency_ms": {"p95": 100}, "error_rate": 0.01}, "endpoints": [{"path": "/"}]}
        for key in base:
            only_poet_errors(parse_profile, {**base, key: data})


extreme = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0, 1e-300, 1e300, 1.7e308, 9_999_999, 1e7, -1])


PROFILE_NUMBERS = {"baseline_rps": 10.0, "peak_rps": 20.0, "burst_factor": 2.0, "p50": 50.0, "p95": 400.0,
                   "p99": 800.0, "error_rate": 0.01, "min_throughput_rps": 9.5, "weight": 3.0}


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(sorted(PROFILE_NUMBERS)), extreme, min_size=1, max_size=3))
def test_profile_numbers_give_a_plan_and_scripts_or_input_error(changes: dict[str, float]) -> None:
    """Extreme, tiny, negative and non-finite profile numbers give a finite plan, k6 and Locust scripts, or bad input."""
    from poetkb.load.export_k6 import export_k6
    from poetkb.load.export_locust import export_locust
    from poetkb.load.plan import build_plan
    from poetkb.load.plan_markdown import plan_markdown
    from poetkb.load.profile import parse_profile

    n = {**PROFILE_NUMBERS, **changes}
    data = {"service": "s", "traffic": {"baseline_rps": n["baseline_rps"], "peak_rps": n["peak_rps"],
                                        "burst_factor": n["burst_factor"]},
            "slo": {"latency_ms": {"p50": n["p50"], "p95": n["p95"], "p99": n["p99"]}, "error_rate": n["error_rate"],
                    "min_throughput_rps": n["min_throughput_rps"]},
            "endpoints": [{"path": "/a", "weight": n["weight"]}, {"path": "/b", "weight": 1, "critical": True}]}
    profile = only_poet_errors(parse_profile, data)
    if profile is None:
        return
    plan = build_plan(profile)
    json.dumps(plan.model_dump(mode="json"), allow_nan=False)
    for script in (export_k6(plan), export_locust(plan), plan_markdown(plan)):
        assert "Infinity" not in script and "NaN" not in script


@FEW
@given(text=texts, section=st.sampled_from(["obligations", "knowledge/packs", "mappings"]))
def test_catalog_files_give_problems_not_crashes(workdir: Path, text: str, section: str) -> None:
    """A fuzzed file in a catalog directory becomes catalog problems (or loads), never a crash."""
    from poetkb.catalog import check_catalog

    root = workdir / "catalog"
    if not root.exists():
        shutil.copytree(MINI_CATALOG, root)
    target = root / section / "fuzz.yaml"
    target.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        only_poet_errors(check_catalog, root)
    finally:
        target.unlink()


# -- access logs and HAR -------------------------------------------------------------------------------------------
log_lines = (st.binary(max_size=120) | texts.map(lambda t: t.encode("utf-8", "surrogatepass"))
             | st.dictionaries(st.sampled_from(["status", "uri", "request_time", "upstream_addr", "upstream_status",
                                                "upstream_response_time", "upstream_attempts", "request_id",
                                                "cache_status", "method", "host"]),
                               json_values | number_texts, max_size=6).map(lambda d: json.dumps(d).encode()))


@FUZZ
@given(lines=st.lists(log_lines, max_size=8), final=st.booleans(), newline=st.booleans())
def test_access_log_parser_never_raises(lines: list[bytes], final: bool, newline: bool) -> None:
    """Any bytes through the access-log parser give records and problems; every record's fields read safely."""
    from poetkb.gates import accesslog

    data = b"\n".join(lines) + (b"\n" if newline else b"")
    parsed = accesslog.parse(data, final=final)
    for record in parsed.records:
        _ = (record.uri, record.method, record.status, record.request_id, record.request_time,
             record.cache_status, record.upstream_addrs, record.has("host"), record.has_key("status"))


har_headers = st.lists(st.fixed_dictionaries({"name": json_leaf, "value": json_leaf}) | json_values, max_size=3)
har_request = st.fixed_dictionaries({"method": json_leaf, "url": json_leaf},
                                    optional={"headers": har_headers, "postData": json_values})
har_response = st.fixed_dictionaries({}, optional={
    "status": json_leaf | number_texts, "httpVersion": json_leaf, "headers": har_headers, "_error": json_leaf,
    "content": st.fixed_dictionaries({}, optional={"text": json_leaf, "size": json_leaf | number_texts})})
har_entry = st.fixed_dictionaries({"request": har_request | json_values}, optional={
    "response": har_response | json_values, "startedDateTime": json_leaf | st.just("2024-06-01T10:00:00Z"),
    "time": json_leaf})
har_documents = (st.fixed_dictionaries({"log": st.fixed_dictionaries({"entries": st.lists(har_entry, max_size=3)})})
                 | st.fixed_dictionaries({"log": json_values}) | json_values)


@FUZZ
@given(data=har_documents)
def test_har_reader_gives_exchanges_or_input_error(workdir: Path, data: Any) -> None:
    """Any JSON document as a HAR file gives exchanges or an InputError naming the file."""
    from poetkb.gates.foreign import load_foreign

    path = written(workdir, "fuzz.har", '{"log": {"entries": []}, "x": 0}\n' if data is None else
                   json.dumps(data if isinstance(data, dict) else {"log": data, "entries": 1}))
    only_poet_errors(load_foreign, [path])


# -- Prometheus text -------------------------------------------------------------------------------------------------
prom_lines = st.one_of(
    texts,
    st.builds(lambda name, labels, value: f"{name}{labels} {value}",
              st.sampled_from(["up", "http_requests_total", "a_b", "x", "9bad", ""]),
              st.sampled_from(["", "{}", '{code="200"}', '{code="2"00"}', "{code=}", '{a="b",}', "{"]),
              number_texts),
    st.sampled_from(["# TYPE up gauge", "# HELP up the help", "# TYPE x histogram", "# TYPE x counter",
                     "# TYPE", "#", "x_bucket{le=\"+Inf\"} 3", "x_count 3", "x_sum NaN"]))


@FUZZ
@given(lines=st.lists(prom_lines, max_size=8))
def test_prometheus_reader_gives_series_or_value_error(lines: list[str]) -> None:
    """Any text as a metrics snapshot gives sums and series, or the ValueError its callers turn into a verdict."""
    from poetkb.gates.checks.observability import parse_metrics, series

    text = "\n".join(lines) + "\n"
    for call in (lambda: parse_metrics(text), lambda: series(text, "up", {})):
        with contextlib.suppress(ValueError):
            call()


# -- metrics files -------------------------------------------------------------------------------------------------
csv_headers = st.sampled_from([
    "p50_ms,p95_ms,p99_ms,error_rate,throughput_rps,requests", "metric,value", "phase,p95_ms,error_rate,requests",
    "Type,Name,Request Count,Failure Count,Requests/s,50%,90%,95%,99%",
    "Timestamp,User Count,Type,Name,Requests/s,Failures/s,95%,Total Request Count,Total Failure Count,"
    "Total Median Response Time", "latency_ms", "a,b"])
csv_cells = number_texts | st.sampled_from(["Aggregated", "steady", "p95_ms", "requests", "all", '"', "\x00"]) | texts


@FUZZ
@given(header=csv_headers, rows=st.lists(st.lists(csv_cells, max_size=10), max_size=5))
def test_csv_metrics_reader_gives_summary_or_input_error(workdir: Path, header: str, rows: list[list[str]]) -> None:
    """Any rows under a summary, Locust or samples header give a finite, ordered summary or an InputError."""
    from poetkb.load.metrics import read_metrics

    body = "\n".join(",".join(row) for row in rows)
    summary = only_poet_errors(read_metrics, written(workdir, "metrics.csv", f"{header}\n{body}\n"))
    if summary is not None:
        json.dumps(summary.model_dump(mode="json"), allow_nan=False)


point = st.fixed_dictionaries({"type": st.sampled_from(["Point", "Metric", "x"]) | json_leaf,
                               "metric": st.sampled_from(["http_req_duration", "http_req_failed",
                                                          "poet_phase_steady_duration"]) | json_leaf,
                               "data": st.fixed_dictionaries({"value": json_leaf,
                                                              "time": json_leaf | st.just("2024-06-01T10:00:00Z")})
                               | json_values})


@FUZZ
@given(kind=st.sampled_from(["json", "samples", "k6-stream", "k6-summary", "raw"]), data=json_values,
       points=st.lists(point, min_size=1, max_size=5), text=texts)
def test_json_and_sample_metrics_give_summary_or_input_error(workdir: Path, kind: str, data: Any,
                                                             points: list[Any], text: str) -> None:
    """JSON summaries, k6 summaries and streams, sample lists and raw text give a summary or an InputError."""
    from poetkb.load.metrics import read_metrics

    if kind == "json":
        content = json.dumps(data if isinstance(data, dict) else {"p95_ms": data})
    elif kind == "samples":
        content = json.dumps(data if isinstance(data, list) else [data])
    elif kind == "k6-stream":
        content = "\n".join(json.dumps(p) for p in points) + "\n"
    elif kind == "k6-summary":
        content = json.dumps({"metrics": {"http_req_duration": data, "http_reqs": data, "http_req_failed": data,
                                          "poet_phase_steady_duration": data}, "poet": data, "state": data})
    else:
        content = text
    summary = only_poet_errors(read_metrics, written(workdir, f"metrics-{kind}.json", content))
    if summary is not None:
        json.dumps(summary.model_dump(mode="json"), allow_nan=False)


# -- diffs -----------------------------------------------------------------------------------------------------------
diff_lines = st.one_of(
    texts,
    st.sampled_from(["diff --git a/nginx.conf b/nginx.conf", "--- a/nginx.conf", "+++ b/nginx.conf",
                     "--- /dev/null", "+++ /dev/null", "@@ -1,3 +1,4 @@", "@@ -0,0 +1 @@", "@@ bad @@",
                     "+    proxy_cache_key $host$uri;", "-    listen 80;", " server {", "\\ No newline at end of file",
                     "Binary files a/x and b/x differ", "rename from a.py", "rename to b.py", "new file mode 100644",
                     "+import os", "+def handler(request):", "index 0000000..1111111 100644"]))


@FUZZ
@given(lines=st.lists(diff_lines, max_size=12), raw=st.binary(max_size=200))
def test_diff_reader_gives_a_change_or_input_error(workdir: Path, lines: list[str], raw: bytes) -> None:
    """Any text or bytes as a unified diff give a change summary or an InputError naming the diff."""
    from poetkb.rank.change import read_diff_file, understand

    for content in ("\n".join(lines) + "\n", raw):
        path = written(workdir, "change.diff", content)
        try:
            text, name = read_diff_file(path)
        except InputError:
            continue
        only_poet_errors(understand, None, text, diff_name=name)
