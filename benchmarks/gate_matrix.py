"""Run the gate against every demo variant, for NGINX and HAProxy and the service tier; write docs/gates.md's matrix.

For each proxy the good configuration is gated with ``--all`` (every edge obligation, timed: this is the
"full gate in well under a minute" figure), then each seeded-fault variant is started and gated on the
obligations it is built to break (``--full`` gates every edge obligation instead, which also shows what
else a variant breaks). The result table lists, per variant, the obligations that failed and the run
time. Then (unless ``--no-service``) the edge comes up with the service tier (``--tier all``, NGINX) and the
whole ``poet gate run --all`` is timed over every obligation with a driven check (row ``all``), and each
seeded-fault service variant is gated on the obligations it is built to break (``--full``: every service
obligation). The run also writes ``docs/examples/gate_report.json`` (the good NGINX run, as the tool wrote it).

    .venv/bin/python benchmarks/gate_matrix.py --write-docs          # both proxies, about 5 minutes
    .venv/bin/python benchmarks/gate_matrix.py --proxy nginx --variant round-robin

Everything runs on loopback in a private POET_HOME; the demo is brought down at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "gates.md"
EXAMPLE = REPO / "docs" / "examples" / "gate_report.json"
START, END = "<!-- gate-matrix:start -->", "<!-- gate-matrix:end -->"


def run_matrix(proxies: list[str], variants: list[str] | None, *, full: bool, base_port: int,
               service: bool = True) -> dict[str, Any]:
    """Gate the good configuration and the variants; return rows and the good runs' reports."""
    import poetkb
    from poetkb import demo

    rows: list[dict[str, Any]] = []
    good_reports: dict[str, Any] = {}
    kb = poetkb.open()
    try:
        for proxy in proxies:
            chosen = [v for v in demo.variants() if v.proxy == proxy and (variants is None or v.name in variants)]
            t0 = time.perf_counter()
            demo.up(proxy=proxy, variant="good", base_port=base_port)
            up_s = time.perf_counter() - t0
            report = kb.gate(all=True)
            good_reports[proxy] = report
            rows.append(_row(proxy, "good", [], report, up_s))
            print(_line(rows[-1]), file=sys.stderr)
            for variant in chosen:
                if variant.name == "good":
                    continue
                t0 = time.perf_counter()
                demo.up(proxy=proxy, variant=variant.name, base_port=base_port)
                up_s = time.perf_counter() - t0
                report = kb.gate(all=True) if full else kb.gate(obligations=variant.breaks)
                rows.append(_row(proxy, variant.name, variant.breaks, report, up_s))
                print(_line(rows[-1]), file=sys.stderr)
        if service:
            _service_rows(kb, rows, variants, full=full, base_port=base_port)
    finally:
        kb.close()
        demo.down()
    return {"rows": rows, "good": good_reports}


def _service_rows(kb: Any, rows: list[dict[str, Any]], variants: list[str] | None, *, full: bool,
                  base_port: int) -> None:
    """The edge with the service tier (--tier all): the whole gate, then every service variant."""
    from poetkb import demo
    from poetkb.demo.service import tier
    from poetkb.demo.service.variants import VARIANTS

    t0 = time.perf_counter()
    state = tier.up(variant="good", base_port=base_port)
    demo.up(proxy="nginx", variant="good", base_port=base_port, service_port=state.ports["service"])
    up_s = time.perf_counter() - t0
    rows.append(_row("all", "good", [], kb.gate(all=True), up_s))
    print(_line(rows[-1]), file=sys.stderr)
    for variant in VARIANTS.values():
        if variant.name == "good" or (variants is not None and variant.name not in variants):
            continue
        t0 = time.perf_counter()
        tier.up(variant=variant.name, base_port=base_port)
        up_s = time.perf_counter() - t0
        service_ids = [o for o in _service_obligations(kb)] if full else list(variant.breaks)
        rows.append(_row("service", variant.name, list(variant.breaks), kb.gate(obligations=service_ids), up_s))
        print(_line(rows[-1]), file=sys.stderr)


def _service_obligations(kb: Any) -> list[str]:
    """Obligations with a check that drives the service tier."""
    from poetkb.gates.kinds import SERVICE_KINDS

    return sorted({o.id for o in kb.obligations() if any(c.kind in SERVICE_KINDS for c in o.checks)})


def _row(proxy: str, variant: str, breaks: list[str], report: Any, up_s: float) -> dict[str, Any]:
    failed = {o.obligation_id: o for o in report.obligations if o.verdict != "pass"}
    caught = [b for b in breaks if b in failed and failed[b].verdict == "fail"]
    return {
        "proxy": proxy, "variant": variant, "breaks": breaks, "selected": report.summary.selected,
        "failed": sorted(failed), "verdicts": {k: v.verdict for k, v in failed.items()},
        "diagnoses": {k: v.diagnosis for k, v in failed.items()},
        "caught": caught, "ok": (not failed) if not breaks else len(caught) == len(breaks),
        "gate_s": round(report.duration_s, 1), "up_s": round(up_s, 1), "run_id": report.run_id,
    }


def _line(row: dict[str, Any]) -> str:
    mark = "ok " if row["ok"] else "BAD"
    failed = ", ".join(row["failed"]) or "-"
    return f"{mark} {row['proxy']:<8} {row['variant']:<24} {row['gate_s']:>5.1f} s  failed: {failed}"


def render(result: dict[str, Any], *, full: bool) -> str:
    rows = result["rows"]
    out = [START, "",
           f"Generated by `benchmarks/gate_matrix.py{' --full' if full else ''}` from real runs "
           f"(poetkb gate against the demo edge on this machine: {os.cpu_count()} cores).", ""]
    for proxy in sorted({r["proxy"] for r in rows} - {"service"}):
        good = next(r for r in rows if r["proxy"] == proxy and r["variant"] == "good")
        what = ("obligations with a driven check (`poet demo up --tier all`: NGINX and the service tier)"
                if proxy == "all" else "edge obligations")
        out.append(f"**{proxy}**: the good configuration passes {good['selected'] - len(good['failed'])} of "
                   f"{good['selected']} {what}; the full `poet gate run --all` took {good['gate_s']} s.")
        out.append("")
    out += ["| proxy | variant | breaks | failed obligations | caught | gate run |",
            "|---|---|---|---|---|---|"]
    for r in rows:
        breaks = ", ".join(f"`{b}`" for b in r["breaks"]) or "-"
        failed = ", ".join(f"`{f}`" + ("" if r["verdicts"][f] == "fail" else f" ({r['verdicts'][f]})")
                           for f in r["failed"]) or "none"
        caught = "yes" if r["ok"] else "**NO**"
        out.append(f"| {r['proxy']} | {r['variant']} | {breaks} | {failed} | {caught} | {r['gate_s']} s |")
    out += ["", "Diagnoses, one per caught obligation:", ""]
    for r in rows:
        for oid in r["caught"]:
            diagnosis = r["diagnoses"][oid].replace("|", "\\|")
            out.append(f"- {r['proxy']} `{r['variant']}` / `{oid}`: {diagnosis}")
    out += ["", END]
    return "\n".join(out)


def write_docs(result: dict[str, Any], *, full: bool) -> None:
    text = DOCS.read_text(encoding="utf-8") if DOCS.exists() else f"# Gates\n\n{START}\n{END}\n"
    if START not in text:
        text += f"\n## Matrix\n\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    DOCS.write_text(head + render(result, full=full) + tail, encoding="utf-8")
    good = result["good"].get("nginx") or next(iter(result["good"].values()))
    EXAMPLE.parent.mkdir(parents=True, exist_ok=True)
    EXAMPLE.write_text(good.model_dump_json(indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxy", action="append", choices=["nginx", "haproxy"])
    parser.add_argument("--variant", action="append", help="only these variants (repeatable)")
    parser.add_argument("--full", action="store_true", help="gate every edge (service) obligation for each variant")
    parser.add_argument("--no-service", action="store_true", help="leave the service tier out")
    parser.add_argument("--base-port", type=int, default=19400)
    parser.add_argument("--write-docs", action="store_true", help="update docs/gates.md and the example report")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="poet-matrix-") as tmp:
        os.environ["POET_HOME"] = str(Path(tmp) / "home")
        os.environ["POET_DB"] = str(Path(tmp) / "kb.sqlite")
        result = run_matrix(args.proxy or ["nginx", "haproxy"], args.variant, full=args.full,
                            base_port=args.base_port, service=not args.no_service)
    if args.json:
        args.json.write_text(json.dumps(result["rows"], indent=2) + "\n", encoding="utf-8")
    if args.write_docs:
        write_docs(result, full=args.full)
    bad = [r for r in result["rows"] if not r["ok"]]
    for r in bad:
        print(f"not caught: {r['proxy']} {r['variant']}: {r['failed']}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
