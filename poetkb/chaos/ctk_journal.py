"""Chaos Toolkit journals as evidence: a CTK run's ``journal.json`` converted into a poetkb chaos journal.

A CTK journal (chaoslib's documented run record) holds the experiment, ``status`` (completed, failed,
aborted, interrupted), ``deviated``, ``steady_states`` (``before`` and ``after``, each with
``steady_state_met`` and its probe runs, and ``during``), the method's activity runs (``run``) and the
``rollbacks``. Each run becomes a :class:`~poetkb.chaos.journal.StepRecord` (a hypothesis probe whose
``tolerance_met`` is false is "deviated", an activity whose ``status`` is "failed" is "failed"), the run's
status is mapped onto poetkb's, and the result is sealed with its digest and names the CTK file and its
sha256 it came from. ``poet gate evaluate`` then judges it like any journal: the CTK probes become evidence
for the obligations (from ``--obligation``, the experiment's ``poetkb`` extension or its
``poetkb-obligation:`` tags). What poetkb's CTK control adds (:mod:`poetkb.chaos.ctk_control`) is read
too: the watch rounds are in ``steady_states.during`` already; the ``poetkb`` entry's guardrail probe runs
become ``guardrail`` steps, its check after the rollbacks ``after`` steps, and a run it stopped gets the
status it gave (``deviated`` or ``aborted``).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from poetkb.chaos.ctk import EXTENSION, OBLIGATION_TAG
from poetkb.chaos.evidence import seal
from poetkb.chaos.journal import Journal
from poetkb.errors import InputError

#: characters of one activity's output kept (CTK outputs may be whole HTTP bodies)
OUTPUT_KEEP = 4096
MAX_RUNS = 10_000


def is_ctk_journal(doc: Any) -> bool:
    """True for a parsed CTK journal (an object with the experiment it ran and its activity runs)."""
    return isinstance(doc, dict) and isinstance(doc.get("experiment"), dict) and "run" in doc and (
        "steady_states" in doc or "status" in doc)


def _when(value: Any, fallback: float) -> float:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return fallback
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)  # chaoslib writes UTC times without an offset
        return parsed.timestamp()
    return fallback


def _output(value: Any) -> dict[str, Any]:
    text = json.dumps(value, default=str)
    if len(text) > OUTPUT_KEEP:
        return {"output": text[:OUTPUT_KEEP], "truncated": True}
    return {"output": json.loads(text)}


def _record(raw: Any, phase: str, where: str, start: float, *, hypothesis: bool) -> dict[str, Any]:
    if not isinstance(raw, dict) or not isinstance(raw.get("activity"), dict):
        raise InputError("an activity run must be an object with an activity", field=where)
    activity = raw["activity"]
    provider = activity.get("provider") if isinstance(activity.get("provider"), dict) else {}
    name = str(activity.get("name") or f"{phase}-{where}")[:200]
    status = "ok"
    detail = ""
    if raw.get("status") == "failed":
        status = "failed"
        exc = raw.get("exception")
        detail = "".join(exc)[-500:].strip() if isinstance(exc, list) else str(exc or "the activity failed")[:500]
    elif hypothesis and raw.get("tolerance_met") is False:
        status, detail = "deviated", "tolerance not met"
    started = _when(raw.get("start"), start)
    duration = raw.get("duration")
    if not isinstance(duration, int | float):
        duration = max(0.0, _when(raw.get("end"), started) - started)
    return {"phase": phase, "name": name, "type": f"ctk_{activity.get('type', 'activity')}_"
            f"{provider.get('type', 'unknown')}", "status": status, "started_at": round(started, 3),
            "duration_ms": round(float(duration) * 1000, 1), "detail": detail,
            "output": _round(raw, _output(raw.get("output")))}


def _round(raw: dict[str, Any], output: dict[str, Any]) -> dict[str, Any]:
    """Keep the watch round poetkb's CTK control numbered (its output's ``watch_round``) where the judge reads it."""
    inner = raw.get("output")
    if isinstance(inner, dict) and isinstance(inner.get("watch_round"), int):
        output["watch_round"] = inner["watch_round"]
    return output


def _status(doc: dict[str, Any]) -> str:
    status = doc.get("status")
    before = (doc.get("steady_states") or {}).get("before") or {}
    if before.get("steady_state_met") is False:
        return "not-steady"  # chaoslib may still say "completed": the method never ran
    stopped = _ours(doc).get("stopped")
    if isinstance(stopped, dict) and stopped.get("kind") in ("deviated", "aborted"):
        return str(stopped["kind"])  # poetkb's control stopped the method (watch or guardrail)
    if status == "completed":
        return "deviated" if doc.get("deviated") else "completed"
    if status in ("failed", "aborted", "interrupted"):
        return str(status)
    raise InputError(f"unknown Chaos Toolkit run status {status!r}", field="$.status",
                     hint="expected completed, failed, aborted or interrupted")


def _ours(doc: dict[str, Any]) -> dict[str, Any]:
    """The ``poetkb`` entry poetkb's CTK control writes into the journal (empty when it did not run)."""
    ours = doc.get("poetkb")
    return ours if isinstance(ours, dict) else {}


def _tolerance_rounds(doc: dict[str, Any]) -> int:
    """The experiment's ``watch.tolerance_rounds`` when poetkb's control ran the watch (else 1: every failed
    round of CTK's own continuous hypothesis counts)."""
    if not _ours(doc):
        return 1
    for ext in doc["experiment"].get("extensions") or []:
        if isinstance(ext, dict) and ext.get("name") == EXTENSION:
            rounds = (ext.get("watch") or {}).get("tolerance_rounds")
            if isinstance(rounds, int) and 1 <= rounds <= 1000:
                return rounds
    return 1


def obligations_of(experiment: dict[str, Any]) -> list[str]:
    """Obligations the CTK experiment names (poetkb's extension, else its ``poetkb-obligation:`` tags)."""
    for ext in experiment.get("extensions") or []:
        if isinstance(ext, dict) and ext.get("name") == EXTENSION and ext.get("obligations"):
            return [str(o) for o in ext["obligations"]]
    return [t[len(OBLIGATION_TAG):] for t in experiment.get("tags") or []
            if isinstance(t, str) and t.startswith(OBLIGATION_TAG)]


def import_ctk_journal(doc: Any, data: bytes, *, file: str, obligations: list[str] | None = None) -> Journal:
    """The poetkb journal of a CTK journal ``doc`` (parsed from ``data``, read from ``file``), sealed."""
    if not is_ctk_journal(doc):
        raise InputError("not a Chaos Toolkit journal (an object with experiment, run and steady_states)",
                         file=file, field="$")
    experiment = doc["experiment"]
    chosen = list(obligations or obligations_of(experiment))
    if not chosen:
        raise InputError("the Chaos Toolkit journal names no obligation", file=file,
                         hint="pass --obligation ID (repeatable); see `poet obligations list`")
    start = _when(doc.get("start"), 0.0)
    end = _when(doc.get("end"), start + float(doc.get("duration") or 0.0))
    steady = doc.get("steady_states") or {}
    steps: list[dict[str, Any]] = []
    try:
        for phase, key in (("before", "before"), ("after", "after")):
            state = steady.get(key) or {}
            for n, raw in enumerate(state.get("probes") or []):
                steps.append(_record(raw, phase, f"$.steady_states.{key}.probes[{n}]", start, hypothesis=True))
            if phase == "before":
                for n, raw in enumerate(steady.get("during") or []):
                    # each entry is a hypothesis run (its probes) or, in older journals, one probe run
                    inner = raw.get("probes") if isinstance(raw, dict) and "activity" not in raw else [raw]
                    for m, probe in enumerate(inner or []):
                        steps.append(_record(probe, "watch", f"$.steady_states.during[{n}].probes[{m}]", start,
                                             hypothesis=True))
                for n, raw in enumerate(doc.get("run") or []):
                    steps.append(_record(raw, "method", f"$.run[{n}]", start, hypothesis=False))
                for n, raw in enumerate(doc.get("rollbacks") or []):
                    steps.append(_record(raw, "rollback", f"$.rollbacks[{n}]", start, hypothesis=False))
                ours = _ours(doc)
                for n, raw in enumerate(ours.get("guardrails") or []):
                    steps.append(_record(raw, "guardrail", f"$.poetkb.guardrails[{n}]", start, hypothesis=True))
                for n, raw in enumerate(ours.get("after_rollbacks") or []):
                    steps.append(_record(raw, "after", f"$.poetkb.after_rollbacks[{n}]", start, hypothesis=True))
    except InputError as exc:
        raise InputError(exc.message, file=file, field=exc.field) from None
    if len(steps) > MAX_RUNS:
        raise InputError(f"{len(steps)} activity runs is over the limit of {MAX_RUNS}", file=file)
    order = {"before": 0, "watch": 1, "guardrail": 1, "method": 1, "rollback": 2, "after": 3}
    steps.sort(key=lambda s: (order[s["phase"]], s["started_at"]))
    status = _status(doc)
    sha = hashlib.sha256(data).hexdigest()
    journal = Journal.model_validate({
        "run_id": f"ctk-{sha[:16]}", "title": str(experiment.get("title") or "Chaos Toolkit experiment"),
        "experiment_file": file, "experiment_sha256": sha, "obligations": chosen,
        "started_at": round(start, 3), "finished_at": round(end, 3), "phase": "done", "status": status,
        "reason": f"Chaos Toolkit run: status {doc.get('status')}, deviated {bool(doc.get('deviated'))}",
        "exit_code": {"completed": 0}.get(status, 1), "steps": steps,
        "watch_tolerance_rounds": _tolerance_rounds(doc),
        "imported_from": {"format": "chaostoolkit-journal", "file": file, "sha256": sha,
                          "chaoslib_version": str(doc.get("chaoslib-version") or "")},
        "verdicts": {oid: {"completed": "held", "deviated": "deviated"}.get(status, "not-judged") for oid in chosen}})
    return seal(journal)
