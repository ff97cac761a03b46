"""``poet kb verify``: run the probes behind the catalog's claims and say which claims hold.

Select probes by claim or by proxy, run them against the installed binaries,
name the claims of every probe that fails (with the version it was recorded on,
so a proxy upgrade that changes behaviour is plain), and with ``record=True``
write the versions the passing probes ran on.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from poetkb.catalog import load_catalog
from poetkb.errors import EnvironmentProblem, InputError
from poetkb.models import PoetModel
from poetkb.verify.claims import ClaimSummary, catalog_claims, claim_summary, claims_by_probe
from poetkb.verify.probes import ProbeRecord, ProbeSet, load_probes, now_stamp, write_records
from poetkb.verify.runner import Harness, ProbeResult, run_probe


class VerifyReport(PoetModel):
    """The outcome of a verify run: every probe run, and the catalog's claim counts."""

    results: list[ProbeResult] = Field(default_factory=list)
    versions: dict[str, str] = Field(default_factory=dict)
    summary: ClaimSummary
    recorded: str | None = None

    @property
    def failed(self) -> list[ProbeResult]:
        return [r for r in self.results if not r.passed]

    @property
    def failed_claims(self) -> list[str]:
        return sorted({c for r in self.failed for c in r.claims})


def proxy_version(proxy: str) -> tuple[str, str]:
    """(binary path, version) of an installed proxy, or an error saying how to install it."""
    from poetkb.demo.lifecycle import require_binary
    from poetkb.environment import tool_info

    binary = require_binary(proxy)
    version = tool_info(proxy).version
    if not version:
        raise EnvironmentProblem(f"cannot tell the version of {binary}", hint=f"run `{binary} -v` by hand")
    return binary, version


def select(probes: ProbeSet, by_probe: dict[str, list[str]], *, claim: str | None, proxy: str | None,
           known_claims: set[str]) -> list[str]:
    """The probe ids to run for a claim and/or a proxy (all probes when neither is given)."""
    chosen = sorted(probes.probes)
    if claim is not None:
        if claim not in known_claims:
            raise InputError(f"no claim {claim!r} in the catalog", field="--claim",
                             hint="list claims with `poet kb verify --json` or grep `claims:` in the catalog")
        chosen = [p for p in chosen if claim in by_probe.get(p, [])]
        if not chosen:
            raise InputError(f"claim {claim!r} has no probe: it is unverified", field="--claim",
                             hint="add a probe under knowledge/probes/ and name it in the claim's verified_by")
    if proxy is not None:
        chosen = [p for p in chosen if probes.probes[p].proxy == proxy]
        if claim is not None and not chosen:
            raise InputError(f"claim {claim!r} has no {proxy} probe", field="--proxy",
                             hint="drop --proxy, or name a claim about this proxy")
    return chosen


def verify(root: Path | None = None, *, claim: str | None = None, proxy: str | None = None,
           record: bool = False, run_dir: Path | None = None) -> VerifyReport:
    """Run the selected probes; with ``record`` write the versions they passed on."""
    catalog = load_catalog(root)
    probes, problems = load_probes(catalog.root)
    if problems:
        from poetkb.errors import CatalogError

        raise CatalogError(problems)
    by_probe = claims_by_probe(catalog)
    known = {p.claim.id for p in catalog_claims(catalog)}
    chosen = select(probes, by_probe, claim=claim, proxy=proxy, known_claims=known)
    binaries: dict[str, tuple[str, str]] = {}
    for proxy_name in sorted({probes.probes[p].proxy for p in chosen}):
        binaries[proxy_name] = proxy_version(proxy_name)
    results: list[ProbeResult] = []
    if chosen:
        with Harness(run_dir) as harness:
            for probe_id in chosen:
                probe = probes.probes[probe_id]
                binary, version = binaries[probe.proxy]
                result = run_probe(probe, harness, binary, version)
                record_before = probes.records.get(probe_id)
                results.append(result.model_copy(update={
                    "claims": sorted(by_probe.get(probe_id, [])),
                    "recorded_version": record_before.version if record_before else None,
                }))
    report = VerifyReport(results=results, versions={k: v[1] for k, v in binaries.items()},
                          summary=claim_summary(catalog))
    if record and not report.failed and results:
        records = dict(probes.records)
        stamp = now_stamp()
        for result in results:
            records[result.id] = ProbeRecord(proxy=result.proxy, version=result.version or "?", verified_at=stamp)
        path = write_records(catalog.root, records)
        report = report.model_copy(update={"recorded": str(path)})
    return report
