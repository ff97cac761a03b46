"""The MCP server (`poet mcp`): tools, annotations, structured results, resources, errors, stdio and HTTP.

Most tests talk to the server through the SDK's own client over its in-memory
transport (JSON-RPC over memory streams, the same messages a real client
sends); two start `poet mcp` as a real process, over stdio and over HTTP on a
free loopback port.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import pytest
from click.testing import CliRunner
from mcp.client._memory import InMemoryTransport  # the SDK's in-memory transport for tests
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError

from poetkb.cli import main
from poetkb.demo.state import DemoState, DemoStatus
from poetkb.errors import InputError
from poetkb.gates.reports import load_report, reports_dir
from poetkb.gates.schema import GateReport, Selection
from poetkb.kb import KnowledgeBase
from poetkb.learn.results import ReviewItem
from poetkb.load.interpret import Interpretation
from poetkb.mcp_server import ServerOptions, build_server, check_host
from poetkb.models import Obligation, RelatedNode
from poetkb.plans.runbook import Runbook
from poetkb.plans.testplan import TestPlan
from poetkb.rank.explain import Ranking

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
METRICS_PROM = "tests/fixtures/gates/foreign/metrics.prom"
PROFILE = "tests/fixtures/load/profiles/small.yaml"
LOAD_RESULT = "tests/fixtures/load/metrics/summary-pass.json"
DIFF = "docs/examples/cache-change.diff"

READ_TOOLS = {"obligations_list", "obligation_show", "obligations_search", "related", "rank_change", "test_plan",
              "runbook", "gate_runs", "gate_report", "gate_evaluate", "load_interpret", "demo_status",
              "learn_review"}
ACTING_TOOLS = {"gate_run": (False, False), "demo_up": (True, True), "demo_down": (True, True),
                "learn_decide": (True, True)}  # name -> (destructive, idempotent)

T = TypeVar("T")


def talk(server: Any, conversation: Callable[[Client], Awaitable[T]], *, limit: float = 120) -> T:
    """Run one client session against ``server`` over the in-memory transport, bounded in time."""

    async def run() -> T:
        with anyio.fail_after(limit):
            async with Client(InMemoryTransport(server)) as client:
                return await conversation(client)

    return anyio.run(run)


def call(server: Any, tool: str, arguments: dict[str, Any] | None = None) -> Any:
    """Call one tool and return the CallToolResult."""
    return talk(server, lambda client: client.call_tool(tool, arguments or {}))


@pytest.fixture
def server(kb_path: Path) -> Any:
    """A read-only server (the default) over a copy of the shipped knowledge base, reading files in the repo."""
    return build_server(ServerOptions(db_path=kb_path, root=REPO))


@pytest.fixture
def acting_server(kb_path: Path) -> Any:
    """A server with the tools that act enabled."""
    return build_server(ServerOptions(db_path=kb_path, root=REPO, allow_actions=True))


@pytest.fixture
def recorded_run(kb_path: Path) -> GateReport:
    """One gate run recorded the ordinary way (library, record=True): a row in gate_runs and a report file."""
    with KnowledgeBase(kb_path) as kb:
        return kb.gate_evaluate([REPO / METRICS_PROM], selection=Selection(obligations=["data.outbox.no_loss"]))


# -- listing and annotations ------------------------------------------------------------------------
def test_read_only_server_lists_only_read_only_tools(server: Any) -> None:
    """By default every tool is annotated read-only, non-destructive, closed-world, and none that acts exists."""
    tools = talk(server, lambda client: client.list_tools()).tools
    assert {t.name for t in tools} == READ_TOOLS
    for tool in tools:
        hints = tool.annotations
        assert hints is not None and hints.read_only_hint is True, tool.name
        assert hints.destructive_hint is False and hints.open_world_hint is False, tool.name
        assert tool.output_schema is not None and tool.description, tool.name


def test_acting_tools_exist_only_with_allow_actions_and_say_what_they_change(acting_server: Any) -> None:
    """With allow_actions the four acting tools are listed, not read-only, with their destructive/idempotent hints."""
    tools = {t.name: t for t in talk(acting_server, lambda client: client.list_tools()).tools}
    assert set(tools) == READ_TOOLS | set(ACTING_TOOLS)
    for name, (destructive, idempotent) in ACTING_TOOLS.items():
        hints = tools[name].annotations
        assert hints is not None and hints.read_only_hint is False, name
        assert (hints.destructive_hint, hints.idempotent_hint) == (destructive, idempotent), name
        assert tools[name].description.startswith("ACTS:"), name


def test_acting_tool_is_refused_by_a_read_only_server(server: Any, kb_path: Path) -> None:
    """Calling learn_decide on a read-only server is an error and records no decision."""
    with KnowledgeBase(kb_path) as kb:
        item = kb.learn_review()[0]
    result = call(server, "learn_decide", {"mappings": [{"pattern_id": item.pattern_id,
                                                         "obligation_id": item.obligation_id}],
                                           "decision": "reject"})
    assert result.is_error and "learn_decide" in result.content[0].text
    with KnowledgeBase(kb_path) as kb:
        assert [i for i in kb.learn_review(decided=True) if i.decision] == []


# -- each read-only tool returns its model --------------------------------------------------------------
def test_obligation_tools_return_the_library_models(server: Any, kb_path: Path) -> None:
    """obligations_list, obligation_show, obligations_search and related return what the library returns."""
    with KnowledgeBase(kb_path) as kb:
        cache = kb.obligations(domain="cache", risk="high")
        shown = kb.obligation("cache.vary.honored")
        hits = kb.search("vary accept-language", limit=5)
        near = kb.related("cache.vary.honored", depth=2)
    listed = call(server, "obligations_list", {"domain": "cache", "risk": "high"}).structured_content
    assert listed["count"] == len(cache) > 0
    assert [Obligation.model_validate(o) for o in listed["obligations"]] == cache
    one = call(server, "obligation_show", {"obligation_id": "cache.vary.honored"})
    assert not one.is_error and Obligation.model_validate(one.structured_content) == shown
    found = call(server, "obligations_search", {"text": "vary accept-language", "limit": 5}).structured_content
    assert [o["id"] for o in found["obligations"]] == [o.id for o in hits] and hits[0].id == "cache.vary.honored"
    graph = call(server, "related", {"name": "cache.vary.honored", "depth": 2}).structured_content
    assert graph["node"] == "obligation:cache.vary.honored" and graph["count"] == len(near)
    assert [RelatedNode.model_validate(n) for n in graph["neighbours"]] == near


def test_change_tools_rank_and_derive_plans(server: Any, kb_path: Path) -> None:
    """rank_change, test_plan and runbook return a Ranking, a TestPlan and a Runbook for the same change."""
    change = "switch the cache key to include Accept-Language"
    with KnowledgeBase(kb_path) as kb:
        expected = kb.rank(change, top=5)
        expected_plan = kb.test_plan(diff=REPO / DIFF, top=3)
        expected_book = kb.runbook(obligations=["resilience.retry.bounded"])
    ranked = call(server, "rank_change", {"change": change, "top": 5})
    ranking = Ranking.model_validate(ranked.structured_content)
    assert [r.id for r in ranking.obligations] == [r.id for r in expected.obligations]
    assert ranking.obligations[0].id == "cache.vary.honored"
    plan = TestPlan.model_validate(call(server, "test_plan", {"diff_file": DIFF, "top": 3}).structured_content)
    assert plan.model_dump() == expected_plan.model_dump() and any(i.id.startswith("cache.") for i in plan.items)
    book = Runbook.model_validate(call(server, "runbook", {"obligations": ["resilience.retry.bounded"]})
                                  .structured_content)
    assert book.model_dump() == expected_book.model_dump() and [o.id for o in book.obligations] == ["resilience.retry.bounded"]


def test_gate_tools_read_runs_and_judge_evidence_without_recording(server: Any, kb_path: Path,
                                                                   recorded_run: GateReport) -> None:
    """gate_runs and gate_report read the recorded run; gate_evaluate judges evidence but records nothing."""
    runs = call(server, "gate_runs", {}).structured_content
    assert runs["count"] == 1 and runs["runs"][0]["run_id"] == recorded_run.run_id
    assert runs["runs"][0]["verdict"] == recorded_run.verdict
    report = call(server, "gate_report", {"run_id": recorded_run.run_id}).structured_content
    assert GateReport.model_validate(report) == load_report(recorded_run.run_id)
    latest = call(server, "gate_report", {}).structured_content
    assert latest["run_id"] == recorded_run.run_id
    files_before = sorted(reports_dir().iterdir())
    judged = call(server, "gate_evaluate", {"evidence": [METRICS_PROM], "obligations": ["data.outbox.no_loss"]})
    fresh = GateReport.model_validate(judged.structured_content)
    assert fresh.run_id != recorded_run.run_id
    assert [(o.obligation_id, o.verdict) for o in fresh.obligations] == \
        [(o.obligation_id, o.verdict) for o in recorded_run.obligations]
    assert sorted(reports_dir().iterdir()) == files_before
    with KnowledgeBase(kb_path) as kb:
        assert [r["run_id"] for r in kb.gate_runs()] == [recorded_run.run_id]


def test_load_interpret_judges_results_and_leaves_the_baseline(server: Any, kb_path: Path) -> None:
    """load_interpret returns the library's Interpretation; 'stored' compares with the baseline without replacing it."""
    with KnowledgeBase(kb_path) as kb:
        expected = kb.interpret(REPO / PROFILE, REPO / LOAD_RESULT)
    result = call(server, "load_interpret", {"profile": PROFILE, "metrics": [LOAD_RESULT]})
    got = Interpretation.model_validate(result.structured_content)
    assert got == expected and got.status == "pass"
    nothing = Interpretation.model_validate(call(server, "load_interpret", {
        "profile": PROFILE, "metrics": [LOAD_RESULT], "baseline": "stored"}).structured_content)
    assert nothing.baseline is None and any("no stored baseline" in n for n in nothing.notes)
    with KnowledgeBase(kb_path) as kb:
        kb.interpret(REPO / PROFILE, REPO / LOAD_RESULT, baseline="auto")  # records the baseline
        before = kb.load_baselines()
    compared = Interpretation.model_validate(call(server, "load_interpret", {
        "profile": PROFILE, "metrics": [LOAD_RESULT], "baseline": "stored"}).structured_content)
    assert compared.baseline is not None and not compared.baseline_recorded
    assert any(v.kind == "baseline_regression" for v in compared.verdicts)
    with KnowledgeBase(kb_path) as kb:
        assert kb.load_baselines() == before


def test_demo_status_and_learn_review_tools(server: Any, kb_path: Path) -> None:
    """demo_status reports a demo that is not running; learn_review lists the library's review items."""
    status = DemoStatus.model_validate(call(server, "demo_status").structured_content)
    assert status.running is False and status.state is None
    with KnowledgeBase(kb_path) as kb:
        expected = kb.learn_review(threshold=0.5)
    review = call(server, "learn_review", {"threshold": 0.5}).structured_content
    assert review["count"] == len(expected)
    assert [ReviewItem.model_validate(i) for i in review["items"]] == expected


# -- errors --------------------------------------------------------------------------------------------
def test_unknown_obligation_is_a_tool_error_with_suggestions(server: Any) -> None:
    """An unknown id is a tool error naming it and suggesting the close ids; the server keeps serving."""

    async def conversation(client: Client) -> tuple[Any, Any]:
        bad = await client.call_tool("obligation_show", {"obligation_id": "cache.vary.honord"})
        good = await client.call_tool("obligation_show", {"obligation_id": "cache.vary.honored"})
        return bad, good

    bad, good = talk(server, conversation)
    assert bad.is_error and bad.structured_content is None
    text = bad.content[0].text
    assert "unknown obligation id 'cache.vary.honord'" in text and "did you mean cache.vary.honored" in text
    assert not good.is_error and good.structured_content["id"] == "cache.vary.honored"


@pytest.mark.parametrize(("tool", "arguments", "message"), [
    ("gate_evaluate", {"evidence": ["/etc/passwd"]}, "outside the directory this server reads"),
    ("rank_change", {"diff_file": "../../etc/hostname"}, "diff path leaves"),
    ("gate_report", {"run_id": "../../etc/passwd"}, "not a gate run id"),
    ("gate_report", {"run_id": "20990101T000000Z-000000"}, "no gate report for run"),
    ("obligations_list", {"component": "ngnix"}, "unknown component 'ngnix'"),
    ("rank_change", {"change": "x", "diff": "y", "diff_file": DIFF}, "not both"),
    ("load_interpret", {"profile": PROFILE, "metrics": ["README.md"]}, "README.md"),
])
def test_bad_arguments_are_tool_errors_with_the_reason(server: Any, tool: str, arguments: dict[str, Any],
                                                       message: str) -> None:
    """Paths outside the root, bad run ids, unknown names and unusable files come back as tool errors."""
    result = call(server, tool, arguments)
    assert result.is_error and message in result.content[0].text


def test_fifos_and_links_out_of_the_root_are_refused(kb_path: Path, tmp_path: Path) -> None:
    """A FIFO in the root is refused without being opened (no hang); a link pointing out of the root is refused."""
    root = tmp_path / "root"
    root.mkdir()
    os.mkfifo(root / "change.diff")
    (root / "outside.diff").symlink_to(REPO / DIFF)
    server = build_server(ServerOptions(db_path=kb_path, root=root))
    fifo = call(server, "rank_change", {"diff_file": "change.diff"})
    assert fifo.is_error and "diff is not a regular file" in fifo.content[0].text
    link = call(server, "test_plan", {"diff_file": "outside.diff"})
    assert link.is_error and "diff path leaves" in link.content[0].text


def test_inputs_outside_the_schema_are_refused(server: Any) -> None:
    """Arguments the tool's input schema forbids (depth 9) are refused before the tool runs."""
    result = call(server, "related", {"name": "cache.vary.honored", "depth": 9})
    assert result.is_error


# -- resources -----------------------------------------------------------------------------------------
def test_resources_read_obligations_failure_modes_and_gate_runs(server: Any, kb_path: Path,
                                                                recorded_run: GateReport) -> None:
    """The three resource templates are listed and read as the models' JSON; 'latest' names the newest run."""

    async def conversation(client: Client) -> dict[str, Any]:
        templates = await client.list_resource_templates()
        read = {}
        for uri in ("obligation://cache.vary.honored", "failure-mode://cache.variant_mixup",
                    f"gate-run://{recorded_run.run_id}", "gate-run://latest"):
            result = await client.read_resource(uri)
            read[uri] = json.loads(result.contents[0].text)
        return {"templates": {t.uri_template for t in templates.resource_templates}, "read": read}

    got = talk(server, conversation)
    assert got["templates"] == {"obligation://{obligation_id}", "failure-mode://{failure_mode_id}",
                                "gate-run://{run_id}"}
    with KnowledgeBase(kb_path) as kb:
        assert Obligation.model_validate(got["read"]["obligation://cache.vary.honored"]) == \
            kb.obligation("cache.vary.honored")
        assert got["read"]["failure-mode://cache.variant_mixup"]["id"] == "cache.variant_mixup"
    assert GateReport.model_validate(got["read"][f"gate-run://{recorded_run.run_id}"]) == recorded_run
    assert got["read"]["gate-run://latest"]["run_id"] == recorded_run.run_id


def test_unknown_resource_id_is_not_found_with_suggestions(server: Any) -> None:
    """Reading obligation://<typo> is a protocol error whose message suggests the right id."""

    async def conversation(client: Client) -> MCPError:
        with pytest.raises(MCPError) as caught:
            await client.read_resource("obligation://cache.vary.honord")
        return caught.value

    error = talk(server, conversation)
    assert "unknown obligation id" in str(error) and "cache.vary.honored" in str(error)


# -- acting tools --------------------------------------------------------------------------------------
def test_learn_decide_records_a_decision(acting_server: Any, kb_path: Path) -> None:
    """learn_decide (acting) stores a reject decision that the library then reports."""
    with KnowledgeBase(kb_path) as kb:
        item = kb.learn_review()[0]
    result = call(acting_server, "learn_decide", {
        "mappings": [{"pattern_id": item.pattern_id, "obligation_id": item.obligation_id}],
        "decision": "reject", "note": "not a cache-key test"})
    assert not result.is_error, result.content
    assert result.structured_content["items"][0]["decision"] == "reject"
    with KnowledgeBase(kb_path) as kb:
        decided = [i for i in kb.learn_review(decided=True) if i.decision]
    assert [(i.pattern_id, i.obligation_id, i.decision) for i in decided] == \
        [(item.pattern_id, item.obligation_id, "reject")]


def test_gate_run_refuses_targets_off_loopback_and_needs_an_edge(acting_server: Any, kb_path: Path) -> None:
    """gate_run sends nothing to a non-loopback target, and without a running demo says how to start one."""
    remote = call(acting_server, "gate_run", {"all": True, "target": "http://192.0.2.1:80"})
    assert remote.is_error and "is not on this machine (loopback)" in remote.content[0].text
    nothing = call(acting_server, "gate_run", {"obligations": ["cache.vary.honored"]})
    assert nothing.is_error and "no demo edge is running" in nothing.content[0].text
    with KnowledgeBase(kb_path) as kb:
        assert kb.gate_runs() == []


@pytest.mark.proxy
@pytest.mark.slow
def test_demo_up_gate_run_and_down_through_the_server(acting_server: Any, kb_path: Path, home: Path,
                                                      base_port: int) -> None:
    """demo_up starts the real NGINX edge, gate_run judges an obligation on it and records it, demo_down stops it."""

    async def conversation(client: Client) -> tuple[Any, Any, Any]:
        up = await client.call_tool("demo_up", {"proxy": "nginx", "base_port": base_port})
        run = await client.call_tool("gate_run", {"obligations": ["routing.backend.selection"]})
        down = await client.call_tool("demo_down", {})
        return up, run, down

    up, run, down = talk(acting_server, conversation, limit=240)
    assert not up.is_error, up.content
    state = DemoState.model_validate(up.structured_content)
    assert state.base_url == f"http://127.0.0.1:{base_port}"
    report = GateReport.model_validate(run.structured_content)
    assert report.mode == "run" and report.verdict == "pass" and report.exit_code == 0
    with KnowledgeBase(kb_path) as kb:
        assert [r["run_id"] for r in kb.gate_runs()] == [report.run_id]
    assert not down.is_error and "nginx" in down.structured_content["stopped"]


# -- the command: host policy, missing extra, real processes ---------------------------------------------
def test_non_loopback_host_is_refused_unless_allowed() -> None:
    """--host 0.0.0.0 exits 2 with a hint; with --allow-remote the policy allows it and returns a warning."""
    result = CliRunner().invoke(main, ["mcp", "--http", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "refusing to serve on 0.0.0.0" in result.output and "--allow-remote" in result.output
    assert check_host("127.0.0.1", allow_remote=False) is None
    assert check_host("::1", allow_remote=False) is None
    assert check_host("localhost", allow_remote=False) is None
    warning = check_host("192.0.2.10", allow_remote=True)
    assert warning is not None and "without authentication" in warning
    with pytest.raises(InputError):
        check_host("example.org", allow_remote=False)


def test_busy_port_exits_2_naming_it(kb_path: Path) -> None:
    """`poet mcp --http` on a port already in use exits 2 saying it cannot listen there (not a crash, not exit 1)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["mcp", "--http", "--port", str(port)])
    assert result.exit_code == 2, result.output
    assert f"cannot listen on 127.0.0.1:{port}" in result.output and "--port" in result.output


def _subprocess_env(kb_path: Path) -> dict[str, str]:
    return {**os.environ, "POET_DB": str(kb_path), "PYTHONPATH": str(REPO)}


def test_poet_mcp_without_the_extra_exits_2_naming_the_install(kb_path: Path) -> None:
    """Without the mcp package, `poet mcp` exits 2 and says pip install 'poetkb[mcp]'."""
    code = "import sys; sys.modules['mcp'] = None\nfrom poetkb.cli import main\nmain(['mcp'])"
    result = subprocess.run([sys.executable, "-c", code], env=_subprocess_env(kb_path), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "pip install 'poetkb[mcp]'" in result.stderr and "Traceback" not in result.stderr


def test_help_and_import_never_load_the_sdk(kb_path: Path) -> None:
    """`import poetkb` and `poet --help` (and `poet mcp --help`) load neither mcp nor poetkb.mcp_server."""
    code = ("import sys, poetkb\nfrom poetkb.cli import main\n"
            "for args in (['--help'], ['mcp', '--help']):\n"
            "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in sys.modules if m == 'mcp' or m.startswith(('mcp.', 'poetkb.mcp_server'))))")
    result = subprocess.run([sys.executable, "-c", code], env=_subprocess_env(kb_path), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Serve the knowledge base to agents over MCP" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_poet_mcp_over_stdio_answers_a_real_client(kb_path: Path, tmp_path: Path) -> None:
    """A real `poet mcp` process over stdio: the SDK client initializes, lists tools and calls one."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "poetkb", "mcp"],
                                   env=_subprocess_env(kb_path), cwd=str(tmp_path))

    async def run() -> tuple[set[str], Any]:
        with anyio.fail_after(90):
            async with Client(params, mode="legacy") as client:
                tools = {t.name for t in (await client.list_tools()).tools}
                shown = await client.call_tool("obligation_show", {"obligation_id": "cache.vary.honored"})
                return tools, shown

    tools, shown = anyio.run(run)
    assert tools == READ_TOOLS
    assert not shown.is_error and shown.structured_content["id"] == "cache.vary.honored"


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_poet_mcp_over_http_on_loopback(kb_path: Path, tmp_path: Path) -> None:
    """`poet mcp --http` on a free loopback port serves the SDK client, refuses a foreign Host, stops on SIGTERM."""
    port = _free_loopback_port()
    proc = subprocess.Popen([sys.executable, "-m", "poetkb", "mcp", "--http", "--port", str(port)],
                            env=_subprocess_env(kb_path), cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""

        async def run() -> Any:
            with anyio.fail_after(60):
                async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                    return await client.call_tool("obligations_search", {"text": "retries amplify load", "limit": 3})

        found = anyio.run(run)
        assert not found.is_error and found.structured_content["count"] >= 1
        rebound = httpx.post(f"http://127.0.0.1:{port}/mcp", headers={"Host": f"attacker.example:{port}"},
                             json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, timeout=10)
        assert rebound.status_code == 421, rebound.status_code  # DNS rebinding: a foreign Host is misdirected
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate(timeout=10)
    assert f"serving the knowledge base at http://127.0.0.1:{port}/mcp" in err
    # uvicorn shuts down cleanly, then re-raises SIGTERM so the process ends "killed by SIGTERM" as a server should
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in err and "internal error" not in err
