"""Chaos experiments tied to obligations: typed experiments, a runner that always rolls back, a fault proxy.

- :mod:`poetkb.chaos.models`: the experiment format (``poet schema chaos-experiment``);
- :mod:`poetkb.chaos.loader`: read and validate a file (YAML or JSON) with file and line in every error;
- :mod:`poetkb.chaos.refs`: ``${...}`` references to configuration, the demo and earlier outputs;
- :mod:`poetkb.chaos.runner` and :mod:`poetkb.chaos.watch`: run it (hypothesis before / watched during /
  after, guardrails, signals, rollbacks always);
- :mod:`poetkb.chaos.providers`: what each probe and action does (a registry new kinds join);
- :mod:`poetkb.chaos.journal`: the run's journal, written atomically;
- :mod:`poetkb.chaos.faultproxy` and :mod:`poetkb.chaos.toxiproxy_api`: a TCP fault proxy on loopback and a
  Toxiproxy-compatible API over it;
- :mod:`poetkb.chaos.ctk` and :mod:`poetkb.chaos.ctk_functions`: Chaos Toolkit import, export and the
  functions an exported experiment calls;
- :mod:`poetkb.chaos.plan`: experiments derived from the obligations a change puts at risk;
- :mod:`poetkb.chaos.training` and :mod:`poetkb.chaos.guides`: the training scenarios and their guides.

See docs/chaos.md.
"""

from __future__ import annotations
