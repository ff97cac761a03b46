"""The package's layering, read from its imports: a bottom that imports nothing above it, the data access
(``poetkb.knowledge``) above it importing no feature, features that never import the façade or the CLI (not even
for annotations), SQL only in the store and the data access, a library that never imports click, and no import
cycles.

Imports are read from the source with ``ast`` (module level and inside functions alike; those under
``if TYPE_CHECKING:`` are annotations only and do not count as cycles, but a feature may not name the façade even
there). docs/architecture.md states the same rules.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "poetkb"

#: The bottom layer: models, errors, the readers of untrusted files, the store and the catalog, and the
#: vocabularies the catalog is validated against (check kinds with their parameters, claims, probes and
#: references, the demo's fault model). It imports nothing above itself.
BOTTOM = (
    "poetkb._lazy", "poetkb._version", "poetkb.types", "poetkb.nodeid", "poetkb.errors", "poetkb.safefile",
    "poetkb.paths", "poetkb.text", "poetkb.models", "poetkb.yamlfile", "poetkb.legacy", "poetkb.store", "poetkb.dbfile", "poetkb.catalog_files",
    "poetkb.catalog", "poetkb.edgeconfig", "poetkb.gates.params", "poetkb.gates.kinds", "poetkb.gates.kind_table",
    "poetkb.demo.state",
    "poetkb.verify.probes", "poetkb.verify.claims", "poetkb.verify.references",
)
#: The data access: the knowledge base as typed reads and named writes, with its caches. Above the bottom, below
#: every feature; it imports no feature (the façade adds the feature entry points on top of it).
DATA = ("poetkb.knowledge",)
#: The top: the façade (``poetkb.open()``, its object, the package's exports) and the front ends that use it:
#: the command line, the pytest plugin, the MCP server, the evidence viewer, the docs-example generator.
TOP = ("poetkb", "poetkb.__main__", "poetkb.kb", "poetkb.cli", "poetkb.pytest_plugin", "poetkb.mcp_server",
       "poetkb.view", "poetkb.plans.examples")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _in(name: str, group: tuple[str, ...]) -> bool:
    return any(name == g or name.startswith(g + ".") for g in group if g != "poetkb") or name == "poetkb" and \
        "poetkb" in group


def _target(name: str) -> str:
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _imports(module: str, *, annotations: bool = False) -> Iterator[tuple[str, int]]:
    """(imported poetkb module, line) for every runtime import in ``module``; names from a package resolve to
    the submodule when there is one. With ``annotations``, imports under ``if TYPE_CHECKING:`` count too."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: list[tuple[str, int]] = []

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if "TYPE_CHECKING" in ast.unparse(node.test) and not annotations:
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.extend((_target(a.name), node.lineno) for a in node.names if a.name.split(".")[0] == "poetkb")

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parent, *([base] if base else [])])
            if base.split(".")[0] != "poetkb":
                return
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.append((full if full in MODULES else _target(base), node.lineno))

    Visitor().visit(tree)
    yield from found


def _external(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_bottom_imports_nothing_above_it() -> None:
    """Models, store, catalog and the declared vocabularies import only each other."""
    wrong = [f"{m} -> {t} (line {line})" for m in MODULES if _in(m, BOTTOM)
             for t, line in _imports(m) if t != m and not _in(t, BOTTOM)]
    assert wrong == []


def test_the_data_access_imports_only_the_bottom() -> None:
    """poetkb.knowledge (reads, named writes, caches) stands on the bottom alone: no feature, no façade."""
    wrong = [f"{m} -> {t} (line {line})" for m in MODULES if _in(m, DATA)
             for t, line in _imports(m) if t != m and not _in(t, BOTTOM)]
    assert wrong == []


def test_features_never_import_the_facade_or_the_cli() -> None:
    """Features take a knowledge base (a poetkb.knowledge.Knowledge) as an argument; they never import poetkb.kb,
    the package or the CLI, not even for annotations."""
    wrong = [f"{m} -> {t} (line {line})" for m in MODULES if not _in(m, TOP)
             for t, line in _imports(m, annotations=True) if _in(t, TOP)]
    assert wrong == []


def _top_level_imports(module: str) -> set[str]:
    """poetkb modules imported when ``module`` is imported (module level, outside functions and TYPE_CHECKING)."""
    found = set()
    for node in ast.parse(MODULES[module].read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            found |= {_target(a.name) for a in node.names if a.name.split(".")[0] == "poetkb"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "poetkb" and not node.level:
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else _target(node.module or "")
                      for a in node.names}
    return found


def test_the_facade_loads_features_only_when_a_feature_is_called() -> None:
    """Opening a knowledge base loads no feature: the façade imports each inside its entry point."""
    for module in ("poetkb.kb", "poetkb.knowledge"):
        features = [t for t in _top_level_imports(module) if not _in(t, (*BOTTOM, *DATA, *TOP))]
        assert features == [], module
    assert "poetkb.knowledge" in _top_level_imports("poetkb.kb")


#: SQL against the knowledge base is written only in the store and the data access. The demo service's store,
#: the service tier's checks and the chaos database steps speak PostgreSQL to the demo's own database;
#: rank.migration reads the SQL of a user's migrations as text. None of those touch the knowledge base.
SQL_HOMES = ("poetkb.store", "poetkb.knowledge", "poetkb.dbfile")
OTHER_DATABASES = ("poetkb.chaos.database", "poetkb.demo.service", "poetkb.gates.checks.service",
                   "poetkb.gates.checks.service_migrations", "poetkb.gates.checks.service_outbox",
                   "poetkb.rank.migration")
SQL = re.compile(r"^\s*(select\s.+\sfrom\s|insert\s+(or\s+\w+\s+)?into\s|delete\s+from\s|update\s+\S+\s+set\s|"
                 r"create\s+(table|index|virtual)\s|pragma\s)", re.I | re.S)
#: what a feature may not call on a knowledge base's connection (``kb.db.execute(...)`` and the like)
CONNECTION_CALLS = {"execute", "executemany", "query", "table", "conn", "atomic", "table_names", "create_table"}


def _sql_strings(module: str) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        text = node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else "".join(
            v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)
        ) if isinstance(node, ast.JoinedStr) else None
        if text is not None and SQL.match(text):
            yield node.lineno, text.strip().splitlines()[0][:50]


def _connection_uses(module: str) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Attribute) and node.attr in CONNECTION_CALLS and isinstance(node.value, ast.Attribute)
                and node.value.attr == "db"):
            yield node.lineno, ast.unparse(node)


def test_sql_lives_only_in_the_store_and_the_data_access() -> None:
    """No feature, front end or façade writes SQL or reaches into a knowledge base's connection: each read and
    write it needs is a named method of poetkb.knowledge (or a function of poetkb.store)."""
    allowed = (*SQL_HOMES, *OTHER_DATABASES)
    wrong = [f"{m} line {line}: {text}" for m in MODULES if not _in(m, allowed) for line, text in _sql_strings(m)]
    wrong += [f"{m} line {line}: {text}" for m in MODULES if not _in(m, SQL_HOMES)
              for line, text in _connection_uses(m)]
    assert wrong == []


def test_no_feature_resets_a_cache_of_the_knowledge_base() -> None:
    """Caches live with the knowledge base and are dropped by its writes; no module pokes at its private state."""
    wrong = [f"{m} line {node.lineno}" for m in MODULES if not _in(m, (*SQL_HOMES, *DATA))
             for node in ast.walk(ast.parse(MODULES[m].read_text(encoding="utf-8")))
             if isinstance(node, ast.Attribute) and node.attr in ("_graph", "_memo")
             and not (isinstance(node.value, ast.Name) and node.value.id == "self")]
    assert wrong == []


def test_the_library_never_imports_click() -> None:
    """Only poetkb.cli imports click: tools that import poetkb as a library never load the CLI framework."""
    assert [m for m in MODULES if not _in(m, ("poetkb.cli",)) and "click" in _external(m)] == []


def test_no_import_cycles() -> None:
    """No module reaches itself through runtime imports (a circle makes every layer above it fragile)."""
    graph = {m: {t for t, _ in _imports(m) if t != m and t in MODULES} for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    assert cycles == []


def test_the_rules_see_real_imports() -> None:
    """The import reader finds imports that exist (so the rules above cannot pass by reading nothing)."""
    assert ("poetkb.store", 17) in set(_imports("poetkb.kb")) or any(t == "poetkb.store" for t, _ in
                                                                    _imports("poetkb.kb"))
    assert any(t == "poetkb.gates.runner" for t, _ in _imports("poetkb.kb"))
    assert any(t == "poetkb.gates.kinds" for t, _ in _imports("poetkb.catalog"))
    assert any(t == "poetkb.knowledge" for t, _ in _imports("poetkb.rank.model_store", annotations=True))
    assert not any(t == "poetkb.knowledge" for t, _ in _imports("poetkb.rank.model_store"))
    assert any("rank_cache" in text for _, text in _sql_strings("poetkb.knowledge"))
    assert list(_connection_uses("poetkb.knowledge"))
    assert "click" in _external("poetkb.cli.common")
