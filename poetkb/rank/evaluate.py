"""Measure how well ranking answers: hit@3 and mean reciprocal rank over a set of change scenarios.

A scenarios file (YAML) lists changes (text and/or a diff file next to it)
with the obligations a person expects to see. A scenario is a *hit@k* when any
expected obligation is among the top k; its *reciprocal rank* is 1 / the rank
of the first expected obligation found (0 when none is ranked). The repository
keeps one such set in ``tests/fixtures/rank/scenarios.yaml``; teams can keep
their own to check their mapping rules.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, ValidationError

from poetkb.errors import InputError
from poetkb.models import PoetModel
from poetkb.yamlfile import load_with_lines, problems_from_validation

if TYPE_CHECKING:
    from poetkb.knowledge import Knowledge


class Scenario(PoetModel):
    """One change and the obligations a person expects to be ranked for it."""

    id: str
    area: str = ""
    change: str | None = None
    diff: str | None = None
    component: str | None = None
    expect: list[str] = Field(min_length=1)


class ScenarioResult(PoetModel):
    """How one scenario ranked."""

    id: str
    area: str
    expected: list[str]
    ranked: list[str]
    first_hit: int | None  # 1-based rank of the first expected obligation, None when not ranked

    @property
    def reciprocal_rank(self) -> float:
        return 1.0 / self.first_hit if self.first_hit else 0.0


class Evaluation(PoetModel):
    """hit@1, hit@3 and MRR over a scenario set, with every scenario's result."""

    scenarios: int
    hit_at_1: float
    hit_at_3: float
    mrr: float
    results: list[ScenarioResult]


def load_scenarios(path: Path) -> tuple[list[Scenario], Path]:
    """Read a scenarios file; diffs are resolved against its ``diffs/`` directory. Problems name file and line."""
    data = load_with_lines(path)
    items = data.get("scenarios") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise InputError("a scenarios file needs a `scenarios` list", file=path)
    scenarios = []
    for index, item in enumerate(items):
        try:
            scenarios.append(Scenario.model_validate(item))
        except ValidationError as exc:
            problem = problems_from_validation(exc, item, file=str(path), prefix=f"scenarios[{index}]")[0]
            raise InputError(problem.message, file=path, line=problem.line, field=problem.field) from exc
    return scenarios, path.parent / "diffs"


def evaluate(kb: Knowledge, scenarios: list[Scenario], diffs: Path, *, top: int = 10) -> Evaluation:
    """Rank every scenario and score the answers."""
    from poetkb.rank import rank

    results = []
    for scenario in scenarios:
        diff = diffs / scenario.diff if scenario.diff else None
        ranking = rank(kb, scenario.change, diff=diff, component=scenario.component, top=top)
        ranked = [r.id for r in ranking.obligations]
        first = next((i for i, oid in enumerate(ranked, start=1) if oid in scenario.expect), None)
        results.append(ScenarioResult(id=scenario.id, area=scenario.area, expected=scenario.expect, ranked=ranked,
                                      first_hit=first))
    count = len(results) or 1
    return Evaluation(
        scenarios=len(results),
        hit_at_1=round(sum(1 for r in results if r.first_hit == 1) / count, 4),
        hit_at_3=round(sum(1 for r in results if r.first_hit and r.first_hit <= 3) / count, 4),
        mrr=round(sum(r.reciprocal_rank for r in results) / count, 4),
        results=results,
    )


class GitScenario(PoetModel):
    """A change as it lives in a repository: files before (on main) and after (on a branch), and a message."""

    id: str
    area: str = ""
    branch: str = "change"
    message: str = ""
    #: leave the after state uncommitted in the working tree (ranked against HEAD)
    uncommitted: bool = False
    before: dict[str, str] = Field(default_factory=dict)
    after: dict[str, str | None] = Field(default_factory=dict)
    expect: list[str] = Field(min_length=1)


def load_git_scenarios(path: Path) -> list[GitScenario]:
    """Read a git scenarios file (``scenarios`` list of :class:`GitScenario`); problems name file and line."""
    data = load_with_lines(path)
    items = data.get("scenarios") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise InputError("a scenarios file needs a `scenarios` list", file=path)
    out = []
    for index, item in enumerate(items):
        try:
            out.append(GitScenario.model_validate(item))
        except ValidationError as exc:
            problem = problems_from_validation(exc, item, file=str(path), prefix=f"scenarios[{index}]")[0]
            raise InputError(problem.message, file=path, line=problem.line, field=problem.field) from exc
    return out


def _git(repo: Path, *args: str) -> None:
    import os
    import subprocess

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GIT_")}, "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "poetkb", "GIT_AUTHOR_EMAIL": "poetkb@localhost", "GIT_COMMITTER_NAME": "poetkb",
           "GIT_COMMITTER_EMAIL": "poetkb@localhost", "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
           "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z", "HOME": str(repo)}
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, timeout=60, env=env)  # noqa: S603,S607


def _write(repo: Path, files: dict[str, str | None]) -> None:
    for rel, text in files.items():
        target = repo / rel
        if text is None:
            target.unlink(missing_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def build_git_scenario(scenario: GitScenario, dest: Path) -> Path:
    """Make ``dest`` a git repository holding the scenario: main with ``before``, then the change."""
    dest.mkdir(parents=True)
    _git(dest, "init", "-q", "-b", "main")
    _write(dest, {"README.md": f"# {scenario.id}\n\nA service and its edge configuration.\n", **scenario.before})
    _git(dest, "add", "-A")
    _git(dest, "commit", "-q", "-m", "Initial import")
    if scenario.branch != "main":
        _git(dest, "checkout", "-q", "-b", scenario.branch)
    _write(dest, scenario.after)
    if not scenario.uncommitted:
        _git(dest, "add", "-A")
        _git(dest, "commit", "-q", "-m", scenario.message or "Change")
    return dest


def evaluate_git(kb: Knowledge, scenarios: list[GitScenario], workdir: Path, *, top: int = 10) -> Evaluation:
    """Build each scenario as a repository under ``workdir``, rank it with ``--git``'s default range, and score."""
    from poetkb.rank import rank
    from poetkb.rank.gitchange import read_git

    results = []
    for scenario in scenarios:
        repo = build_git_scenario(scenario, workdir / scenario.id)
        ranking = rank(kb, None, top=top, git=read_git(repo))
        ranked = [r.id for r in ranking.obligations]
        first = next((i for i, oid in enumerate(ranked, start=1) if oid in scenario.expect), None)
        results.append(ScenarioResult(id=scenario.id, area=scenario.area, expected=scenario.expect, ranked=ranked,
                                      first_hit=first))
    count = len(results) or 1
    return Evaluation(
        scenarios=len(results),
        hit_at_1=round(sum(1 for r in results if r.first_hit == 1) / count, 4),
        hit_at_3=round(sum(1 for r in results if r.first_hit and r.first_hit <= 3) / count, 4),
        mrr=round(sum(r.reciprocal_rank for r in results) / count, 4),
        results=results,
    )
