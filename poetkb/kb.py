"""The façade: ``poetkb.open()`` and the :class:`KnowledgeBase` it returns.

:class:`KnowledgeBase` is the typed data access of :class:`poetkb.knowledge.Knowledge`
(reads as models, named writes) plus one thin entry point per feature (mining,
ranking, plans, gates, load tests). Each entry point imports its feature when it is
called, so opening a knowledge base loads no feature; the features themselves are
functions over a :class:`~poetkb.knowledge.Knowledge` and never import this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import poetkb
from poetkb import store
from poetkb.errors import StoreError
from poetkb.knowledge import SHIPPED, Knowledge
from poetkb.paths import default_db_path

__all__ = ["SHIPPED", "Knowledge", "KnowledgeBase", "build", "open"]


def open(path: str | Path | None = None, *, create: bool = True) -> KnowledgeBase:  # noqa: A001
    """Open a knowledge base.

    With no ``path`` the default location is used (``POET_DB`` or the user data
    directory). A missing file is built from the catalog shipped with poetkb
    (unless ``create=False``), and a file built from the shipped catalog is
    rebuilt when the shipped catalog has changed since (after an upgrade, or an
    edit in a source checkout). Files built from another catalog are left as they are.

    Build files left by a killed build of this file are removed (only those whose
    process is gone). A damaged file raises :class:`StoreError` naming it.
    """
    from poetkb.catalog_files import fingerprint, shipped_catalog_root  # light: poetkb.catalog only to build

    target = default_db_path() if path is None else Path(path).expanduser()
    store.remove_stale_build_files(target)
    if not target.exists():
        if not create:
            raise StoreError(
                f"no knowledge base at {target}", path=target, hint=f"build one with `poet kb build --db {target}`"
            )
        from poetkb.catalog import load_catalog

        store.build(load_catalog(shipped_catalog_root()), target, source=SHIPPED)
        return KnowledgeBase(target)._fit_derived()
    kb = KnowledgeBase(target)
    meta = kb.meta()
    if meta.get("catalog_source") == SHIPPED:
        root = shipped_catalog_root()
        outdated = meta.get("source_paths") != store.SOURCE_PATHS_RELATIVE  # source_file relative to the cwd
        if outdated or meta.get("catalog_fingerprint") != fingerprint(root):
            from poetkb.catalog import load_catalog

            kb.close()
            store.build(load_catalog(root), target, source=SHIPPED)
            kb = KnowledgeBase(target)._fit_derived()
    return kb


def build(path: str | Path, source: str | Path | None = None, *, force: bool = False) -> KnowledgeBase:
    """Build the knowledge base file at ``path`` from a catalog directory (default: the shipped catalog), open.

    The one way a file is built, for the library and ``poet kb build`` alike: the target is checked before the
    catalog is read (a file that is not poetkb's is refused), the new file is swapped in atomically with its
    state carried over, and the ranking model is fitted so the first query is as fast as the rest.
    """
    from poetkb.catalog import load_catalog
    from poetkb.catalog_files import shipped_catalog_root

    target = Path(path).expanduser()
    store.writable_target(target, force=force)  # refuse before reading the catalog
    root = Path(source) if source is not None else shipped_catalog_root()
    store.build(load_catalog(root), target, source=SHIPPED if source is None else str(root.resolve()), force=force)
    return KnowledgeBase(target)._fit_derived()


class KnowledgeBase(Knowledge):
    """A knowledge base file: the typed data access of :class:`~poetkb.knowledge.Knowledge` and the features."""

    # -- building ----------------------------------------------------------------------------------
    def build(self, source: str | Path | None = None, *, force: bool = False) -> poetkb.KBStats:
        """Rebuild this knowledge base from a catalog directory (default: the shipped catalog).

        The new file is swapped in atomically; state (gate runs, baselines, review
        decisions, mining cache) is carried over. ``force`` only matters for a damaged
        file (see :func:`poetkb.store.build`).
        """
        from poetkb.catalog import load_catalog, shipped_catalog_root

        root = Path(source) if source is not None else shipped_catalog_root()
        catalog = load_catalog(root)
        self.close()
        store.build(catalog, self.path, source=SHIPPED if source is None else str(root.resolve()), force=force)
        self.reopen()
        self._fit_derived()
        return self.stats()

    def _fit_derived(self) -> KnowledgeBase:
        """Fit what ranking derives from the content (stored in the file), so no query pays for it after a build."""
        from poetkb.rank.model_store import prepare

        prepare(self)
        return self

    # -- features: each section is a thin entry point into its own module ------------------------
    # --- learn (mining legacy test suites) ---
    def learn(self, paths: Iterable[str | Path], *, source: str | None = None, out_dir: str | Path | None = None,
              workers: int | None = None, progress: bool = False, store: bool = True,
              write_file: bool = True, mapped_only: bool = False, role: Literal["own", "reference"] = "own",
              repository: str | None = None) -> poetkb.LearnReport:
        """Mine test suites into learned patterns mapped to obligations (see poetkb.learn.runner).

        Static only (nothing is imported or run). Writes ``<out_dir>/<source>.json``
        (default ``./knowledge/learned``) and stores the patterns in this knowledge
        base, both atomically; re-runs parse only changed files. ``role`` is ``own``
        (the user's suite: its tests are coverage) or ``reference`` (a public suite: examples).
        """
        from poetkb.learn.runner import learn

        return learn(self, list(paths), source=source, out_dir=out_dir, workers=workers, progress=progress,
                     store=store, write_file=write_file, mapped_only=mapped_only, role=role,
                     repository=repository)

    def learn_review(self, *, threshold: float | None = None, source: str | None = None,
                     decided: bool = False) -> list[poetkb.ReviewItem]:
        """Learned mappings below ``threshold`` confidence (default 0.7), for a person to accept or reject."""
        from poetkb.learn.mapping import REVIEW_THRESHOLD
        from poetkb.learn.review import review_items

        return review_items(self, threshold=REVIEW_THRESHOLD if threshold is None else threshold, source=source,
                            decided=decided)

    def learn_decide(self, pairs: Iterable[tuple[str, str]], decision: Literal["accept", "reject"], *,
                     note: str = "") -> list[poetkb.ReviewItem]:
        """Accept or reject (pattern id, obligation id) mappings; stored, applied now and by later runs."""
        from poetkb.learn.review import decide

        return decide(self, pairs, decision, note=note)

    # --- rank and plans ---
    def rank(self, change: str | None = None, *, diff: str | Path | None = None, component: str | None = None,
             top: int = 10, git: poetkb.GitChange | None = None) -> poetkb.Ranking:
        """The obligations a change (text, unified diff, or ``git``: a GitChange) puts at risk, best first."""
        from poetkb.rank import rank

        return rank(self, change, diff=diff, component=component, top=top, git=git)

    def rank_git(self, repo: str | Path = ".", range_: str | None = None, *, change: str | None = None,
                 component: str | None = None, top: int = 10) -> poetkb.Ranking:
        """Rank the change in a git repository (see poetkb.rank.gitchange for the default range)."""
        from poetkb.rank.gitchange import read_git

        return self.rank(change, component=component, top=top, git=read_git(repo, range_))

    def test_plan(self, change: str | None = None, *, diff: str | Path | None = None, component: str | None = None,
                  top: int = 5, git: poetkb.GitChange | None = None) -> poetkb.TestPlan:
        """A release checklist for the top obligations a change puts at risk (see poetkb.plans.testplan)."""
        from poetkb.plans.testplan import build_test_plan

        return build_test_plan(self, change, diff=diff, component=component, top=top, git=git)

    def runbook(self, *, obligations: Iterable[str] | None = None, change: str | None = None,
                diff: str | Path | None = None, component: str | None = None, top: int = 5) -> poetkb.Runbook:
        """The observability runbook for named obligations or for a change (see poetkb.plans.runbook)."""
        from poetkb.plans.runbook import build_runbook

        return build_runbook(self, obligations=obligations, change=change, diff=diff, component=component, top=top)

    # --- gates ---
    def gate(self, *, all: bool = False, obligations: Sequence[str] = (),  # noqa: A002 - the CLI's --all
             domains: Sequence[str] = (), edge: poetkb.Edge | None = None, evidence: Sequence[str | Path] = (),
             capture: bool = False, record: bool = True, write_reports: bool = True,
             on_edge: Callable[[Any], None] | None = None, transport: Any = None) -> poetkb.GateReport:
        """Run a release gate and return its :class:`~poetkb.gates.schema.GateReport`.

        ``all``, ``obligations`` and ``domains`` select what to judge; ``edge`` (:class:`poetkb.Edge`) describes
        the edge under test (default: the running demo edge), as ``poet gate run``'s options do; ``evidence``
        adds files from other tools; ``capture`` records loopback packets; ``on_edge`` is called with the edge
        poetkb brought up for ``edge.config``; ``transport`` injects an httpx transport for tests. The run and
        its verdicts are recorded in this knowledge base (tables gate_runs, gate_results) unless ``record`` is
        false, and its reports written unless ``write_reports`` is false.
        """
        from poetkb.gates.runner import gate

        return gate(self, all=all, obligations=obligations, domains=domains, edge=edge,
                    evidence=[Path(p) for p in evidence], capture=capture, record=record,
                    write_reports=write_reports, on_edge=on_edge, transport=transport)

    def gate_evaluate(self, evidence: list[str | Path] | str | Path, *, selection: poetkb.Selection | None = None,
                      record: bool = True) -> poetkb.GateReport:
        """Judge stored evidence without traffic: a gate's evidence directory or files from other tools."""
        from poetkb.gates.runner import evaluate_evidence

        paths = [evidence] if isinstance(evidence, str | Path) else list(evidence)
        return evaluate_evidence(self, [Path(p) for p in paths], selection, record=record)

    def gate_history(self, *, limit: int = 20) -> list[poetkb.GateRun]:
        """The latest recorded gate runs as models, newest first (:meth:`gate_runs` gives the raw rows)."""
        from poetkb.gates.schema import GateRun

        return [GateRun.from_row(row) for row in self.gate_runs(limit=limit)]

    # --- load plans and interpretation ---
    def load_plan(self, profile: poetkb.ServiceProfile | str | Path | dict[str, Any]) -> poetkb.LoadPlan:
        """The load-test plan (steady, burst, soak, stress) for a service profile (see poetkb.load.plan)."""
        from poetkb.load.plan import build_plan
        from poetkb.load.profile import as_profile

        return build_plan(as_profile(profile))

    def interpret(self, profile: poetkb.ServiceProfile | str | Path,
                  metrics: poetkb.MetricsSummary | str | Path | list[str | Path], *,
                  baseline: str | Path | poetkb.MetricsSummary | poetkb.Baseline | None = None,
                  scenario: str | None = None) -> poetkb.Interpretation:
        """Judge load-test results against the profile's SLOs (see poetkb.load.interpret).

        ``baseline``: a metrics file or summary to compare with, or "auto" for the stored baseline of the
        service and scenario (a passing run then becomes the new baseline).
        """
        from poetkb.load.interpret import interpret_files

        return interpret_files(self, profile, metrics, scenario=scenario, baseline=baseline)

    def load_baseline(self, service: str, scenario: str) -> poetkb.Baseline | None:
        """The last passing load-test result of a service and scenario, if one was recorded."""
        from poetkb.load.baselines import get_baseline

        return get_baseline(self, service, scenario)

    def load_baselines(self, service: str | None = None) -> list[poetkb.Baseline]:
        """Every recorded load-test baseline (of one service)."""
        from poetkb.load.baselines import list_baselines

        return list_baselines(self, service)

    def record_baseline(self, service: str, scenario: str, summary: poetkb.MetricsSummary, *,
                        profile_fingerprint: str = "") -> poetkb.Baseline:
        """Keep ``summary`` as the baseline of a service and scenario, replacing the previous one."""
        from poetkb.load.baselines import record_baseline

        return record_baseline(self, service, scenario, summary, profile_fingerprint=profile_fingerprint)
