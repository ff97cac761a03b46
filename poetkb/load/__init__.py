"""Load testing: plans from a service profile, SLO interpretation of results, baselines, the evidence log.

- :mod:`~poetkb.load.profile`: the service profile (``load_profile``);
- :mod:`~poetkb.load.plan`: the four-scenario plan (``build_plan``), exported by
  :mod:`~poetkb.load.export_k6` and :mod:`~poetkb.load.export_locust`;
- :mod:`~poetkb.load.metrics`: results from k6, Locust, simple summaries and raw samples (``read_metrics``);
- :mod:`~poetkb.load.checks`: ``evaluate_check``, the evaluators gates call for the perf check kinds;
- :mod:`~poetkb.load.interpret`: verdicts per SLO in plain words (``interpret``);
- :mod:`~poetkb.load.baselines`: the last passing run per service and scenario, and regressions;
- :mod:`~poetkb.load.evidence_log`: the append-only JSON-lines evidence log.

Names are loaded lazily so importing this package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from poetkb._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "evaluate_check": "poetkb.load.checks",
    "CHECK_KINDS": "poetkb.load.checks",
    "ServiceProfile": "poetkb.load.profile",
    "load_profile": "poetkb.load.profile",
    "LoadPlan": "poetkb.load.plan",
    "build_plan": "poetkb.load.plan",
    "MetricsSummary": "poetkb.load.metrics",
    "read_metrics": "poetkb.load.metrics",
    "Interpretation": "poetkb.load.interpret",
    "interpret": "poetkb.load.interpret",
    "Baseline": "poetkb.load.baselines",
    "compare": "poetkb.load.baselines",
    "export_k6": "poetkb.load.export_k6",
    "export_locust": "poetkb.load.export_locust",
    "append_record": "poetkb.load.evidence_log",
    "read_log": "poetkb.load.evidence_log",
}

__all__ = [
    "CHECK_KINDS", "Baseline", "Interpretation", "LoadPlan", "MetricsSummary", "ServiceProfile", "append_record",
    "build_plan", "compare", "evaluate_check", "export_k6", "export_locust", "interpret", "load_profile",
    "read_log", "read_metrics",
]


__getattr__, __dir__ = lazy_exports("poetkb.load", _EXPORTS, globals())


if TYPE_CHECKING:
    from poetkb.load.baselines import Baseline, compare
    from poetkb.load.checks import CHECK_KINDS, evaluate_check
    from poetkb.load.evidence_log import append_record, read_log
    from poetkb.load.export_k6 import export_k6
    from poetkb.load.export_locust import export_locust
    from poetkb.load.interpret import Interpretation, interpret
    from poetkb.load.metrics import MetricsSummary, read_metrics
    from poetkb.load.plan import LoadPlan, build_plan
    from poetkb.load.profile import ServiceProfile, load_profile
