"""The background watch: the steady state and the guardrails probed while the method runs.

One daemon thread runs rounds every ``steady_state.watch.interval_s`` (guardrails every
``guardrails.interval_s``, whichever is shorter drives the loop). A round probes every hypothesis probe
except gate probes (a gate run takes seconds and drives its own traffic) and every guardrail probe.
``watch.tolerance_rounds`` consecutive failed rounds of the hypothesis stop the method as "deviated";
one failed guardrail stops it as "aborted"; so does an error rate over ``guardrails.max_error_rate`` among
the last ``error_rate_window`` samples of the error-rate probes (counted once at least five samples are in),
and passing the run's deadline.
The loop is bounded in rounds (the duration limit over the interval, plus one) and in time (the
deadline), and :meth:`Watcher.stop` joins it within the longest probe timeout.
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from poetkb.chaos.providers import RunContext, safe_run

if TYPE_CHECKING:
    from poetkb.chaos.models import Experiment


class StopFlag(Protocol):
    """What the watch sets to stop the method (the runner's flag; under CTK, poetkb's control's)."""

    def set(self, kind: str, reason: str) -> None: ...


class Recorder(Protocol):
    """Where the watch records each probe run (the runner's journal; under CTK, the control's collector)."""

    def add(self, phase: str, step: Any, outcome: Any, started: float) -> Any: ...


class Watcher:
    """See the module docstring."""

    def __init__(self, experiment: Experiment, *, client_transport: Any, scope: dict[str, Any], allow_remote: bool,
                 demo: Any, kb: Any, stop: StopFlag, recorder: Recorder, deadline: float) -> None:
        self.experiment = experiment
        self.transport = client_transport
        self.scope = scope
        self.allow_remote = allow_remote
        self.demo = demo
        self.kb = kb
        self.stop_flag = stop
        self.recorder = recorder
        self.deadline = deadline
        self.done = threading.Event()
        self.thread: threading.Thread | None = None
        watch = experiment.steady_state.watch
        self.probes = [p for p in experiment.steady_state.probes if p.type != "gate"] if watch.enabled else []
        self.guards = [p for p in experiment.guardrails.probes if p.type != "gate"]
        self.error_probes = [p for p in experiment.guardrails.error_rate_probes if p.type != "gate"]
        self.samples: list[bool] = []
        intervals = [watch.interval_s] * bool(self.probes) + \
            [experiment.guardrails.interval_s] * bool(self.guards or self.error_probes)
        self.interval = min(intervals or [watch.interval_s])
        self.max_rounds = math.ceil(experiment.guardrails.max_duration_s / self.interval) + 1
        self.rounds = 0

    def start(self) -> None:
        self.thread = threading.Thread(target=self._loop, name="poet-chaos-watch", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.done.set()
        if self.thread is not None:
            longest = max([p.timeout_s for p in self.probes + self.guards + self.error_probes] or [1.0])
            self.thread.join(longest + 2.0)

    def _loop(self) -> None:
        from poetkb.gates.probes import make_client

        failed_in_a_row = 0
        needed = self.experiment.steady_state.watch.tolerance_rounds
        with make_client("http://127.0.0.1", transport=self.transport) as client:
            ctx = RunContext(client=client, scope=self.scope, allow_remote=self.allow_remote, demo=self.demo,
                             kb=self.kb, stop_requested=self.done.is_set)
            while not self.done.is_set() and self.rounds < self.max_rounds:
                self.rounds += 1
                if time.monotonic() > self.deadline:
                    self.stop_flag.set("aborted", f"guardrail: max_duration_s "
                                       f"{self.experiment.guardrails.max_duration_s} exceeded")
                    return
                for guard in self.guards:
                    outcome = safe_run(guard, ctx)
                    self.recorder.add("guardrail", guard, outcome, time.time() - outcome.output.pop("_took", 0.0))
                    if outcome.status != "ok":
                        self.stop_flag.set("aborted", f"guardrail {guard.name}: {outcome.detail}")
                        return
                if self._error_rate_crossed(ctx):
                    return
                bad = []
                for probe in self.probes:
                    if self.done.is_set():
                        return
                    outcome = safe_run(probe, ctx)
                    started = time.time() - outcome.output.pop("_took", 0.0)
                    outcome.output["watch_round"] = self.rounds  # the judge counts failed rounds in a row
                    self.recorder.add("watch", probe, outcome, started)
                    if outcome.status != "ok":
                        bad.append(f"{probe.name}: {outcome.detail}")
                failed_in_a_row = failed_in_a_row + 1 if bad else 0
                if failed_in_a_row >= needed:
                    self.stop_flag.set("deviated", f"steady state deviated during the method ({'; '.join(bad)})")
                    return
                if self.done.wait(self.interval):
                    return

    def _error_rate_crossed(self, ctx: RunContext) -> bool:
        """Probe the error-rate probes once; abort (True) when the windowed error rate is over the limit."""
        limit = self.experiment.guardrails.max_error_rate
        if limit is None:
            return False
        window = self.experiment.guardrails.error_rate_window
        for probe in self.error_probes:
            outcome = safe_run(probe, ctx)
            self.recorder.add("guardrail", probe, outcome, time.time() - outcome.output.pop("_took", 0.0))
            self.samples = [*self.samples, outcome.status == "ok"][-window:]
        failed = self.samples.count(False)
        if len(self.samples) >= min(5, window) and failed / len(self.samples) > limit + 1e-9:
            self.stop_flag.set("aborted", f"guardrail: error rate {failed}/{len(self.samples)} "
                               f"({failed / len(self.samples):.0%}) over max_error_rate {limit:.0%}")
            return True
        return False
