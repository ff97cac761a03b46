"""The knowledge base: the one object callers use to read and build poetkb knowledge.

``poetkb.open()`` returns a :class:`KnowledgeBase` over an SQLite file. Reads
return pydantic models; graph queries build a networkx view on demand.
Features that act on the knowledge base (mining, ranking, gates, plans) live in
their own modules; the methods here are thin entry points to them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from poetkb import store
from poetkb.errors import StoreError, UnknownEntity, UnknownObligation
from poetkb.models import (
    Component,
    FailureMode,
    KBStats,
    LearnedPattern,
    MappingRule,
    Obligation,
    Recipe,
    RelatedNode,
)
from poetkb.paths import default_db_path

if TYPE_CHECKING:
    import networkx
    import sqlite_utils

    from poetkb.gates.models import GateReport
    from poetkb.learn.models import LearnReport
    from poetkb.learn.models import ReviewItem as LearnReviewItem
    from poetkb.load.baselines import Baseline
    from poetkb.load.interpret import Interpretation
    from poetkb.load.metrics import MetricsSummary
    from poetkb.load.plan import LoadPlan
    from poetkb.load.profile import ServiceProfile
    from poetkb.plans import Runbook, TestPlan
    from poetkb.rank import Ranking

SHIPPED = "shipped"


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


class KnowledgeBase:
    """Typed access to one knowledge base file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.db: sqlite_utils.Database = store.connect(self.path)
        store.ensure_schema(self.db, self.path)
        self._graph: networkx.MultiDiGraph | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        self.db.conn.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<KnowledgeBase {self.path}>"

    def meta(self) -> dict[str, str]:
        return store.read_meta(self.db)

    def build(self, source: str | Path | None = None, *, force: bool = False) -> KBStats:
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
        self.db = store.connect(self.path)
        self._graph = None
        self._fit_derived()
        return self.stats()

    def _fit_derived(self) -> KnowledgeBase:
        """Fit what ranking derives from the content (stored in the file), so no query pays for it after a build."""
        from poetkb.rank.cache import prepare

        prepare(self)
        return self

    # -- catalog reads ---------------------------------------------------------------------------
    def obligations(
        self,
        *,
        domain: str | None = None,
        risk: str | None = None,
        component: str | None = None,
        tag: str | None = None,
        ids: Iterable[str] | None = None,
    ) -> list[Obligation]:
        """Obligations, sorted by id, filtered by domain, risk, component, tag or a set of ids."""
        where, args = [], []
        if domain:
            where.append("domain = ?")
            args.append(domain)
        if risk:
            where.append("risk = ?")
            args.append(risk)
        if component:
            self.component(component)
            where.append("exists (select 1 from json_each(applies_to) where value = ?)")
            args.append(component)
        if tag:
            where.append("exists (select 1 from json_each(tags) where value = ?)")
            args.append(tag)
        if ids is not None:
            wanted = list(ids)
            for oid in wanted:
                self.obligation(oid)
            where.append(f"id in ({', '.join('?' * len(wanted))})")
            args.extend(wanted)
        rows = self.db.table("obligations").rows_where(" and ".join(where) or None, args, order_by="id")
        return [store.decode(r, Obligation) for r in rows]

    def obligation(self, obligation_id: str) -> Obligation:
        """One obligation by id; :class:`UnknownObligation` (a LookupError) with suggestions otherwise."""
        row = self._row("obligations", obligation_id)
        if row is None:
            ids = [r["id"] for r in self.db.query("select id from obligations")]
            raise UnknownObligation(obligation_id, suggestions=difflib.get_close_matches(obligation_id, ids, n=3))
        return store.decode(row, Obligation)

    def source_of(self, obligation_id: str) -> tuple[str, int | None]:
        """The catalog file (an absolute path) and line an obligation was defined at.

        The store keeps the file relative to the catalog root; it is resolved here
        against the root this knowledge base was built from, so it is right whatever
        the current directory is.
        """
        row = self._row("obligations", obligation_id)
        if row is None:
            raise UnknownObligation(obligation_id)
        file = row["source_file"]
        root = self.catalog_root()
        if root is not None and file and not Path(file).is_absolute():
            file = str(root / file)
        return file, row["source_line"]

    def catalog_root(self) -> Path | None:
        """The catalog directory this knowledge base was built from (None for files that did not record it)."""
        meta = self.meta()
        if meta.get("source_paths") != store.SOURCE_PATHS_RELATIVE:
            return None
        source = meta.get("catalog_source", "")
        if source == SHIPPED:
            from poetkb.catalog import shipped_catalog_root

            return shipped_catalog_root()
        return Path(source) if source else None

    def failure_modes(self, *, obligation: str | None = None, component: str | None = None) -> list[FailureMode]:
        """Failure modes, optionally those an obligation guards against or that affect a component."""
        modes = [store.decode(r, FailureMode) for r in self.db.table("failure_modes").rows_where(order_by="id")]
        if obligation:
            guarded = {e["dst"].split(":", 1)[1] for e in self.db.table("edges").rows_where(
                "src = ? and kind = 'guards_against'", [f"obligation:{self.obligation(obligation).id}"])}
            modes = [m for m in modes if m.id in guarded]
        if component:
            self.component(component)
            modes = [m for m in modes if component in m.components or not m.components]
        return modes

    def failure_mode(self, failure_mode_id: str) -> FailureMode:
        row = self._row("failure_modes", failure_mode_id)
        if row is None:
            raise UnknownEntity("failure mode", failure_mode_id, known=self._ids("failure_modes"))
        return store.decode(row, FailureMode)

    def recipes(self, *, obligation: str | None = None, component: str | None = None) -> list[Recipe]:
        """Recipes, optionally those exercising an obligation or usable on a component."""
        recipes = [store.decode(r, Recipe) for r in self.db.table("recipes").rows_where(order_by="id")]
        if obligation:
            linked = {e["dst"].split(":", 1)[1] for e in self.db.table("edges").rows_where(
                "src = ? and kind = 'exercised_by'", [f"obligation:{self.obligation(obligation).id}"])}
            recipes = [r for r in recipes if r.id in linked]
        if component:
            self.component(component)
            recipes = [r for r in recipes if not r.components or component in r.components]
        return recipes

    def recipe(self, recipe_id: str) -> Recipe:
        row = self._row("recipes", recipe_id)
        if row is None:
            raise UnknownEntity("recipe", recipe_id, known=self._ids("recipes"))
        return store.decode(row, Recipe)

    def components(self) -> list[Component]:
        return [store.decode(r, Component) for r in self.db.table("components").rows_where(order_by="id")]

    def component(self, component_id: str) -> Component:
        row = self._row("components", component_id)
        if row is None:
            raise UnknownEntity("component", component_id, known=self._ids("components"))
        return store.decode(row, Component)

    def rules(self, *, kind: str | None = None, component: str | None = None) -> list[MappingRule]:
        where, args = [], []
        if kind:
            where.append("kind = ?")
            args.append(kind)
        if component:
            where.append("(component = ? or component is null)")
            args.append(component)
        rows = self.db.table("rules").rows_where(" and ".join(where) or None, args, order_by="id")
        return [store.decode(r, MappingRule) for r in rows]

    def patterns(self, *, obligation: str | None = None, source: str | None = None) -> list[LearnedPattern]:
        """Learned test patterns, optionally those mapped to an obligation or mined from one source."""
        where, args = [], []
        if source:
            where.append("source = ?")
            args.append(source)
        if obligation:
            where.append("id in (select substr(src, 9) from edges where dst = ? and kind = 'learned_from')")
            args.append(f"obligation:{obligation}")
        rows = self.db.table("patterns").rows_where(" and ".join(where) or None, args, order_by="id")
        return [store.decode(r, LearnedPattern) for r in rows]

    # -- search and graph ------------------------------------------------------------------------
    def search(self, text: str, *, limit: int = 20) -> list[Obligation]:
        """Obligations whose title, statement, rationale or keywords match ``text`` (FTS5, best first)."""
        words = re.findall(r"\w+", text.lower())
        if not words:
            return []
        query = " OR ".join(f'"{w}"' for w in dict.fromkeys(words))
        rows = self.db.query(
            "select obligations.* from obligations join obligations_fts "
            "on obligations.rowid = obligations_fts.rowid "
            "where obligations_fts match ? order by bm25(obligations_fts), obligations.id limit ?",
            [query, limit],
        )
        return [store.decode(r, Obligation) for r in rows]

    def graph(self) -> networkx.MultiDiGraph:
        """The knowledge graph as a networkx MultiDiGraph (built once per open knowledge base)."""
        if self._graph is None:
            import networkx as nx

            graph = nx.MultiDiGraph()
            for row in self.db.table("nodes").rows:
                graph.add_node(row["id"], kind=row["kind"], label=row["label"])
            for row in self.db.table("edges").rows:
                graph.add_edge(row["src"], row["dst"], key=row["kind"], kind=row["kind"], weight=row["weight"])
            self._graph = graph
        return self._graph

    def node_id(self, name: str) -> str:
        """Resolve an obligation id or a ``kind:id`` node name to a graph node id."""
        graph = self.graph()
        if name in graph:
            return name
        if f"obligation:{name}" in graph:
            return f"obligation:{name}"
        matches = [n for n in graph if n.split(":", 1)[1] == name]
        if len(matches) == 1:
            return matches[0]
        if not matches and "." in name:
            self.obligation(name)  # raises UnknownObligation with suggestions
        raise UnknownEntity("node", name, known=matches)

    def related(self, name: str, *, depth: int = 1, edge_kinds: Iterable[str] | None = None) -> list[RelatedNode]:
        """The graph neighbourhood of a node up to ``depth`` hops, each neighbour with the edge that reached it."""
        graph = self.graph()
        start = self.node_id(name)
        kinds = set(edge_kinds) if edge_kinds else None
        seen = {start: 0}
        frontier = [start]
        found: list[RelatedNode] = []
        for distance in range(1, depth + 1):
            nxt: list[str] = []
            for current in frontier:
                links: list[tuple[str, str, Literal["out", "in"]]] = [
                    (v, k, "out") for _, v, k in graph.out_edges(current, keys=True)
                ]
                links += [(u, k, "in") for u, _, k in graph.in_edges(current, keys=True)]
                for other, kind, direction in sorted(links):
                    if kinds and kind not in kinds or other in seen:
                        continue
                    seen[other] = distance
                    nxt.append(other)
                    data = graph.nodes[other]
                    found.append(RelatedNode(id=other, kind=data.get("kind", "?"), label=data.get("label", other),
                                             edge=kind, direction=direction, distance=distance))
            frontier = nxt
        patterns = [n.id.split(":", 1)[1] for n in found if n.kind == "pattern"]
        roles: dict[str, str] = {}
        for start_at in range(0, len(patterns), 500):
            chunk = patterns[start_at:start_at + 500]
            roles.update(self.db.execute(
                f"select id, role from patterns where id in ({', '.join('?' * len(chunk))})", chunk).fetchall())
        return [n.model_copy(update={"role": roles.get(n.id.split(":", 1)[1], "own")}) if n.kind == "pattern" else n
                for n in found]

    def stats(self) -> KBStats:
        meta = self.meta()
        tables = ["obligations", "failure_modes", "recipes", "components", "rules", "patterns", "nodes", "edges"]
        counts = {t: self.db.table(t).count for t in tables}
        counts.update({f"edges.{r['kind']}": r["n"] for r in self.db.query(
            "select kind, count(*) as n from edges group by kind order by kind")})
        return KBStats(
            path=str(self.path),
            schema_version=int(meta.get("schema_version", 0)),
            poetkb_version=meta.get("poetkb_version", "?"),
            built_at=meta.get("built_at", "?"),
            catalog_fingerprint=meta.get("catalog_fingerprint", ""),
            counts=counts,
        )

    # -- helpers ---------------------------------------------------------------------------------
    def _row(self, table: str, key: str) -> dict[str, Any] | None:
        rows = list(self.db.table(table).rows_where("id = ?", [key], limit=1))
        return rows[0] if rows else None

    def _ids(self, table: str) -> list[str]:
        return [r["id"] for r in self.db.query(f"select id from [{table}] order by id")]

    # -- features: each section is a thin entry point into its own module ------------------------
    # --- learn (mining legacy test suites) ---
    def learn(self, paths: Iterable[str | Path], *, source: str | None = None, out_dir: str | Path | None = None,
              workers: int | None = None, progress: bool = False, store: bool = True,
              write_file: bool = True, mapped_only: bool = False, role: Literal["own", "reference"] = "own",
              repository: str | None = None) -> LearnReport:
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
                     decided: bool = False) -> list[LearnReviewItem]:
        """Learned mappings below ``threshold`` confidence (default 0.7), for a person to accept or reject."""
        from poetkb.learn.mapping import REVIEW_THRESHOLD
        from poetkb.learn.review import review_items

        return review_items(self, threshold=REVIEW_THRESHOLD if threshold is None else threshold, source=source,
                            decided=decided)

    def learn_decide(self, pairs: Iterable[tuple[str, str]], decision: Literal["accept", "reject"], *,
                     note: str = "") -> list[LearnReviewItem]:
        """Accept or reject (pattern id, obligation id) mappings; stored, applied now and by later runs."""
        from poetkb.learn.review import decide

        return decide(self, pairs, decision, note=note)

    # --- rank and plans ---
    def rank(self, change: str | None = None, *, diff: str | Path | None = None, component: str | None = None,
             top: int = 10, git: Any = None) -> Ranking:
        """The obligations a change (text, unified diff, or ``git``: a GitChange) puts at risk, best first."""
        from poetkb.rank import rank

        return rank(self, change, diff=diff, component=component, top=top, git=git)

    def rank_git(self, repo: str | Path = ".", range_: str | None = None, *, change: str | None = None,
                 component: str | None = None, top: int = 10) -> Ranking:
        """Rank the change in a git repository (see poetkb.rank.gitchange for the default range)."""
        from poetkb.rank.gitchange import read_git

        return self.rank(change, component=component, top=top, git=read_git(repo, range_))

    def test_plan(self, change: str | None = None, *, diff: str | Path | None = None, component: str | None = None,
                  top: int = 5, git: Any = None) -> TestPlan:
        """A release checklist for the top obligations a change puts at risk (see poetkb.plans.testplan)."""
        from poetkb.plans.testplan import build_test_plan

        return build_test_plan(self, change, diff=diff, component=component, top=top, git=git)

    def runbook(self, *, obligations: Iterable[str] | None = None, change: str | None = None,
                diff: str | Path | None = None, component: str | None = None, top: int = 5) -> Runbook:
        """The observability runbook for named obligations or for a change (see poetkb.plans.runbook)."""
        from poetkb.plans.runbook import build_runbook

        return build_runbook(self, obligations=obligations, change=change, diff=diff, component=component, top=top)

    # --- gates ---
    def gate(self, **options: Any) -> GateReport:
        """Run a release gate and return its :class:`~poetkb.gates.models.GateReport`.

        Options (see :func:`poetkb.gates.runner.gate`): ``all``, ``obligations``, ``domains`` select what to
        judge; ``target`` (default: the running demo edge), ``proxy``, ``access_log``, ``upstream_admin``,
        ``metrics_url`` ... describe the edge; ``transport`` injects an httpx transport for tests. The run
        and its verdicts are recorded in this knowledge base (tables gate_runs, gate_results).
        """
        from poetkb.gates.runner import gate

        return gate(self, **options)

    def gate_evaluate(self, evidence: list[str | Path] | str | Path, *, selection: Any = None,
                      record: bool = True) -> GateReport:
        """Judge stored evidence without traffic: a gate's evidence directory or files from other tools."""
        from poetkb.gates.runner import evaluate_evidence

        paths = [evidence] if isinstance(evidence, str | Path) else list(evidence)
        return evaluate_evidence(self, [Path(p) for p in paths], selection, record=record)

    def last_coverage(self, selection: str) -> float | None:
        """The pytest plugin's ratchet: the best obligation coverage stored for ``selection``."""
        return store.last_coverage(self.db, selection)

    def record_coverage(self, selection: str, coverage: float, *, passing: int, failing: int, total: int) -> None:
        """Store ``coverage`` as the ratchet value of ``selection``."""
        store.record_coverage(self.db, selection, coverage, passing=passing, failing=failing, total=total)

    def mutation_equivalents(self, proxy: str) -> dict[str, str]:
        """Mutants recorded as equivalent on ``proxy`` (id -> note); they do not count in a mutation score."""
        return store.mutation_equivalents(self.db, proxy)

    def record_mutation_equivalent(self, mutant_id: str, proxy: str, note: str) -> None:
        """Record that ``mutant_id`` leaves its obligations holding, with the reviewer's note."""
        store.record_mutation_equivalent(self.db, mutant_id, proxy, note)

    def gate_runs(self, *, limit: int = 20) -> list[dict[str, Any]]:
        """The latest recorded gate runs, newest first."""
        from poetkb.gates.history import runs

        return runs(self.db, limit=limit)

    # --- load plans and interpretation ---
    def load_plan(self, profile: ServiceProfile | str | Path | dict[str, Any]) -> LoadPlan:
        """The load-test plan (steady, burst, soak, stress) for a service profile (see poetkb.load.plan)."""
        from poetkb.load.plan import build_plan
        from poetkb.load.profile import as_profile

        return build_plan(as_profile(profile))

    def interpret(self, profile: ServiceProfile | str | Path, metrics: MetricsSummary | str | Path | list[str | Path],
                  *, baseline: str | Path | MetricsSummary | Baseline | None = None,
                  scenario: str | None = None) -> Interpretation:
        """Judge load-test results against the profile's SLOs (see poetkb.load.interpret).

        ``baseline``: a metrics file or summary to compare with, or "auto" for the stored baseline of the
        service and scenario (a passing run then becomes the new baseline).
        """
        from poetkb.load.interpret import interpret_files

        return interpret_files(self, profile, metrics, scenario=scenario, baseline=baseline)

    def load_baseline(self, service: str, scenario: str) -> Baseline | None:
        """The last passing load-test result of a service and scenario, if one was recorded."""
        from poetkb.load.baselines import get_baseline

        return get_baseline(self.db, service, scenario)

    def load_baselines(self, service: str | None = None) -> list[Baseline]:
        """Every recorded load-test baseline (of one service)."""
        from poetkb.load.baselines import list_baselines

        return list_baselines(self.db, service)

    def record_baseline(self, service: str, scenario: str, summary: MetricsSummary, *,
                        profile_fingerprint: str = "") -> Baseline:
        """Keep ``summary`` as the baseline of a service and scenario, replacing the previous one."""
        from poetkb.load.baselines import record_baseline

        return record_baseline(self.db, service, scenario, summary, profile_fingerprint=profile_fingerprint)
