"""`poet view` in a real browser (Debian's chromium driven by Playwright) over a knowledge base with crafted runs.

Two gate evaluations of crafted evidence directories are recorded: in the first the metrics check fails, in
the second the access-log check fails (two of three requests missing from the log). Headers, bodies, a request
path and the access log carry an HTML-injection string that must show as text and never run.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from view_support import INJECTION, SCRIPT, craft_run, record_as_gate_run, record_baseline

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 10_000


@dataclass
class Site:
    """A viewer serving a knowledge base with two crafted runs: ``metrics_fail`` then ``log_fail``."""

    url: str
    host: str
    port: int
    kb_path: Path
    metrics_fail: str
    log_fail: str
    no_evidence_dir: str
    no_report: str


@pytest.fixture(scope="module")
def site(built_kb_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """Evaluate two crafted evidence runs into a copy of the shipped knowledge base and serve it on loopback."""
    import poetkb
    from poetkb.view.server import make_server

    root = tmp_path_factory.mktemp("view")
    kb_path = root / "kb.sqlite"
    shutil.copyfile(built_kb_file, kb_path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POET_HOME", str(root / "home"))
        with poetkb.open(kb_path) as kb:
            runs = {}
            for run_id, logged, grew in (("a", 3, 3), ("b", 1, 10), ("c", 3, 10), ("d", 3, 10)):
                directory = craft_run(root / "ev" / run_id, run_id, logged=logged, grew=grew)
                record_as_gate_run(kb, directory, run_id)
                runs[run_id] = kb.gate_evaluate(directory)
            first, second, gone, unreported = runs["a"], runs["b"], runs["c"], runs["d"]
            record_baseline(kb)
    shutil.rmtree(root / "ev" / "c")
    (root / "home" / "reports" / f"{unreported.run_id}.json").unlink()
    assert (first.verdict_of("observability.metrics.exposed"), second.verdict_of("observability.access.logged")) \
        == ("fail", "fail")
    # an evidence listing that points out of the directory, and a link that does (the report is edited after
    # the run, as someone with write access to .poet/ could)
    (root / "secret.txt").write_text("TOPSECRET\n", encoding="utf-8")
    (root / "ev" / "b" / "link.txt").symlink_to(root / "secret.txt")
    report_path = root / "home" / "reports" / f"{second.run_id}.json"
    report = json.loads(report_path.read_text(encoding="utf-8"))
    report["evidence_files"] += [{"path": "../../secret.txt", "kind": "other", "sha256": "0" * 64, "bytes": 10},
                                 {"path": "link.txt", "kind": "other", "sha256": "0" * 64, "bytes": 10}]
    report_path.write_text(json.dumps(report), encoding="utf-8")

    server = make_server(kb_path, host="127.0.0.1", port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield Site(url=server.url.rstrip("/"), host="127.0.0.1", port=server.port, kb_path=kb_path,
                   metrics_fail=first.run_id, log_fail=second.run_id, no_evidence_dir=gone.run_id,
                   no_report=unreported.run_id)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian chromium, launched through Playwright's bundled driver (no browser download)."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "install Debian's chromium (apt-get install chromium); .ci/run does"
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, site: Site) -> Iterator[Any]:
    """A fresh page that records console errors and every URL it requests."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    tab.errors, tab.requested = [], []  # type: ignore[attr-defined]
    tab.on("console", lambda m: m.type == "error" and tab.errors.append(m.text))
    tab.on("pageerror", lambda e: tab.errors.append(str(e)))
    tab.on("request", lambda r: tab.requested.append(r.url))
    try:
        yield tab
    finally:
        context.close()


def _raw(site: Site, method: str, path: str, *, host: str | None = None) -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection(site.host, site.port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=host is not None)
        if host is not None:
            conn.putheader("Host", host)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode("utf-8")
    finally:
        conn.close()


def test_every_page_loads_offline_without_errors(page: Any, site: Site) -> None:
    """Each page answers 200 with the strict CSP, renders its heading, logs no error and fetches nothing else."""
    paths = ["/", "/obligations", "/obligations?domain=observability", "/obligations/observability.access.logged",
             "/runs", f"/runs/{site.log_fail}", "/diff", "/mining", "/load",
             f"/runs/{site.metrics_fail}/checks/observability.metrics.exposed/0"]
    for path in paths:
        response = page.goto(site.url + path)
        assert response.status == 200, path
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'none'" in csp
        assert page.locator("h1").first.inner_text().strip(), path
    assert page.errors == []
    assert all(url.startswith(site.url + "/") for url in page.requested), page.requested


def test_navigation_from_the_list_to_an_obligation_to_a_run_to_its_evidence(page: Any, site: Site) -> None:
    """Clicking through: obligation list -> obligation -> the failing gate run -> the failing check's evidence."""
    page.goto(site.url + "/obligations")
    page.locator("#obligations a", has_text="observability.access.logged").first.click()
    page.wait_for_url(re.compile(r"/obligations/observability\.access\.logged$"))
    assert "Every request leaves one complete" in page.locator("h1").inner_text()
    assert page.locator("svg.plot").count() >= 2  # verdicts over time and the graph neighbourhood
    assert page.locator("#related a", has_text="observability.request.id").count() == 1
    history = page.locator("#history tr", has=page.locator(".badge.fail"))
    assert history.count() == 1
    history.locator("a").first.click()
    page.wait_for_url(re.compile(rf"/runs/{re.escape(site.log_fail)}$"))
    assert "2 of 3 requests are missing from the access log" in page.locator("main").inner_text()
    page.locator("a.evidence-link", has_text="observability.access.logged#0").click()
    page.wait_for_url(re.compile(r"/checks/observability\.access\.logged/0$"))
    assert page.locator("h1 .badge").inner_text() == "FAIL"


def test_a_failing_check_shows_expected_observed_log_slice_and_exchanges(page: Any, site: Site) -> None:
    """The failing access-log check shows what was expected and observed, the log slice and each exchange."""
    page.goto(f"{site.url}/runs/{site.log_fail}/checks/observability.access.logged/0")
    assert "every request, errors included, has one access-log line" in page.locator("#expected").inner_text()
    assert page.locator("#observed").inner_text() == "1 of 3 requests logged; 0 lines incomplete"
    assert "2 of 3 requests are missing" in page.locator("#diagnosis").inner_text()
    log = page.locator("#log-slice pre").inner_text()
    assert '"uri": "/echo?poet=vw0"' in log and "/no-such-page" not in log and "poet=other7" not in log
    exchanges = page.locator("details.exchange")
    assert exchanges.count() == 3
    assert "404" in exchanges.nth(1).locator("summary").inner_text()


def test_a_failing_metrics_check_shows_its_metric_deltas(page: Any, site: Site) -> None:
    """The metrics check that failed shows the request counter's growth between the two snapshots."""
    page.goto(f"{site.url}/runs/{site.metrics_fail}/checks/observability.metrics.exposed/0")
    assert "grew by 3 while 10 requests were served" in page.locator("#diagnosis").inner_text()
    row = page.locator("#metric-deltas tr", has_text="nginx_http_requests_total")
    assert [c.strip() for c in row.first.locator("td").all_inner_texts()] == \
        ["nginx_http_requests_total", "100", "103", "+3"]


def test_injected_html_in_evidence_is_shown_as_text_and_never_runs(page: Any, site: Site) -> None:
    """Evidence holding <script> and onerror markup is displayed literally; no element is created, nothing runs."""
    for path in (f"/runs/{site.log_fail}/checks/observability.access.logged/0", f"/runs/{site.log_fail}",
                 "/obligations/observability.access.logged", f"/runs/{site.log_fail}/files/captures.jsonl"):
        response = page.goto(site.url + path)
        assert "&lt;script&gt;" in response.text() and SCRIPT not in response.text(), path
        assert page.locator("script").count() == 0 and page.locator("img").count() == 0, path
        assert page.evaluate("document.title") != "pwned"
        assert SCRIPT in page.locator("main").inner_text(), path
    page.goto(f"{site.url}/runs/{site.log_fail}/checks/observability.access.logged/0")
    assert json.dumps(INJECTION)[1:-1] in page.locator("#log-slice pre").inner_text()
    assert page.errors == []


def test_diff_of_two_runs_shows_each_verdict_change(page: Any, site: Site) -> None:
    """The diff page says the metrics obligation was fixed and the access-log obligation broke."""
    page.goto(f"{site.url}/diff?a={site.metrics_fail}&b={site.log_fail}")
    rows = {r.locator("td").nth(1).inner_text(): r.locator("td").first.inner_text()
            for r in page.locator("#diff tr").all()[1:]}
    assert rows == {"observability.access.logged": "broke", "observability.metrics.exposed": "fixed"}


def test_load_and_mining_pages_plot_and_count(page: Any, site: Site) -> None:
    """The load page plots the baseline against its SLOs; the mining page counts patterns per suite."""
    page.goto(site.url + "/load")
    main = page.locator("main").inner_text()
    assert "checkout-api · steady" in main and "480 ms (over SLO)" in main
    assert page.locator("svg.plot").count() == 4
    page.goto(site.url + "/mining")
    suites = page.locator("#suites tr").all()[1:]
    assert len(suites) >= 3
    assert all(int(r.locator("td").nth(1).inner_text().replace(",", "")) > 0 for r in suites)


def test_unknown_ids_and_paths_are_404_pages(page: Any, site: Site) -> None:
    """Unknown or malformed ids give a 404 page that says what is missing (with close matches), never a traceback."""
    cases = {"/obligations/cache.vary.honord": "cache.vary.honored", "/obligations/%3Cb%3Ex": "not an obligation id",
             "/runs/19990101T000000Z-000000": "no gate run", "/runs/..%2F..": "not a gate run id",
             f"/runs/{site.log_fail}/checks/observability.access.logged/7": "has no check",
             f"/runs/{site.log_fail}/files/..%2Fmanifest.json": "not listed", "/no/such/page": "no such page",
             "/obligations?domain=nope": "no obligation is in domain"}
    for path, says in cases.items():
        response = page.goto(site.url + path)
        assert response.status == 404, path
        text = page.locator("main").inner_text()
        assert says in text and "Traceback" not in text, (path, text)


def test_evidence_files_are_confined_to_the_evidence_directory(page: Any, site: Site) -> None:
    """A listed file whose path climbs out, or a link pointing out, is refused; the manifest's files are shown."""
    for name in ("..%2F..%2Fsecret.txt", "link.txt"):
        page.goto(f"{site.url}/runs/{site.log_fail}/files/{name}")
        text = page.locator("main").inner_text()
        assert "TOPSECRET" not in text and ("leaves" in text or "outside" in text), text
    page.goto(f"{site.url}/runs/{site.log_fail}/files/metrics%2Fobservability.metrics.exposed-0--after.prom")
    assert "nginx_http_requests_total 110" in page.locator("pre").inner_text()


def test_runs_whose_evidence_or_report_is_gone_still_show_what_is_known(page: Any, site: Site) -> None:
    """Deleted evidence is a notice on the check page; a deleted report falls back to the recorded verdicts."""
    response = page.goto(f"{site.url}/runs/{site.no_evidence_dir}/checks/observability.access.logged/0")
    assert response.status == 200
    assert "is gone (moved or deleted after the run)" in page.locator("main").inner_text()
    assert page.locator("#expected").inner_text().startswith("every request, errors included")
    response = page.goto(f"{site.url}/runs/{site.no_report}")
    assert response.status == 200
    text = page.locator("main").inner_text()
    assert "cannot read the report" in text and "observability.metrics.exposed" in text


def test_only_get_and_head_are_served(site: Site) -> None:
    """POST, PUT, DELETE and made-up methods get 405 with Allow: GET, HEAD; HEAD has headers and no body."""
    for method in ("POST", "PUT", "DELETE", "PATCH", "BREW"):
        status, headers, body = _raw(site, method, "/obligations")
        assert (status, headers["allow"]) == (405, "GET, HEAD"), method
        assert "read-only" in body
    status, headers, body = _raw(site, "HEAD", "/runs")
    assert status == 200 and int(headers["content-length"]) > 0 and body == ""


def test_requests_for_another_host_or_too_long_are_refused(site: Site) -> None:
    """A Host header naming another site (DNS rebinding) gets 400; an over-long request line gets 414."""
    assert _raw(site, "GET", "/", host="attacker.example")[0] == 400
    assert _raw(site, "GET", "/", host=f"localhost:{site.port}")[0] == 200
    status, headers, body = _raw(site, "GET", "/obligations/" + "a" * 9000)
    assert status == 414 and "script-src 'none'" in headers["content-security-policy"] and "too long" in body
    status, headers, _ = _raw(site, "GET", "/")
    assert headers["x-content-type-options"] == "nosniff" and headers["cache-control"] == "no-store"


def test_cli_refuses_a_non_loopback_host(kb_path: Path) -> None:
    """`poet view --host 0.0.0.0` exits 2 and names --allow-remote, without listening."""
    result = subprocess.run([sys.executable, "-m", "poetkb", "view", "--host", "0.0.0.0", "--port", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "not a loopback address" in result.stderr and "--allow-remote" in result.stderr


def test_cli_serves_the_viewer_until_interrupted(kb_path: Path) -> None:
    """`poet view --port 0` prints its URL, serves the overview, and stops cleanly on Ctrl-C (exit 0)."""
    with subprocess.Popen([sys.executable, "-m", "poetkb", "view", "--port", "0"], stderr=subprocess.PIPE,
                          stdout=subprocess.DEVNULL, text=True, env={**os.environ, "POET_DB": str(kb_path)},
                          # Ctrl-C as a terminal delivers it, even where SIGINT is ignored (a background job)
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) as proc:  # noqa: PLW1509
        try:
            assert proc.stderr is not None
            deadline, line = time.monotonic() + 30, ""
            while time.monotonic() < deadline and "serving" not in line and proc.poll() is None:
                line = proc.stderr.readline()
            found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            assert found, line
            conn = http.client.HTTPConnection("127.0.0.1", int(found.group(1)), timeout=10)
            conn.request("GET", "/")
            response = conn.getresponse()
            assert response.status == 200 and "Knowledge base overview" in response.read().decode()
            conn.close()
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=10)
            assert proc.returncode == 0 and "stopped" in err
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=5)


def test_the_viewer_is_not_imported_by_poetkb_or_the_cli() -> None:
    """`import poetkb` and loading every command leave poetkb.view and jinja2 unimported."""
    code = "import sys, poetkb, poetkb.cli; print(sorted(m for m in ('poetkb.view', 'jinja2') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr


def test_svg_plots_escape_every_label() -> None:
    """Labels and titles holding markup are escaped in the SVG the server draws."""
    from poetkb.view import svg

    drawn = str(svg.neighbourhood(SCRIPT, [svg.GraphNode(kind="pattern", label=INJECTION, edge="<b>")])
                + svg.verdict_timeline([svg.TimelinePoint(label=SCRIPT, when="<i>", verdict="fail", href="/x?a=1&b=2")]))
    assert "<script" not in drawn and "<img" not in drawn and "<b>" not in drawn and "<i>" not in drawn
    assert "&lt;script&gt;" in drawn and 'href="/x?a=1&amp;b=2"' in drawn


def test_datasette_metadata_describes_every_table_and_column(built_kb_file: Path) -> None:
    """The shipped datasette-metadata.json names every table the store creates (FTS internals aside), and each column."""
    from importlib.resources import files

    import sqlite_utils

    metadata = json.loads(files("poetkb").joinpath("datasette-metadata.json").read_text(encoding="utf-8"))
    described = metadata["databases"]["kb"]["tables"]
    db = sqlite_utils.Database(built_kb_file)
    try:
        shadow = re.compile(r"_fts_(data|idx|docsize|config)$")
        tables = {t: [c.name for c in db.table(t).columns] for t in db.table_names() if not shadow.search(t)}
    finally:
        db.conn.close()
    assert sorted(described) == sorted(tables)
    for table, columns in tables.items():
        assert list(described[table]["columns"]) == columns, table
        assert described[table]["description"] and all(described[table]["columns"].values()), table
