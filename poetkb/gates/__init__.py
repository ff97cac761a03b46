"""Release gates: drive traffic at an edge, keep the evidence, judge each obligation from it.

The package is split so that each step can be used and tested alone:

- :mod:`poetkb.gates.params` and :mod:`poetkb.gates.kinds`: the check-kind vocabulary the catalog uses
  (parameter models, what evidence each kind reads); light, imported by the catalog validator.
- :mod:`poetkb.gates.schema`: the public report types (:class:`GateReport` and friends).
- :mod:`poetkb.gates.target`: what a gate runs against (the running demo, or options).
- :mod:`poetkb.gates.probes`, :mod:`poetkb.gates.faults`: HTTP traffic and upstream fault injection.
- :mod:`poetkb.gates.evidence`, :mod:`poetkb.gates.accesslog`, :mod:`poetkb.gates.foreign`: evidence on disk.
- :mod:`poetkb.gates.checks`: one collector and one pure evaluator per check kind.
- :mod:`poetkb.gates.runner`: select obligations, collect, evaluate, record; :mod:`poetkb.gates.reports`.

Importing this package loads nothing heavy; httpx and jinja2 load when a gate runs or a report renders.
"""

from __future__ import annotations
