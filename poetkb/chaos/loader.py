"""Read and validate an experiment file (YAML or JSON): syntax, schema, references, obligations, production.

Validation happens before anything runs, and every problem names the file and, where known, the line:
a bad field, an unknown step type, a reference to a step that runs later, an obligation the catalog does
not know, or a production experiment with an action that is not marked ``safe_in_prod``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from poetkb.chaos.models import ACTION_TYPES, Experiment
from poetkb.chaos.refs import names_in
from poetkb.errors import CatalogError, InputError, Problem
from poetkb.yamlfile import LineDict, load_with_lines, problems_from_validation

if TYPE_CHECKING:
    from poetkb.knowledge import Knowledge

#: the largest experiment file read
MAX_BYTES = 1024 * 1024
SECTIONS = ("steady_state.probes", "guardrails.probes", "guardrails.error_rate_probes", "method", "rollbacks")


def read_data(path: Path) -> Any:
    """The parsed file, through the bounded reader first (regular file, size checked) then the line loader."""
    from poetkb import safefile

    safefile.read_bytes(path, limit=MAX_BYTES)  # refuses non-regular and oversized files with a clear error
    return load_with_lines(path)


def parse(data: Any, *, file: str) -> Experiment:
    """Validate parsed data as an :class:`Experiment`; a :class:`CatalogError` lists every problem with lines."""
    if not isinstance(data, dict):
        raise InputError("an experiment must be a mapping with title, obligations, steady_state and method",
                         file=file, line=getattr(data, "line", None) or 1, hint="see `poet schema chaos-experiment`")
    try:
        experiment = Experiment.model_validate(data)
    except ValidationError as exc:
        raise CatalogError(problems_from_validation(exc, data, file=file),
                           hint="fix the fields named above; `poet schema chaos-experiment` lists them") from exc
    problems = reference_problems(experiment, data, file=file)
    if problems:
        raise CatalogError(problems, hint="a step can only use outputs of steps that run before it")
    return experiment


def load(path: Path, *, kb: Knowledge | None = None) -> Experiment:
    """Read, validate and (with a knowledge base) check the obligation ids of the experiment at ``path``."""
    experiment = parse(read_data(path), file=str(path))
    if kb is not None:
        from poetkb.gates.runner import require_known

        require_known(kb, experiment.obligations, where="the experiment", file=path)
        for probe in [*experiment.steady_state.probes, *experiment.guardrails.probes,
                      *experiment.guardrails.error_rate_probes, *experiment.method]:
            if probe.type == "gate":
                require_known(kb, probe.obligations, where=f"gate probe {probe.name!r}", file=path)
    return experiment


def production_problems(experiment: Experiment) -> list[str]:
    """Actions of a production experiment that are not marked ``safe_in_prod`` (empty when none)."""
    if not experiment.production:
        return []
    return [f"{step.name} ({step.type})" for step in experiment.actions() if not getattr(step, "safe_in_prod", False)]


def reference_problems(experiment: Experiment, data: Any, *, file: str) -> list[Problem]:
    """References to steps that do not exist or run later (hypothesis probes come first, rollbacks last)."""
    problems: list[Problem] = []
    available: set[str] = {"config", "demo", "run", "service"}
    order: list[tuple[str, int, Any]] = []
    for section in SECTIONS:
        steps = _section(experiment, section)
        order.extend((section, index, step) for index, step in enumerate(steps))
    every = {step.name for _, _, step in order}
    for section, index, step in order:
        dumped = step.model_dump(exclude={"name", "type", "description"})
        for name in sorted(names_in(dumped) - available):
            why = "runs later" if name in every else "is not a step of this experiment"
            problems.append(Problem(file, _line(data, section, index), f"{section}[{index}]",
                                    f"references ${{{name}...}}, which {why}"))
        if step.type in ("fault_proxy_update", "fault_proxy_stop") and step.proxy not in available:
            problems.append(Problem(file, _line(data, section, index), f"{section}[{index}].proxy",
                                    f"no fault_proxy_start step called {step.proxy!r} runs before this one"))
        available.add(step.name)
    for index, step in enumerate(experiment.rollbacks):
        if step.type not in ACTION_TYPES:
            problems.append(Problem(file, _line(data, "rollbacks", index), f"rollbacks[{index}]",
                                    "rollbacks hold actions only"))
    return problems


def _section(experiment: Experiment, section: str) -> list[Any]:
    node: Any = experiment
    for part in section.split("."):
        node = getattr(node, part)
    return list(node)


def _line(data: Any, section: str, index: int) -> int | None:
    node: Any = data
    line = data.line if isinstance(data, LineDict) else None
    for part in section.split("."):
        if not isinstance(node, LineDict):
            return line
        line = node.line_of(part) or line
        node = node.get(part)
    if isinstance(node, list) and index < len(node) and isinstance(node[index], LineDict):
        return node[index].line
    return line
