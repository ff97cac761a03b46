"""The behaviour claims a catalog makes, the probes that check them, and the verified share.

Claims sit where they are made: on an obligation (``claims:``), a recipe or a
mapping rule. Each names the proxy it is about (``component``) and the probes
that check it (``verified_by``). A catalog check makes sure every probe named
exists and is a probe of the same proxy; :func:`claim_summary` counts how many
directive claims a probe checks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from poetkb.errors import Problem
from poetkb.models import Claim, PoetModel
from poetkb.verify.probes import ProbeSet, load_probes

if TYPE_CHECKING:
    from poetkb.catalog import Catalog

PROXIES = ("nginx", "haproxy")


class PlacedClaim(PoetModel):
    """A claim and the catalog item that makes it (``obligation:ID``, ``recipe:ID``, ``rule:ID``)."""

    claim: Claim
    owner: str


class ClaimSummary(PoetModel):
    """How many directive claims the catalog makes and how many a probe checks."""

    total: int
    verified: int
    unverified: list[str] = Field(default_factory=list)

    @property
    def share(self) -> float:
        return self.verified / self.total if self.total else 1.0


def catalog_claims(catalog: Catalog) -> list[PlacedClaim]:
    """Every claim of the catalog with its owner, in a stable order."""
    found: list[PlacedClaim] = []
    for kind, items in (("obligation", catalog.obligations), ("recipe", catalog.recipes), ("rule", catalog.rules)):
        for item_id in sorted(items):
            for claim in items[item_id].claims:  # type: ignore[attr-defined]
                found.append(PlacedClaim(claim=claim, owner=f"{kind}:{item_id}"))
    return found


def claim_summary(catalog: Catalog) -> ClaimSummary:
    """Directive claims (about nginx or haproxy) in total, verified, and the ids still unverified."""
    directive = [p.claim for p in catalog_claims(catalog) if p.claim.component in PROXIES]
    unverified = [c.id for c in directive if not c.verified_by]
    return ClaimSummary(total=len(directive), verified=len(directive) - len(unverified), unverified=unverified)


def claims_by_probe(catalog: Catalog) -> dict[str, list[str]]:
    """probe id -> the ids of the claims it verifies."""
    table: dict[str, list[str]] = {}
    for placed in catalog_claims(catalog):
        for probe_id in placed.claim.verified_by:
            table.setdefault(probe_id, []).append(placed.claim.id)
    return table


def check_claims(catalog: Catalog, probes: ProbeSet | None = None) -> list[Problem]:
    """Problems with claims: duplicate ids, probes that do not exist or test another proxy."""
    if probes is None:
        probes, problems = load_probes(catalog.root)
    else:
        problems = []
    seen: dict[str, str] = {}
    for placed in catalog_claims(catalog):
        claim = placed.claim
        kind, item_id = placed.owner.split(":", 1)
        src = catalog.sources.get((kind, item_id))
        file, line = (src.file, src.line) if src else ("?", None)
        where = f"{item_id}.claims({claim.id})"
        if claim.id in seen:
            problems.append(Problem(file, line, where, f"duplicate claim id {claim.id!r} (first on {seen[claim.id]})"))
            continue
        seen[claim.id] = placed.owner
        for probe_id in claim.verified_by:
            probe = probes.probes.get(probe_id)
            if probe is None:
                problems.append(Problem(file, line, f"{where}.verified_by",
                                        f"refers to unknown probe {probe_id!r}; probes live in knowledge/probes/"))
            elif probe.proxy != claim.component:
                problems.append(Problem(file, line, f"{where}.verified_by",
                                        f"probe {probe_id!r} runs on {probe.proxy}, the claim is about "
                                        f"{claim.component}"))
    return problems



