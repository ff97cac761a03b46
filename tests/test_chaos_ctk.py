"""Chaos Toolkit interop: import of a real-shaped CTK experiment (naming what is not converted), export checked
by CTK's own validator (chaostoolkit-lib), a lossless round trip, and an exported experiment run by CTK itself
against the real demo edge, calling poetkb's functions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner

from poetkb import demo
from poetkb.chaos.ctk import export_ctk, import_ctk
from poetkb.chaos.loader import load, parse
from poetkb.cli import main

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "chaos"

RICH = {
    "title": "every step type", "description": "round trip", "obligations": ["resilience.timeout.enforced"],
    "tags": ["edge"], "production": False, "configuration": {"path": "/api/x", "n": 3, "on": True},
    "steady_state": {"title": "healthy", "watch": {"interval_s": 0.3, "tolerance_rounds": 2}, "probes": [
        {"name": "native", "type": "http", "url": "http://127.0.0.1:9${config.path}", "tolerance": {"status": [200]}},
        {"name": "classes", "type": "http", "url": "http://127.0.0.1:9/", "tolerance": {"status": ["2xx", 304],
                                                                                        "max_latency_ms": 500}},
        {"name": "metric", "type": "metric", "url": "http://127.0.0.1:9/metrics", "metric": "up", "op": ">=",
         "threshold": 1},
        {"name": "counters", "type": "upstream_counters", "upstream": "faulty", "max_total": 100},
    ]},
    "method": [
        {"name": "fault", "type": "upstream_fault", "upstream": "faulty", "fault": {"latency_ms": 100},
         "pause_after_s": 0.5},
        {"name": "fp", "type": "fault_proxy_start", "upstream": "faulty", "toxics": {"latency_ms": 50}},
        {"name": "fp2", "type": "fault_proxy_update", "proxy": "fp", "toxics": {"reset": True}},
        {"name": "wait", "type": "pause", "seconds": 0.2},
        {"name": "call", "type": "http_call", "url": "http://127.0.0.1:9/x", "method": "DELETE",
         "expect_status": [204]},
        {"name": "through", "type": "http", "url": "${fp.url}/y"},
        {"name": "reloads", "type": "demo_reload", "count": 2},
        {"name": "between", "type": "edge_interpose", "upstream": "healthy-a", "toxics": {"jitter_ms": 5}},
        {"name": "freeze", "type": "demo_signal", "process": "faulty", "signal": "SIGSTOP", "safe_in_prod": False},
        {"name": "gate", "type": "gate", "obligations": ["resilience.timeout.enforced"]},
    ],
    "rollbacks": [{"name": "stop", "type": "fault_proxy_stop", "proxy": "fp"},
                  {"name": "heal", "type": "upstream_heal"}],
    "guardrails": {"max_duration_s": 30, "max_faulted_share": 0.5, "interval_s": 0.2},
}


def test_import_converts_and_names_what_it_cannot(kb_path: Path) -> None:
    """The real-shaped CTK file imports: http probes with their tolerances, ${KEY} -> ${config.KEY}, pauses,
    a ref repeated; python/process providers, secrets, controls and a jsonpath tolerance are named by path."""
    doc = json.loads((FIXTURES / "ctk-edge.json").read_text())
    result = import_ctk(doc, obligations=["resilience.timeout.enforced"])
    experiment = parse(result.data, file="ctk-edge.json")
    probes = {p.name: p for p in experiment.steady_state.probes}
    assert probes["edge-answers"].url == "${config.edge_url}/api/health"
    assert probes["edge-answers"].tolerance.status == [200] and probes["edge-answers"].timeout_s == 3.0
    assert probes["edge_answers_2xx"].tolerance.status == ["2xx"]
    assert probes["body-says-upstream"].tolerance.body_contains == "upstream"
    assert probes["jsonpath-check"].tolerance is None
    method = experiment.method
    assert [s.type for s in method] == ["http_call", "http"]
    assert method[0].pause_after_s == 1.0 and json.loads(method[0].body) == {"latency_ms": 200}
    assert method[1].name == "edge-answers_2" and method[1].url == probes["edge-answers"].url
    assert experiment.rollbacks[0].method == "DELETE"
    paths = [item.split(":", 1)[0] for item in result.unconverted]
    assert paths == ["$.configuration.token", "$.secrets", "$.controls",
                     "$.steady-state-hypothesis.probes[3].tolerance", "$.method[1]", "$.method[2]"]
    assert "chaosk8s.pod.actions.terminate_pods" in result.unconverted[4]


def test_import_cli_needs_an_obligation_and_writes_a_valid_file(kb_path: Path, tmp_path: Path) -> None:
    """Without --obligation the import is bad input (exit 2); with it, the written YAML validates."""
    source = str(FIXTURES / "ctk-edge.json")
    bare = CliRunner().invoke(main, ["chaos", "import", source])
    assert bare.exit_code == 2 and "--obligation" in bare.output
    out = tmp_path / "imported.yaml"
    done = CliRunner().invoke(main, ["chaos", "import", source, "--obligation", "resilience.timeout.enforced",
                                     "--out", str(out)])
    assert done.exit_code == 0 and "not converted: $.method[2]: process provider" in done.output
    checked = CliRunner().invoke(main, ["chaos", "validate", str(out)])
    assert checked.exit_code == 0, checked.output
    unknown = CliRunner().invoke(main, ["chaos", "import", source, "--obligation", "no.such.thing"])
    assert unknown.exit_code == 2 and "no.such.thing" in unknown.output


def test_import_rejects_malformed_json_with_line(kb_path: Path, tmp_path: Path) -> None:
    """A CTK file that is not valid JSON is exit 2 naming the file and line."""
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "title": "x",\n  "method": [\n}\n')
    result = CliRunner().invoke(main, ["chaos", "import", str(bad), "--obligation", "resilience.timeout.enforced"])
    assert result.exit_code == 2 and f"{bad}:4" in result.output


def test_export_passes_chaostoolkit_validation() -> None:
    """An export of an experiment with every step type is valid for chaostoolkit-lib's own validator."""
    from chaoslib.experiment import ensure_experiment_is_valid

    exported = export_ctk(parse(RICH, file="rich"))
    ensure_experiment_is_valid(exported)
    providers = [s["provider"]["type"] for s in exported["method"]]
    assert providers.count("http") == 1 and providers.count("python") == len(RICH["method"]) - 1
    probes = exported["steady-state-hypothesis"]["probes"]
    assert probes[0]["provider"] == {"type": "http", "url": "http://127.0.0.1:9${path}", "method": "GET",
                                     "timeout": 10.0}
    assert probes[0]["tolerance"] == 200 and probes[1]["tolerance"] is True


def test_round_trip_is_lossless() -> None:
    """export then import gives back an equal experiment (obligations, watch and guardrails via the extension)."""
    original = parse(RICH, file="rich")
    back = import_ctk(json.loads(json.dumps(export_ctk(original))))
    assert back.unconverted == []
    assert parse(back.data, file="back") == original


def test_round_trip_of_the_imported_fixture(kb_path: Path) -> None:
    """A CTK experiment imported, exported and imported again is stable."""
    doc = json.loads((FIXTURES / "ctk-edge.json").read_text())
    first = parse(import_ctk(doc, obligations=["resilience.timeout.enforced"]).data, file="a")
    second = parse(import_ctk(export_ctk(first)).data, file="b")
    assert second == first


@pytest.fixture(scope="module")
def started(shared_home: Path, base_port: int) -> str:
    """The good HAProxy edge for the CTK run."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POET_HOME", str(shared_home))
        return demo.up(proxy="haproxy", variant="good", base_port=base_port).base_url


@pytest.fixture
def edge(started: str, home: Path) -> Iterator[Any]:
    state = demo.load_state()
    assert state is not None
    yield state
    for up in state.upstreams:
        httpx.delete(up.admin_url + "/fault", timeout=5)


@pytest.mark.proxy
def test_chaostoolkit_runs_the_export_against_the_demo(edge: Any, tmp_path: Path, kb_path: Path) -> None:
    """chaostoolkit-lib runs the exported experiment: our functions fault the upstream and start a fault proxy,
    a later step uses the proxy's output, the rollback stops it and heals; CTK reports completed."""
    from chaoslib.experiment import run_experiment

    data = {
        "title": "CTK runs poetkb steps", "obligations": ["resilience.timeout.enforced"],
        "steady_state": {"probes": [{"name": "home", "type": "http", "url": "${demo.base_url}/api/ctk",
                                     "headers": {"Host": "edge.test"}, "tolerance": {"status": ["2xx"]}}]},
        "method": [
            {"name": "fault", "type": "upstream_fault", "upstream": "faulty", "fault": {"latency_ms": 20}},
            {"name": "fp", "type": "fault_proxy_start", "upstream": "healthy-a", "toxics": {"latency_ms": 250}},
            {"name": "through", "type": "http", "url": "${fp.url}/z", "tolerance": {"status": [200],
                                                                                     "max_latency_ms": 5000}},
        ],
        "rollbacks": [{"name": "stop", "type": "fault_proxy_stop", "proxy": "fp"},
                      {"name": "heal", "type": "upstream_heal"}],
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    exported = export_ctk(load(path))
    journal = run_experiment(exported)
    assert journal["status"] == "completed" and journal["deviated"] is False
    runs = {r["activity"]["name"]: r for r in journal["run"]}
    assert runs["fp"]["status"] == "succeeded" and runs["through"]["output"] is True
    assert all(r["status"] == "succeeded" for r in journal["rollbacks"])
    fault = httpx.get(edge.upstream("faulty").admin_url + "/fault").json()
    assert fault["latency_ms"] == 0
