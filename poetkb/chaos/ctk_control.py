"""A Chaos Toolkit control that gives a CTK run poetkb's steady-state watch and guardrails.

``poet chaos export`` declares this module as a ``python`` control of the experiment, so when Chaos
Toolkit itself runs the export (``chaos run``, or chaoslib's ``run_experiment``) its hooks do what
``poet chaos run`` does around the method:

- **before the experiment**: poetkb's preflight (production needs ``confirm_production: true`` in the
  control's arguments and actions marked ``safe_in_prod``; the blast radius; every URL and DSN on
  loopback unless ``allow_remote: true``). A refusal interrupts the run before anything has run.
- **during the method**: the background watch of :mod:`poetkb.chaos.watch`, with the experiment's own
  settings (carried in the ``poetkb`` extension): the hypothesis probes every ``watch.interval_s``
  (``tolerance_rounds`` failed rounds in a row is a deviation), the guardrail probes, the error-rate
  window and ``max_duration_s``. When one is crossed the run is stopped at once, even inside a pause or
  a long action: the control sends the process the signal chaoslib reserves for a graceful exit
  (SIGUSR1, :func:`chaoslib.exit.exit_gracefully`), and the next activity is refused as well.
- **after the experiment**: chaoslib's default rollback strategy skips rollbacks after an interruption,
  so when the method began and no rollback ran, the control runs the experiment's rollbacks itself (a
  stopped run is always rolled back, after Ctrl-C too); while rollbacks run (CTK's or the control's),
  SIGINT and SIGTERM are recorded and ignored, so a second Ctrl-C does not skip them; then it probes the
  hypothesis once more (poetkb's "after the rollbacks" check). The journal CTK writes gets the watch
  rounds in ``steady_states.during`` (CTK's own place for them) and a ``poetkb`` entry: the guardrail
  probe runs, the check after the rollbacks, why the run was stopped (``stopped``: kind ``deviated`` or
  ``aborted`` and the reason), a preflight refusal, the signals ignored and whether the control ran the
  rollbacks. A stopped run's status is ``aborted`` (``deviated`` set for a deviation), so ``chaos run``
  exits 1. ``poet chaos import`` reads all of it into a poetkb journal.

State lives for the process (one experiment at a time, as CTK runs them). The module imports chaoslib
only inside the hooks: it is loaded by Chaos Toolkit, never by poetkb itself.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger("chaostoolkit")

#: watch and guardrail runs kept in the CTK journal (later ones are only counted)
MAX_RECORDS = 2000


class _Stop:
    """The watch's stop flag: the first reason wins; while armed (the method runs) it interrupts CTK at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.kind: str | None = None
        self.reason = ""
        self.armed = False

    def set(self, kind: str, reason: str) -> None:
        with self.lock:
            if self.kind is not None:
                return
            self.kind, self.reason = kind, reason
            logger.warning(f"poetkb control: {kind}: {reason}; stopping the method")
            if self.armed:
                from chaoslib.exit import exit_gracefully

                self.armed = False
                exit_gracefully()  # SIGUSR1: chaoslib raises SystemExit(20) in the main thread, rollbacks kept

    def is_set(self) -> bool:
        return self.kind is not None

    def disarm(self) -> None:
        with self.lock:
            self.armed = False


class _Recorder:
    """Collects the watch's probe runs in CTK's run format (``activity``, ``status``, ``tolerance_met`` ...)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.watch: list[dict[str, Any]] = []
        self.guardrails: list[dict[str, Any]] = []
        self.omitted = 0

    def add(self, phase: str, step: Any, outcome: Any, started: float, **_: Any) -> None:
        run = _run_record(step, outcome, started)
        with self.lock:
            target = self.guardrails if phase == "guardrail" else self.watch
            if len(self.watch) + len(self.guardrails) >= MAX_RECORDS:
                self.omitted += 1
                return
            target.append(run)


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat()


def _run_record(step: Any, outcome: Any, started: float) -> dict[str, Any]:
    from poetkb.chaos.ctk import PY_FUNC, PY_MODULE

    end = time.time()
    return {"activity": {"type": "probe", "name": step.name,
                         "provider": {"type": "python", "module": PY_MODULE, "func": PY_FUNC,
                                      "arguments": {"step": step.model_dump(mode="json", exclude_defaults=True)
                                                    | {"name": step.name, "type": step.type}}}},
            "output": outcome.output, "status": "failed" if outcome.status in ("failed", "error") else "succeeded",
            "start": _iso(started), "end": _iso(end), "duration": round(max(0.0, end - started), 3),
            "tolerance_met": outcome.status == "ok", "detail": outcome.detail}


class _Control:
    """One CTK run under the control."""

    def __init__(self, experiment: Any, *, allow_remote: bool, confirm_production: bool) -> None:
        self.experiment = experiment
        self.allow_remote = allow_remote
        self.confirm_production = confirm_production
        self.stop = _Stop()
        self.recorder = _Recorder()
        self.watcher: Any = None
        self.deadline = 0.0
        self.method_started = False
        self.refused = ""
        self.shielded: dict[int, Any] = {}
        self.ignored: list[str] = []

    def stop_watch(self) -> None:
        self.stop.disarm()
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None


_LOCK = threading.Lock()
_STATE: _Control | None = None
_PROBLEM = ""


def _interrupt(message: str) -> None:
    from chaoslib.exceptions import InterruptExecution

    raise InterruptExecution(f"poetkb control: {message}")


def configure_control(experiment: dict[str, Any] | None = None, configuration: dict[str, Any] | None = None,
                      allow_remote: bool = False, confirm_production: bool = False, **_: Any) -> None:
    """Read the poetkb experiment back from the CTK one (the ``poetkb`` extension carries watch and guardrails)."""
    global _STATE, _PROBLEM
    from pydantic import ValidationError

    from poetkb.chaos.ctk import import_ctk
    from poetkb.chaos.models import Experiment
    from poetkb.errors import PoetError

    with _LOCK:
        _STATE, _PROBLEM = None, ""
        try:
            converted = import_ctk(experiment or {})
            parsed = Experiment.model_validate(converted.data)
        except (PoetError, ValidationError, ValueError) as exc:
            _PROBLEM = f"the experiment cannot be read as a poetkb experiment ({str(exc)[:300]})"
            logger.error(f"poetkb control: {_PROBLEM}")
            return
        _STATE = _Control(parsed, allow_remote=bool(allow_remote), confirm_production=bool(confirm_production))


def _state() -> _Control:
    if _STATE is None:
        # fail closed: guardrails that cannot be set up stop the run before the method
        _interrupt(_PROBLEM or "the control was not configured (configure_control did not run)")
    assert _STATE is not None
    return _STATE


def before_experiment_control(context: Any = None, **_: Any) -> None:
    """Preflight: production rules, the blast radius, loopback targets; refuse the run when one fails."""
    from poetkb import demo
    from poetkb.chaos.runner import RunOptions, preflight
    from poetkb.errors import PoetError

    state = _state()
    try:
        preflight(state.experiment, demo.load_state(), RunOptions(allow_remote=state.allow_remote,
                                                                  confirm_production=state.confirm_production),
                  file=None)
    except PoetError as exc:
        state.refused = exc.message
        _interrupt(f"refused before anything ran: {exc.message}")
    state.deadline = time.monotonic() + state.experiment.guardrails.max_duration_s


def before_method_control(context: Any = None, configuration: dict[str, Any] | None = None, **_: Any) -> None:
    """Start the background watch (hypothesis and guardrails) and arm the stop."""
    from poetkb import demo
    from poetkb.chaos.ctk_functions import _context
    from poetkb.chaos.watch import Watcher

    state = _state()
    state.method_started = True
    ctx = _context(configuration)  # the scope the steps run with: outputs of earlier steps resolve
    state.watcher = Watcher(state.experiment, client_transport=None, scope=ctx.scope,
                            allow_remote=state.allow_remote, demo=demo.load_state(), kb=None, stop=state.stop,
                            recorder=state.recorder, deadline=state.deadline or
                            time.monotonic() + state.experiment.guardrails.max_duration_s)
    with state.stop.lock:
        state.stop.armed = state.stop.kind is None
    state.watcher.start()  # started even with nothing to probe: it also enforces max_duration_s


def before_activity_control(context: Any = None, **_: Any) -> None:
    """During the method, refuse the next activity once the watch stopped the run."""
    state = _STATE
    if state is None or not state.method_started or state.watcher is None:
        return
    if state.stop.is_set():
        _interrupt(f"{state.stop.kind}: {state.stop.reason}")


def after_method_control(context: Any = None, **_: Any) -> None:
    """Stop the watch (CTK's own hypothesis check follows)."""
    if _STATE is not None:
        _STATE.stop_watch()


def after_experiment_control(context: Any = None, state: dict[str, Any] | None = None,
                             configuration: dict[str, Any] | None = None, secrets: Any = None, **_: Any) -> None:
    """Roll back when CTK did not, check the hypothesis after the rollbacks, and record it all in the journal."""
    control = _STATE
    if control is None or not isinstance(state, dict):
        return
    control.stop_watch()
    journal = state
    steady = journal.setdefault("steady_states", {})
    during = steady.get("during") if isinstance(steady.get("during"), list) else []
    during.extend({"steady_state_met": run["tolerance_met"], "probes": [run]} for run in control.recorder.watch)
    steady["during"] = during
    ours: dict[str, Any] = {"guardrails": control.recorder.guardrails, "omitted": control.recorder.omitted,
                            "rolled_back_by_control": False, "after_rollbacks": []}
    if control.refused:
        ours["refused"] = control.refused
    if control.stop.kind is not None:
        ours["stopped"] = {"kind": control.stop.kind, "reason": control.stop.reason}
        journal["status"] = "aborted"
        if control.stop.kind == "deviated":
            journal["deviated"] = True
    experiment = context if isinstance(context, dict) else journal.get("experiment") or {}
    if control.method_started:
        _shield(control)
        try:
            if experiment.get("rollbacks") and not journal.get("rollbacks"):
                ours["rolled_back_by_control"] = True
                journal["rollbacks"] = _rollback(experiment, configuration, secrets)
            ours["after_rollbacks"] = _check_after(control, configuration)
        finally:
            _unshield(control)
        if any(not run["tolerance_met"] for run in ours["after_rollbacks"]):
            journal["deviated"] = True
    ours["signals_ignored"] = control.ignored
    journal["poetkb"] = ours


def _shield(control: _Control) -> None:
    """While rollbacks run, SIGINT and SIGTERM are recorded and ignored: a second Ctrl-C does not skip them."""
    import signal

    if control.shielded or threading.current_thread() is not threading.main_thread():
        return

    def ignore(signum: int, _frame: Any) -> None:
        control.ignored.append(f"{signal.Signals(signum).name} at {_iso(time.time())}")
        logger.warning(f"poetkb control: {signal.Signals(signum).name} ignored while the rollbacks run")

    for sig in (signal.SIGINT, signal.SIGTERM):
        control.shielded[sig] = signal.signal(sig, ignore)


def _unshield(control: _Control) -> None:
    import signal

    for sig, handler in control.shielded.items():
        signal.signal(sig, handler)
    control.shielded = {}


def before_rollback_control(context: Any = None, **_: Any) -> None:
    """CTK's own rollbacks start: shield them from signals (see :func:`_shield`)."""
    if _STATE is not None:
        _shield(_STATE)


def after_rollback_control(context: Any = None, **_: Any) -> None:
    if _STATE is not None:
        _unshield(_STATE)


def _rollback(experiment: dict[str, Any], configuration: Any, secrets: Any) -> list[dict[str, Any]]:
    """Run the experiment's rollbacks with chaoslib (each one even when an earlier one failed)."""
    from chaoslib.rollback import run_rollbacks

    logger.warning("poetkb control: the run stopped before its rollbacks; running them now")
    runs: list[dict[str, Any]] = []
    for _run in run_rollbacks(experiment, configuration or {}, secrets or {}, None, None, runs=runs):
        pass
    return runs


def _check_after(control: _Control, configuration: Any) -> list[dict[str, Any]]:
    """The hypothesis (its probes other than gate runs) once more, after the rollbacks."""
    from poetkb.chaos.ctk_functions import _context
    from poetkb.chaos.providers import safe_run

    ctx = _context(configuration)
    runs = []
    for probe in control.experiment.steady_state.probes:
        if probe.type == "gate":
            continue
        started = time.time()
        outcome = safe_run(probe, ctx)
        outcome.output.pop("_took", None)
        runs.append(_run_record(probe, outcome, started))
    return runs


def cleanup_control(**_: Any) -> None:
    """The run is over: the watch is stopped (whatever happened) and the state dropped."""
    global _STATE
    with _LOCK:
        if _STATE is not None:
            _STATE.stop_watch()
        _STATE = None
