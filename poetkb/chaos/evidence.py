"""A chaos journal as gate evidence: sealed with a digest at the end of the run, judged again from its steps.

``poet gate evaluate --evidence journal.json`` reads a journal (a file of its own, bounded) and gives one
verdict per obligation the experiment names. The verdict is derived again from the recorded steps, not
copied from the journal's ``status``:

- **error** when the journal's digest does not match its content (it changed after the run), when the run
  never finished, when a rollback or an automatic undo failed (the system may still be faulted), or when
  the method did not run to its end (an action failed, a step was skipped because of a signal or the
  duration limit): the experiment then says nothing about the obligation;
- **fail** when the steady state did not hold: before the method, in ``watch_tolerance_rounds`` watch
  rounds in a row (the experiment's ``watch.tolerance_rounds``: fewer failed rounds in a row are what the
  experiment allows, as the watch itself does), in a method probe with a tolerance, in a guardrail probe,
  or after the rollbacks;
- **pass** otherwise: the hypothesis held before, during and after the method, and every rollback ran.

A journal whose recorded status disagrees with what its steps show is an error too (one was edited).
Chaos Toolkit journals imported with ``poet chaos import`` become journals of this format first.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from poetkb.chaos.journal import Journal
from poetkb.errors import InputError

SCHEMA = "poetkb.chaos-journal/1"
#: statuses a run may end with, and the verdict each implies for its obligations
STATUS_VERDICT = {"completed": "pass", "deviated": "fail", "not-steady": "fail", "aborted": "error",
                  "failed": "error", "interrupted": "error", "rollback-failed": "error", "running": "error"}


def digest(journal: Journal) -> str:
    """sha256 of the journal's canonical JSON without its ``digest`` field."""
    data = journal.model_dump(mode="json", exclude={"digest"})
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def seal(journal: Journal) -> Journal:
    """The journal with its digest set (done when the run ends)."""
    return journal.model_copy(update={"digest": digest(journal)})


def looks_like_journal(data: bytes) -> bool:
    """True when ``data`` is (the start of) a poetkb chaos journal."""
    head = data[:4096].decode("utf-8", errors="replace")
    return head.lstrip().startswith("{") and f'"schema_version": "{SCHEMA}"' in head


def read_journal(path: Path, data: bytes) -> Journal:
    """Parse and validate a journal; :class:`InputError` names the file (and the field) otherwise."""
    from poetkb.yamlfile import loads_json

    raw = loads_json(data, file=str(path))
    try:
        return Journal.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"not a valid chaos journal: {first['msg']}", file=path, field=where,
                         hint="pass the journal.json a `poet chaos run` wrote") from None


def judge(journal: Journal) -> tuple[str, str, str]:
    """(verdict, observed, diagnosis) for every obligation of the run (see the module docstring)."""
    if journal.digest is not None and journal.digest != digest(journal):
        return "error", "digest mismatch", "the journal changed after the run (its digest does not match its content)"
    if journal.phase != "done" or journal.status == "running":
        return "error", f"phase {journal.phase}", "the run did not finish, so the experiment proves nothing"
    steps = journal.steps
    undo = [s for s in steps if s.phase in ("rollback", "cleanup") and s.status != "ok"]
    verdict, observed, diagnosis = "pass", "", ""
    if undo:
        verdict, observed = "error", f"{len(undo)} rollback(s) failed"
        diagnosis = f"rollback {undo[0].name} failed: {undo[0].detail}; the system may still be faulted"
    else:
        before = [s for s in steps if s.phase == "before"]
        tolerated = _tolerated_watch(journal)
        broken = [s for s in steps if s.status != "ok" and id(s) not in tolerated and (
            s.phase in ("before", "watch", "guardrail", "after")
            or (s.phase == "method" and s.status == "deviated"))]
        incomplete = [s for s in steps if s.phase == "method" and s.status in ("failed", "error", "skipped")
                      and not (s.status == "skipped" and broken)]
        if not before:
            verdict, observed, diagnosis = "error", "no hypothesis probe ran", "the steady state was never checked"
        elif broken:
            first = broken[0]
            verdict, observed = "fail", f"{first.phase} {first.name}: {first.status}"
            diagnosis = f"the steady state did not hold ({first.phase} probe {first.name}: {first.detail})"
        elif incomplete:
            first = incomplete[0]
            verdict, observed = "error", f"method {first.name}: {first.status}"
            diagnosis = f"the method did not run to its end ({first.name}: {first.detail or first.status})"
        elif not any(s.phase == "after" for s in steps):
            verdict, observed, diagnosis = "error", "no check after the rollbacks", \
                "the steady state was not checked after the rollbacks"
        else:
            observed = f"{len(before)} probe(s) held before, during and after the method; every rollback ran"
    recorded = STATUS_VERDICT.get(journal.status, "error")
    if (recorded == "pass") != (verdict == "pass"):
        return "error", f"status {journal.status} but steps show {verdict}", \
            f"the journal's recorded status ({journal.status}) contradicts its steps ({observed or diagnosis})"
    return verdict, observed, diagnosis


def _tolerated_watch(journal: Journal) -> set[int]:
    """The failed watch steps the run was allowed: their round is not part of ``watch_tolerance_rounds`` failed
    rounds in a row (as the watch itself decides; a round fails when any of its probes failed). Steps without a
    round number are rounds of their own."""
    needed = journal.watch_tolerance_rounds
    if needed <= 1:
        return set()
    rounds: dict[Any, list[Any]] = {}
    for n, step in enumerate(s for s in journal.steps if s.phase == "watch"):
        rounds.setdefault(step.output.get("watch_round", f"step-{n}"), []).append(step)
    tolerated: set[int] = set()
    streak: list[list[Any]] = []
    for members in [*rounds.values(), []]:  # the empty sentinel closes the last streak
        if members and any(s.status != "ok" for s in members):
            streak.append(members)
            continue
        if len(streak) < needed:
            tolerated.update(id(s) for group in streak for s in group if s.status != "ok")
        streak = []
    return tolerated


def check_results(journal: Journal, shown: str, obligations: list[Any]) -> dict[str, Any]:
    """obligation id -> the CheckResult this journal gives it (for obligations the journal names)."""
    from poetkb.gates.schema import CheckResult

    verdict, observed, diagnosis = judge(journal)
    out = {}
    for ob in obligations:
        if ob.id not in journal.obligations:
            continue
        out[ob.id] = CheckResult(
            check_id=f"{ob.id}#chaos:{journal.run_id}", obligation_id=ob.id, kind="chaos_experiment",
            description=f"chaos experiment: {journal.title}", verdict=verdict,  # type: ignore[arg-type]
            expected="the steady state holds before, during and after the method, and every rollback runs",
            observed=observed, diagnosis=diagnosis, evidence=[shown],
            details={"run_id": journal.run_id, "status": journal.status, "experiment_sha256": journal.experiment_sha256,
                     "steps": len(journal.steps)},
            samples=len(journal.steps),
            duration_ms=round(((journal.finished_at or journal.started_at) - journal.started_at) * 1000, 1))
    return out
