"""The check-kind registry: every kind a catalog may name, its parameters, evidence and implementation.

A check kind is general ("requests sharing a key reach one backend"); an
obligation's ``checks:`` entry picks a kind and sets its parameters. Each kind
is declared once, in the module of :mod:`poetkb.gates.checks` that implements
it, with its parameter model (:mod:`poetkb.gates.params`), the evidence its
evaluator reads, its collector (which drives traffic) and its evaluator (a pure
function of evidence). Kinds without a collector are judged only from evidence
other tools produce (load summaries, JUnit results, metric snapshots). This
module reads the light table generated from those declarations
(:mod:`poetkb.gates.kind_table`), so loading the catalog imports no check.

This module also registers the whole-catalog validation that makes
``poet kb check`` report an unknown kind or bad parameters with file and line.
It stays light: the catalog loader imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import ValidationError

from poetkb.errors import Problem, UnknownEntity
from poetkb.gates import params as p
from poetkb.gates.kind_table import TABLE
from poetkb.models import Check, PoetModel

if TYPE_CHECKING:
    from poetkb.catalog import Catalog


@dataclass(frozen=True)
class KindSpec:
    """What the catalog and the runner know about one check kind without importing its implementation."""

    name: str
    params: type[PoetModel]
    #: the module of :mod:`poetkb.gates.checks` that declares the kind (its collector and evaluator)
    area: str
    evidence: tuple[str, ...]
    traffic: bool
    service: bool
    summary: str


KINDS: dict[str, KindSpec] = {
    name: KindSpec(name, getattr(p, params), area, evidence, traffic, service, summary)
    for name, params, area, evidence, traffic, service, summary in TABLE
}
#: kinds that drive the demo's service tier rather than an edge: collected when selected by id or domain, and
#: by ``--all`` when the service tier runs; ``traffic`` stays False so an edge-only ``--all`` is unchanged
SERVICE_KINDS: dict[str, KindSpec] = {name: spec for name, spec in KINDS.items() if spec.service}


def kind_spec(name: str) -> KindSpec:
    """The registry entry of a kind; :class:`UnknownEntity` naming the known kinds otherwise."""
    spec = KINDS.get(name)
    if spec is None:
        raise UnknownEntity("check kind", name, known=list(KINDS))
    return spec


def is_edge_check(check: Check) -> bool:
    """True for checks a gate run can collect evidence for by driving traffic at an edge."""
    spec = KINDS.get(check.kind)
    return spec is not None and spec.traffic


class KindInfo(PoetModel):
    """One kind as ``poet gate kinds`` shows it: name, summary, the evidence it reads, whether it drives traffic."""

    kind: str
    summary: str
    evidence: list[str]
    traffic: bool


def describe_kinds() -> list[KindInfo]:
    """Name, summary, evidence and whether it drives traffic, for every kind (sorted by name)."""
    return [KindInfo(kind=s.name, summary=s.summary, evidence=list(s.evidence), traffic=s.traffic)
            for s in sorted(KINDS.values(), key=lambda s: s.name)]


def check_catalog_kinds(catalog: Catalog) -> list[Problem]:
    """Every check in the catalog names a known kind and valid parameters for it."""
    problems: list[Problem] = []
    for oid, ob in sorted(catalog.obligations.items()):
        src = catalog.sources.get(("obligation", oid))
        file, line = (src.file, src.line) if src else ("?", None)
        for index, check in enumerate(ob.checks):
            where = f"{oid}.checks[{index}]"
            spec = KINDS.get(check.kind)
            if spec is None:
                problems.append(Problem(file, _line_of(file, oid, index, "kind") or line, f"{where}.kind",
                                        f"unknown check kind {check.kind!r}; known kinds: {', '.join(sorted(KINDS))}"))
                continue
            try:
                spec.params.model_validate(check.params)
            except ValidationError as exc:
                for err in exc.errors():
                    loc = ".".join(str(x) for x in err["loc"])
                    field = f"{where}.params" + (f".{loc}" if loc else "")
                    first = str(err["loc"][0]) if err["loc"] else None
                    at = _line_of(file, oid, index, "params", first) or line
                    problems.append(Problem(file, at, field, f"{err['msg']} (check kind {check.kind})"))
    return problems


def _line_of(file: str, oid: str, index: int, key: str, param: str | None = None) -> int | None:
    """The line of a check's key (or of one parameter) in its catalog file; None when it cannot be found."""
    from pathlib import Path

    from poetkb.errors import InputError
    from poetkb.yamlfile import LineDict, load_with_lines

    try:
        data = load_with_lines(Path(file))
    except (InputError, OSError):
        return None
    items = data.get("obligations") if isinstance(data, dict) and "obligations" in data else data
    items = [items] if isinstance(items, dict) else items
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, LineDict) or item.get("id") != oid:
            continue
        checks = item.get("checks")
        if not isinstance(checks, list) or index >= len(checks) or not isinstance(checks[index], LineDict):
            return item.line_of("checks")
        check = checks[index]
        params = check.get("params")
        if param is not None and isinstance(params, LineDict) and param in params:
            return params.line_of(param)
        return check.line_of(key)
    return None


def is_service_check(check: Check) -> bool:
    """True for checks that drive the demo's service tier (PostgreSQL, JWT auth)."""
    return check.kind in SERVICE_KINDS
