"""The load plan as Markdown, for a review or a ticket."""

from __future__ import annotations

from poetkb.load.plan import LoadPlan
from poetkb.load.units import fmt_rate


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} h" if hours else "", f"{minutes} min" if minutes else "", f"{secs} s" if secs else ""]
    return " ".join(p for p in parts if p) or "0 s"


def plan_markdown(plan: LoadPlan) -> str:
    """A readable plan: traffic and SLOs, endpoint mix, each scenario's stages, checks and notes."""
    slo = plan.slo
    latency = ", ".join(f"{p} <= {v:g} ms" for p, v in slo.latency_ms.items())
    lines = [
        f"# Load-test plan: {plan.service}",
        "",
        *([plan.summary, ""] if plan.summary else []),
        f"- Traffic: baseline {plan.traffic.baseline_rps:g} rps, peak {plan.traffic.peak_rps:g} rps, "
        f"bursts to {plan.traffic.burst_rps:g} rps (x{plan.traffic.burst_factor:g})",
        f"- SLOs: {latency}; error rate <= {fmt_rate(slo.error_rate)}"
        + (f"; throughput >= {slo.min_throughput_rps:g} rps" if slo.min_throughput_rps is not None else ""),
        f"- Obligations: {', '.join(plan.obligations)}",
        f"- Profile fingerprint: `{plan.profile_fingerprint}`",
        "",
        "## Endpoint mix",
        "",
        "| method | path | critical | share |",
        "|---|---|---|---|",
        *[f"| {e.method} | `{e.path}` | {'yes' if e.critical else 'no'} | {e.share:.1%} |" for e in plan.endpoint_mix],
        "",
        "## Before you start",
        "",
        *[f"- {note}" for note in plan.safety_notes],
    ]
    for scenario in plan.scenarios:
        lines += [
            "",
            f"## {scenario.name}: {scenario.title}",
            "",
            scenario.purpose,
            "",
            f"Executor: `{scenario.executor}`, {_duration(scenario.duration_s)} in all, starting at "
            f"{scenario.start_rps:g} rps, up to {scenario.peak_rps:g} rps.",
            "",
            "| # | phase | duration | target rate |",
            "|---|---|---|---|",
            *[f"| {i} | {s.phase} | {_duration(s.duration_s)} | {s.target_rps:g} rps |"
              for i, s in enumerate(scenario.stages, start=1)],
            "",
            "Checks:",
            "",
            *[f"- `{c.kind}` ({c.obligation}): {c.description}" for c in scenario.checks],
            "",
            "Watch:",
            "",
            *[f"- {m}" for m in scenario.metrics_to_watch],
        ]
        if scenario.safety_notes:
            lines += ["", "Safety:", "", *[f"- {n}" for n in scenario.safety_notes]]
    return "\n".join(lines) + "\n"
