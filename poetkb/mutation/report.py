"""The result of a mutation run: each mutant, its verdicts, and the mutation score."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from poetkb.models import PoetModel

MutantStatus = Literal["killed", "survived", "error", "invalid", "equivalent", "not-run"]


class MutantResult(PoetModel):
    """One mutant: what changed where, the obligations it should break, and what the gate said."""

    id: str = Field(description="operator@file:line, stable while the file keeps its lines")
    operator: str
    file: str
    line: int
    before: str
    after: str
    why: str
    targets: list[str] = Field(description="obligations the mutant should break (those passing on the original)")
    verdicts: dict[str, str] = Field(default_factory=dict, description="obligation id -> verdict under the mutant")
    status: MutantStatus
    detail: str = ""
    patch: str = ""


class ObligationScore(PoetModel):
    """Mutants aimed at one obligation and how many the gate caught."""

    obligation_id: str
    killed: int
    survived: int
    errors: int
    score: float | None = Field(description="killed / (killed + survived + errors); None with no mutant")


class MutationReport(PoetModel):
    """`poet gate mutate`: the kill matrix, the score per obligation and overall, the survivors."""

    proxy: str
    config: str
    started_at: str
    duration_s: float
    baseline: dict[str, str] = Field(description="verdict of each targeted obligation on the original config")
    mutants: list[MutantResult]
    obligations: list[ObligationScore]
    score: float | None = Field(description="killed / (killed + survived + errors) over non-equivalent mutants")
    restored: bool = Field(description="the configuration file is byte for byte what it was before the run")

    def survivors(self) -> list[MutantResult]:
        return [m for m in self.mutants if m.status == "survived"]

    def markdown(self) -> str:
        """The kill matrix and the survivors, for a pull request or a CI log."""
        score = "n/a" if self.score is None else f"{self.score:.0%}"
        counts = {s: sum(1 for m in self.mutants if m.status == s) for s in
                  ("killed", "survived", "error", "invalid", "equivalent", "not-run")}
        out = [f"# Mutation score {score}: {self.proxy} `{self.config}`", "",
               ", ".join(f"{n} {s}" for s, n in counts.items() if n) + f" in {self.duration_s:.0f} s.", "",
               "| obligation | killed | survived | errors | score |", "|---|---:|---:|---:|---:|"]
        for o in self.obligations:
            shown = "n/a" if o.score is None else f"{o.score:.0%}"
            out.append(f"| `{o.obligation_id}` | {o.killed} | {o.survived} | {o.errors} | {shown} |")
        out += ["", "| mutant | change | status | verdicts |", "|---|---|---|---|"]
        for m in self.mutants:
            verdicts = ", ".join(f"{k}: {v}" for k, v in m.verdicts.items())
            change = f"`{_cell(m.before)}` → `{_cell(m.after)}`"
            out.append(f"| `{m.id}` | {change} | {m.status} | {_cell(verdicts or m.detail)} |")
        survivors = self.survivors()
        if survivors:
            out += ["", "## Survivors", ""]
            out += [f"- `{m.id}` should break {', '.join(f'`{t}`' for t in m.targets)}: {m.why}"
                    for m in survivors]
        return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'").replace("\n", " ")
