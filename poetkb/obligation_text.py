"""Plain-text renderings of knowledge-base items for people (the CLI prints these)."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

from poetkb.models import Obligation

if TYPE_CHECKING:
    from poetkb.knowledge import Knowledge


def _wrap(text: str, indent: str = "  ") -> str:
    return textwrap.fill(" ".join(text.split()), width=100, initial_indent=indent, subsequent_indent=indent)


def obligation_text(kb: Knowledge, ob: Obligation) -> str:
    """An obligation as a person reads it: what, why, how to prove it, where it is defined."""
    file, line = kb.source_of(ob.id)
    lines = [
        f"{ob.id}  [{ob.risk} risk, {ob.domain}]",
        f"{ob.title}",
        "",
        "Statement:",
        _wrap(ob.statement),
        "Rationale:",
        _wrap(ob.rationale),
    ]
    if ob.applies_to:
        lines.append(f"Applies to: {', '.join(ob.applies_to)}")
    lines.append(f"Safe in production: {'yes' if ob.safe_in_prod else 'no'}")
    if ob.failure_modes:
        lines.append("Guards against:")
        lines += [f"  - {fid}: {title}" for fid, title in kb.failure_mode_titles(ob.id)]
    if ob.evidence:
        lines.append("Evidence to capture:")
        for ev in ob.evidence:
            fields = f" ({', '.join(ev.fields)})" if ev.fields else ""
            lines.append(f"  - {ev.kind}{fields}{': ' + ev.description if ev.description else ''}")
    if ob.checks:
        lines.append("Checks:")
        for check in ob.checks:
            params = ", ".join(f"{k}={v}" for k, v in check.params.items())
            lines.append(f"  - {check.kind}({params}){': ' + check.description if check.description else ''}")
    if ob.pass_criteria:
        lines.append("Pass criteria:")
        lines += [f"  - {c}" for c in ob.pass_criteria]
    if ob.recipes:
        lines.append(f"Recipes: {', '.join(ob.recipes)}")
    if ob.assumptions:
        lines.append("Assumptions:")
        lines += [f"  - {a}" for a in ob.assumptions]
    recipe_claims = [c for recipe in kb.recipes(obligation=ob.id) for c in recipe.claims]
    claims = list({c.id: c for c in [*ob.claims, *recipe_claims]}.values())
    if claims:
        lines.append("Proxy behaviour relied on (verified by a probe run by `poet kb verify`, or unverified):")
        for claim in claims:
            probe = f" [probe: {', '.join(claim.verified_by)}]" if claim.verified_by else ""
            lines.append(f"  - {claim.status}: {claim.component} {claim.directive}: {claim.statement}{probe}")
    if ob.references:
        lines.append("References:")
        lines += [f"  - {r.title}{' <' + r.url + '>' if r.url else ''}" for r in ob.references]
    lines.append(f"Defined at: {file}:{line}" if line else f"Defined at: {file}")
    return "\n".join(lines)
