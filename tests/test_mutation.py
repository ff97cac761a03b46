"""`poet gate mutate`: operators as data, mutants as exact edits, and a live run that always restores the file.

The live tests run a few operators against the real NGINX demo edge; the whole
operator matrix on both proxies is a benchmark (benchmarks/mutation_score.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from poetkb.cli import main
from poetkb.edgeconfig import parse_text
from poetkb.errors import InputError
from poetkb.mutation import Operator, load_operators, mutants, run_mutation, select
from poetkb.mutation.runner import demo_target

NGINX = """http {
    upstream app {
        server 127.0.0.1:9001 max_fails=2;
    }
    log_format main '{"request_id":"$poet_request_id",'
        '"upstream_response_time":"$upstream_response_time","status":$status}';
    proxy_next_upstream_tries 2;
    proxy_read_timeout 1s;  # keep short
    server {
        location / {
            proxy_set_header Connection "";
            proxy_set_header Proxy-Connection "";
        }
    }
}
"""


def _mutants(text: str, ids: list[str]) -> dict[str, str]:
    config = parse_text(text, "nginx", display="nginx.conf")
    ops = [op for op in load_operators() if op.id in ids]
    return {m.id: m.mutated for m in mutants(config, ops, {"nginx.conf": text})}


def test_shipped_operators_are_valid_and_aim_at_known_obligations(kb: object) -> None:
    """Every shipped operator loads, and every obligation it names is in the catalog."""
    ops = load_operators()
    assert {op.proxy for op in ops} == {"nginx", "haproxy"} and len(ops) >= 30
    for op in ops:
        for oid in op.breaks:
            kb.obligation(oid)  # type: ignore[attr-defined]


def test_mutants_change_only_their_statement() -> None:
    """A mutant edits its directive's own text; every other byte of the file stays."""
    found = _mutants(NGINX, ["nginx.retries.unbound", "nginx.read_timeout.widen", "nginx.log.drop_upstream_timing",
                             "nginx.hop_by_hop.forwarded", "nginx.passive_health.off"])
    assert found["nginx.retries.unbound@nginx.conf:7"] == NGINX.replace("tries 2;", "tries 0;")
    assert found["nginx.read_timeout.widen@nginx.conf:8"] == NGINX.replace("timeout 1s;", "timeout 100s;")
    assert found["nginx.log.drop_upstream_timing@nginx.conf:5"] == NGINX.replace(
        '"upstream_response_time":"$upstream_response_time",', "")
    assert found["nginx.hop_by_hop.forwarded@nginx.conf:11"] == NGINX.replace('proxy_set_header Connection "";', "")
    assert "nginx.hop_by_hop.forwarded@nginx.conf:12" not in found  # Proxy-Connection is another header
    assert found["nginx.passive_health.off@nginx.conf:3"] == NGINX.replace("max_fails=2", "max_fails=0")


def test_operator_fields_are_checked(tmp_path: Path) -> None:
    """An operator file with a missing field or an unknown operator id is bad input naming it."""
    bad = tmp_path / "ops.yaml"
    bad.write_text("operators:\n  - id: nginx.x.y\n    proxy: nginx\n    match: hash\n    op: replace\n"
                   "    breaks: [routing.backend.selection]\n    why: w\n")
    with pytest.raises(InputError, match="needs pattern, repl"):
        load_operators(bad)
    with pytest.raises(InputError, match="unknown mutation operator nginx.nope"):
        select(load_operators(), only=["nginx.nope"])


@pytest.fixture(scope="module")
def nginx_edge(shared_home: Path, base_port: int) -> Iterator[Path]:
    from poetkb import demo

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POET_HOME", str(shared_home))
        state = demo.up(proxy="nginx", base_port=base_port)
        yield Path(state.config_path)


@pytest.mark.proxy
def test_live_run_kills_restores_and_skips_invalid_mutants(nginx_edge: Path, home: Path, kb: object) -> None:
    """On the NGINX demo: unbounded retries are killed, a mutant nginx refuses is never applied, the file is restored."""
    original = nginx_edge.read_bytes()
    ops = select(load_operators(), only=["nginx.retries.unbound"])
    broken = Operator(id="nginx.timeout.garbage", proxy="nginx", match="proxy_connect_timeout", op="replace",
                      pattern=r"proxy_connect_timeout\s+\S+;", repl="proxy_connect_timeout soon;",
                      breaks=["resilience.timeout.enforced"], why="an invalid value")
    report = run_mutation(kb, demo_target(), operators=[*ops, broken])  # type: ignore[arg-type]
    by_op = {m.operator: m for m in report.mutants}
    assert by_op["nginx.retries.unbound"].status == "killed"
    assert by_op["nginx.retries.unbound"].verdicts["resilience.retry.bounded"] == "fail"
    assert by_op["nginx.timeout.garbage"].status == "invalid"
    assert report.restored and nginx_edge.read_bytes() == original
    assert report.baseline["resilience.retry.bounded"] == "pass"
    assert report.score == 1.0


@pytest.mark.proxy
def test_interrupted_run_restores_the_file(nginx_edge: Path, home: Path, kb: object) -> None:
    """Ctrl-C in the middle of a mutant leaves the original configuration on disk and running."""
    from poetkb import demo

    original = nginx_edge.read_bytes()
    calls = []

    def interrupt(line: str) -> None:
        calls.append(line)
        if line.startswith("[1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_mutation(kb, demo_target(), operators=select(load_operators(), only=["nginx.hash.removed"]),  # type: ignore[arg-type]
                     on_progress=interrupt)
    assert nginx_edge.read_bytes() == original
    assert demo.status().healthy


@pytest.mark.proxy
def test_cli_reports_survivors_and_records_equivalents(nginx_edge: Path, home: Path, kb_path: Path,
                                                       tmp_path: Path) -> None:
    """The CLI exits 1 on a survivor; recording it as equivalent takes it out of the score (exit 0)."""
    runner = CliRunner()
    # NGINX never forwards the client's Connection field; without `proxy_set_header Connection ""` it sends its
    # own "close": the demo's one survivor judged equivalent (benchmarks/mutation_equivalents.yaml)
    args = ["gate", "mutate", "--operator", "nginx.hop_by_hop.forwarded", "--max-mutants", "1", "--json"]
    first = runner.invoke(main, args)
    data = json.loads(first.stdout)
    (mutant,) = data["mutants"]
    assert data["restored"] is True
    if mutant["status"] == "killed":
        pytest.fail("the hop-by-hop check now catches NGINX's own Connection: close: pick another survivor here")
    assert first.exit_code == 1 and mutant["status"] == "survived"
    recorded = runner.invoke(main, ["gate", "mutant-equivalent", mutant["id"], "--proxy", "nginx", "--note",
                                    "nginx sends its own Connection: close, never the client's field"])
    assert recorded.exit_code == 0, recorded.output
    second = runner.invoke(main, args)
    assert json.loads(second.stdout)["mutants"][0]["status"] == "equivalent"
    assert second.exit_code == 1  # nothing was judged: no score to pass on
    out = tmp_path / "m.md"
    third = runner.invoke(main, ["gate", "mutate", "--operator", "nginx.retries.unbound", "--out", str(out)])
    assert third.exit_code == 0, third.output
    assert out.read_text().startswith("# Mutation score 100%: nginx")


@pytest.mark.proxy
def test_own_configuration_is_mutated_on_loopback_and_never_written(tmp_path: Path, kb_path: Path) -> None:
    """`--config` without a reload command brings each mutant up on loopback; the user's file is only read."""
    import shutil

    source = Path(__file__).parent / "fixtures" / "edges" / "nginx-login-limit" / "nginx.conf"
    config = tmp_path / "nginx.conf"
    shutil.copyfile(source, config)
    before = config.read_bytes()
    result = CliRunner().invoke(main, ["gate", "mutate", "--config", str(config), "--operator",
                                       "nginx.rate_limit.removed", "--json"])
    data = json.loads(result.stdout)
    assert result.exit_code == 0, result.output
    assert [m["status"] for m in data["mutants"]] == ["killed"]
    assert config.read_bytes() == before
    refused = CliRunner().invoke(main, ["gate", "mutate", "--config", str(config), "--target", "http://127.0.0.1:9"])
    assert refused.exit_code == 2 and "--reload-command" in refused.output
