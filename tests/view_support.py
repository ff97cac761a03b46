"""Crafted gate evidence for the viewer's tests: a run directory written with the gate's own EvidenceWriter."""

from __future__ import annotations

import json
from pathlib import Path

from poetkb.gates.evidence import EvidenceWriter
from poetkb.gates.records import HttpExchange
from poetkb.gates.schema import CheckRecord, LogSlice, TargetInfo

#: shown escaped everywhere; if any of it ran, the page title would change or an element would appear
SCRIPT = "<script>document.title='pwned'</script>"
INJECTION = SCRIPT + "<img src=x onerror=\"document.title='pwned'\">"
LOG_CHECK = "observability.access.logged#0"
METRICS_CHECK = "observability.metrics.exposed#0"
PATHS = ["/echo", "/no-such-page", f"/flaky/{SCRIPT}"]
STATUSES = [200, 404, 500]


def _prom(requests: int) -> str:
    return ("# TYPE nginx_connections_active gauge\nnginx_connections_active 1\n"
            "# TYPE nginx_connections_accepted counter\nnginx_connections_accepted 7\n"
            f"# TYPE nginx_http_requests_total counter\nnginx_http_requests_total {requests}\n")


def craft_run(root: Path, run_id: str, *, logged: int, grew: int) -> Path:
    """An evidence directory with an access-log check (``logged`` of 3 requests logged) and a metrics check
    (the request counter grows by ``grew`` over 10 requests); the injection string is in headers, bodies and log."""
    target = TargetInfo(source="options", base_url="http://127.0.0.1:9", proxy="nginx", variant="crafted",
                        access_log="/var/log/edge/access.log", metrics_url="http://127.0.0.1:9/metrics")
    writer = EvidenceWriter(root, run_id, target)
    for i, (path, status) in enumerate(zip(PATHS, STATUSES, strict=True)):
        body = f"<p>{INJECTION}</p>" if i == 0 else ""
        writer.exchange(HttpExchange.model_validate({
            "check": LOG_CHECK, "step": f"logged:{i}", "seq": i + 1, "started": 1000.0 + i, "elapsed_ms": 3.5,
            "request": {"method": "GET", "url": f"http://127.0.0.1:9{path}?poet=vw{i}",
                        "headers": {"user-agent": INJECTION}},
            "response": {"status": status, "headers": {"content-type": "text/html", "x-note": INJECTION},
                         "body": body, "body_size": len(body)}}))
    lines = [json.dumps({"time": f"2026-01-01T00:00:0{i}Z", "request_id": f"rid{i}", "host": "edge.test",
                         "client": "127.0.0.1", "method": "GET", "uri": f"{PATHS[i]}?poet=vw{i}",
                         "status": STATUSES[i], "bytes_sent": 120, "request_time": 0.004,
                         "upstream_addr": "127.0.0.1:9001", "upstream_status": str(STATUSES[i]),
                         "upstream_response_time": "0.003", "cache_status": "-", "user_agent": INJECTION})
             for i in range(logged)]
    # a line of another check that ran at the same time: not this check's evidence
    lines.append(json.dumps({"time": "2026-01-01T00:00:05Z", "method": "GET", "uri": "/parallel?poet=other7",
                             "status": 200}))
    log = ("\n".join(lines) + "\n").encode()
    writer.write_file("access.log", log, "access_log", "the edge's access log during the run")
    writer.log_slice = LogSlice(source=target.access_log or "", start=0, end=len(log))
    writer.checks.append(CheckRecord(
        check_id=LOG_CHECK, obligation_id="observability.access.logged", kind="access_log_complete",
        params={"requests": [{"path": p} for p in PATHS], "fields": ["time", "method", "uri", "status"],
                "non_empty": ["time", "method", "uri", "status"]},
        started_at="2026-01-01T00:00:00+00:00", finished_at="2026-01-01T00:00:01+00:00", duration_ms=40.0,
        log_range=(0, len(log))))
    files = []
    for label, count in (("before", 100), ("after", 100 + grew)):
        files.append(writer.write_file(f"metrics/observability.metrics.exposed-0--{label}.prom",
                                       _prom(count).encode(), "metrics", f"scrape {label} the traffic"))
    writer.checks.append(CheckRecord(
        check_id=METRICS_CHECK, obligation_id="observability.metrics.exposed", kind="metrics_exposed",
        params={"families": ["nginx_connections_active", "nginx_http_requests_total"],
                "request_counter": ["nginx_http_requests_total"], "requests": 10},
        started_at="2026-01-01T00:00:01+00:00", finished_at="2026-01-01T00:00:02+00:00", duration_ms=25.0,
        files=files))
    writer.finalize()
    return root


def record_as_gate_run(kb: object, root: Path, run_id: str) -> None:
    """Record the crafted directory the way a finished `poet gate run` records its own evidence (the manifest's
    digest in gate_runs), so it is judged as poetkb's own evidence, demo calibration included."""
    import hashlib

    from poetkb.gates.evidence import MANIFEST

    digest = hashlib.sha256((root / MANIFEST).read_bytes()).hexdigest()
    kb.db.table("gate_runs").insert({  # type: ignore[attr-defined]
        "run_id": run_id, "mode": "run", "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": "2026-01-01T00:00:02+00:00", "duration_s": 2.0, "target": "http://127.0.0.1:9",
        "proxy": "nginx", "variant": "crafted", "selection": "{}", "verdict": "pass", "exit_code": 0,
        "coverage": 1.0, "counts": "{}", "evidence_dir": str(root), "report_path": None, "manifest_sha256": digest})


def record_baseline(kb: object) -> None:
    """A load-test baseline with SLOs, a p95 series and raw samples (some over the p95 SLO)."""
    from poetkb.load.metrics import MetricsSummary, SeriesPoint
    from poetkb.load.profile import SLO

    samples = [40.0 + (i * 37 % 100) * 2.2 for i in range(200)]
    summary = MetricsSummary(
        source="steady.json", format="summary-json", service="checkout-api", scenario="steady",
        p50_ms=120.0, p90_ms=210.0, p95_ms=260.0, p99_ms=480.0, error_rate=0.004, throughput_rps=180.0,
        requests=36000, duration_s=200.0,
        slo=SLO.model_validate({"latency_ms": {"p50": 150, "p95": 300, "p99": 450}, "error_rate": "1%"}),
        series=[SeriesPoint(t_s=float(t), p95_ms=200.0 + (t % 50) * 2, error_rate=0.004) for t in range(0, 200, 10)],
        sample_count=len(samples), samples_ms=samples)
    kb.record_baseline("checkout-api", "steady", summary)  # type: ignore[attr-defined]
