"""`poet plan test`: a release checklist for the obligations a change puts at risk.

For each of the top-ranked obligations the plan says what must be true, why
this change puts it at risk, how to exercise it on the change's component (the
recipes' steps and the directives involved), which evidence to capture, the
gate command that checks it, what counts as a pass, which of the user's own
tests exercise it (coverage, or a gap to close) and, apart from those, how
public suites test it (examples, never coverage). It is meant to be read by the person who signs off the
release, so it holds only what they need to act on; ``poet obligations show``
has the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from poetkb.models import Check, Claim, Directive, EvidenceRequirement, Obligation, PoetModel
from poetkb.plans.proving import ProofRoute, proof_routes
from poetkb.rank.change import ChangeSummary
from poetkb.rank.explain import LearnedTest

if TYPE_CHECKING:
    from poetkb.knowledge import Knowledge
    from poetkb.rank.gitchange import GitChange

DEFAULT_TOP = 5


class Ref(PoetModel):
    """An item of the knowledge base by id and title."""

    id: str
    title: str


class ExerciseRecipe(PoetModel):
    """How to exercise an obligation: one recipe's steps and the directives involved on the component."""

    id: str
    title: str
    steps: list[str] = Field(default_factory=list)
    directives: list[Directive] = Field(default_factory=list)
    claims: list[Claim] = Field(default_factory=list)


class TestPlanItem(PoetModel):
    """One obligation to prove before the change ships."""

    __test__: ClassVar[bool] = False  # not a pytest test class

    rank: int
    id: str
    title: str
    risk: str
    score: float
    must_be_true: str
    why: list[str] = Field(default_factory=list)
    guards_against: list[Ref] = Field(default_factory=list)
    exercise: list[ExerciseRecipe] = Field(default_factory=list)
    exercise_note: str = ""
    changed_directives: list[str] = Field(default_factory=list)
    evidence: list[EvidenceRequirement] = Field(default_factory=list)
    checks: list[Check] = Field(default_factory=list)
    #: per check kind: its evidence, and whether the demo or the user's edge can run it now
    proof: list[ProofRoute] = Field(default_factory=list)
    pass_criteria: list[str] = Field(default_factory=list)
    gate_command: str
    #: the user's own tests that exercise it (coverage); empty means a gap to close
    own_tests: list[LearnedTest] = Field(default_factory=list)
    own_tests_total: int = 0
    #: how others test it: tests from public suites, with links; never counted as coverage
    reference_examples: list[LearnedTest] = Field(default_factory=list)
    reference_examples_total: int = 0
    safe_in_prod: bool = False
    assumptions: list[str] = Field(default_factory=list)
    #: proxy behaviour the item relies on, each verified by a probe or marked unverified
    claims: list[Claim] = Field(default_factory=list)


class TestPlan(PoetModel):
    """A release checklist for one change: what was understood and the obligations to prove."""

    __test__: ClassVar[bool] = False  # not a pytest test class

    title: str
    change: ChangeSummary
    understood: list[str] = Field(default_factory=list)
    component: str | None = None
    gate_command: str = ""
    items: list[TestPlanItem] = Field(default_factory=list)
    message: str = ""

    @property
    def gaps(self) -> list[str]:
        """Obligations no test of the user's exercises."""
        return [i.id for i in self.items if not i.own_tests]

    def to_markdown(self) -> str:
        """The plan as a pull-request comment: summary and gate command on top, details collapsed per item."""
        from poetkb.plans.templating import render_markdown

        return render_markdown("testplan.md.j2", plan=self)

    def to_junit(self) -> str:
        """JUnit XML: each obligation to prove is a test case awaiting evidence (skipped), so CI lists it."""
        from poetkb.plans.templating import render_junit

        return render_junit(self)


def gate_command(obligation_ids: list[str]) -> str:
    """The command that runs the gate for these obligations."""
    return "poet gate run " + " ".join(f"--obligation {oid}" for oid in obligation_ids)


def change_title(change: ChangeSummary) -> str:
    """A short title for a change: its description, or what its diff touches."""
    if change.text:
        first = change.text.splitlines()[0].strip()
        return first if len(first) <= 90 else first[:87].rstrip() + "..."
    paths = ", ".join(f.path for f in change.files[:3])
    more = f" and {len(change.files) - 3} more" if len(change.files) > 3 else ""
    return f"diff of {paths}{more}"


def _exercise(kb: Knowledge, obligation_id: str, component: str | None) -> tuple[list[ExerciseRecipe], str]:
    recipes = kb.recipes(obligation=obligation_id)
    note = ""
    if component:
        fitting = [r for r in recipes if not r.components or component in r.components]
        if recipes and not fitting:
            others = ", ".join(sorted({c for r in recipes for c in r.components}))
            note = f"No recipe in the catalog targets {component}; these target {others}."
        else:
            recipes = fitting
    if not recipes:
        note = "No recipe in the catalog exercises it yet: exercise it by hand, following the checks below."
    out = []
    for recipe in recipes:
        directives = [d for d in recipe.directives if component is None or d.component == component]
        claims = [c for c in recipe.claims if component is None or c.component == component]
        out.append(ExerciseRecipe(id=recipe.id, title=recipe.title, steps=recipe.steps, directives=directives,
                                  claims=claims))
    return out, note


def _claims(ob: Obligation, exercise: list[ExerciseRecipe], component: str | None) -> list[Claim]:
    """The obligation's claims, then those of the recipes it is exercised with, for the plan's component."""
    found = [c for c in ob.claims if component is None or c.component == component]
    for recipe in exercise:
        found += recipe.claims
    return list({c.id: c for c in found}.values())


def build_test_plan(
    kb: Knowledge,
    change: str | None = None,
    *,
    diff: str | Path | None = None,
    component: str | None = None,
    top: int = DEFAULT_TOP,
    git: GitChange | None = None,
) -> TestPlan:
    """The test plan for a change: the top ``top`` obligations it puts at risk, each as a checklist entry."""
    from poetkb.rank import rank

    ranking = rank(kb, change, diff=diff, component=component, top=top, git=git)
    summary = ranking.change
    target = component or (summary.components[0] if summary.components else None)
    items = []
    for position, ranked in enumerate(ranking.obligations, start=1):
        ob = kb.obligation(ranked.id)
        exercise, note = _exercise(kb, ob.id, target)
        changed = [w for rule in ranked.why.rules for w in rule.where if rule.kind == "directive"]
        items.append(TestPlanItem(
            rank=position, id=ob.id, title=ob.title, risk=ob.risk, score=ranked.score,
            must_be_true=ob.statement, why=ranked.why.sentences[1:],
            guards_against=[Ref(id=fm.id, title=fm.title) for fm in kb.failure_modes(obligation=ob.id)],
            exercise=exercise, exercise_note=note, changed_directives=list(dict.fromkeys(changed)),
            evidence=ob.evidence, checks=ob.checks, proof=proof_routes(ob.checks, summary.components or
                                                                      ([target] if target else [])),
            pass_criteria=ob.pass_criteria,
            gate_command=gate_command([ob.id]), own_tests=ranked.why.own_tests,
            own_tests_total=ranked.why.own_tests_total, reference_examples=ranked.why.reference_examples,
            reference_examples_total=ranked.why.reference_examples_total, safe_in_prod=ob.safe_in_prod,
            assumptions=ob.assumptions, claims=_claims(ob, exercise, target),
        ))
    return TestPlan(
        title=f"Test plan: {change_title(summary)}",
        change=summary,
        understood=summary.describe(),
        component=target,
        gate_command=gate_command([i.id for i in items]) if items else "",
        items=items,
        message=ranking.message,
    )
