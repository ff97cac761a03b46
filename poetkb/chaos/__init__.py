"""Chaos experiments tied to obligations: typed experiments, a runner that always rolls back, a fault proxy.

- :mod:`poetkb.chaos.models`: the experiment format (``poet schema chaos-experiment``);
- :mod:`poetkb.chaos.loader`: read and validate a file (YAML or JSON) with file and line in every error;
- :mod:`poetkb.chaos.runner`: run it (hypothesis before / watched during / after, rollbacks always);
- :mod:`poetkb.chaos.providers`: what each probe and action does (a registry new kinds join);
- :mod:`poetkb.chaos.faultproxy`: a TCP proxy on loopback that adds latency, resets, cuts ...;
- :mod:`poetkb.chaos.ctk`: Chaos Toolkit import and export;
- :mod:`poetkb.chaos.journal`: the run's journal, written atomically.

See docs/chaos.md.
"""

from __future__ import annotations
