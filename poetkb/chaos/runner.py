"""Run an experiment: hypothesis before, method under watch, rollbacks always, hypothesis after.

1. **Preflight** (nothing has run yet; problems are bad input, exit 2): a production experiment needs
   ``confirm_production`` and only ``safe_in_prod`` actions; the method may not fault a larger share
   of the demo's upstreams than ``guardrails.max_faulted_share``; every target known before the run
   must be on loopback unless ``allow_remote``.
2. **Before**: every steady-state probe must hold, else the run is "not-steady" and the method is skipped.
3. **Method**, step by step, while a background thread (:mod:`poetkb.chaos.watch`) probes the
   hypothesis and the guardrails. A deviation, a tripped guardrail, the duration limit, a failed
   action, SIGINT or SIGTERM stop the method at the next step boundary; pauses are interruptible.
4. **Rollbacks**, always (after success, deviation, abort, failure or a signal), then the automatic
   cleanups the actions registered (heal faulted upstreams, stop fault proxies). Further signals are
   recorded and ignored until they are done; every rollback is bounded by its own timeout.
5. **After**: the hypothesis again; a deviation here makes a completed run "deviated".

The journal (:mod:`poetkb.chaos.journal`) is written atomically after every phase.
"""

from __future__ import annotations

import contextlib
import hashlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poetkb.chaos.journal import EXIT_CODES, Journal, StepRecord, default_journal_path, write_atomic
from poetkb.chaos.models import ACTION_TYPES, Experiment
from poetkb.chaos.providers import Outcome, RunContext, ensure_url, run_step, safe_run
from poetkb.chaos.refs import ReferenceError_, substitute
from poetkb.errors import InputError, PoetError

if TYPE_CHECKING:
    from poetkb.demo.state import DemoState
    from poetkb.knowledge import Knowledge


#: passing watch and guardrail rounds kept in the journal; later ones are only counted (failures are all kept)
MAX_OK_WATCH_RECORDS = 500


@dataclass
class RunOptions:
    """How to run: safety switches, where the journal goes, and (for tests) an httpx transport."""

    allow_remote: bool = False
    confirm_production: bool = False
    journal_path: Path | None = None
    install_signals: bool = True
    transport: Any = None
    echo: Callable[[str], None] = lambda line: None


class StopFlag:
    """The first reason to stop the method wins; later ones are kept as notes."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.kind = ""
        self.reason = ""
        self._lock = threading.Lock()

    def set(self, kind: str, reason: str) -> None:
        with self._lock:
            if not self.event.is_set():
                self.kind, self.reason = kind, reason
                self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when a stop was requested meanwhile."""
        return self.event.wait(max(0.0, seconds))


class Recorder:
    """Collects step records from the main thread and the watcher; writes the journal atomically."""

    def __init__(self, journal: dict[str, Any], path: Path, echo: Callable[[str], None]) -> None:
        self.journal = journal
        self.path = path
        self.echo = echo
        self.lock = threading.Lock()
        self.ok_watch = 0

    def add(self, phase: str, step: Any, outcome: Outcome | None, started: float, *, status: str | None = None,
            detail: str = "") -> StepRecord:
        """Record one step (``status``/``detail`` override the outcome's, e.g. "skipped")."""
        record = StepRecord.model_validate({
            "phase": phase, "name": step.name, "type": step.type,
            "status": status or (outcome.status if outcome else "error"), "started_at": round(started, 3),
            "duration_ms": round((time.time() - started) * 1000, 1),
            "detail": detail or (outcome.detail if outcome else ""),
            "output": _jsonable(outcome.output) if outcome else {}})
        with self.lock:
            if phase in ("watch", "guardrail") and record.status == "ok":
                if self.ok_watch >= MAX_OK_WATCH_RECORDS:
                    self.journal["watch_ok_omitted"] = self.journal.get("watch_ok_omitted", 0) + 1
                    return record
                self.ok_watch += 1
            self.journal["steps"].append(record)
        if phase not in ("watch", "guardrail") or record.status != "ok":
            self.echo(f"[{phase}] {step.name} ({step.type}): {record.status} {record.detail}".rstrip())
        if phase not in ("watch", "guardrail"):
            self.write()
        return record

    def enter(self, phase: str) -> None:
        """Mark (and write) the phase the run is in now."""
        with self.lock:
            self.journal["phase"] = phase
        self.write()

    def write(self) -> Journal:
        with self.lock:
            journal = Journal.model_validate({**self.journal, "steps": list(self.journal["steps"])})
        if journal.phase == "done":
            from poetkb.chaos.evidence import seal

            journal = seal(journal)
        write_atomic(self.path, journal.model_dump(mode="json"))
        return journal


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))


# -- preflight -------------------------------------------------------------------------------------------
def preflight(experiment: Experiment, demo: DemoState | None, options: RunOptions, *, file: str | None) -> None:
    """The checks made before anything runs (module docstring, step 1); raises :class:`InputError`."""
    from poetkb.chaos.loader import production_problems

    if experiment.production:
        if not options.confirm_production:
            raise InputError("the experiment is marked production: confirm with --confirm-production",
                             file=file, field="production",
                             hint="only do this when the experiment's actions are meant for that environment")
        unsafe = production_problems(experiment)
        if unsafe:
            raise InputError(f"a production experiment may only run actions marked safe_in_prod; these are not: "
                             f"{', '.join(unsafe)}", file=file, field="production",
                             hint="mark an action safe_in_prod: true only when it is harmless in production")
    faulted = {s.upstream for s in experiment.method if s.type in ("upstream_fault", "edge_interpose")}
    if faulted and demo is not None:
        share = len(faulted) / max(1, len(demo.upstreams))
        if share > experiment.guardrails.max_faulted_share + 1e-9:
            raise InputError(f"the method faults {len(faulted)} of {len(demo.upstreams)} upstreams "
                             f"({share:.0%}), over guardrails.max_faulted_share "
                             f"({experiment.guardrails.max_faulted_share:.0%})", file=file,
                             field="guardrails.max_faulted_share", hint="fault fewer upstreams or raise the limit")
    scope = base_scope(experiment, demo)
    for step in experiment.all_steps():
        if getattr(step, "dsn", ""):
            from poetkb.chaos.database import resolve_dsn

            try:
                resolve_dsn(substitute(step.dsn, scope), allow_remote=options.allow_remote)
            except ReferenceError_:
                pass  # depends on an output: checked when the step runs
            except InputError as exc:
                raise InputError(exc.message, file=file, field=f"{step.name}.dsn", hint=exc.hint) from None
        for key in ("url",):
            raw = getattr(step, key, None)
            if not isinstance(raw, str):
                continue
            try:
                url = substitute(raw, scope)
            except ReferenceError_:
                continue  # depends on an output: checked when the step runs
            ensure_url(str(url), RunContext(client=None, scope=scope, allow_remote=options.allow_remote),  # type: ignore[arg-type]
                       f"{step.name}.{key}")


def base_scope(experiment: Experiment, demo: DemoState | None) -> dict[str, Any]:
    """What ``${config...}``, ``${run.nonce}`` (a fresh hex string per run) and ``${demo...}`` resolve to."""
    import os

    scope: dict[str, Any] = {"config": dict(experiment.configuration), "run": {"nonce": os.urandom(4).hex()}}
    if demo is not None:
        scope["demo"] = {"base_url": demo.base_url, "tls_url": demo.tls_url, "metrics_url": demo.metrics_url,
                         "proxy": demo.proxy, "variant": demo.variant,
                         "upstreams": {u.name: {"url": u.url, "admin_url": u.admin_url} for u in demo.upstreams}}
    service = service_scope()
    if service is not None:
        scope["service"] = service
    return scope


def service_scope() -> dict[str, Any] | None:
    """What ``${service...}`` resolves to while the service tier runs: its URLs, DSN and variant."""
    from poetkb.demo.service.tier import load_service_state

    state = load_service_state()
    if state is None:
        return None
    return {"url": state.service_url, "admin_url": state.admin_url, "dsn": state.dsn, "variant": state.variant,
            "issuer_admin_url": state.issuer_admin_url, "dependency_url": state.dependency_url,
            "postgres": f"127.0.0.1:{state.ports['postgres']}"}


# -- signals ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _signals(stop: StopFlag, recorder: Recorder, rolling_back: threading.Event, install: bool) -> Iterator[None]:
    """SIGINT/SIGTERM request a stop (never raise); during rollbacks they are recorded and ignored."""
    if not install or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        with recorder.lock:
            recorder.journal["signals"].append(f"{name} at {time.time():.3f}"
                                               + (" (during rollback: ignored)" if rolling_back.is_set() else ""))
        if rolling_back.is_set():
            recorder.echo(f"{name}: rollbacks are running and will finish first")
            return
        recorder.echo(f"{name}: stopping the method; rollbacks will run")
        stop.set("interrupted", f"{name} received")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# -- the run ---------------------------------------------------------------------------------------------
def run_experiment(experiment: Experiment, *, kb: Knowledge | None = None, file: Path | None = None,
                   options: RunOptions | None = None, demo: DemoState | None = None) -> Journal:
    """Run ``experiment`` (see the module docstring) and return its journal (also written to disk)."""
    from poetkb.chaos.watch import Watcher
    from poetkb.gates.evidence import new_run_id
    from poetkb.gates.probes import make_client

    options = options or RunOptions()
    if demo is None:
        from poetkb import demo as demo_pkg

        demo = demo_pkg.load_state()
    preflight(experiment, demo, options, file=str(file) if file else None)
    run_id = new_run_id()
    path = options.journal_path or default_journal_path(run_id)
    journal: dict[str, Any] = {
        "run_id": run_id, "title": experiment.title, "experiment_file": str(file) if file else None,
        "experiment_sha256": hashlib.sha256(file.read_bytes()).hexdigest() if file else None,
        "obligations": list(experiment.obligations), "started_at": round(time.time(), 3), "steps": [],
        "signals": [], "watch_tolerance_rounds": experiment.steady_state.watch.tolerance_rounds,
    }
    recorder = Recorder(journal, path, options.echo)
    stop = StopFlag()
    rolling_back = threading.Event()
    internal: list[str] = []
    rollback_failed: list[str] = []
    deadline = time.monotonic() + experiment.guardrails.max_duration_s
    with make_client("http://127.0.0.1", transport=options.transport) as client, \
            _signals(stop, recorder, rolling_back, options.install_signals):
        ctx = RunContext(client=client, scope=base_scope(experiment, demo), allow_remote=options.allow_remote,
                         demo=demo, kb=kb, stop_requested=stop.is_set)
        try:
            recorder.enter("before")
            before_ok = _hypothesis("before", experiment, ctx, recorder, stop)
            recorder.write()
            if not before_ok and not stop.is_set():
                stop.set("not-steady", "the steady state did not hold before the method")
            if not stop.is_set():
                watcher = Watcher(experiment, client_transport=options.transport, scope=dict(ctx.scope),
                                  allow_remote=options.allow_remote, demo=demo, kb=kb, stop=stop,
                                  recorder=recorder, deadline=deadline)
                watcher.start()
                recorder.enter("method")
                try:
                    _method(experiment, ctx, recorder, stop, deadline, internal)
                finally:
                    watcher.stop()
                recorder.write()
        finally:
            rolling_back.set()
            recorder.enter("rollback")
            _rollbacks(experiment, ctx, recorder, rollback_failed)
            recorder.enter("after")
            after_ok = _hypothesis("after", experiment, ctx, recorder, None)
        status, reason = _final(stop, after_ok=after_ok, rollback_failed=rollback_failed,
                                internal=internal)
        journal.update(phase="done", status=status, reason=reason, exit_code=3 if internal else EXIT_CODES[status],
                       finished_at=round(time.time(), 3),
                       verdicts={oid: ("held" if status == "completed" else
                                       "deviated" if status in ("deviated",) else "not-judged")
                                 for oid in experiment.obligations})
        return recorder.write()


def _final(stop: StopFlag, *, after_ok: bool, rollback_failed: list[str],
           internal: list[str]) -> tuple[str, str]:
    if rollback_failed:
        return "rollback-failed", "; ".join(rollback_failed)
    if internal:
        return "failed", "; ".join(internal)
    if stop.is_set():
        return {"deviated": "deviated", "aborted": "aborted", "failed": "failed", "interrupted": "interrupted",
                "not-steady": "not-steady"}[stop.kind], stop.reason
    if not after_ok:
        return "deviated", "the steady state did not hold after the rollbacks"
    return "completed", "the steady state held before, during and after the method"


def _hypothesis(phase: str, experiment: Experiment, ctx: RunContext, recorder: Recorder,
                stop: StopFlag | None) -> bool:
    ok = True
    for probe in experiment.steady_state.probes:
        if stop is not None and stop.is_set():
            return False
        outcome = safe_run(probe, ctx)
        recorder.add(phase, probe, outcome, time.time() - outcome.output.pop("_took", 0.0))
        if outcome.status != "ok":
            ok = False
        elif phase == "before":
            ctx.scope[probe.name] = outcome.output
    return ok


def _method(experiment: Experiment, ctx: RunContext, recorder: Recorder, stop: StopFlag, deadline: float,
            internal: list[str]) -> None:
    for step in experiment.method:
        if stop.is_set():
            recorder.add("method", step, None, time.time(), status="skipped", detail=f"not run: {stop.reason}")
            continue
        if time.monotonic() > deadline:
            stop.set("aborted", f"guardrail: max_duration_s {experiment.guardrails.max_duration_s} exceeded")
            recorder.add("method", step, None, time.time(), status="skipped", detail=f"not run: {stop.reason}")
            continue
        if step.type == "pause":
            t0 = time.time()
            room = max(0.0, deadline - time.monotonic())
            interrupted = stop.wait(min(step.seconds, room))
            if not interrupted and step.seconds > room:
                stop.set("aborted", f"guardrail: max_duration_s {experiment.guardrails.max_duration_s} exceeded")
            recorder.add("method", step, Outcome("ok", {"slept_s": round(time.time() - t0, 3)},
                                                  f"cut short: {stop.reason}" if stop.is_set()
                                                  else f"{step.seconds} s"), t0)
            continue
        if step.pause_before_s and stop.wait(step.pause_before_s):
            recorder.add("method", step, None, time.time(), status="skipped", detail=f"not run: {stop.reason}")
            continue
        t0 = time.time()
        try:
            outcome = run_step(step, ctx)
        except PoetError as exc:
            outcome = Outcome("failed", {}, exc.message)
        except Exception as exc:  # noqa: BLE001 - recorded, rolled back, then reported as an internal error
            internal.append(f"{step.name}: {type(exc).__name__}: {exc}")
            recorder.add("method", step, None, t0, status="error", detail=internal[-1])
            stop.set("failed", internal[-1])
            continue
        recorder.add("method", step, outcome, t0)
        if outcome.status == "ok" or (outcome.status == "failed" and step.type not in ACTION_TYPES):
            ctx.scope[step.name] = outcome.output
        if outcome.status == "failed" and step.type in ACTION_TYPES:
            stop.set("failed", f"action {step.name} failed: {outcome.detail}")
        elif outcome.status == "deviated":
            stop.set("deviated", f"method probe {step.name}: {outcome.detail}")
        elif step.pause_after_s:
            stop.wait(step.pause_after_s)


@dataclass(frozen=True)
class _Cleanup:
    """How an automatic undo is named in the journal."""

    name: str
    type: str = "cleanup"


def _rollbacks(experiment: Experiment, ctx: RunContext, recorder: Recorder, failed: list[str]) -> None:
    """Every rollback, then every cleanup (last registered first); failures are collected, never raised."""
    for step in experiment.rollbacks:
        if step.pause_before_s:
            time.sleep(step.pause_before_s)  # bounded by the schema; signals are ignored while rollbacks run
        t0 = time.time()
        try:
            outcome = run_step(step, ctx)
        except Exception as exc:  # noqa: BLE001 - a rollback problem must not skip the next rollback
            outcome = Outcome("failed", {}, f"{type(exc).__name__}: {getattr(exc, 'message', exc)}")
        recorder.add("rollback", step, outcome, t0)
        if outcome.status != "ok":
            failed.append(f"rollback {step.name}: {outcome.detail}")
        if step.pause_after_s:
            time.sleep(step.pause_after_s)
    for label, undo in reversed(ctx.cleanups):
        t0 = time.time()
        named = _Cleanup(label.split(" ", 1)[1].replace(" ", "_")[:60])
        try:
            undo()
            recorder.add("cleanup", named, Outcome("ok", {}, label), t0)
        except Exception as exc:  # noqa: BLE001 - see above
            recorder.add("cleanup", named, Outcome("failed", {}, f"{label}: {getattr(exc, 'message', exc)}"), t0)
            failed.append(f"cleanup {label}: {getattr(exc, 'message', exc)}")
    ctx.cleanups.clear()
