"""pytest plugin: link tests to obligations, record the links in JUnit XML, report obligation coverage.

Installed with poetkb (entry point ``pytest11``), it stays inert until a test
uses the ``obligation`` marker or a ``--poet-*`` option is given; only then is
the knowledge base opened.

- ``@pytest.mark.obligation("cache.vary.honored", ...)`` links a test to
  obligations. Unknown ids are a collection error under ``--poet-strict`` and a
  warning otherwise, with close matches suggested.
- Each linked test carries JUnit properties in the requirements-traceability
  convention: one ``requirements`` property (ids joined by commas) and one
  ``obligation`` property per id. They are written as test-case properties,
  which pytest keeps in its default ``xunit2`` family and which travel with the
  reports under pytest-xdist. poetkb's ``tests_pass`` check reads them.
- ``--poet-report FILE`` writes the session's obligation coverage (JSON, or
  Markdown for ``.md``) for a selection (``--poet-domain``, repeatable);
  ``--poet-min-coverage X`` fails the session below ``X`` (0..1, or ``80%``);
  ``--poet-ratchet`` stores the best coverage in the knowledge base and fails a
  session whose coverage dropped.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from poetkb.kb import KnowledgeBase
    from poetkb.obligation_coverage import ObligationCoverage

MARKER = "obligation"
PLUGIN_NAME = "poetkb-obligations"


class PoetObligationWarning(pytest.PytestWarning):
    """A test names an obligation the knowledge base does not know (an error under --poet-strict)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("poetkb", "poetkb obligation coverage")
    group.addoption("--poet-strict", action="store_true",
                    help="unknown obligation ids in @pytest.mark.obligation are a collection error")
    group.addoption("--poet-report", metavar="FILE", type=Path,
                    help="write obligation coverage of the session (JSON, or Markdown for .md)")
    group.addoption("--poet-domain", metavar="DOMAIN", action="append", default=[],
                    help="measure coverage over the obligations of this domain (repeatable; default: all)")
    group.addoption("--poet-min-coverage", metavar="X", type=_fraction,
                    help="fail the session when obligation coverage is below X (0..1, or a percentage like 80%%)")
    group.addoption("--poet-ratchet", action="store_true",
                    help="store the best coverage in the knowledge base and fail when it drops")
    group.addoption("--poet-db", metavar="PATH", type=Path,
                    help="knowledge base file (default: $POET_DB or the embedded default)")


def _fraction(text: str) -> float:
    import argparse
    import math

    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (use 0.8 or 80%)") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is outside 0..1 (use 0.8 or 80%)")
    return value


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(*ids): link this test to poetkb obligations (poetkb plugin)")
    config.pluginmanager.register(ObligationLinks(config), PLUGIN_NAME)


def _marked_ids(item: pytest.Item) -> list[str]:
    ids: list[str] = []
    for mark in item.iter_markers(MARKER):
        for arg in mark.args:
            if not isinstance(arg, str):
                raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.obligation takes obligation ids as "
                                        f"strings, got {arg!r}")
            ids.append(arg.strip())
    return list(dict.fromkeys(ids))


class ObligationLinks:
    """The session's plugin object: the knowledge base (opened on demand) and each linked test's outcome."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.kb: KnowledgeBase | None = None
        self.outcomes: dict[str, str] = {}
        self.links: dict[str, list[str]] = {}
        self.result: ObligationCoverage | None = None
        self.failure: str | None = None

    @property
    def wants_coverage(self) -> bool:
        opt = self.config.option
        return bool(opt.poet_report or opt.poet_min_coverage is not None or opt.poet_ratchet)

    @property
    def is_worker(self) -> bool:
        """True in a pytest-xdist worker: the controller aggregates and reports."""
        return hasattr(self.config, "workerinput")

    def open_kb(self) -> KnowledgeBase:
        if self.kb is None:
            import poetkb
            from poetkb.errors import PoetError

            try:
                self.kb = poetkb.open(self.config.option.poet_db)
            except PoetError as exc:
                raise pytest.UsageError(f"poetkb: cannot open the knowledge base: {exc}") from exc
        return self.kb

    def pytest_unconfigure(self) -> None:
        if self.kb is not None:
            self.kb.close()

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        linked = {item.nodeid: (item, ids) for item in items if (ids := _marked_ids(item))}
        if not linked:
            return
        from poetkb.obligation_coverage import unknown_ids

        unknown = unknown_ids(self.open_kb(), [oid for _, ids in linked.values() for oid in ids])
        problems = []
        for nodeid, (item, ids) in linked.items():
            for oid in ids:
                if oid in unknown:
                    close = unknown[oid]
                    hint = f" (did you mean {', '.join(close)}?)" if close else " (see `poet obligations list`)"
                    problems.append(f"{nodeid}: unknown obligation id {oid!r}{hint}")
            item.user_properties.append(("requirements", ",".join(ids)))
            item.user_properties.extend(("obligation", oid) for oid in ids)
        if problems and self.config.option.poet_strict:
            raise pytest.UsageError("poetkb: " + "\n".join(problems))
        for text in problems:
            warnings.warn(PoetObligationWarning(text), stacklevel=1)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Keep each linked test's worst outcome over its phases (xdist sends workers' reports here too)."""
        if self.is_worker:
            return
        ids = [str(value) for name, value in report.user_properties if name == MARKER]
        if not ids:
            return
        self.links[report.nodeid] = list(dict.fromkeys(ids))
        if report.failed and not hasattr(report, "wasxfail"):
            outcome = "failed"
        elif report.skipped:
            outcome = "skipped"
        elif report.when == "call":
            outcome = "passed"
        else:
            return
        previous = self.outcomes.get(report.nodeid)
        if previous == "failed" or (previous == "skipped" and outcome == "passed"):
            return
        self.outcomes[report.nodeid] = outcome

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.is_worker or not self.wants_coverage:
            return
        from poetkb.obligation_coverage import LinkedTest, obligation_coverage, ratchet

        opt = self.config.option
        tests = [LinkedTest(nodeid=nodeid, outcome=outcome, obligations=self.links[nodeid])  # type: ignore[arg-type]
                 for nodeid, outcome in self.outcomes.items()]
        kb = self.open_kb()
        result = obligation_coverage(kb, tests, domains=opt.poet_domain)
        if opt.poet_ratchet:
            result = ratchet(kb, result)
        self.result = result
        if opt.poet_report:
            path: Path = opt.poet_report
            text = result.markdown() if path.suffix.lower() == ".md" else result.model_dump_json(indent=2) + "\n"
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
            except OSError as exc:
                self.failure = f"cannot write --poet-report {path}: {exc.strerror}"
        if opt.poet_min_coverage is not None and result.coverage < opt.poet_min_coverage:
            self.failure = (f"obligation coverage {result.coverage:.1%} ({result.selection}) is below "
                            f"--poet-min-coverage {opt.poet_min_coverage:.1%}")
        if opt.poet_ratchet and result.previous is not None and result.coverage < result.previous:
            self.failure = (f"obligation coverage dropped from {result.previous:.1%} to {result.coverage:.1%} "
                            f"({result.selection}); the ratchet keeps the best value")
        if self.failure and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        r = self.result
        if r is None:
            return
        terminalreporter.write_sep("-", "poetkb obligation coverage")
        terminalreporter.write_line(f"{r.selection}: {len(r.passing)} passing, {len(r.failing)} failing, "
                                    f"{len(r.untested)} untested of {r.total} ({r.coverage:.1%})")
        if self.failure:
            terminalreporter.write_line(f"FAILED: {self.failure}", red=True)
