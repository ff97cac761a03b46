"""Mutation score of the gates on the demo's good configuration, for NGINX and HAProxy.

Every shipped operator is applied to every directive it matches (one mutant each); each mutant is
validated by the proxy, applied with a reload, gated on the obligations it should break, and
reverted. Prints the score per proxy and per obligation, and writes the Markdown kill matrix of each
proxy to OUT_DIR (default: a temporary directory; `--write-docs` writes docs/examples/mutation-*.md).

    .venv/bin/python benchmarks/mutation_score.py                 # both proxies, about 4 minutes
    .venv/bin/python benchmarks/mutation_score.py --proxy haproxy --operator haproxy.retries.widen

Everything runs on loopback in a private POET_HOME and knowledge base; the demo is brought down at the end.
The survivors judged equivalent on the demo (benchmarks/mutation_equivalents.yaml, each with its reasoning)
are recorded in that knowledge base first, as `poet gate mutant-equivalent` would, so they do not count.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxy", choices=["nginx", "haproxy"], action="append")
    parser.add_argument("--operator", action="append", default=[])
    parser.add_argument("--base-port", type=int, default=24100)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="poet-mutation-"))
    os.environ["POET_HOME"] = str(work / "home")
    os.environ["POET_DB"] = str(work / "kb.sqlite")
    out_dir = REPO / "docs" / "examples" if args.write_docs else work

    import poetkb
    from poetkb import demo
    from poetkb.mutation import demo_target, load_operators, run_mutation, select

    kb = poetkb.open()
    judged = yaml.safe_load((REPO / "benchmarks" / "mutation_equivalents.yaml").read_text(encoding="utf-8")) or {}
    try:
        for proxy, entries in judged.items():
            for entry in entries or []:
                kb.record_mutation_equivalent(entry["id"], proxy, " ".join(entry["note"].split()))
        for proxy in args.proxy or ["nginx", "haproxy"]:
            demo.up(proxy=proxy, base_port=args.base_port)
            ops = [op for op in select(load_operators(), only=args.operator) if op.proxy == proxy]
            started = time.perf_counter()
            report = run_mutation(kb, demo_target(), operators=ops)
            seconds = time.perf_counter() - started
            counts = {s: sum(1 for m in report.mutants if m.status == s) for s in
                      ("killed", "survived", "error", "invalid", "equivalent", "not-run")}
            score = "n/a" if report.score is None else f"{report.score:.1%}"
            print(f"{proxy}: mutation score {score} ({counts}) in {seconds:.0f} s; restored: {report.restored}")
            for o in report.obligations:
                shown = "n/a" if o.score is None else f"{o.score:.0%}"
                print(f"  {o.obligation_id:<36} killed {o.killed:>2}  survived {o.survived:>2}  "
                      f"errors {o.errors:>2}  {shown}")
            target = out_dir / f"mutation-{proxy}.md"
            target.write_text(report.markdown().replace(report.config, f"<demo>/{Path(report.config).name}"),
                              encoding="utf-8")
            print(f"  kill matrix: {target}")
    finally:
        kb.close()
        demo.down()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
