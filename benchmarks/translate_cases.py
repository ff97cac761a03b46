"""Translate every case to the other proxy, validate it, verify it by gating both, and write docs/translate.md.

Cases: the demo's good NGINX and HAProxy configurations, then the independent real-world-shaped
configurations in tests/fixtures/translate/. For each, the translation is validated (`nginx -t` /
`haproxy -c` after the gate's rewrite), then the original and the translation are each brought up on
loopback in front of instrumented upstreams and gated on every edge obligation; an obligation is
equivalent only where both pass.

    .venv/bin/python benchmarks/translate_cases.py --write-docs     # about 7 minutes on 2 loaded cores
    .venv/bin/python benchmarks/translate_cases.py --case shop-nginx.conf

Everything runs on loopback in a private POET_HOME and knowledge base.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "translate"
DOCS = REPO / "docs" / "translate.md"
START, END = "<!-- translate-cases:start -->", "<!-- translate-cases:end -->"


def cases(work: Path, only: list[str] | None) -> list[tuple[str, Path]]:
    from poetkb.translate.cases import FIXTURES as NAMES
    from poetkb.translate.cases import render_demo_good

    found = [("demo good (nginx)", render_demo_good("nginx", work / "demo-nginx")),
             ("demo good (haproxy)", render_demo_good("haproxy", work / "demo-haproxy"))]
    found += [(name, FIXTURES / name) for name in NAMES]
    return [c for c in found if not only or c[0] in only or c[1].name in only]


def run(work: Path, only: list[str] | None) -> list[dict[str, Any]]:
    import poetkb
    from poetkb.edgeconfig import load_config
    from poetkb.errors import PoetError
    from poetkb.translate import translate_file
    from poetkb.translate.verify import verify

    kb = poetkb.open()
    rows = []
    for label, path in cases(work, only):
        t0 = time.perf_counter()
        to = "haproxy" if load_config(path).proxy == "nginx" else "nginx"
        result = translate_file(path, to=to, validate=True)
        out = work / f"{path.stem}.translated.{'cfg' if to == 'haproxy' else 'conf'}"
        out.write_text(result.text, encoding="utf-8")
        row: dict[str, Any] = {"case": label, "file": path.name, "from": result.source_proxy, "to": to,
                               "valid": result.valid, "validation_error": result.validation_error,
                               "untranslated": len(result.untranslated),
                               "translate_s": round(time.perf_counter() - t0, 2)}
        if result.valid:
            try:
                v = verify(kb, path, result.source_proxy, out, to)
            except PoetError as exc:  # a case that cannot be brought up is a row saying so, not a crash
                row["error"] = exc.message[-300:]
                rows.append(row)
                print(f"{label}: {row['error']}", file=sys.stderr)
                continue
            row.update(obligations=len(v.obligations), equivalent=v.equivalent, differing=v.differing,
                       not_judged=v.not_judged, verify_s=v.duration_s,
                       differences=[c.model_dump() for c in v.obligations if c.status == "differing"],
                       equivalent_ids=[c.obligation_id for c in v.obligations if c.status == "equivalent"])
        rows.append(row)
        print(f"{label}: {row.get('equivalent')} equivalent, {row.get('differing')} differing, "
              f"{row.get('not_judged')} not judged of {row.get('obligations')} ({row.get('verify_s')} s)",
              file=sys.stderr)
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    out = [START, "", f"Measured by `benchmarks/translate_cases.py` on {time.strftime('%Y-%m-%d')}: every case "
           "translated, validated by the target proxy, then both gated on every edge obligation.", "",
           "| case | from → to | valid | not translated | equivalent | differing | not judged | verify |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['case']} | {r['from']} → {r['to']} | {'yes' if r['valid'] else 'no'} | "
                   f"{r['untranslated']} lines | {r.get('equivalent', '-')} | {r.get('differing', '-')} | "
                   f"{r.get('not_judged', '-')} | {r.get('verify_s', '-')} s |")
    for r in rows:
        if "error" in r:
            out.append(f"\n{r['case']}: could not be verified: {r['error']}")
    out += ["", "Obligations that differ (original / translation), with the reason read from the diagnoses:", ""]
    any_diff = False
    for r in rows:
        for d in r.get("differences", []):
            any_diff = True
            why = (d["translated_diagnosis"] if d["original"] == "pass" else d["original_diagnosis"])[:200]
            why = why.replace(str(REPO) + "/", "").replace("|", "\\|").replace("\n", " ")
            why = re.sub(r"/tmp/poet-translate-[^/]+/[^/]+/", "", why)
            out.append(f"- {r['case']}: `{d['obligation_id']}` {d['original']} / {d['translated']}: {why}")
    if not any_diff:
        out.append("- none")
    out += ["", END]
    return "\n".join(out)


def write_docs(rows: list[dict[str, Any]]) -> None:
    text = DOCS.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    DOCS.write_text(head + render(rows) + rest.split(END, 1)[1], encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", help="only this case (label or file name; repeatable)")
    parser.add_argument("--write-docs", action="store_true", help="update the figures in docs/translate.md")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="poet-translate-") as tmp:
        os.environ["POET_HOME"] = str(Path(tmp) / "home")
        os.environ["POET_DB"] = str(Path(tmp) / "kb.sqlite")
        rows = run(Path(tmp), args.case)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    if args.write_docs:
        write_docs(rows)
    print(render(rows))
    return 0 if all(r["valid"] and "error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
