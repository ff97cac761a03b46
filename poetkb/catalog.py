"""Load and validate the reviewable catalog files.

A catalog is a directory with ``obligations/*.yaml``, ``knowledge/packs/*.yaml``
(failure modes, recipes, components), ``mappings/*.yaml`` (rules) and
``knowledge/learned/*.json`` (patterns mined from test suites). Loading
validates every item with the pydantic models, then checks cross references,
and reports *all* problems at once with file, line and field. Only a catalog
with no problems reaches the store.

Catalog files may come from anywhere, so discovery lists every entry whose name
looks like a catalog file and reading goes through :mod:`poetkb.safefile`: an
empty file, a FIFO, a socket, a dangling link or a file over
:data:`~poetkb.safefile.CATALOG_FILE_LIMIT` is a problem naming the file (never
skipped silently, never a hang). YAML aliases are refused and nesting is
limited (:mod:`poetkb.yamlfile`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from poetkb.catalog_files import (
    _digest_file,
    catalog_files,
    read_catalog_bytes,
    shipped_catalog_root,
)
from poetkb.errors import CatalogError, InputError, Problem
from poetkb.legacy import convert_legacy_obligation, is_legacy_obligation
from poetkb.models import Component, FailureMode, LearnedPattern, MappingRule, Obligation, Recipe
from poetkb.yamlfile import LineDict, loads_json, parse_yaml, problems_from_validation

M = TypeVar("M", bound=BaseModel)

_FILE_KEYS = {
    "obligations": {"obligations", "version", "description"},
    "knowledge/packs": {"pack", "description", "failure_modes", "recipes", "components"},
    "mappings": {"component", "description", "rules"},
}


@dataclass(frozen=True)
class SourceRef:
    """Where an item was defined: ``file`` as shown in messages, ``path`` relative to the catalog root.

    The store keeps ``path`` (so it is right whatever directory the build ran in)
    and readers resolve it against the catalog root the knowledge base records.
    """

    file: str
    line: int | None
    path: str = ""


@dataclass
class Catalog:
    """A validated catalog: every item, where it came from, and a fingerprint of the files."""

    root: Path
    obligations: dict[str, Obligation] = field(default_factory=dict)
    failure_modes: dict[str, FailureMode] = field(default_factory=dict)
    recipes: dict[str, Recipe] = field(default_factory=dict)
    components: dict[str, Component] = field(default_factory=dict)
    rules: dict[str, MappingRule] = field(default_factory=dict)
    patterns: dict[str, LearnedPattern] = field(default_factory=dict)
    sources: dict[tuple[str, str], SourceRef] = field(default_factory=dict)
    fingerprint: str = ""


class _Loader:
    """Collects items and problems while reading one catalog directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.catalog = Catalog(root=root)
        self.problems: list[Problem] = []
        self.relative: dict[str, str] = {}  # shown name -> path relative to the catalog root

    def display(self, path: Path) -> str:
        try:
            return os.path.relpath(path, Path.cwd())
        except ValueError:
            return str(path)

    def load(self) -> Catalog:
        if not (self.root / "obligations").is_dir():
            raise InputError(
                f"no obligations/ directory in {self.root}",
                hint="point --from at a catalog directory holding obligations/, knowledge/ and mappings/",
            )
        digest = hashlib.sha256()
        for section, path in catalog_files(self.root):
            shown = self.display(path)
            self.relative[shown] = path.relative_to(self.root).as_posix()
            raw: bytes | None = None
            try:
                raw = read_catalog_bytes(path, display=shown)
                data = _parse_catalog_file(path, raw, shown)
            except InputError as exc:
                self.problems.append(Problem(file=shown, line=exc.line, field=None, message=_strip_where(exc)))
                continue
            finally:
                _digest_file(digest, self.root, path, raw)
            self.read_file(section, shown, data)
        self.check_references()
        self.catalog.fingerprint = digest.hexdigest()
        return self.catalog

    def read_file(self, section: str, shown: str, data: Any) -> None:
        if section == "knowledge/learned":
            items = data.get("patterns") if isinstance(data, dict) else None
            if not isinstance(items, list):
                self.problems.append(Problem(shown, None, "patterns", "a learned file needs a `patterns` list"))
                return
            self.add_items(shown, "patterns", items, LearnedPattern, self.catalog.patterns, "pattern")
            return
        if section == "obligations" and isinstance(data, list):
            data = {"obligations": data}
        if section == "obligations" and isinstance(data, dict) and "id" in data:
            data = {"obligations": [data]}
        if not isinstance(data, dict):
            self.problems.append(Problem(shown, None, None, "expected a mapping at the top of the file"))
            return
        allowed = _FILE_KEYS[section]
        for key in data:
            if key not in allowed:
                line = data.line_of(key) if isinstance(data, LineDict) else None
                self.problems.append(
                    Problem(shown, line, str(key), f"unknown top-level key; allowed: {', '.join(sorted(allowed))}")
                )
        if section == "obligations":
            originals = _as_list(data, "obligations")
            items = [convert_legacy_obligation(i) if is_legacy_obligation(i) else i for i in originals]
            self.add_items(shown, "obligations", items, Obligation, self.catalog.obligations, "obligation",
                           originals=originals)
        elif section == "knowledge/packs":
            self.add_items(shown, "failure_modes", _as_list(data, "failure_modes"), FailureMode,
                           self.catalog.failure_modes, "failure_mode")
            self.add_items(shown, "recipes", _as_list(data, "recipes"), Recipe, self.catalog.recipes, "recipe")
            self.add_items(shown, "components", _as_list(data, "components"), Component,
                           self.catalog.components, "component")
        else:
            default_component = data.get("component")
            rules = []
            for item in _as_list(data, "rules"):
                if isinstance(item, dict) and default_component and "component" not in item:
                    copy = LineDict({**item, "component": default_component})
                    copy.line = getattr(item, "line", 0)
                    copy.key_lines = dict(getattr(item, "key_lines", {}))
                    item = copy
                rules.append(item)
            self.add_items(shown, "rules", rules, MappingRule, self.catalog.rules, "rule",
                           originals=_as_list(data, "rules"))

    def add_items(
        self,
        shown: str,
        key: str,
        items: list[Any],
        model: type[M],
        into: dict[str, M],
        kind: str,
        originals: list[Any] | None = None,
    ) -> None:
        for index, item in enumerate(items):
            original = originals[index] if originals is not None else item
            line = original.line if isinstance(original, LineDict) else None
            if not isinstance(item, dict):
                self.problems.append(Problem(shown, line, f"{key}[{index}]", f"expected a mapping for each {kind}"))
                continue
            try:
                obj = model.model_validate(item)
            except ValidationError as exc:
                item_id = item.get("id")
                prefix = f"{key}[{index}]" + (f"({item_id})" if isinstance(item_id, str) else "")
                for problem in problems_from_validation(exc, original, file=shown, prefix=prefix):
                    self.problems.append(problem)
                continue
            obj_id = obj.id  # type: ignore[attr-defined]
            if obj_id in into:
                first = self.catalog.sources[(kind, obj_id)]
                where = f"{first.file}:{first.line}" if first.line else first.file
                message = f"duplicate {kind} id {obj_id!r} (first defined at {where})"
                self.problems.append(Problem(shown, line, f"{key}[{index}].id", message))
                continue
            into[obj_id] = obj
            self.catalog.sources[(kind, obj_id)] = SourceRef(shown, line, self.relative.get(shown, ""))

    def check_references(self) -> None:
        cat = self.catalog

        def need(kind: str, owner_kind: str, owner: str, fld: str, ids: list[str], known: dict[str, Any]) -> None:
            for ref in ids:
                if ref not in known:
                    src = cat.sources.get((owner_kind, owner), SourceRef("?", None))
                    self.problems.append(
                        Problem(src.file, src.line, f"{owner}.{fld}", f"refers to unknown {kind} {ref!r}")
                    )

        for oid, ob in cat.obligations.items():
            need("failure mode", "obligation", oid, "failure_modes", ob.failure_modes, cat.failure_modes)
            need("recipe", "obligation", oid, "recipes", ob.recipes, cat.recipes)
            need("component", "obligation", oid, "applies_to", ob.applies_to, cat.components)
            need("obligation", "obligation", oid, "related", ob.related, cat.obligations)
        for fid, fm in cat.failure_modes.items():
            need("obligation", "failure_mode", fid, "guarded_by", fm.guarded_by, cat.obligations)
            need("component", "failure_mode", fid, "components", fm.components, cat.components)
        for rid, recipe in cat.recipes.items():
            need("obligation", "recipe", rid, "obligations", recipe.obligations, cat.obligations)
            need("component", "recipe", rid, "components", recipe.components, cat.components)
            need("component", "recipe", rid, "directives", [d.component for d in recipe.directives], cat.components)
        for rid, rule in cat.rules.items():
            need("obligation", "rule", rid, "obligations", rule.obligations, cat.obligations)
            need("failure mode", "rule", rid, "failure_modes", rule.failure_modes, cat.failure_modes)
            if rule.component:
                need("component", "rule", rid, "component", [rule.component], cat.components)
        for pid, pattern in cat.patterns.items():
            need("obligation", "pattern", pid, "obligations", [m.id for m in pattern.obligations], cat.obligations)
        for check in whole_catalog_checks():
            self.problems.extend(check(cat))


def whole_catalog_checks() -> tuple[Callable[[Catalog], list[Problem]], ...]:
    """Checks of the catalog as a whole against the vocabularies it uses.

    Every check names a check kind with valid parameters (the check-kind
    declarations), every claim names an existing probe, and every cited
    section exists in the reference index. Those declarations are data that
    sit beside the catalog, so the catalog calls them; they never import the
    catalog back (no registry filled by imports).
    """
    from poetkb.gates.kinds import check_catalog_kinds
    from poetkb.verify.claims import check_claims
    from poetkb.verify.references import reference_problems

    return (check_catalog_kinds, check_claims, reference_problems)


def _parse_catalog_file(path: Path, raw: bytes, shown: str) -> Any:
    """Parse one catalog file's bytes; an empty file (or one with only comments) is a problem."""
    if not raw.strip():
        raise InputError("file is empty", file=shown, hint="write the catalog entries, or delete the file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError("file is not UTF-8 text", file=shown, hint="save it as UTF-8") from exc
    data = loads_json(text, file=shown) if path.suffix == ".json" else parse_yaml(text, file=shown, aliases=False)
    if data is None:
        raise InputError("file holds no YAML document (only comments?)", file=shown,
                         hint="write the catalog entries, or delete the file")
    return data


def _as_list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _strip_where(exc: InputError) -> str:
    message = exc.message
    prefix = f"{exc.file}:{exc.line}: " if exc.line is not None else f"{exc.file}: "
    return message[len(prefix):] if exc.file and message.startswith(prefix) else message


def check_catalog(root: Path) -> tuple[Catalog, list[Problem]]:
    """Load a catalog and return it with every problem found (an empty list means it is valid)."""
    loader = _Loader(Path(root))
    catalog = loader.load()
    return catalog, loader.problems


def load_catalog(root: Path | None = None) -> Catalog:
    """Load and validate a catalog; raise :class:`CatalogError` listing every problem."""
    catalog, problems = check_catalog(Path(root) if root is not None else shipped_catalog_root())
    if problems:
        raise CatalogError(problems)
    return catalog

