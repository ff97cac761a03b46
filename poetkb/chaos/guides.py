"""Instructor guides of the training scenarios, generated from the scenario files (so they cannot drift).

``python -m poetkb.chaos.guides docs/scenarios`` writes one Markdown guide per scenario and an index; a
test fails when the committed guides differ from what this module renders.
"""

from __future__ import annotations

import sys
from pathlib import Path

from poetkb.chaos.training import Scenario, load_scenarios


def render_guide(scenario: Scenario) -> str:
    """The instructor guide of one scenario: what breaks, how to diagnose, the fix, what it teaches."""
    where = ("the service tier: `poet demo up --tier service` (or `--tier all`)" if scenario.tier == "service"
             else f"demo edge on {' or '.join(scenario.proxies)}")
    runs = "The service tier runs its" if scenario.tier == "service" else "The demo runs its"
    lines = [f"# {scenario.title}", "",
             f"Scenario `{scenario.id}` — `poet train start {scenario.id}` ({where}).", "",
             "## What the learner sees", "", scenario.symptom, "",
             "## What breaks, and why", "",
             f"{runs} `{scenario.variant}` variant: {_variant_description(scenario)}", ""]
    if scenario.inject:
        lines += ["Injected at run time to make the symptom visible:", ""]
        for action in scenario.inject:
            detail = getattr(action, "fault", None)
            if hasattr(action, "upstream"):
                what = f"`{action.type}` on `{action.upstream}`"
            elif action.type == "http_call":
                what = f"`{action.type}` {action.method} `{action.url}` {action.body or ''}".rstrip()
            else:
                what = f"`{action.type}`"
            if detail is not None:
                what += f": {detail.model_dump(exclude_defaults=True)}"
            lines.append(f"- {action.name}: {what}")
        lines.append("")
    lines += ["## How to diagnose (the hints, in order)", ""]
    lines += [f"{n}. {hint}" for n, hint in enumerate(scenario.hints, 1)]
    lines += ["", "## The fix", "", scenario.fix, "",
              _in_the_demo(scenario), "",
              "## What it teaches", "",
              f"- Obligations: {', '.join(f'`{o}`' for o in scenario.obligations)} (`poet obligations show ID`)"]
    if scenario.failure_mode:
        lines.append(f"- Failure mode: {scenario.failure_mode}")
    lines += ["- Checked by: the gate checks of those obligations"
              + (f", and {', '.join(f'`{p.name}`' for p in scenario.check)}" if scenario.check else ""), "",
              "## When it is solved", "", f"`poet train check` exits 0 and says: {scenario.solved}", ""]
    return "\n".join(lines)


def _in_the_demo(scenario: Scenario) -> str:
    if scenario.tier == "service":
        return ("In the demo: `poet demo up --tier service --service-variant good` (the service with the flaw "
                "fixed; PostgreSQL keeps running), then `poet train check`.")
    return ("In the demo: `poet demo up --variant good` (or edit the running configuration and reload it), then "
            "`poet train check`.")


def _variant_description(scenario: Scenario) -> str:
    if scenario.tier == "service":
        from poetkb.demo.service.variants import get_service_variant

        variant = get_service_variant(scenario.variant)
        text = " ".join(f"{variant.description} {variant.outage}".split())
        return text if text.endswith(".") else text + "."
    from poetkb.demo.overlays import get_variant

    text = " ".join(get_variant(scenario.proxies[0], scenario.variant).description.split())
    return text if text.endswith(".") else text + "."


def render_index(scenarios: dict[str, Scenario]) -> str:
    lines = ["# Training scenarios: instructor guides", "",
             "Generated from `poetkb/chaos/scenarios/*.yaml` by `python -m poetkb.chaos.guides docs/scenarios`; "
             "see [../chaos.md](../chaos.md) for `poet train`.", "",
             "| scenario | what breaks | teaches |", "|---|---|---|"]
    for scenario in scenarios.values():
        lines.append(f"| [{scenario.id}]({scenario.id}.md) | {scenario.title} | "
                     f"{', '.join(scenario.obligations)} |")
    return "\n".join(lines) + "\n"


def render_all() -> dict[str, str]:
    """File name -> content of every guide and the index."""
    scenarios = load_scenarios()
    files = {f"{sid}.md": render_guide(s) for sid, s in scenarios.items()}
    files["README.md"] = render_index(scenarios)
    return files


def main(argv: list[str] | None = None) -> None:
    target = Path((argv or sys.argv[1:] or ["docs/scenarios"])[0])
    target.mkdir(parents=True, exist_ok=True)
    for name, text in render_all().items():
        (target / name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
