"""Gate the user's own edge configuration: bring it up on loopback against instrumented upstreams.

>>> from poetkb.ownedge import own_edge
>>> with own_edge("nginx.conf") as edge:          # rewritten copy, free loopback ports, test certificates
...     edge.plan.routes                          # what the configuration routes, caches, limits, retries

:mod:`poetkb.ownedge.rewrite` changes only what ties a configuration to its
environment (addresses, ports, certificate, log, cache and pid paths) and lists
every change; :mod:`poetkb.ownedge.plan` derives the probe plan (which hosts
and locations route where, which cache, limit, retry, which listeners are TLS or
mTLS); :mod:`poetkb.ownedge.bringup` starts the instrumented upstreams and the
proxy and stops them again, leaving nothing behind. The user's file is only read.
"""

from __future__ import annotations

from poetkb.ownedge.bringup import OwnEdge, own_edge
from poetkb.ownedge.plan import ProbePlan, Route, build_plan
from poetkb.ownedge.rewrite import Rewrite, Rewritten, rewrite_config

__all__ = ["OwnEdge", "ProbePlan", "Rewrite", "Rewritten", "Route", "build_plan", "own_edge", "rewrite_config"]
