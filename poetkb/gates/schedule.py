"""The order in which a gate collects its checks, and the clean state each fault experiment starts from.

A fault leaves marks on a real edge after it is healed: passive health checks
hold a failed backend out for seconds (NGINX ``fail_timeout``, HAProxy
``observe layer7``), and the next experiment would then measure that aftermath
instead of its own fault. So the gate runs every check that injects no fault
first (several at a time where they do not disturb each other), then the fault
experiments one at a time; before each fault experiment after the first
it restores a clean state: by a graceful reload of the edge when it knows how
(the demo edge), else by waiting (bounded) until the experiment's path is
answered by the same upstream as before any fault. What was done is kept in the
check's notes, so the report shows it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from poetkb.gates.kinds import KINDS
from poetkb.gates.params import FaultSpec
from poetkb.models import Check, Obligation

#: the longest the gate waits for an edge to forget a fault when it cannot reload it
MAX_WAIT_S = 10.0
POLL_S = 0.25


@dataclass
class Planned:
    """One check to collect, with what the scheduler needs to know about it."""

    obligation: Obligation
    index: int
    check: Check
    fault: bool
    probe_path: str | None
    #: a fault experiment confined so that it may run beside the shared checks (see ``beside_shared``)
    beside: bool = False

    @property
    def check_id(self) -> str:
        return f"{self.obligation.id}#{self.index}"


def _inspect(check: Check) -> tuple[bool, str | None, bool]:
    spec = KINDS.get(check.kind)
    if spec is None:
        return False, None, False
    try:
        params: Any = spec.params.model_validate(check.params)
    except ValidationError:
        return False, None, False
    beside = bool(getattr(params, "beside_shared", False))
    fault = isinstance(getattr(params, "fault", None), FaultSpec) and not beside
    path = getattr(params, "path", None)
    if not isinstance(path, str):
        paths = getattr(params, "paths", None)
        path = paths[0] if isinstance(paths, list) and paths else None
    return fault, path, beside


#: kinds that must have the edge to themselves: they reload it, or measure limits that other traffic would trip
EXCLUSIVE_KINDS = frozenset({"reload_no_errors", "rate_limit_sheds", "connection_limit_sheds"})


def plan(items: list[tuple[Obligation, int, Check]]) -> list[tuple[list[Planned], bool]]:
    """Phases of collection, each ``(checks, may_run_in_parallel)``, in order.

    First the checks without faults that share the edge peacefully (in parallel, longest waits first, since
    TTL and stale checks mostly sleep), with them the fault experiments confined enough to run beside them
    (``beside_shared``: a long timeout waited out while the rest runs), then those that need the edge alone,
    then the fault experiments one at a time, in catalog order.
    """
    planned = [Planned(ob, index, check, *_inspect(check)) for ob, index, check in items]
    waiting = {"ttl_honored": 0, "stale_bounded": 0, "same_key_same_backend": 1}
    shared = sorted((p for p in planned if not p.fault and p.check.kind not in EXCLUSIVE_KINDS),
                    key=lambda p: -1 if p.beside else waiting.get(p.check.kind, 2))
    alone = [p for p in planned if not p.fault and p.check.kind in EXCLUSIVE_KINDS]
    faults = [p for p in planned if p.fault]
    return [(shared, True), (alone, False), (faults, False)]


class CleanState:
    """Restores a clean edge before each fault experiment after the first (reload, or a bounded wait)."""

    def __init__(self, *, reload: Callable[[], None] | None, probe: Callable[[str], str | None]) -> None:
        self.reload = reload
        self.probe = probe
        self.baseline: dict[str, str | None] = {}
        self.dirty = False

    def learn(self, planned: list[Planned]) -> None:
        """Which upstream answers each fault experiment's path before any fault (for the bounded wait)."""
        if self.reload is not None:
            return
        for item in planned:
            if item.fault and item.probe_path and item.probe_path not in self.baseline:
                self.baseline[item.probe_path] = self.probe(item.probe_path)

    def start(self) -> str | None:
        """Reload the edge before any check, when a reload is known: a run just before may have left servers
        taken out by passive health, which a healed fault does not bring back. Returns the problem, if any."""
        failed = self._reload()
        return None if failed is None else f"the edge could not be reloaded before the checks: {failed}"

    def _reload(self) -> str | None:
        """Reload the edge (a reload must be known); the failure as text, or None."""
        assert self.reload is not None
        try:
            self.reload()
        except Exception as exc:  # noqa: BLE001 - reported by the callers; the checks still run
            return str(exc)
        self.dirty = False
        return None

    def before(self, item: Planned) -> dict[str, Any]:
        """Make the edge clean for ``item`` if a fault came before it; return what was done (for notes)."""
        if not (item.fault and self.dirty):
            return {}
        started = time.monotonic()
        if self.reload is not None:
            failed = self._reload()
            if failed is not None:
                return {"clean_state": f"reload failed: {failed}"}
            return {"clean_state": f"edge reloaded in {time.monotonic() - started:.2f} s to clear the last fault"}
        want = self.baseline.get(item.probe_path or "")
        while time.monotonic() - started < MAX_WAIT_S:
            got = self.probe(item.probe_path) if item.probe_path else "?"
            if got is not None and (want is None or got == want):
                self.dirty = False
                return {"clean_state": f"waited {time.monotonic() - started:.2f} s for {item.probe_path} to be "
                                       f"served by {got} again"}
            time.sleep(POLL_S)
        return {"clean_state": f"{item.probe_path} was not answered as before any fault within {MAX_WAIT_S:g} s; "
                               "the experiment ran anyway"}

    def after(self, item: Planned) -> None:
        if item.fault:
            self.dirty = True


def ordered(items: list[Planned], clean: CleanState) -> Iterator[tuple[Planned, dict[str, Any]]]:
    """Each check of a sequential phase, with the notes of what was done to give it a clean edge."""
    clean.learn(items)
    for item in items:
        notes = clean.before(item)
        yield item, notes
        clean.after(item)
