"""Run mutants against a live edge: validate, apply, gate, revert; always restore the original file.

For each mutant the configuration file is rewritten, validated by the proxy
(``nginx -t`` / ``haproxy -c``; a mutant the proxy refuses is *invalid* and
never applied), the edge is reloaded, the obligations the mutant should break
are gated, and the original file is written back and reloaded. The original is
restored byte for byte in a ``finally`` (Ctrl-C and SIGTERM included), and the
report says whether it was.

Before any mutant, the targeted obligations are gated on the original: one that
does not pass there cannot judge a mutant and is left out of the targets.

A mutant is *killed* when a targeted obligation fails, *survived* when all pass,
*error* when the gate could not judge (counted against the score: a gate that
cannot tell is not a gate that caught the fault), and *equivalent* when a person
recorded that the obligation truly still holds under it.
"""

from __future__ import annotations

import difflib
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poetkb.edgeconfig import ProxyKind, load_config
from poetkb.errors import EnvironmentProblem, InputError
from poetkb.gates.schema import Edge
from poetkb.mutation.operators import Mutant, Operator, load_operators, mutants
from poetkb.mutation.report import MutantResult, MutantStatus, MutationReport, ObligationScore
from poetkb.store import now_iso

if TYPE_CHECKING:
    from poetkb.knowledge import Knowledge

COMMAND_TIMEOUT_S = 60


@dataclass
class MutationTarget:
    """The edge under mutation: its file, how to validate and reload it, and how the gate reaches it."""

    config: Path
    proxy: ProxyKind
    validate: Callable[[], str | None]
    reload: Callable[[], None]
    #: how a gate reaches the edge (nothing set: the running demo edge)
    edge: Edge = field(default_factory=Edge)


def demo_target() -> MutationTarget:
    """The running demo edge (its rendered configuration file)."""
    from poetkb import demo
    from poetkb.demo.edge_config import RunPaths, validate
    from poetkb.demo.layout import run_dir
    from poetkb.demo.lifecycle import require_binary

    state = demo.load_state()
    if state is None:
        raise EnvironmentProblem("the demo is not running", hint="start it with `poet demo up`")
    paths = RunPaths(run_dir())
    binary = require_binary(state.proxy)

    def check() -> str | None:
        try:
            validate(state.proxy, binary, paths)
        except EnvironmentProblem as exc:
            return exc.message.splitlines()[-1][:300]
        return None

    def reload() -> None:
        demo.reload()

    return MutationTarget(config=Path(state.config_path), proxy=state.proxy, validate=check, reload=reload,
                          edge=Edge())


def command_target(config: Path, *, proxy: ProxyKind | None, reload_command: str,
                   validate_command: str | None, edge: Edge) -> MutationTarget:
    """A user's own edge: their file, their reload command, and how a gate reaches it."""
    parsed = load_config(config, proxy=proxy)
    if validate_command is None:
        validate_command = (f"nginx -t -q -c {shlex.quote(str(config.resolve()))}" if parsed.proxy == "nginx"
                            else f"haproxy -c -q -f {shlex.quote(str(config.resolve()))}")

    def run(command: str, what: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
            raise InputError(f"cannot run the {what} command: {exc}", field=f"--{what}-command") from exc

    def check() -> str | None:
        result = run(validate_command, "validate")
        return None if result.returncode == 0 else (result.stderr + result.stdout).strip()[-300:] or "invalid"

    def reload() -> None:
        result = run(reload_command, "reload")
        if result.returncode != 0:
            raise EnvironmentProblem(f"the reload command failed: {(result.stderr + result.stdout).strip()[-300:]}")

    return MutationTarget(config=config, proxy=parsed.proxy, validate=check, reload=reload,
                          edge=edge)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Let SIGTERM unwind like Ctrl-C, so the original file is restored either way."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _gate(kb: Knowledge, target: MutationTarget, obligations: Sequence[str]) -> dict[str, str]:
    from poetkb.gates.runner import gate

    report = gate(kb, obligations=list(obligations), record=False, write_reports=False, edge=target.edge)
    return {v.obligation_id: v.verdict for v in report.obligations}


def _patch(m: Mutant) -> str:
    return "".join(difflib.unified_diff(m.original.splitlines(keepends=True), m.mutated.splitlines(keepends=True),
                                        fromfile=f"a/{m.file.name}", tofile=f"b/{m.file.name}", n=1))


def select(operators: Sequence[Operator], *, only: Sequence[str] = (), obligations: Sequence[str] = ()
           ) -> list[Operator]:
    """Operators by id (``only``) and by the obligations they target; unknown ids are bad input."""
    known = {op.id for op in operators}
    unknown = [oid for oid in only if oid not in known]
    if unknown:
        raise InputError(f"unknown mutation operator {', '.join(unknown)}", field="--operator",
                         hint="`poet gate mutate --list` shows the operators")
    chosen = [op for op in operators if (not only or op.id in only)
              and (not obligations or set(op.breaks) & set(obligations))]
    return chosen


def run_mutation(kb: Knowledge, target: MutationTarget, *, operators: Sequence[Operator] | None = None,
                 max_mutants: int = 200, budget_s: float = 1800.0,
                 on_progress: Callable[[str], None] | None = None) -> MutationReport:
    """Mutate ``target``'s configuration, gate each mutant, restore the original; see the module docstring."""
    started, clock = now_iso(), time.monotonic()
    say = on_progress or (lambda _: None)
    ops = list(operators) if operators is not None else load_operators()
    for op in ops:
        for oid in op.breaks:
            kb.obligation(oid)  # an operator aimed at an unknown obligation is bad input
    original = target.config.read_bytes()
    config = load_config(target.config, proxy=target.proxy)
    if config.files != [str(target.config)]:
        raise InputError("the configuration includes other files; mutate a single-file configuration",
                         file=target.config, hint="flatten it, or point --config at the file that holds the "
                                                  "directives to mutate")
    texts = {str(target.config): original.decode("utf-8")}
    candidates = list(mutants(config, ops, texts))[:max_mutants]
    equivalent = kb.mutation_equivalents(target.proxy)
    targeted = sorted({oid for m in candidates for oid in m.operator.breaks})
    results: list[MutantResult] = []
    baseline: dict[str, str] = {}
    restored = False
    with _sigterm_as_interrupt():
        try:
            say(f"gating {len(targeted)} obligations on the original configuration")
            if targeted:
                baseline = _gate(kb, target, targeted)
            for number, m in enumerate(candidates, start=1):
                targets = [o for o in m.operator.breaks if baseline.get(o) == "pass"]
                base = MutantResult(id=m.id, operator=m.operator.id, file=m.file.name, line=m.line,
                                    before=m.before, after=m.after, why=m.operator.why, targets=targets,
                                    patch=_patch(m), status="not-run")
                if m.id in equivalent:
                    results.append(base.model_copy(update={"status": "equivalent", "detail": equivalent[m.id]}))
                    continue
                if not targets:
                    results.append(base.model_copy(update={"detail": "no targeted obligation passes on the original"}))
                    continue
                if time.monotonic() - clock > budget_s:
                    results.append(base.model_copy(update={"detail": "over the time budget"}))
                    continue
                say(f"[{number}/{len(candidates)}] {m.id}")
                results.append(_run_one(kb, target, m, base, original))
        finally:
            restored = _restore(target, original)
    return MutationReport(proxy=target.proxy, config=str(target.config), started_at=started,
                          duration_s=round(time.monotonic() - clock, 1), baseline=baseline,
                          mutants=results, obligations=_scores(results), score=_score(results), restored=restored)


def _run_one(kb: Knowledge, target: MutationTarget, m: Mutant, base: MutantResult,
             original: bytes) -> MutantResult:
    target.config.write_text(m.mutated, encoding="utf-8")
    applied = False
    try:
        problem = target.validate()
        if problem is not None:
            return base.model_copy(update={"status": "invalid", "detail": problem})
        applied = True
        target.reload()
        verdicts = _gate(kb, target, base.targets)
    finally:
        target.config.write_bytes(original)
        if applied:
            target.reload()
    status: MutantStatus
    if any(verdicts.get(o) == "fail" for o in base.targets):
        status = "killed"
    elif all(verdicts.get(o) == "pass" for o in base.targets):
        status = "survived"
    else:
        status = "error"
    return base.model_copy(update={"verdicts": verdicts, "status": status})


def _restore(target: MutationTarget, original: bytes) -> bool:
    """Write the original back if anything differs, reload, and say whether the bytes match."""
    try:
        if target.config.read_bytes() != original:
            target.config.write_bytes(original)
            target.reload()
    except OSError:
        target.config.write_bytes(original)
    return target.config.read_bytes() == original


def _scores(results: Sequence[MutantResult]) -> list[ObligationScore]:
    """Per obligation, by its own verdict under each mutant aimed at it: fail kills, pass survives."""
    tally: dict[str, list[int]] = {}
    for r in results:
        if r.status not in ("killed", "survived", "error"):
            continue
        for oid in r.targets:
            verdict = r.verdicts.get(oid)
            row = tally.setdefault(oid, [0, 0, 0])
            row[0 if verdict == "fail" else 1 if verdict == "pass" else 2] += 1
    return [ObligationScore(obligation_id=oid, killed=k, survived=s, errors=e,
                            score=k / (k + s + e) if k + s + e else None)
            for oid, (k, s, e) in sorted(tally.items())]


def _score(results: Sequence[MutantResult]) -> float | None:
    judged = [r for r in results if r.status in ("killed", "survived", "error")]
    return sum(r.status == "killed" for r in judged) / len(judged) if judged else None
