"""Render plans to Markdown with the Jinja2 templates shipped in ``poetkb/plans/templates``.

Templates are loaded from the package directory, auto-escaping is off (the
output is Markdown, not HTML) and undefined names are errors, so a typo in a
template fails loudly instead of printing an empty string.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).resolve().parent / "templates"


def _code(value: Any) -> str:
    """Inline code that survives backticks inside the value."""
    text = " ".join(str(value).split())
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}" if fence == "`" else f"{fence} {text} {fence}"


def render_markdown(template: str, **context: Any) -> str:
    """Render ``templates/<template>`` with ``context``; the result ends with exactly one newline."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=False,  # noqa: S701 - Markdown output, never served as HTML
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["code"] = _code
    text = env.get_template(template).render(**context)
    lines = [line.rstrip() for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if line == "" and out and out[-1] == "":
            continue  # templates may leave double blank lines around optional sections
        out.append(line)
    return "\n".join(out).strip() + "\n"


def render_junit(plan: Any) -> str:
    """A test plan as JUnit XML: one test case per obligation, skipped with "awaiting evidence" and the gate.

    CI systems list skipped cases, so what is still unproven shows beside the tests; ``poet gate run
    --junit`` later reports the same obligations as passed or failed.
    """
    from xml.etree import ElementTree as ET

    suite = ET.Element("testsuite", {"name": f"poetkb plan: {plan.title}", "tests": str(len(plan.items)),
                                     "failures": "0", "errors": "0", "skipped": str(len(plan.items))})
    for item in plan.items:
        case = ET.SubElement(suite, "testcase", {"classname": f"poetkb.obligation.{item.risk}", "name": item.id})
        kinds = ", ".join(p.kind for p in item.proof) or "no check named"
        own = "no test of yours exercises it" if not item.own_tests else f"{item.own_tests_total} of your tests"
        ET.SubElement(case, "skipped", {"message": f"awaiting evidence: run {item.gate_command}"}).text = (
            f"{item.title}\nMust be true: {item.must_be_true}\nChecks: {kinds}\nCoverage: {own}\n")
        props = ET.SubElement(case, "properties")
        ET.SubElement(props, "property", {"name": "score", "value": f"{item.score:.4f}"})
        ET.SubElement(props, "property", {"name": "gate", "value": item.gate_command})
    if not plan.items:
        suite.set("tests", "0")
        ET.SubElement(suite, "system-out").text = plan.message
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
