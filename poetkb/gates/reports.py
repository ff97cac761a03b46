"""Gate reports: JSON (the stable record), self-contained HTML, JUnit XML and a Markdown summary.

Every run writes ``.poet/reports/<run-id>.json`` (a :class:`GateReport`) and
``<run-id>.html``; JUnit and Markdown are rendered on demand (``--junit FILE``,
``poet gate report --format md``). The HTML page needs no network: styles are
inline, there is no script, and evidence links are relative paths into the
run's evidence directory. JUnit marks ``no-evidence`` as a failure, not a skip,
so a CI system never shows an unproven obligation as green.
"""

from __future__ import annotations

import html
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from pydantic import ValidationError

from poetkb.errors import InputError
from poetkb.gates.schema import GateReport
from poetkb.paths import work_dir

FORMATS = ("json", "html", "md", "junit")
_ICON = {"pass": "PASS", "fail": "FAIL", "error": "ERROR", "no-evidence": "NO EVIDENCE",
         "not-applicable": "NOT APPLICABLE"}


_ORDER = {"fail": 0, "error": 1, "no-evidence": 2, "pass": 3, "not-applicable": 4}


def reports_dir() -> Path:
    return work_dir() / "reports"


def render_json(report: GateReport) -> str:
    return report.model_dump_json(indent=2) + "\n"


def _evidence_href(report: GateReport, rel: str, base: Path | None) -> str | None:
    """A relative link to an evidence file, or None (shown as plain text).

    Paths come from a manifest, which is evidence and may be hostile: only a plain relative path that stays
    inside the evidence directory gets a link, and the link is relative and percent-quoted, so a path such as
    ``//host/x``, ``https://host`` or ``../../x`` never becomes a link to another site or file.
    """
    from urllib.parse import quote

    if not report.evidence_dir or base is None:
        return None
    parts = rel.split("/")
    if (not rel or rel.startswith(("/", "\\")) or "\\" in rel or ":" in rel or "\x00" in rel
            or any(part in ("", ".", "..") for part in parts)):
        return None
    root = Path(report.evidence_dir)
    try:
        href = Path(os.path.relpath(root / rel, base)).as_posix()
    except ValueError:
        return None
    if href.startswith("/") or ":" in href.split("/", 1)[0]:
        return None
    return quote(href, safe="/._-~")


def render_html(report: GateReport, *, base: Path | None = None) -> str:
    """A self-contained page; ``base`` is the directory the page is written to (for relative evidence links)."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("poetkb.gates", "templates"),
                      autoescape=select_autoescape(["html", "j2"], default_for_string=True, default=True),
                      trim_blocks=True, lstrip_blocks=True)
    ordered = sorted(report.obligations, key=lambda o: (_ORDER[o.verdict],
                                                        o.obligation_id))
    links = {f.path: _evidence_href(report, f.path, base) for f in report.evidence_files}
    return env.get_template("report.html.j2").render(report=report, obligations=ordered, links=links, icon=_ICON)


#: characters with a meaning inside a Markdown line (escaped text never starts a line, so - + # need nothing)
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md_text(text: object) -> str:
    """Text from evidence made inert in Markdown: HTML escaped, Markdown syntax backslash-escaped, one line."""
    escaped = html.escape(str(text), quote=False).replace("\r", " ").replace("\n", " ")
    return _MD_SPECIAL.sub(r"\\\1", escaped)


def md_code(text: object) -> str:
    """An identifier in a Markdown code span that no backtick in it can end early."""
    value = str(text).replace("\r", " ").replace("\n", " ")
    fence = "``" if "`" in value else "`"
    return f"{fence} {value} {fence}" if fence == "``" else f"`{value}`"


def render_markdown(report: GateReport) -> str:
    """A summary for a pull-request comment; everything that comes from evidence or a catalog is escaped."""
    s = report.summary
    target = report.target
    where = ""
    if target is not None and target.base_url:
        where = f" on {md_text(target.proxy or 'edge')} {md_text(target.base_url)}" + (
            f" ({md_text(target.variant)})" if target.variant else "")
    lines = [f"### poet gate: {_ICON[report.verdict]}{where}", "",
             f"{s.passed} of {s.selected} obligations pass (coverage {s.coverage:.0%}); {s.failed} fail, {s.errors} "
             f"error, {s.no_evidence} without evidence"
             + (f", {s.not_applicable} not applicable" if s.not_applicable else "")
             + f". Run {md_code(report.run_id)}, {report.duration_s:.1f} s.", ""]
    bad = report.failures()
    if bad:
        lines += ["| Obligation | Verdict | Diagnosis |", "|---|---|---|"]
        for ob in bad:
            lines.append(f"| {md_code(ob.obligation_id)} | {_ICON[ob.verdict]} | {md_text(ob.diagnosis or '')} |")
        lines.append("")
    passed = [o for o in report.obligations if o.verdict == "pass"]
    if passed:
        lines += ["<details><summary>Passing obligations</summary>", ""]
        lines += [f"- {md_code(o.obligation_id)}: {md_text(o.title)}" for o in passed]
        lines += ["", "</details>", ""]
    if report.problems:
        lines += ["**Problems:** " + "; ".join(md_text(p) for p in report.problems), ""]
    return "\n".join(lines)


def render_junit(report: GateReport) -> str:
    s = report.summary
    suites = ET.Element("testsuites", name="poet gate", tests=str(s.selected), failures=str(s.failed + s.no_evidence),
                        errors=str(s.errors), time=f"{report.duration_s:.3f}")
    suite = ET.SubElement(suites, "testsuite", name=f"poet gate {report.run_id}", tests=str(s.selected),
                          failures=str(s.failed + s.no_evidence), errors=str(s.errors), skipped=str(s.not_applicable),
                          time=f"{report.duration_s:.3f}", timestamp=report.started_at)
    props = ET.SubElement(suite, "properties")
    if report.target is not None:
        for key in ("base_url", "proxy", "variant"):
            value = getattr(report.target, key)
            if value:
                ET.SubElement(props, "property", name=key, value=str(value))
    ET.SubElement(props, "property", name="coverage", value=f"{s.coverage:.4f}")
    for ob in report.obligations:
        seconds = sum((c.duration_ms or 0) for c in ob.checks) / 1000
        case = ET.SubElement(suite, "testcase", classname=f"poet.{ob.domain}", name=ob.obligation_id,
                             time=f"{seconds:.3f}")
        ET.SubElement(ET.SubElement(case, "properties"), "property", name="obligation", value=ob.obligation_id)
        detail = "\n".join(f"{c.check_id} [{c.kind}] {c.verdict}: expected {c.expected}; observed {c.observed}"
                           + (f"; {c.diagnosis}" if c.diagnosis else "") for c in ob.checks)
        if ob.verdict == "fail":
            ET.SubElement(case, "failure", message=ob.diagnosis or "failed", type="fail").text = detail
        elif ob.verdict == "no-evidence":
            ET.SubElement(case, "failure", message=f"no evidence: {ob.diagnosis}", type="no-evidence").text = detail
        elif ob.verdict == "error":
            ET.SubElement(case, "error", message=ob.diagnosis or "error", type="error").text = detail
        elif ob.verdict == "not-applicable":  # not claimed by the configuration: skipped, never green
            ET.SubElement(case, "skipped", message=f"not applicable: {ob.diagnosis}").text = detail
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def render(report: GateReport, fmt: str, *, base: Path | None = None) -> str:
    if fmt == "json":
        return render_json(report)
    if fmt == "html":
        return render_html(report, base=base)
    if fmt == "md":
        return render_markdown(report)
    if fmt == "junit":
        return render_junit(report)
    raise InputError(f"unknown report format {fmt!r}", field="format", hint=f"use one of: {', '.join(FORMATS)}")


def write_reports(report: GateReport, formats: tuple[str, ...] = ("json", "html")) -> dict[str, Path]:
    """Write the report files under ``.poet/reports/``; return format -> path."""
    directory = reports_dir()
    directory.mkdir(parents=True, exist_ok=True)
    suffix = {"json": ".json", "html": ".html", "md": ".md", "junit": ".junit.xml"}
    written = {}
    for fmt in formats:
        path = directory / f"{report.run_id}{suffix[fmt]}"
        path.write_text(render(report, fmt, base=directory), encoding="utf-8")
        written[fmt] = path
    return written


def load_report(run_id: str | None = None) -> GateReport:
    """A stored report: the given run, or the latest one."""
    directory = reports_dir()
    if run_id is None:
        found = sorted(directory.glob("*.json")) if directory.is_dir() else []
        if not found:
            raise InputError(f"no gate report in {directory}", hint="run a gate first: `poet gate run --all`")
        path = max(found, key=lambda p: (p.stat().st_mtime, p.name))
    else:
        path = directory / f"{run_id}.json"
        if not path.is_file():
            known = sorted(p.stem for p in directory.glob("*.json"))[-5:] if directory.is_dir() else []
            raise InputError(f"no gate report for run {run_id!r} in {directory}",
                             hint=f"latest runs: {', '.join(known)}" if known else "run a gate first")
    try:
        return GateReport.model_validate_json(path.read_text(encoding="utf-8"))
    except (ValidationError, UnicodeDecodeError) as exc:
        raise InputError(f"not a valid gate report: {str(exc).splitlines()[0]}", file=path) from exc
