"""Functions Chaos Toolkit calls through its python provider when it runs an experiment poetkb exported.

``run_step(step)`` runs one poetkb step (the ``step`` argument is the step as poetkb writes it) with
poetkb's own providers, so the loopback rule, the bounds and the references hold under CTK as well.
State lives for the process: outputs of earlier steps stay referenceable (``${NAME.FIELD}``) and fault
proxies keep running until a rollback stops them. A probe returns True when it is within its
tolerance (the exported tolerance is ``true``); an action returns its output, or raises when it fails.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from typing import Any

_LOCK = threading.Lock()
_CTX: Any = None


def _context(configuration: dict[str, Any] | None) -> Any:
    global _CTX
    from poetkb import demo
    from poetkb.chaos.providers import RunContext
    from poetkb.gates.probes import make_client

    with _LOCK:
        state = demo.load_state()  # the demo may have been started (or moved) since the last step
        if _CTX is None:
            import os

            scope: dict[str, Any] = {"config": {}, "run": {"nonce": os.urandom(4).hex()}}
            _CTX = RunContext(client=make_client("http://127.0.0.1"), scope=scope, demo=state)
            atexit.register(_close)
        _CTX.demo = state
        if state is not None:
            _CTX.scope.update(_demo_scope(state))
        else:
            _CTX.scope.pop("demo", None)
        _CTX.scope["config"] = {k: v for k, v in (configuration or {}).items()
                                if isinstance(v, str | int | float | bool)}
        from poetkb.chaos.runner import service_scope

        service = service_scope()  # the service tier may have been started (or moved) since the last step
        if service is not None:
            _CTX.scope["service"] = service
        else:
            _CTX.scope.pop("service", None)
        return _CTX


def _demo_scope(state: Any) -> dict[str, Any]:
    return {"demo": {"base_url": state.base_url, "tls_url": state.tls_url, "metrics_url": state.metrics_url,
                     "proxy": state.proxy, "variant": state.variant,
                     "upstreams": {u.name: {"url": u.url, "admin_url": u.admin_url} for u in state.upstreams}}}


def _close() -> None:
    """Stop what is still running (fault proxies) when the process ends."""
    ctx = _CTX
    if ctx is None:
        return
    for proxy in list(ctx.proxies.values()):
        proxy.stop()
    for _label, undo in reversed(ctx.cleanups):  # e.g. database sessions still holding a lock
        with contextlib.suppress(Exception):  # the process is ending; every undo gets its turn
            undo()
    ctx.cleanups.clear()
    ctx.client.close()


def run_step(step: dict[str, Any], configuration: dict[str, Any] | None = None,
             secrets: dict[str, Any] | None = None) -> Any:
    """Run one poetkb step (see the module docstring)."""
    from pydantic import TypeAdapter

    from poetkb.chaos.models import ACTION_TYPES, Step
    from poetkb.chaos.providers import run_step as run

    ctx = _context(configuration)
    parsed = TypeAdapter(Step).validate_python(step)
    if parsed.type == "pause":
        import time

        time.sleep(parsed.seconds)
        return True
    outcome = run(parsed, ctx)
    if outcome.status == "ok":
        ctx.scope[parsed.name] = outcome.output
    if parsed.type in ACTION_TYPES:
        if outcome.status != "ok":
            raise RuntimeError(f"{parsed.name}: {outcome.detail}")
        return outcome.output
    return outcome.status == "ok"
