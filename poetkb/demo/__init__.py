"""The demo edge: real NGINX and HAProxy on loopback in front of fault-injectable upstreams.

Gates need a real edge to run against, and a gate is only trusted once it has
been seen to fail on a broken one. This package starts that edge: three small
upstreams (two healthy, one for faults), NGINX or HAProxy configured from the
templates in ``demo/``, either in the good configuration or in a seeded-fault
variant, with certificates made at start-up. Everything lives under one run
directory (``poetkb.paths.work_dir() / "demo"``).

>>> from poetkb import demo
>>> state = demo.up(proxy="haproxy", variant="good")      # doctest: +SKIP
>>> demo.load_state().base_url                             # doctest: +SKIP
'http://127.0.0.1:18080'
>>> demo.down()                                            # doctest: +SKIP

Names are loaded lazily so that the upstream processes, which import
``poetkb.demo.upstream``, do not pay for the lifecycle's imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from poetkb._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "up": "poetkb.demo.lifecycle",
    "down": "poetkb.demo.lifecycle",
    "status": "poetkb.demo.lifecycle",
    "reload": "poetkb.demo.lifecycle",
    "load_state": "poetkb.demo.lifecycle",
    "variants": "poetkb.demo.overlays:all_variants",
    "get_variant": "poetkb.demo.overlays",
    "demo_root": "poetkb.demo.layout",
    "run_dir": "poetkb.demo.layout",
    "DemoState": "poetkb.demo.state",
    "DemoStatus": "poetkb.demo.state",
    "Variant": "poetkb.demo.state",
    "UpstreamInfo": "poetkb.demo.state",
    "Fault": "poetkb.demo.state",
    "ProcessStatus": "poetkb.demo.state",
    "CheckStatus": "poetkb.demo.state",
}

__all__ = [
    "CheckStatus", "DemoState", "DemoStatus", "Fault", "ProcessStatus", "UpstreamInfo", "Variant",
    "demo_root", "down", "get_variant", "load_state", "reload", "run_dir", "status", "up", "variants",
]


__getattr__, __dir__ = lazy_exports("poetkb.demo", _EXPORTS, globals())


if TYPE_CHECKING:
    from poetkb.demo.layout import demo_root, run_dir
    from poetkb.demo.lifecycle import down, load_state, reload, status, up
    from poetkb.demo.overlays import all_variants as variants
    from poetkb.demo.overlays import get_variant
    from poetkb.demo.state import CheckStatus, DemoState, DemoStatus, Fault, ProcessStatus, UpstreamInfo, Variant
