"""Run a gate: select obligations, collect evidence for their checks, judge it, record and report.

Collection and evaluation are separate steps joined only by the evidence
directory: :func:`run_gate` collects into ``.poet/evidence/<run-id>/`` and then
judges exactly what is on disk, the same way :func:`evaluate_evidence` judges a
stored run (or files from other tools) later.

Verdicts: a check is pass, fail, error (it could not run or its evidence is
unusable, with why) or no-evidence; an obligation takes the worst verdict of
its automated checks (fail, then error, then no-evidence); manual checks never
pass. Coverage is the share of selected obligations that pass on evidence. The
exit code is 0 when every selected obligation passes, 1 when any fails (or
lacks evidence, or nothing was judged at all), 2 when a check could not be
judged (``error``: it could not run, or its evidence is missing, altered,
unlisted or outside the evidence directory) and no check failed outright.
``error`` is 2 because the remedy is the same as for bad input: fix what was
given (the target, the evidence) and run again; it is never 0.

What a check requires always comes from the catalog; a manifest's copy of the
parameters is only reported. Selections and manifests that name obligations the
catalog does not know are bad input. Re-evaluating an evidence directory
compares its manifest with the digest the knowledge base recorded when the run
finished (:func:`check_recorded`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from poetkb._version import __version__
from poetkb.errors import InputError, PoetError
from poetkb.gates import checks
from poetkb.gates.checks.base import CollectContext, CollectError
from poetkb.gates.evidence import CheckEvidence, EvidenceWriter, LoadedRun, evidence_root, load_run, new_run_id
from poetkb.gates.kinds import KINDS, SERVICE_KINDS, is_edge_check, is_service_check
from poetkb.gates.schema import (
    CheckRecord,
    CheckResult,
    Edge,
    EvidenceFile,
    EvidenceRecord,
    GateReport,
    GateSummary,
    ObligationVerdict,
    Selection,
    TargetInfo,
    Verdict,
)
from poetkb.models import Obligation
from poetkb.store import now_iso

if TYPE_CHECKING:
    from poetkb.gates.foreign import Foreign
    from poetkb.gates.probes import Router
    from poetkb.gates.profile import TargetProfile
    from poetkb.gates.schedule import Planned
    from poetkb.gates.target import ResolvedTarget
    from poetkb.knowledge import Knowledge
    from poetkb.ownedge import OwnEdge

SEVERITY: dict[str, int] = {"fail": 0, "error": 1, "no-evidence": 2, "pass": 3, "not-applicable": 4}


# -- selection ---------------------------------------------------------------------------------------
def select_obligations(kb: Knowledge, selection: Selection, *, proxy: str | None = None,
                       service: bool = False, edge: bool = True) -> list[Obligation]:
    """The obligations a selection names; ``all`` means every obligation with a check a gate run can drive
    (with ``service``, when the demo's service tier runs, those with a service-tier check too)."""
    chosen: dict[str, Obligation] = {}
    if selection.obligations:
        require_known(kb, selection.obligations, where="the selection")
        for ob in kb.obligations(ids=selection.obligations):
            chosen[ob.id] = ob
    for domain in selection.domains:
        found = kb.obligations(domain=domain)
        if not found:
            known = sorted({ob.domain for ob in kb.obligations()})
            raise InputError(f"no obligation in domain {domain!r}", field="domain",
                             hint=f"known domains: {', '.join(known)}")
        chosen.update({ob.id: ob for ob in found})
    if selection.all:
        for ob in kb.obligations():
            if service and any(is_service_check(c) for c in ob.checks):
                chosen[ob.id] = ob
                continue
            if not edge or not any(is_edge_check(c) for c in ob.checks):
                continue
            if proxy and ob.applies_to and proxy not in ob.applies_to and "generic-http" not in ob.applies_to:
                continue
            chosen[ob.id] = ob
    if not (selection.all or selection.obligations or selection.domains):
        raise InputError("nothing selected to gate", hint="pass --all, --obligation ID (repeatable) or --domain D")
    if not chosen:
        raise InputError("the selection holds no obligation with checks", hint="see `poet obligations list`")
    return [chosen[k] for k in sorted(chosen)]


def require_known(kb: Knowledge, ids: Sequence[str], *, where: str, file: Path | None = None) -> None:
    """Bad input (exit 2) naming every id the catalog does not know, with close matches: no verdict without
    obligations, and never a silent drop of what was asked for."""
    import difflib

    known = {ob.id for ob in kb.obligations()}
    unknown = sorted({i for i in ids if i not in known})
    if not unknown:
        return
    close = sorted({m for i in unknown for m in difflib.get_close_matches(i, known, n=2)})
    hint = (f"did you mean {', '.join(close)}? " if close else "") + \
        "see `poet obligations list`; evidence for obligations of another catalog needs that catalog's knowledge base"
    from poetkb.errors import UnknownObligation

    if len(unknown) == 1 and file is None:
        raise UnknownObligation(unknown[0], suggestions=close)
    raise InputError(f"{where} names {len(unknown)} obligation{'s' if len(unknown) != 1 else ''} the catalog does "
                     f"not know: {', '.join(unknown)}", file=file, field="obligation_id", hint=hint)


# -- verdicts -----------------------------------------------------------------------------------------
def worst(verdicts: Sequence[Verdict]) -> Verdict:
    return min(verdicts, key=lambda v: SEVERITY[v]) if verdicts else "no-evidence"


def _route(auto: list[CheckResult]) -> list[CheckResult]:
    """The checks an obligation is judged by when it can be proven two ways.

    An obligation with service-tier checks (driven against the demo's service) and checks judged from other
    tools' evidence (JUnit results, metric snapshots of the user's own service) is proven by either route:
    a route that produced no evidence at all (every check ``no-evidence``, or an ``error`` because its
    collection could not start: no metrics endpoint, say) is left out, as long as the other produced some. A
    route with any evidence counts whole, so a failure in either still fails; with no evidence anywhere the
    verdict is the worst of all, as always.
    """

    def empty(r: CheckResult) -> bool:
        return r.verdict == "no-evidence" or (r.verdict == "error" and r.diagnosis.startswith("collection failed"))

    service = [r for r in auto if r.kind in SERVICE_KINDS]
    other = [r for r in auto if r.kind not in SERVICE_KINDS]
    if not service or not other:
        return auto
    empty_service = all(empty(r) for r in service)
    empty_other = all(empty(r) for r in other)
    if empty_service and not empty_other:
        return other
    if empty_other and not empty_service:
        return service
    return auto


def obligation_verdict(kb: Knowledge | None, ob: Obligation, results: list[CheckResult]) -> ObligationVerdict:
    auto = [r for r in results if r.kind != "manual"]
    if not ob.checks:
        verdict: Verdict = "no-evidence"
        diagnosis = "the obligation has no checks, so no gate can pass it"
    elif not auto:
        verdict, diagnosis = "no-evidence", "only manual checks: a person must confirm this obligation"
    else:
        # a check the configuration does not claim is left out; an obligation none of whose checks apply is
        # not-applicable, never a pass; of checks on two kinds of evidence, a side that produced none is left out
        claimed = _route([r for r in auto if r.verdict != "not-applicable"])
        verdict = worst([r.verdict for r in claimed]) if claimed else "not-applicable"
        diagnosis = next((r.diagnosis for r in sorted(auto, key=lambda r: SEVERITY[r.verdict])
                          if r.verdict == verdict and r.diagnosis), "")
    source = None
    if kb is not None:
        try:
            file, line = kb.source_of(ob.id)
            source = f"{file}:{line}" if line else file
        except PoetError:
            source = None
    return ObligationVerdict(obligation_id=ob.id, title=ob.title, domain=ob.domain, risk=ob.risk, verdict=verdict,
                             diagnosis=diagnosis, source=source, checks=results)


def summarize(verdicts: list[ObligationVerdict]) -> tuple[GateSummary, Verdict, int]:
    count = {v: sum(1 for o in verdicts if o.verdict == v) for v in SEVERITY}
    total = len(verdicts)
    summary = GateSummary(selected=total, passed=count["pass"], failed=count["fail"], errors=count["error"],
                          no_evidence=count["no-evidence"], not_applicable=count["not-applicable"],
                          coverage=round(count["pass"] / total, 4) if total else 0.0)
    overall = worst([o.verdict for o in verdicts if o.verdict != "not-applicable"])
    exit_code = 1 if count["fail"] else 2 if count["error"] else 1 if count["no-evidence"] else 0
    if not total or not count["pass"] and not count["fail"] and not count["error"]:
        # judging nothing proves nothing, and neither does a selection the configuration claims none of
        overall, exit_code = ("no-evidence", 1) if exit_code == 0 or not total else (overall, exit_code)
    return summary, overall, exit_code


# -- collection ---------------------------------------------------------------------------------------
def _collect_one(item: Planned, notes: dict[str, Any], *, target: TargetInfo, writer: EvidenceWriter,
                 client: Any, faults: Any, transport: Any, reload: Any, nonce: str,
                 router: Router | None = None) -> CheckRecord:
    """Run one check's collector; every way it can fail becomes the record's ``error``, never an exception."""
    check = item.check
    ctx = CollectContext(target=target, check_id=item.check_id, nonce=nonce, writer=writer, client=client,
                         faults=faults, transport=transport, reload=reload, fresh_connections=item.fault,
                         router=router)
    ctx.notes.update(notes)
    started, t0 = now_iso(), time.perf_counter()
    failure = None
    try:
        checks.collect(check, ctx)
    except CollectError as exc:
        failure = str(exc)
    except PoetError as exc:
        failure = exc.message
    except Exception as exc:  # noqa: BLE001 - a collector bug becomes an error verdict, not a traceback
        failure = f"{type(exc).__name__}: {exc}"
    finally:
        ctx.close()
        if faults is not None and ctx.notes.get("faults") is not None:
            writer.problems.extend(faults.heal_all())
    return CheckRecord(check_id=item.check_id, obligation_id=item.obligation.id, kind=check.kind,
                       description=check.description, params=dict(check.params), started_at=started,
                       finished_at=now_iso(), duration_ms=round((time.perf_counter() - t0) * 1000, 1),
                       files=ctx.files, notes=ctx.notes, error=failure)


#: how many checks of the shared phase run at once (the TTL checks mostly sleep, one per vantage)
LANES = 5


def _collect_all(obligations: list[Obligation], writer: EvidenceWriter, resolved: ResolvedTarget,
                 transport: Any, nonce: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from poetkb.gates.faults import FaultInjector
    from poetkb.gates.probes import make_client
    from poetkb.gates.schedule import CleanState, ordered, plan

    target = resolved.info
    assert target.base_url
    with make_client(target.base_url, transport=transport) as client:
        faults = FaultInjector(target.upstreams, client) if target.upstreams else None
        if faults is not None:
            writer.problems.extend(faults.heal_all())

        def probe(path: str) -> str | None:
            import httpx

            try:
                response = client.get(f"{path}{'&' if '?' in path else '?'}poet=ready", timeout=3.0)
            except httpx.HTTPError:
                return None
            return response.headers.get("x-upstream", "") if 200 <= response.status_code < 400 else None

        def one(item: Planned, notes: dict[str, Any]) -> CheckRecord:
            if item.check_id in resolved.plan_params:
                notes = {**notes, "plan_params": resolved.plan_params[item.check_id]}
            return _collect_one(item, notes, target=target, writer=writer, client=client, faults=faults,
                                transport=transport, reload=resolved.reload,
                                nonce=f"{nonce}{order[item.check_id]}", router=resolved.router)

        items = [(ob, index, check) for ob in obligations for index, check in enumerate(ob.checks)
                 if checks.has_collector(check.kind)]
        if resolved.plan is not None:
            items = _planned(items, resolved, writer)
        phases = plan(items)
        order = {p.check_id: n for n, p in enumerate(p for phase, _ in phases for p in phase)}
        clean = CleanState(reload=resolved.reload, probe=probe)
        if faults is not None and resolved.reload is not None and resolved.reload_first:
            problem = clean.start()  # as each fault experiment after the first does, start from a reloaded edge
            if problem is not None:
                writer.problems.append(problem)
        # confined fault experiments with a long wait run beside the shared and the exclusive phases, and
        # are done before the fault experiments begin (theirs is the only fault on the edge meanwhile)
        beside = [item for phase, _ in phases[:1] for item in phase if item.beside]
        phases = [([item for item in phase if not item.beside], parallel) for phase, parallel in phases]
        side = ThreadPoolExecutor(max_workers=max(1, len(beside)), thread_name_prefix="poet-beside")
        side_start = writer.log_position(settle=False)
        pending = [side.submit(one, item, {}) for item in beside]

        def join_beside() -> None:
            records = [future.result() for future in pending]
            end = writer.log_position(settle=False)
            for record in records:
                writer.checks.append(_ranged(record, side_start, end))
            pending.clear()

        try:
            for n, (phase, parallel) in enumerate(phases):
                if n == len(phases) - 1:
                    join_beside()
                if parallel and phase:
                    start = writer.log_position(settle=False)
                    with ThreadPoolExecutor(max_workers=LANES, thread_name_prefix="poet-check") as pool:
                        records = list(pool.map(lambda item: one(item, {}), phase))
                    end = writer.log_position(settle=False)
                    for record in records:
                        writer.checks.append(_ranged(record, start, end))
                    continue
                for item, notes in ordered(phase, clean):
                    start = writer.log_position(settle=False)
                    record = one(item, notes)
                    writer.checks.append(_ranged(record, start, writer.log_position(settle=False)))
            join_beside()
        finally:
            side.shutdown(wait=True)


def _planned(items: list[Any], resolved: ResolvedTarget, writer: EvidenceWriter) -> list[Any]:
    """Point each check at the routes of the user's own configuration, or record why it does not apply.

    Only parameters that steer collection change (:data:`poetkb.ownedge.plan.STEERING`); the record keeps
    them under ``notes.plan_params`` so evaluation judges the traffic that was really sent. A check whose
    obligation the configuration does not claim is recorded with ``notes.not_applicable`` and not collected;
    when the selection named its obligation explicitly, ``notes.required`` makes it a ``fail``.
    """
    from poetkb.ownedge.plan import DEMO_VANTAGE, NARROWING, STEERING, apply_overrides

    plan = resolved.plan
    assert plan is not None
    kept = []
    for ob, index, check in items:
        overrides, reason = plan.adapt(check.kind, dict(check.params))
        check_id = f"{ob.id}#{index}"
        vantage = sorted(k for k in DEMO_VANTAGE if check.params.get(k) not in (None, "http"))
        target = check.params.get("fault", {}).get("target") if isinstance(check.params.get("fault"), dict) else None
        if target is not None and target not in ("faulty", "healthy", "all"):
            vantage.append(f"fault on upstream {target}")
        if vantage:
            stamp = now_iso()
            writer.checks.append(CheckRecord(
                check_id=check_id, obligation_id=ob.id, kind=check.kind, description=check.description,
                params=dict(check.params), started_at=stamp, finished_at=stamp, duration_ms=0.0,
                notes={"not_applicable": f"a probe of the demo's own layout ({', '.join(vantage)})",
                       "required": False}))
            continue
        # the demo's extra locations and vantages are not yours: the plan's route is probed alone
        overrides = {**overrides, **{k: [] for k in ("also_paths", "also_via") if check.params.get(k)}}
        if reason is not None:
            stamp = now_iso()
            unclaimed = getattr(plan, "unclaimed_verdict", "not-applicable")
            notes = ({"not_applicable": reason, "required": ob.id in resolved.required}
                     if unclaimed == "not-applicable" else {"no_evidence": reason})
            writer.checks.append(CheckRecord(
                check_id=check_id, obligation_id=ob.id, kind=check.kind, description=check.description,
                params=dict(check.params), started_at=stamp, finished_at=stamp, duration_ms=0.0, notes=notes))
            continue
        steering = {k: v for k, v in overrides.items() if k in STEERING or k in NARROWING}
        if steering:
            check = check.model_copy(update={"params": apply_overrides(dict(check.params), steering)})
        kept.append((ob, index, check))
        resolved.plan_params[check_id] = steering
    return kept


def _ranged(record: CheckRecord, start: int | None, end: int | None) -> CheckRecord:
    if start is None or end is None:
        return record
    return record.model_copy(update={"log_range": (start, end)})


def run_gate(kb: Knowledge, selection: Selection, resolved: ResolvedTarget, *, transport: Any = None,
             capture: bool = False, evidence: Sequence[Path] = (), record: bool = True,
             write_reports: bool = True) -> GateReport:
    """Collect evidence for the selected obligations on the target, then judge it (see the module docstring)."""
    from poetkb.gates.target import preflight

    obligations = select_obligations(kb, selection, proxy=resolved.info.proxy, service=resolved.service,
                                     edge=resolved.edge)
    foreign = _foreign(evidence)
    resolved.info = preflight(resolved.info, transport=transport,
                              host=resolved.plan.probe_host() if resolved.plan is not None else None)
    run_id = new_run_id()
    root = evidence_root() / run_id
    started_at, t0 = now_iso(), time.perf_counter()
    writer = EvidenceWriter(root, run_id, resolved.info)
    for rel, (data, kind, description) in resolved.extras.items():
        writer.write_file(rel, data, kind, description)
    if resolved.info.access_log:
        writer.follow_log(Path(resolved.info.access_log))
    pcap = None
    if capture:
        from poetkb.gates.capture import PacketCapture

        pcap = PacketCapture.start(root, resolved.info)
    try:
        _collect_all(obligations, writer, resolved, transport, run_id[-6:])
    finally:
        if pcap is not None:
            problem = pcap.stop()
            if problem:
                writer.problems.append(problem)
        writer.finish_log()
        if writer.log_slice is not None:
            writer.problems.extend(writer.log_slice.problems)
        writer.finalize()
    report = _judge(kb, obligations, load_run(root), foreign, run_id=run_id, mode="run", started_at=started_at,
                    duration=time.perf_counter() - t0, selection=selection)
    return _finish(kb, report, record=record, write_reports=write_reports)


# -- evaluation ---------------------------------------------------------------------------------------
def _foreign(paths: Sequence[Path]) -> Foreign | None:
    if not paths:
        return None
    from poetkb.gates.foreign import load_foreign

    return load_foreign([Path(p) for p in paths])


def _judge(kb: Knowledge, obligations: list[Obligation], loaded: LoadedRun | None, foreign: Foreign | None,
           *, run_id: str, mode: Literal["run", "evaluate"], started_at: str, duration: float, selection: Selection,
           target: TargetInfo | None = None) -> GateReport:
    records: dict[str, CheckRecord] = {r.check_id: r for r in loaded.manifest.checks} if loaded else {}
    verdicts = []
    for ob in obligations:
        results = []
        for index, check in enumerate(ob.checks):
            check_id = f"{ob.id}#{index}"
            rec = records.get(check_id)
            ev: CheckEvidence | None = None
            if loaded is not None and loaded.fatal and check.kind != "manual":
                results.append(CheckResult(
                    check_id=check_id, obligation_id=ob.id, kind=check.kind, description=check.description,
                    params=dict(check.params), verdict="error", expected="evidence as the run recorded it",
                    observed="the manifest changed after the run", diagnosis=loaded.fatal, evidence=["manifest.json"]))
                continue
            if rec is not None and rec.error and foreign is not None and check.kind in KINDS and \
                    set(KINDS[check.kind].evidence) & foreign.kinds:
                rec = None  # the run could not collect it, but evidence from other tools was given for it
            if rec is not None and loaded is not None and rec.notes.get("not_applicable"):
                results.append(_not_applicable(check, check_id, ob.id, rec))
                continue
            if rec is not None and loaded is not None and rec.notes.get("no_evidence"):
                spec = KINDS.get(check.kind)
                results.append(CheckResult(
                    check_id=check_id, obligation_id=ob.id, kind=check.kind, description=check.description,
                    params=dict(check.params), verdict="no-evidence", expected=spec.summary if spec else "",
                    observed="not probed", diagnosis=f"not probed on this target: {rec.notes['no_evidence']}"))
                continue
            if rec is not None and loaded is not None and isinstance(rec.notes.get("plan_params"), dict) \
                    and loaded.record in ("self", "recorded"):
                from poetkb.ownedge.plan import apply_overrides

                check = check.model_copy(update={"params": apply_overrides(dict(check.params),
                                                                           rec.notes["plan_params"])})
            if rec is not None and loaded is not None:
                if rec.kind != check.kind:
                    results.append(CheckResult(
                        check_id=check_id, obligation_id=ob.id, kind=check.kind, description=check.description,
                        params=dict(check.params), verdict="error",
                        diagnosis=f"the catalog changed since the run: check {check_id} was {rec.kind} then and is "
                                  f"{check.kind} now; run the gate again"))
                    continue
                ev = loaded.evidence_for(rec)
            elif foreign is not None:
                ev = foreign.evidence_for(check_id, check.kind)
            if ev is not None and foreign is not None and rec is not None:
                ev.test_results, ev.load_summaries = foreign.test_results, foreign.load_summaries
            # the catalog is the authority on what a check requires; the manifest's copy is only reported
            result = checks.evaluate(check, check_id=check_id, obligation_id=ob.id, ev=ev)
            if result.verdict == "fail" and ev is not None and loaded is not None and _live(loaded.manifest.target):
                result = _silent(result, ev) or result
            if rec is not None and rec.params != check.params:
                result = result.model_copy(update={"details": {**result.details,
                                                               "params_recorded": dict(rec.params)}})
            results.append(result)
        verdicts.append(obligation_verdict(kb, ob, results))
    summary, overall, exit_code = summarize(verdicts)
    files: list[EvidenceFile] = list(loaded.manifest.files) if loaded else []
    if foreign is not None:
        files.extend(foreign.files)
    problems = list(loaded.manifest.problems) if loaded else []
    if loaded:
        problems.extend(msg for msg in loaded.problems.values() if msg not in problems)
        if loaded.fatal:
            problems.insert(0, loaded.fatal)
        elif loaded.record == "unrecorded":
            problems.insert(0, UNRECORDED.format(run=loaded.manifest.run_id))
    if not verdicts:
        problems.append("no obligation was judged, so nothing is proven")
    return GateReport(
        run_id=run_id, mode=mode, poetkb_version=__version__, started_at=started_at, finished_at=now_iso(),
        duration_s=round(duration, 3), target=loaded.manifest.target if loaded else target, selection=selection,
        evidence_dir=str(loaded.root.resolve()) if loaded else None, evidence_files=files, obligations=verdicts,
        summary=summary, verdict=overall, exit_code=exit_code, problems=problems,
        manifest_sha256=loaded.manifest_sha256 if loaded else None,
        evidence_record=_record_kind(loaded, foreign))


#: kinds whose probes are meant to be refused (or answered) by the edge itself, so an answer such as 404 is
#: evidence about the edge, not the sign of a route the target does not have
_EDGE_ANSWERS = frozenset({"ambiguous_framing_rejected", "host_isolated", "mtls_client_required", "tls_chain_valid"})
_LOGIN = ("login", "signin", "sign-in", "auth", "sso", "account")


def _live(target: TargetInfo | None) -> bool:
    """An edge poetkb did not bring up (``--target``): not the demo, not a ``--config`` copy."""
    return target is not None and target.source == "options" and target.variant != "own-config"


def _silent(result: CheckResult, ev: CheckEvidence) -> CheckResult | None:
    """A ``fail`` on a live edge whose every answer says nothing about the obligation becomes no-evidence.

    When every probe of the check got 404 or 405 (the target has no such route), 401 or 403, or a redirect
    to a login page, the failure is about the probe, not the edge: the result names what to add instead.
    """
    if result.kind in _EDGE_ANSWERS:
        return None
    answered = [e for e in ev.exchanges if e.response is not None]
    if not answered:
        return None

    def meaningless(e: Any) -> bool:
        status = e.response.status
        location = (e.response.headers.get("location") or "").lower()
        return status in (401, 403, 404, 405) or 300 <= status < 400 and any(w in location for w in _LOGIN)

    if not all(meaningless(e) for e in answered):
        return None
    from urllib.parse import urlsplit

    paths = sorted({urlsplit(e.request.url).path for e in answered})
    statuses = sorted({e.response.status for e in answered if e.response is not None})
    shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
    return result.model_copy(update={
        "verdict": "no-evidence", "observed": f"every answer was {', '.join(map(str, statuses))}",
        "diagnosis": (f"every probe ({shown}) got {', '.join(map(str, statuses))}: the target has no such route "
                      f"or asks for a login, so the answers say nothing about the obligation; name a route of "
                      f"yours for {result.kind} in a target profile (--target-profile, routes.{result.kind}.path)"),
        "details": {**result.details, "silenced_fail": result.diagnosis}})


def _not_applicable(check: Any, check_id: str, obligation_id: str, rec: CheckRecord) -> CheckResult:
    """A check the configuration does not claim: not-applicable with the reason, or fail when required."""
    reason = str(rec.notes["not_applicable"])
    required = bool(rec.notes.get("required"))
    spec = KINDS.get(check.kind)
    return CheckResult(
        check_id=check_id, obligation_id=obligation_id, kind=check.kind, description=check.description,
        params=dict(check.params), verdict="fail" if required else "not-applicable",
        expected=spec.summary if spec else "", observed="not configured",
        diagnosis=(f"{reason}, but the selection requires obligation {obligation_id}" if required
                   else f"not claimed by the configuration: {reason}"),
        details={"not_applicable": reason, "required": required})


UNRECORDED = ("unrecorded evidence: this knowledge base holds no manifest digest for run {run}, so nothing shows "
              "the directory is as the run left it; it was judged like evidence from another tool (without demo "
              "calibration)")


def _record_kind(loaded: LoadedRun | None, foreign: Foreign | None) -> EvidenceRecord | None:
    if loaded is not None:
        return loaded.record
    return "foreign" if foreign is not None else None


def check_recorded(kb: Knowledge, loaded: LoadedRun) -> None:
    """Compare the manifest with the digest the knowledge base recorded for its run, and mark ``loaded``.

    A match is ``recorded``; a different digest is ``mismatch`` (every check becomes an error); a run the
    knowledge base does not know, or recorded before digests were kept, is ``unrecorded``.
    """
    found = kb.recorded_manifest_digest(loaded.manifest.run_id)
    if found is None:
        loaded.record = "unrecorded"
    elif found != loaded.manifest_sha256:
        loaded.record = "mismatch"
        loaded.fatal = (f"manifest.json of run {loaded.manifest.run_id} does not match the digest this knowledge "
                        "base recorded when the run finished (the manifest was changed after the run); run the "
                        "gate again")
    else:
        loaded.record = "recorded"


def verify_report(kb: Knowledge | None, report: GateReport) -> tuple[str, list[str]]:
    """Check a stored report against what the knowledge base recorded of its run: ``(status, problems)``.

    ``status`` is ``recorded`` (the report's verdict and, for a gate run whose evidence is still there, its
    manifest digest match the record), ``unrecorded`` (no record to compare with) or ``mismatch`` (problems
    say what differs: the report file or the evidence manifest was changed after the run).
    """
    from poetkb.gates.evidence import MANIFEST
    from poetkb.safefile import read_bytes

    row = kb.gate_run(report.run_id) if kb is not None else None
    if row is None:
        return "unrecorded", []
    problems: list[str] = []
    if row.get("verdict") != report.verdict or row.get("exit_code") != report.exit_code:
        problems.append(f"the report of run {report.run_id} says {report.verdict} (exit {report.exit_code}) but the "
                        f"knowledge base recorded {row.get('verdict')} (exit {row.get('exit_code')}): the report file "
                        "was changed after the run")
    digest = row.get("manifest_sha256")
    evidence_dir = Path(report.evidence_dir) if report.evidence_dir else None
    if row.get("mode") == "run" and digest and evidence_dir is not None and os.path.lexists(evidence_dir / MANIFEST):
        import hashlib

        try:
            data = read_bytes(evidence_dir / MANIFEST, limit=16 * 1024 * 1024, root=evidence_dir)
        except InputError as exc:
            problems.append(f"the evidence manifest of run {report.run_id} cannot be read: {exc.message}")
        else:
            if hashlib.sha256(data).hexdigest() != digest:
                problems.append(f"manifest.json of run {report.run_id} does not match the digest recorded when the "
                                "run finished (the evidence was changed after the run)")
    return ("mismatch" if problems else "recorded"), problems


def evaluate_evidence(kb: Knowledge, paths: Sequence[Path], selection: Selection | None = None, *,
                      record: bool = True, write_reports: bool = True) -> GateReport:
    """Judge stored evidence without traffic: a gate's evidence directory, or files from other tools."""
    if not paths:
        raise InputError("no evidence given", field="evidence", hint="pass --evidence DIR or FILE")
    started_at, t0 = now_iso(), time.perf_counter()
    journals = _chaos_journals(paths)
    if journals:
        report = _judge_journals(kb, journals, selection, started_at=started_at, t0=t0)
        return _finish(kb, report, record=record, write_reports=write_reports)
    first = Path(paths[0])
    loaded = load_run(first) if first.is_dir() and os.path.lexists(first / "manifest.json") else None
    if loaded is not None:
        check_recorded(kb, loaded)
    if loaded is None and first.is_dir() and len(paths) == 1 and any(
            p.name == "manifest.json" for p in first.rglob("manifest.json")):
        raise InputError("this directory holds evidence runs; pass one run's directory", file=first,
                         hint="for example .poet/evidence/<run-id>/")
    foreign = _foreign([Path(p) for p in paths[1:]] if loaded else [Path(p) for p in paths])
    chosen = selection or Selection()
    if chosen.all or chosen.obligations or chosen.domains:
        obligations = select_obligations(kb, chosen)
    elif loaded is not None:
        ids = sorted({r.obligation_id for r in loaded.manifest.checks})
        if not ids:
            raise InputError("the evidence directory records no checks, so there is nothing to judge",
                             file=first / "manifest.json", field="checks",
                             hint="select obligations with --obligation or --domain, or run the gate again")
        require_known(kb, ids, where="the evidence manifest", file=first / "manifest.json")
        obligations = kb.obligations(ids=ids)
        chosen = Selection(obligations=ids)
    else:
        assert foreign is not None
        kinds = foreign.kinds
        obligations = [ob for ob in kb.obligations() if any(
            c.kind != "manual" and c.kind in KINDS and set(KINDS[c.kind].evidence) & kinds for c in ob.checks)]
        if not obligations:
            raise InputError(f"no obligation has a check that reads {', '.join(sorted(kinds))}", field="evidence",
                             hint="select obligations with --obligation or --domain")
        chosen = Selection(obligations=[ob.id for ob in obligations])
    report = _judge(kb, obligations, loaded, foreign, run_id=new_run_id(), mode="evaluate", started_at=started_at,
                    duration=time.perf_counter() - t0, selection=chosen,
                    target=None if loaded else TargetInfo(source="evidence"))
    return _finish(kb, report, record=record, write_reports=write_reports)


def _chaos_journals(paths: Sequence[Path]) -> list[tuple[Path, bytes]]:
    """The chaos journals among ``paths`` (read bounded); empty when none is one, InputError when mixed."""
    from poetkb.chaos.evidence import looks_like_journal
    from poetkb.safefile import EVIDENCE_FILE_LIMIT, read_bytes

    found = []
    for path in paths:
        if path.is_dir() or not path.exists():
            continue
        data = read_bytes(path, limit=EVIDENCE_FILE_LIMIT, display=str(path))
        if looks_like_journal(data):
            found.append((path, data))
    if found and len(found) != len(paths):
        raise InputError("chaos journals are judged on their own; pass them without other evidence",
                         file=", ".join(str(p) for p, _ in found), field="evidence")
    return found


def _judge_journals(kb: Knowledge, journals: list[tuple[Path, bytes]], selection: Selection | None, *,
                    started_at: str, t0: float) -> GateReport:
    """One verdict per obligation the journals name (or the selection), each re-derived from the steps."""
    import hashlib

    from poetkb.chaos.evidence import check_results, read_journal

    parsed = [(str(path), read_journal(path, data), data) for path, data in journals]
    named = sorted({oid for _, journal, _ in parsed for oid in journal.obligations})
    chosen = selection or Selection()
    if chosen.all or chosen.obligations or chosen.domains:
        obligations = select_obligations(kb, chosen)
    else:
        require_known(kb, named, where="the chaos journal", file=Path(parsed[0][0]))
        obligations = kb.obligations(ids=named)
        chosen = Selection(obligations=named)
    results: dict[str, list[CheckResult]] = {ob.id: [] for ob in obligations}
    for shown, journal, _ in parsed:
        for oid, result in check_results(journal, shown, obligations).items():
            results[oid].append(result)
    verdicts = []
    for ob in obligations:
        if results[ob.id]:
            verdicts.append(obligation_verdict(kb, ob, results[ob.id]))
        else:
            verdicts.append(ObligationVerdict(obligation_id=ob.id, title=ob.title, domain=ob.domain, risk=ob.risk,
                                              verdict="no-evidence",
                                              diagnosis="no chaos journal given names this obligation"))
    summary, overall, exit_code = summarize(verdicts)
    files = [EvidenceFile(path=shown, kind="chaos_journal", sha256=hashlib.sha256(data).hexdigest(), bytes=len(data),
                          description=f"chaos journal of run {journal.run_id} ({journal.status})")
             for shown, journal, data in parsed]
    return GateReport(run_id=new_run_id(), mode="evaluate", poetkb_version=__version__, started_at=started_at,
                      finished_at=now_iso(), duration_s=round(time.perf_counter() - t0, 3),
                      target=TargetInfo(source="evidence"), selection=chosen, evidence_files=files,
                      obligations=verdicts, summary=summary, verdict=overall, exit_code=exit_code)


def _finish(kb: Knowledge, report: GateReport, *, record: bool, write_reports: bool) -> GateReport:
    path = None
    if write_reports:
        from poetkb.gates.reports import write_reports as write

        path = str(write(report)["json"])
    if record:
        from poetkb.gates.history import record_report

        record_report(kb, report, report_path=path)
    return report


def _with_profile(edge: Edge, profile: TargetProfile) -> Edge:
    """The edge with what a target profile says filled in where the edge says nothing."""
    filled: dict[str, Any] = {name: getattr(profile, name) for name in ("target", "proxy", "access_log",
                                                                         "metrics_url", "reload_command")
                              if getattr(edge, name) is None}
    if not edge.upstream_admin:
        filled["upstream_admin"] = tuple(profile.upstream_admin)
    return edge.model_copy(update=filled)


def gate(kb: Knowledge, *, all: bool = False, obligations: Sequence[str] = (),  # noqa: A002
         domains: Sequence[str] = (), edge: Edge | None = None, capture: bool = False,
         evidence: Sequence[Path] = (), transport: Any = None, record: bool = True, write_reports: bool = True,
         on_edge: Callable[[OwnEdge], None] | None = None, reload_first: bool = True) -> GateReport:
    """Resolve the edge (the running demo when it names no target or configuration) and run a gate; see
    :func:`run_gate`.

    On the demo the edge is reloaded once before the checks (``reload_first``): servers that an earlier run's
    faults had taken out by passive health would otherwise still be out, and a check of balancing would see one
    server only. A chaos experiment's gate probe turns it off: the state the experiment left is what it observes.

    With ``edge.config``, the user's own NGINX or HAProxy configuration is brought up on loopback against
    instrumented upstreams for the run (:mod:`poetkb.ownedge`) and torn down after it; ``on_edge`` is called
    with the running :class:`~poetkb.ownedge.OwnEdge` first (the CLI prints ``--explain`` from it).
    """
    from poetkb.gates.target import ResolvedTarget, resolve

    edge = edge or Edge()
    selection = Selection(all=all, obligations=list(obligations), domains=list(domains))
    if edge.config is not None:
        given = edge.option_names(Edge.RUNNING_EDGE)
        if given:
            raise InputError(f"--config brings the edge up itself; {', '.join(given)} cannot be given with it",
                             field="config", hint="drop those options, or gate a running edge with --target")
        from poetkb.ownedge import own_edge
        from poetkb.ownedge.plan import router

        with own_edge(edge.config, proxy=edge.proxy) as running:
            if on_edge is not None:
                on_edge(running)
            resolved = ResolvedTarget(running.target, running.reload, plan=running.plan, router=router(running.plan),
                                      required=frozenset(obligations), extras=running.evidence_files())
            return run_gate(kb, selection, resolved, transport=transport, capture=capture, evidence=evidence,
                            record=record, write_reports=write_reports)
    profile = None
    if edge.target_profile is not None:
        from poetkb.gates.profile import load_target_profile

        profile = load_target_profile(edge.target_profile)
        edge = _with_profile(edge, profile)
        if edge.target is None:
            raise InputError("a target profile needs a target", file=edge.target_profile, field="target",
                             hint="write `target: URL` in the profile, or pass --target")
    resolved = resolve(edge)
    resolved.reload_first = reload_first and resolved.info.source == "demo"
    if profile is not None:
        from poetkb.gates.profile import router as profile_router

        resolved.plan, resolved.router = profile, profile_router(profile)
    return run_gate(kb, selection, resolved, transport=transport, capture=capture, evidence=evidence, record=record,
                    write_reports=write_reports)
