"""The public library API: the façade, import cost, and typed queries over the knowledge base."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import poetkb
from poetkb.errors import PoetError, UnknownEntity, UnknownObligation

HEAVY = ("sklearn", "libcst", "networkx", "httpx", "jinja2", "click", "scipy", "numpy")


def test_every_public_name_is_exported_and_importable() -> None:
    """Each name in __all__ resolves, and every public model and error is in __all__."""
    for name in poetkb.__all__:
        assert getattr(poetkb, name) is not None, name
    models = importlib.import_module("poetkb.models")
    errors = importlib.import_module("poetkb.errors")
    for module in (models, errors):
        for name, value in vars(module).items():
            if isinstance(value, type) and value.__module__ == module.__name__ and not name.startswith("_"):
                if name in {"PoetModel"}:
                    continue
                assert name in poetkb.__all__, f"{module.__name__}.{name} is public but not exported"
    assert poetkb.__all__ == sorted(poetkb.__all__)


def test_type_hints_resolve_on_every_public_method() -> None:
    """typing.get_type_hints works on every public function and method poetkb exports (annotations name real,
    importable types: the façade names feature types through the package's lazy exports)."""
    import inspect
    import typing

    failed = []
    for name in poetkb.__all__:
        value = getattr(poetkb, name)
        members = [(name, value)] if inspect.isfunction(value) else [
            (f"{name}.{attr}", member) for klass in inspect.getmro(value) if klass.__module__.startswith("poetkb")
            for attr, member in vars(klass).items()
            if not attr.startswith("_") and (inspect.isfunction(member) or isinstance(member, property))
        ] if inspect.isclass(value) else []
        for label, member in members:
            function = member.fget if isinstance(member, property) else member
            # graph() -> networkx.MultiDiGraph and db -> sqlite_utils.Database: those libraries load on first use
            if label.endswith((".graph", ".db")) or not getattr(function, "__module__", "").startswith("poetkb"):
                continue
            try:
                typing.get_type_hints(function)
            except (NameError, TypeError, AttributeError) as exc:
                failed.append(f"{label}: {exc}")
    assert failed == []


def test_import_loads_no_heavy_library() -> None:
    """`import poetkb` loads none of scikit-learn, libcst, networkx, httpx, jinja2 or click."""
    code = "import sys, poetkb; print(','.join(m for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(out.strip().split(","))
    assert not [m for m in HEAVY if m in loaded]


def test_errors_subclass_the_builtins_callers_catch() -> None:
    """Errors derive from PoetError and from the built-in a caller would naturally catch."""
    assert issubclass(poetkb.UnknownObligation, LookupError)
    assert issubclass(poetkb.CatalogError, ValueError)
    assert issubclass(poetkb.StoreError, OSError)
    assert issubclass(poetkb.SchemaVersionError, poetkb.StoreError)
    for name in poetkb.__all__:
        value = getattr(poetkb, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, PoetError), name


def test_open_with_no_path_builds_the_embedded_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no path and no file yet, open() builds the default knowledge base from the shipped catalog."""
    target = tmp_path / "fresh" / "kb.sqlite"
    monkeypatch.setenv("POET_DB", str(target))
    with poetkb.open() as kb:
        assert kb.path == target
        assert kb.meta()["catalog_source"] == "shipped"
        assert len(kb.obligations()) >= 50


def test_default_location_without_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without POET_DB the knowledge base lives in the user data directory."""
    monkeypatch.delenv("POET_DB")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    from poetkb.paths import default_db_path

    assert default_db_path() == tmp_path / "data" / "poetkb" / "kb.sqlite"


def test_filters_return_models(kb: poetkb.KnowledgeBase) -> None:
    """obligations() filters by domain, risk, component and tag, and returns sorted Obligation models."""
    cache = kb.obligations(domain="cache")
    assert cache and all(isinstance(o, poetkb.Obligation) and o.domain == "cache" for o in cache)
    assert [o.id for o in cache] == sorted(o.id for o in cache)
    assert all(o.risk == "high" for o in kb.obligations(risk="high"))
    assert all("haproxy" in o.applies_to for o in kb.obligations(component="haproxy"))
    assert {o.id for o in kb.obligations(tag="edge")} >= {"cache.vary.honored", "routing.backend.selection"}


def test_unknown_names_suggest_close_ids(kb: poetkb.KnowledgeBase) -> None:
    """Unknown obligation ids and components raise LookupErrors that suggest what exists."""
    with pytest.raises(UnknownObligation) as caught:
        kb.obligation("cache.vary.honord")
    assert "cache.vary.honored" in str(caught.value)
    with pytest.raises(UnknownEntity, match="unknown component 'ngnix'"):
        kb.obligations(component="ngnix")


def test_failure_modes_recipes_and_related(kb: poetkb.KnowledgeBase) -> None:
    """Failure modes and recipes are reachable from an obligation, and related() names edge kinds."""
    modes = kb.failure_modes(obligation="cache.vary.honored")
    assert "cache.variant_mixup" in {m.id for m in modes}
    assert kb.recipes(obligation="cache.vary.honored")
    neighbours = kb.related("cache.vary.honored")
    kinds = {(n.kind, n.edge) for n in neighbours}
    assert ("failure_mode", "guards_against") in kinds
    assert ("component", "applies_to") in kinds
    two_hops = kb.related("cache.vary.honored", depth=2, edge_kinds=["guards_against"])
    assert all(n.edge == "guards_against" for n in two_hops)


def test_search_ranks_matching_obligations(kb: poetkb.KnowledgeBase) -> None:
    """Full-text search finds obligations by their words, and tolerates punctuation in the query."""
    hits = [o.id for o in kb.search("Vary header variants (Accept-Language)")]
    assert "cache.vary.honored" in hits[:3]
    assert kb.search("   ") == []
    assert kb.search('"unbalanced quote AND OR') is not None


def test_graph_view_is_built_lazily(kb: poetkb.KnowledgeBase) -> None:
    """graph() returns a networkx view with kind-labelled nodes and edges."""
    graph = kb.graph()
    assert graph.nodes["obligation:cache.vary.honored"]["kind"] == "obligation"
    kinds = {k for _, _, k in graph.out_edges("obligation:cache.vary.honored", keys=True)}
    assert "guards_against" in kinds


def test_meta_source_locations_and_gate_history_are_models(kb: poetkb.KnowledgeBase) -> None:
    """meta, where an obligation is defined, and the gate history come back as models too."""
    info = kb.info()
    assert isinstance(info, poetkb.KBMeta)
    assert info.schema_version == int(kb.meta()["schema_version"]) and info.catalog_fingerprint
    where = kb.source_location("cache.vary.honored")
    assert isinstance(where, poetkb.SourceLocation)
    assert (where.file, where.line) == kb.source_of("cache.vary.honored") and where.file.endswith(".yaml")
    assert isinstance(kb.gate_history(), list)
    assert all(isinstance(run, poetkb.GateRun) for run in kb.gate_history())
