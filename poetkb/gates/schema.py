"""Public data types of gates: the report a gate returns and the manifest of its evidence.

The JSON forms of :class:`GateReport` (``.poet/reports/<run-id>.json``) and of
:class:`EvidenceManifest` (``.poet/evidence/<run-id>/manifest.json``) are the
stable, documented schema other tools read (``poet schema gate-report``,
``poet schema evidence-manifest``); ``docs/gates.md`` describes every field.
Both carry a ``schema`` tag that changes only with an incompatible change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator

from poetkb.errors import InputError
from poetkb.models import PoetModel

#: pass: the check ran and its evidence shows the obligation holds; fail: evidence shows it does not;
#: error: the check could not run or its evidence is unusable (with why); no-evidence: nothing to judge by;
#: not-applicable: the edge's own configuration does not claim what the check proves (no cache, no mTLS
#: listener), with the reason. not-applicable never counts as a pass: coverage counts passes only.
Verdict = Literal["pass", "fail", "error", "no-evidence", "not-applicable"]

#: what the knowledge base knows of the evidence judged: ``self`` (collected by this very run), ``recorded``
#: (the manifest matches the digest recorded when its run finished), ``unrecorded`` (no digest to compare with:
#: judged like evidence from another tool), ``mismatch`` (the manifest changed after the run: every check is an
#: error), ``foreign`` (files from other tools only).
EvidenceRecord = Literal["self", "recorded", "unrecorded", "mismatch", "foreign"]

REPORT_SCHEMA: Literal["poetkb.gate-report/1"] = "poetkb.gate-report/1"
MANIFEST_SCHEMA: Literal["poetkb.evidence/1"] = "poetkb.evidence/1"


class UpstreamInfo(PoetModel):
    """One upstream behind the edge: its name, role, address and admin (fault injection) URL."""

    name: str
    role: str = "healthy"
    url: str | None = None
    admin_url: str | None = None

    @property
    def address(self) -> str | None:
        """``host:port`` of the upstream, as access logs write it."""
        if not self.url:
            return None
        rest = self.url.split("://", 1)[-1]
        return rest.split("/", 1)[0]


def _path_text(value: Any) -> Any:
    """A path given as :class:`os.PathLike` is kept as its text, the form reports and evidence record."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value


class EdgeAddresses(PoetModel):
    """Where the edge under test answers besides its main URL, and how to trust it.

    The fields an :class:`Edge` (what the user gives) and a :class:`TargetInfo` (what a gate ran against, what
    checks read) share, declared once here.
    """

    tls_url: str | None = None
    mtls_url: str | None = None
    metrics_url: str | None = None
    access_log: str | None = None
    proxy: str | None = None
    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None

    _as_text = field_validator("access_log", "ca_cert", "client_cert", "client_key", mode="before")(_path_text)


class Edge(EdgeAddresses):
    """The edge a gate runs against, as the user describes it: one typed object for the CLI, the library
    (``kb.gate(edge=Edge(target=...))``) and target resolution, the way an HTTP client takes its timeouts.

    With nothing set it means the running demo edge. ``target`` is the edge's HTTP URL; ``config`` is the
    user's own NGINX or HAProxy file, brought up on loopback for the run (it excludes the options that
    describe a running edge); ``target_profile`` is a YAML description of a live edge whose values fill what is
    not given here. ``upstream_admin`` entries are ``URL``, ``NAME=URL`` or ``NAME:ROLE=URL``. Every address
    must be on loopback unless ``allow_remote``.
    """

    target: str | None = None
    proxy: Literal["nginx", "haproxy"] | None = None
    upstream_admin: tuple[str, ...] = ()
    reload_command: str | None = None
    allow_remote: bool = False
    config: Path | None = None
    target_profile: Path | None = None

    #: the options that describe a running edge, which ``config`` (an edge poetkb brings up itself) excludes
    RUNNING_EDGE: ClassVar[tuple[str, ...]] = ("target", "access_log", "upstream_admin", "metrics_url", "tls_url",
                                               "mtls_url", "reload_command", "target_profile")

    @classmethod
    def from_options(cls, **options: Any) -> Edge:
        """Build an edge from command-line style options; a bad value is bad input naming its option."""
        try:
            return cls(**options)
        except ValidationError as exc:
            error = exc.errors()[0]
            name = str(error["loc"][0]) if error["loc"] else "edge"
            raise InputError(f"--{name.replace('_', '-')}: {error['msg']}", field=name.replace("_", "-"),
                             hint="see `poet gate run --help`") from None

    def option_names(self, names: tuple[str, ...]) -> list[str]:
        """The options among ``names`` that are set, spelled as on the command line."""
        return [f"--{name.replace('_', '-')}" for name in names if getattr(self, name)]


class TargetInfo(EdgeAddresses):
    """What a gate ran against, as the checks read it."""

    source: Literal["demo", "options", "evidence"] = "options"
    base_url: str | None = None
    variant: str | None = None
    upstreams: list[UpstreamInfo] = Field(default_factory=list)
    can_reload: bool = False


class EvidenceFile(PoetModel):
    """One file of evidence: path relative to the evidence directory, kind, size and sha256."""

    path: str
    kind: str
    sha256: str
    bytes: int
    description: str = ""


class LogSlice(PoetModel):
    """Where the run's access-log slice came from: the source file, the byte range and its identity."""

    source: str
    start: int
    end: int
    device: int | None = None
    inode: int | None = None
    problems: list[str] = Field(default_factory=list)


class CheckRecord(PoetModel):
    """What the collector of one check did: when, with which parameters, which evidence it left."""

    check_id: str
    obligation_id: str
    kind: str
    description: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    started_at: str
    finished_at: str
    duration_ms: float
    log_range: tuple[int, int] | None = None
    files: list[str] = Field(default_factory=list)
    notes: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None


class EvidenceManifest(PoetModel):
    """The index of an evidence directory: target, checks collected, and every file with its sha256."""

    schema_: Literal["poetkb.evidence/1"] = Field(default=MANIFEST_SCHEMA, alias="schema")
    run_id: str
    created_at: str
    target: TargetInfo
    checks: list[CheckRecord] = Field(default_factory=list)
    files: list[EvidenceFile] = Field(default_factory=list)
    access_log: LogSlice | None = None
    problems: list[str] = Field(default_factory=list)

    model_config = ConfigDict(**PoetModel.model_config, validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True)


class CheckResult(PoetModel):
    """The verdict of one check, with what was expected, what was observed and a one-sentence diagnosis."""

    check_id: str
    obligation_id: str
    kind: str
    description: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    verdict: Verdict
    expected: str = ""
    observed: str = ""
    diagnosis: str = ""
    details: dict[str, Any] = Field(default_factory=dict)
    evidence: list[str] = Field(default_factory=list)
    samples: int = 0
    duration_ms: float | None = None


class ObligationVerdict(PoetModel):
    """The verdict of one obligation: the worst of its automated checks (manual checks never pass)."""

    obligation_id: str
    title: str
    domain: str
    risk: str
    verdict: Verdict
    diagnosis: str = ""
    source: str | None = None
    checks: list[CheckResult] = Field(default_factory=list)


class Selection(PoetModel):
    """Which obligations a gate was asked to judge."""

    all: bool = False
    obligations: list[str] = Field(default_factory=list)
    domains: list[str] = Field(default_factory=list)


class GateSummary(PoetModel):
    """Counts of verdicts and the obligation coverage (share of selected obligations passing on evidence)."""

    selected: int
    passed: int
    failed: int
    errors: int
    no_evidence: int
    coverage: float
    not_applicable: int = 0


class GateReport(PoetModel):
    """The result of a gate: one verdict per selected obligation, the evidence behind them, the exit code."""

    schema_: Literal["poetkb.gate-report/1"] = Field(default=REPORT_SCHEMA, alias="schema")
    run_id: str
    mode: Literal["run", "evaluate"]
    poetkb_version: str
    started_at: str
    finished_at: str
    duration_s: float
    target: TargetInfo | None = None
    selection: Selection = Field(default_factory=Selection)
    evidence_dir: str | None = None
    evidence_files: list[EvidenceFile] = Field(default_factory=list)
    obligations: list[ObligationVerdict] = Field(default_factory=list)
    summary: GateSummary
    verdict: Verdict
    exit_code: int
    problems: list[str] = Field(default_factory=list)
    manifest_sha256: str | None = None
    evidence_record: EvidenceRecord | None = None

    model_config = ConfigDict(**PoetModel.model_config, validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True)

    def failures(self) -> list[ObligationVerdict]:
        """Obligations that did not pass (fail first, then error, then no-evidence); not-applicable is left out."""
        order = {"fail": 0, "error": 1, "no-evidence": 2}
        return sorted((o for o in self.obligations if o.verdict in order),
                      key=lambda o: (order[o.verdict], o.obligation_id))

    def verdict_of(self, obligation_id: str) -> Verdict | None:
        """The verdict of one obligation, or None when it was not selected."""
        return next((o.verdict for o in self.obligations if o.obligation_id == obligation_id), None)


class GateRun(PoetModel):
    """One recorded gate run (the summary kept in the knowledge base; the full report is gate_report)."""

    run_id: str
    mode: str
    started_at: str
    finished_at: str | None = None
    duration_s: float | None = None
    target: str | None = None
    proxy: str | None = None
    variant: str | None = None
    verdict: Verdict
    exit_code: int
    coverage: float | None = None
    selection: Selection
    summary: GateSummary | None = None
    evidence_dir: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> GateRun:
        """Build from a ``gate_runs`` row as :meth:`poetkb.knowledge.Knowledge.gate_runs` returns it."""
        selection = Selection.model_validate_json(row["selection"]) if row.get("selection") else Selection()
        summary = GateSummary.model_validate(json.loads(row["counts"])) if row.get("counts") else None
        fields = {k: row.get(k) for k in ("run_id", "mode", "started_at", "finished_at", "duration_s", "target",
                                          "proxy", "variant", "verdict", "exit_code", "coverage", "evidence_dir")}
        return cls.model_validate({**fields, "selection": selection, "summary": summary})
