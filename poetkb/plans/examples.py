"""Generate the example test plan and runbook in ``docs/examples/`` from the shipped catalog.

Run ``python -m poetkb.plans.examples`` in a source checkout to rewrite them.
It is the library form of these two commands, run against a knowledge base
freshly built from the shipped catalog::

    poet plan test --change "$CHANGE" --diff docs/examples/cache-change.diff --component nginx \\
        --out docs/examples/TESTPLAN.cache-change.md
    poet runbook --change "$CHANGE" --diff docs/examples/cache-change.diff --component nginx --top 3 \\
        --out docs/examples/observability_runbook.md

A test regenerates both and fails when the files in the repository differ, so
the examples always show what this poetkb prints.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

CHANGE = "Serve each language its own cached page: add Accept-Language to the cache key and cache pages for 10 minutes"
COMPONENT = "nginx"
RUNBOOK_TOP = 3


def examples_dir() -> Path:
    """``docs/examples`` of the source checkout this poetkb runs from."""
    return Path(__file__).resolve().parents[2] / "docs" / "examples"


def render_examples(kb_path: Path | None = None) -> dict[str, str]:
    """File name -> content of each generated example (a fresh KB from the shipped catalog unless given)."""
    import poetkb

    diff = examples_dir() / "cache-change.diff"
    with tempfile.TemporaryDirectory() as tmp, poetkb.open(kb_path or Path(tmp) / "kb.sqlite") as kb:
        plan = kb.test_plan(CHANGE, diff=diff, component=COMPONENT)
        book = kb.runbook(change=CHANGE, diff=diff, component=COMPONENT, top=RUNBOOK_TOP)
    return {
        "TESTPLAN.cache-change.md": plan.to_markdown(),
        "observability_runbook.md": book.to_markdown(),
    }


def main() -> int:
    target = examples_dir()
    for name, text in render_examples().items():
        (target / name).write_text(text, encoding="utf-8")
        print(f"wrote {target / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
