"""The demo edge's variants: the good configuration and the seeded faults, read from ``demo/variants.yaml``.

A variant is an overlay, not a copy: the file declares, per proxy, the
template switches ("knobs") with the values of the good configuration, and
each broken variant changes only the few knobs that make its fault. Every
variant names the edge obligations it breaks and the real outage it mirrors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from poetkb.demo.layout import demo_root
from poetkb.demo.state import PROXIES, Variant
from poetkb.errors import InputError, Problem, UnknownEntity
from poetkb.yamlfile import LineDict, load_with_lines, problems_from_validation

GOOD = "good"

#: the edge obligations of the catalog that the demo edge is built to exercise
EDGE_OBLIGATIONS: tuple[str, ...] = (
    "routing.backend.selection", "routing.fanout.bound", "routing.healthcheck.respect", "routing.host.isolated",
    "cache.key.stability", "cache.vary.honored", "cache.key.complete", "cache.private.bypassed",
    "cache.ttl.honored", "cache.stale.bounded",
    "protocol.http.status", "protocol.content.length", "protocol.hop_by_hop.stripped", "protocol.framing.strict",
    "security.client.ip.preserved", "security.mtls.client.verified", "security.tls.chain.valid",
    "resilience.graceful.degradation", "resilience.retry.bounded", "resilience.timeout.enforced",
    "resilience.overload.shed",
    "observability.access.logged", "observability.metrics.exposed", "observability.request.id",
    "observability.upstream.timing",
    "state.config.reload.atomic", "state.ratelimit.enforced",
)


def variants_file(root: Path | None = None) -> Path:
    return (root or demo_root()) / "variants.yaml"


def good_knobs(proxy: str, root: Path | None = None) -> dict[str, Any]:
    """The template switches of ``proxy`` with the values of the good configuration."""
    knobs, _ = _load(root)
    return dict(knobs[proxy])


def all_variants(root: Path | None = None) -> list[Variant]:
    """Every variant, "good" first for each proxy, then the seeded faults in file order."""
    _, found = _load(root)
    return found


def get_variant(proxy: str, name: str, root: Path | None = None) -> Variant:
    """The variant ``name`` of ``proxy``; :class:`UnknownEntity` naming the known ones otherwise."""
    known = [v for v in all_variants(root) if v.proxy == proxy]
    for variant in known:
        if variant.name == name:
            return variant
    raise UnknownEntity(f"{proxy} variant", name, known=[v.name for v in known])


def knobs_for(variant: Variant, root: Path | None = None) -> dict[str, Any]:
    """The good knobs of the variant's proxy with the variant's own switches applied."""
    return {**good_knobs(variant.proxy, root), **variant.knobs}


def _load(root: Path | None) -> tuple[dict[str, dict[str, Any]], list[Variant]]:
    path = variants_file(root)
    data = load_with_lines(path)
    shown = str(path)
    problems: list[Problem] = []
    if not isinstance(data, dict) or not isinstance(data.get("knobs"), dict) or not isinstance(
            data.get("variants"), list):
        raise InputError("expected a mapping with `knobs` (per proxy) and a `variants` list", file=shown,
                         hint="see demo/faults/README.md for the format")
    knobs: dict[str, dict[str, Any]] = {}
    for proxy in PROXIES:
        table = data["knobs"].get(proxy)
        if not isinstance(table, dict):
            problems.append(Problem(shown, _line(data["knobs"]), f"knobs.{proxy}", "missing knob table"))
            continue
        knobs[proxy] = dict(table)
    found = [Variant(name=GOOD, proxy=p, description=f"the good {p} edge: every edge obligation holds")  # type: ignore[arg-type]
             for p in PROXIES]
    seen: set[tuple[str, str]] = {(GOOD, p) for p in PROXIES}
    for index, item in enumerate(data["variants"]):
        where = f"variants[{index}]"
        line = _line(item)
        if not isinstance(item, dict):
            problems.append(Problem(shown, line, where, "each variant must be a mapping"))
            continue
        proxies = item.get("proxy")
        proxies = [proxies] if isinstance(proxies, str) else proxies
        if not isinstance(proxies, list) or not proxies:
            problems.append(Problem(shown, line, f"{where}.proxy", "name a proxy (nginx, haproxy) or a list"))
            continue
        for proxy in proxies:
            entry = {**item, "proxy": proxy}
            try:
                variant = Variant.model_validate(entry)
            except ValidationError as exc:
                problems += problems_from_validation(exc, item, file=shown, prefix=where)
                continue
            problems += _check(variant, knobs, item, shown, where)
            if (variant.name, variant.proxy) in seen:
                problems.append(Problem(shown, line, f"{where}.name",
                                        f"duplicate variant {variant.name!r} for {variant.proxy}"))
            seen.add((variant.name, variant.proxy))
            found.append(variant)
    if problems:
        body = "\n".join(f"  {p}" for p in problems)
        raise InputError(f"{len(problems)} problem(s) in the variant definitions:\n{body}", file=shown,
                         hint="fix the entries named above")
    return knobs, found


def _check(variant: Variant, knobs: dict[str, dict[str, Any]], item: Any, shown: str, where: str) -> list[Problem]:
    problems = []
    line = _line(item)
    table = knobs.get(variant.proxy, {})
    for key in variant.knobs:
        if key not in table:
            problems.append(Problem(shown, line, f"{where}.knobs.{key}",
                                    f"{variant.proxy} has no knob {key!r}; known: {', '.join(sorted(table))}"))
    for oid in variant.breaks:
        if oid not in EDGE_OBLIGATIONS:
            problems.append(Problem(shown, line, f"{where}.breaks", f"{oid!r} is not an edge obligation id"))
    if not variant.breaks:
        problems.append(Problem(shown, line, f"{where}.breaks", "a broken variant must name what it breaks"))
    if not variant.knobs:
        problems.append(Problem(shown, line, f"{where}.knobs", "a broken variant must switch at least one knob"))
    return problems


def _line(item: Any) -> int | None:
    return item.line if isinstance(item, LineDict) else None
