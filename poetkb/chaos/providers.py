"""What each step type does when it runs: the registry of probes and actions.

Every step type maps to one function ``(step, ctx) -> Outcome``. A function never raises for something
the system under test did (a refused connection, a 503): that becomes the outcome's ``status``
("ok", "deviated" for a probe outside its tolerance, "failed" for an action that did not do its job)
and ``detail``. It raises :class:`~poetkb.errors.PoetError` only for bad input found late (a reference
to a missing output, a non-loopback target). New kinds (the service tier's SQL probe, database actions)
register with :func:`register` without touching the runner.

Actions that change the system register an undo on ``ctx.cleanups`` (heal the upstream, stop the
proxy), which the runner runs after the experiment's own rollbacks, whatever happened.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from poetkb.chaos.refs import substitute
from poetkb.errors import EnvironmentProblem, InputError, PoetError

if TYPE_CHECKING:
    import httpx

    from poetkb.chaos.faultproxy import FaultProxy
    from poetkb.demo.state import DemoState
    from poetkb.knowledge import Knowledge

#: bytes of a response body kept in an output (and the journal)
BODY_KEEP = 4096


@dataclass
class Outcome:
    """The result of one step: status, what it produced (referenceable by later steps) and why."""

    status: str  # ok | deviated | failed
    output: dict[str, Any] = field(default_factory=dict)
    detail: str = ""


@dataclass
class RunContext:
    """Everything a step needs: outputs so far, the HTTP client, the demo, the safety settings."""

    client: httpx.Client
    scope: dict[str, Any]
    allow_remote: bool = False
    demo: DemoState | None = None
    kb: Knowledge | None = None
    proxies: dict[str, FaultProxy] = field(default_factory=dict)
    #: (label, undo) pairs, run last-in first-out after the rollbacks
    cleanups: list[tuple[str, Callable[[], None]]] = field(default_factory=list)
    faulted: set[str] = field(default_factory=set)
    stop_requested: Callable[[], bool] = lambda: False


Provider = Callable[[Any, RunContext], Outcome]
PROVIDERS: dict[str, Provider] = {}


def register(step_type: str) -> Callable[[Provider], Provider]:
    """Decorator: ``fn`` runs steps of ``step_type``."""
    def wrap(fn: Provider) -> Provider:
        PROVIDERS[step_type] = fn
        return fn
    return wrap


def run_step(step: Any, ctx: RunContext) -> Outcome:
    """Run one step with its references resolved; unknown types are an internal error."""
    provider = PROVIDERS.get(step.type)
    if provider is None:
        raise EnvironmentProblem(f"no provider for step type {step.type!r}")
    data = substitute(step.model_dump(), ctx.scope)
    resolved = type(step).model_validate(data)
    return provider(resolved, ctx)


def safe_run(step: Any, ctx: RunContext) -> Outcome:
    """Run a step; a PoetError or a crash becomes a failed outcome naming it (the run goes on to its rollbacks)."""
    t0 = time.time()
    try:
        outcome = run_step(step, ctx)
    except PoetError as exc:
        outcome = Outcome("failed", {}, exc.message)
    except Exception as exc:  # noqa: BLE001 - a probe crash is that probe failing, not a skipped rollback
        outcome = Outcome("failed", {}, f"{type(exc).__name__}: {exc}")
    outcome.output["_took"] = time.time() - t0
    return outcome


# -- safety -----------------------------------------------------------------------------------------------
def ensure_url(url: str, ctx: RunContext, what: str) -> None:
    """Loopback only, unless the run allows remote targets (the gates' rule and pinning)."""
    from poetkb.gates.probes import ensure_allowed

    ensure_allowed(url, allow_remote=ctx.allow_remote, what=what)


def ensure_hostport(target: str, ctx: RunContext, what: str) -> None:
    from poetkb.chaos.faultproxy import split_target

    host, port = split_target(target)
    ensure_url(f"http://{host}:{port}/", ctx, what)


def demo_upstream(ctx: RunContext, name: str) -> Any:
    """The demo upstream called ``name``; :class:`InputError` listing the names otherwise."""
    if ctx.demo is None:
        raise EnvironmentProblem(f"upstream {name!r} names a demo upstream but the demo is not running",
                                 hint="start it with `poet demo up`")
    try:
        return ctx.demo.upstream(name)
    except KeyError:
        known = ", ".join(u.name for u in ctx.demo.upstreams)
        raise InputError(f"the demo has no upstream {name!r}", field="upstream", hint=f"known: {known}") from None


# -- probes ------------------------------------------------------------------------------------------------
def _http(ctx: RunContext, url: str, method: str, headers: dict[str, str], body: str | None,
          timeout: float) -> tuple[dict[str, Any], str | None]:
    import httpx

    ensure_url(url, ctx, "url")
    t0 = time.perf_counter()
    try:
        response = ctx.client.request(method, url, headers=headers, content=body, timeout=timeout)
    except httpx.HTTPError as exc:
        elapsed = round((time.perf_counter() - t0) * 1000, 1)
        return {"error": f"{type(exc).__name__}: {exc}".strip(), "elapsed_ms": elapsed}, \
            f"{method} {url}: {type(exc).__name__} after {elapsed} ms"
    elapsed = round((time.perf_counter() - t0) * 1000, 1)
    text = response.content[:BODY_KEEP].decode("utf-8", "replace")
    output: dict[str, Any] = {"status": response.status_code, "elapsed_ms": elapsed,
                              "headers": {k.lower(): v for k, v in response.headers.items()}, "body": text}
    if "json" in response.headers.get("content-type", ""):
        with contextlib.suppress(ValueError):
            output["json"] = response.json()
    return output, None


@register("http")
def http_probe(step: Any, ctx: RunContext) -> Outcome:
    output, error = _http(ctx, step.url, step.method, step.headers, step.body, step.timeout_s)
    tol = step.tolerance
    if error is not None:
        return Outcome("deviated" if tol is not None else "failed", output, error)
    if tol is None:
        return Outcome("ok", output, f"status {output['status']} in {output['elapsed_ms']} ms")
    problems = []
    if not tol.status_ok(output["status"]):
        problems.append(f"status {output['status']} not in {tol.status}")
    if tol.max_latency_ms is not None and output["elapsed_ms"] > tol.max_latency_ms:
        problems.append(f"{output['elapsed_ms']} ms > {tol.max_latency_ms} ms")
    if tol.body_contains is not None and tol.body_contains not in output["body"]:
        problems.append(f"body lacks {tol.body_contains!r}")
    for name, value in tol.headers.items():
        got = output["headers"].get(name.lower())
        if got != value:
            problems.append(f"header {name}: {got!r} != {value!r}")
    if problems:
        return Outcome("deviated", output, "; ".join(problems))
    return Outcome("ok", output, f"status {output['status']} in {output['elapsed_ms']} ms")


_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
}


@register("metric")
def metric_probe(step: Any, ctx: RunContext) -> Outcome:
    from prometheus_client.parser import text_string_to_metric_families

    output, error = _http(ctx, step.url, "GET", {}, None, step.timeout_s)
    if error is not None or output.get("status") != 200:
        return Outcome("deviated", output, error or f"metrics endpoint answered {output.get('status')}")
    # the whole text is needed (the kept body is cut at BODY_KEEP), so fetch again bounded by the client
    text = ctx.client.get(step.url, timeout=step.timeout_s).text[:4 * 1024 * 1024]
    value = None
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == step.metric and all(sample.labels.get(k) == v for k, v in step.labels.items()):
                    value = (value or 0.0) + float(sample.value)
    except ValueError as exc:
        return Outcome("deviated", {"status": output["status"]}, f"metrics text does not parse: {exc}")
    result = {"value": value, "metric": step.metric, "labels": step.labels}
    if value is None:
        return Outcome("deviated", result, f"no sample of {step.metric} {step.labels or ''}".strip())
    ok = _OPS[step.op](value, step.threshold)
    return Outcome("ok" if ok else "deviated", result, f"{step.metric} = {value:g} ({step.op} {step.threshold:g}: "
                   f"{'holds' if ok else 'does not hold'})")


@register("gate")
def gate_probe(step: Any, ctx: RunContext) -> Outcome:
    if ctx.kb is None:
        raise EnvironmentProblem("a gate probe needs the knowledge base", hint="run it through `poet chaos run`")
    from poetkb.gates.runner import gate
    from poetkb.gates.schema import Edge

    report = gate(ctx.kb, obligations=step.obligations, edge=Edge.from_options(target=step.target,
                                                                             allow_remote=ctx.allow_remote),
                  record=False, write_reports=False, reload_first=False)
    verdicts = {v.obligation_id: v.verdict for v in report.obligations}
    output = {"verdict": report.verdict, "obligations": verdicts, "run_id": report.run_id,
              "diagnoses": {v.obligation_id: v.diagnosis for v in report.obligations if v.verdict != "pass"}}
    bad = {k: v for k, v in verdicts.items() if v != "pass"}
    if bad:
        return Outcome("deviated", output, "; ".join(f"{k}: {v}" for k, v in sorted(bad.items())))
    return Outcome("ok", output, f"{len(verdicts)} obligation(s) pass")


def _admin(ctx: RunContext, name: str) -> str:
    url = demo_upstream(ctx, name).admin_url.rstrip("/")
    ensure_url(url, ctx, "upstream admin")
    return url


@register("upstream_counters")
def counters_probe(step: Any, ctx: RunContext) -> Outcome:
    url = _admin(ctx, step.upstream) + "/counters"
    output, error = _http(ctx, url, "GET", {}, None, step.timeout_s)
    if error is not None or output.get("status") != 200:
        return Outcome("deviated", output, error or f"counters answered {output.get('status')}")
    data = output.get("json") or {}
    result = {"total": data.get("total", 0), "by_path": data.get("by_path", {})}
    problems = []
    if step.max_total is not None and result["total"] > step.max_total:
        problems.append(f"total {result['total']} > {step.max_total}")
    if step.min_total is not None and result["total"] < step.min_total:
        problems.append(f"total {result['total']} < {step.min_total}")
    return Outcome("deviated" if problems else "ok", result, "; ".join(problems) or f"total {result['total']}")


# -- actions -----------------------------------------------------------------------------------------------
def _fault_call(ctx: RunContext, name: str, method: str, body: dict[str, Any] | None, timeout: float) -> Outcome:
    import json

    url = _admin(ctx, name) + "/fault"
    output, error = _http(ctx, url, method, {"content-type": "application/json"},
                          json.dumps(body) if body is not None else None, timeout)
    if error is not None or output.get("status") != 200:
        return Outcome("failed", output, error or f"{method} {url} answered {output.get('status')}: "
                       f"{output.get('body', '')[:200]}")
    return Outcome("ok", {"upstream": name, "fault": output.get("json", {})}, f"{method} {url}")


@register("upstream_fault")
def upstream_fault(step: Any, ctx: RunContext) -> Outcome:
    name = step.upstream
    demo_upstream(ctx, name)
    ctx.faulted.add(name)
    ctx.cleanups.append((f"heal upstream {name}", lambda: _must(_fault_call(ctx, name, "DELETE", None, 5.0))))
    return _fault_call(ctx, name, "PUT", step.fault.model_dump(), step.timeout_s)


@register("upstream_heal")
def upstream_heal(step: Any, ctx: RunContext) -> Outcome:
    names = [u.name for u in ctx.demo.upstreams] if step.upstream == "all" and ctx.demo else [step.upstream]
    if step.upstream == "all" and ctx.demo is None:
        raise EnvironmentProblem("upstream_heal all: the demo is not running", hint="start it with `poet demo up`")
    details = []
    for name in names:
        outcome = _fault_call(ctx, name, "DELETE", None, step.timeout_s)
        if outcome.status != "ok":
            return outcome
        ctx.faulted.discard(name)
        details.append(name)
    return Outcome("ok", {"healed": details}, f"healed {', '.join(details)}")


def _must(outcome: Outcome) -> None:
    if outcome.status != "ok":
        raise EnvironmentProblem(outcome.detail)


def _proxy_target(step: Any, ctx: RunContext) -> str:
    target = step.upstream
    if ":" not in target:
        parts = urlsplit(demo_upstream(ctx, target).url)
        target = f"{parts.hostname}:{parts.port}"
    ensure_hostport(target, ctx, "upstream")
    return target


@register("fault_proxy_start")
def fault_proxy_start(step: Any, ctx: RunContext) -> Outcome:
    from poetkb.chaos.faultproxy import FaultProxy

    proxy = FaultProxy(_proxy_target(step, ctx), step.toxics, listen_port=step.listen_port,
                       max_connections=step.max_connections).start()
    ctx.proxies[step.name] = proxy
    ctx.cleanups.append((f"stop fault proxy {step.name}", proxy.stop))
    return Outcome("ok", {"listen": proxy.listen, "port": proxy.port, "url": f"http://{proxy.listen}",
                          "target": f"{proxy.target[0]}:{proxy.target[1]}"}, f"listening on {proxy.listen}")


@register("edge_interpose")
def edge_interpose(step: Any, ctx: RunContext) -> Outcome:
    from pathlib import Path

    from poetkb import demo
    from poetkb.chaos.faultproxy import FaultProxy

    if ctx.demo is None:
        raise EnvironmentProblem("edge_interpose: the demo is not running", hint="start it with `poet demo up`")
    target = _proxy_target(step, ctx)
    config = Path(ctx.demo.config_path)
    original = config.read_bytes()
    if original.count(target.encode()) == 0:
        return Outcome("failed", {}, f"{target} does not appear in {config}")
    proxy = FaultProxy(target, step.toxics, max_connections=step.max_connections).start()
    ctx.proxies[step.name] = proxy
    ctx.cleanups.append((f"stop fault proxy {step.name}", proxy.stop))

    def restore() -> None:
        config.write_bytes(original)
        demo.reload()

    # register the restore before editing, so a failed edit or reload is undone too
    ctx.cleanups.append((f"restore edge configuration {config.name}", restore))
    config.write_bytes(original.replace(target.encode(), proxy.listen.encode()))
    try:
        demo.reload()
    except PoetError as exc:
        return Outcome("failed", {"listen": proxy.listen}, f"edge reload refused the edit: {exc.message}")
    return Outcome("ok", {"listen": proxy.listen, "port": proxy.port, "url": f"http://{proxy.listen}",
                          "target": target, "config": str(config)},
                   f"{step.upstream} ({target}) now behind {proxy.listen}")


@register("service_db_interpose")
def service_db_interpose(step: Any, ctx: RunContext) -> Outcome:
    import json

    from poetkb.chaos.faultproxy import FaultProxy
    from poetkb.demo.service.tier import load_service_state

    state = load_service_state()
    if state is None:
        raise EnvironmentProblem("service_db_interpose: the service tier is not running",
                                 hint="start it with `poet demo up --tier service`")
    target = f"127.0.0.1:{state.ports['postgres']}"
    proxy = FaultProxy(target, step.toxics, max_connections=step.max_connections).start()
    ctx.proxies[step.name] = proxy
    ctx.cleanups.append((f"stop fault proxy {step.name}", proxy.stop))
    url = state.admin_url + "/db_via"

    def restore() -> None:
        output, error = _http(ctx, url, "DELETE", {}, None, 10.0)
        if error is not None or output.get("status") != 200:
            raise EnvironmentProblem(f"DELETE {url}: {error or output.get('status')}")

    # registered before the switch, so a switch that half happened is undone too (last first: before the stop)
    ctx.cleanups.append((f"point the service's database path back at PostgreSQL ({step.name})", restore))
    output, error = _http(ctx, url, "PUT", {"content-type": "application/json"},
                          json.dumps({"via": proxy.listen}), step.timeout_s)
    if error is not None or output.get("status") != 200:
        return Outcome("failed", output, error or f"PUT {url} answered {output.get('status')}: "
                       f"{str(output.get('body', ''))[:200]}")
    replaced = (output.get("json") or {}).get("closed", 0)
    return Outcome("ok", {"listen": proxy.listen, "port": proxy.port, "url": f"http://{proxy.listen}",
                          "target": target, "replaced": replaced},
                   f"the service's pool now reaches PostgreSQL ({target}) through {proxy.listen}; "
                   f"{replaced} pooled connection(s) replaced")


def _proxy(ctx: RunContext, name: str) -> FaultProxy:
    proxy = ctx.proxies.get(name)
    if proxy is None:
        raise InputError(f"no fault proxy {name!r} is running", field="proxy",
                         hint="start it with a fault_proxy_start step of that name first")
    return proxy


@register("fault_proxy_update")
def fault_proxy_update(step: Any, ctx: RunContext) -> Outcome:
    proxy = _proxy(ctx, step.proxy)
    proxy.update(step.toxics)
    return Outcome("ok", {"toxics": step.toxics.model_dump()}, f"toxics of {step.proxy} changed")


@register("fault_proxy_stop")
def fault_proxy_stop(step: Any, ctx: RunContext) -> Outcome:
    proxy = _proxy(ctx, step.proxy)
    proxy.stop()
    return Outcome("ok", {"stats": proxy.stats.as_dict()}, f"{step.proxy} stopped")


@register("http_call")
def http_call(step: Any, ctx: RunContext) -> Outcome:
    output, error = _http(ctx, step.url, step.method, step.headers, step.body, step.timeout_s)
    if error is not None:
        return Outcome("failed", output, error)
    if output["status"] not in step.expect_status:
        return Outcome("failed", output, f"status {output['status']} not in {step.expect_status}")
    return Outcome("ok", output, f"status {output['status']}")


@register("demo_reload")
def demo_reload(step: Any, ctx: RunContext) -> Outcome:
    from poetkb import demo

    if ctx.demo is None:
        raise EnvironmentProblem("demo_reload: the demo is not running", hint="start it with `poet demo up`")
    deadline = time.monotonic() + step.timeout_s
    done = 0
    for _ in range(step.count):
        if ctx.stop_requested() or time.monotonic() > deadline:
            break
        try:
            demo.reload()
        except PoetError as exc:
            return Outcome("failed", {"reloads": done}, exc.message)
        done += 1
        time.sleep(step.interval_s)
    return Outcome("ok" if done == step.count else "failed", {"reloads": done}, f"{done}/{step.count} reloads")


@register("demo_signal")
def demo_signal(step: Any, ctx: RunContext) -> Outcome:
    import os
    import signal as signals

    from poetkb.demo import procs

    if step.process in SERVICE_PROCESSES:
        return _service_signal(step, ctx)
    if ctx.demo is None:
        raise EnvironmentProblem("demo_signal: the demo is not running", hint="start it with `poet demo up`")
    pid = ctx.demo.pids.get(step.process)
    if pid is None:
        raise InputError(f"the demo has no process {step.process!r}", field="process",
                         hint=f"known: {', '.join(sorted(ctx.demo.pids))}")
    if not procs.owned(pid, f"{ctx.demo.run_dir}/"):
        return Outcome("failed", {"pid": pid}, f"{step.process} (pid {pid}) is not a running process of the demo")
    sig = getattr(signals, step.signal)
    demo_state = ctx.demo
    if step.signal == "SIGSTOP":
        def resume() -> None:
            # a process another undo already replaced (the demo restarted after a SIGKILL) needs no SIGCONT
            if procs.owned(pid, f"{demo_state.run_dir}/"):
                with contextlib.suppress(ProcessLookupError):  # it may end between the check and the signal
                    os.kill(pid, signals.SIGCONT)

        ctx.cleanups.append((f"continue {step.process}", resume))
    elif step.signal in ("SIGTERM", "SIGKILL"):
        def restart() -> None:
            from poetkb import demo

            demo.up(proxy=demo_state.proxy, variant=demo_state.variant, base_port=demo_state.base_port)

        ctx.cleanups.append((f"restart the demo after {step.process} was stopped", restart))
    os.kill(pid, sig)
    return Outcome("ok", {"pid": pid, "signal": step.signal}, f"{step.signal} to {step.process} (pid {pid})")


#: processes of the service tier a demo_signal may name (besides the edge's)
SERVICE_PROCESSES = ("service", "sidecar", "postgres")


def _service_signal(step: Any, ctx: RunContext) -> Outcome:
    """demo_signal to a process of the service tier: the service, the sidecar (issuer and dependency) or the
    PostgreSQL postmaster. Only a process the tier started is signalled (its command line carries the tier's
    run directory; the postmaster is the one of the tier's cluster); undone as for the edge's processes."""
    import os
    import signal as signals
    from pathlib import Path

    from poetkb.demo import procs
    from poetkb.demo.service.pg import Cluster
    from poetkb.demo.service.tier import load_service_state

    state = load_service_state()
    if state is None:
        raise EnvironmentProblem(f"demo_signal {step.process}: the service tier is not running",
                                 hint="start it with `poet demo up --tier service`")
    cluster = Cluster(Path(state.run_dir), state.ports["postgres"])

    def current() -> int | None:
        if step.process == "postgres":
            return cluster.pid()
        pid = state.pids.get("app" if step.process == "service" else step.process)
        return pid if procs.owned(pid, f"{state.run_dir}/") else None

    pid = current()
    if pid is None or not procs.alive(pid):
        return Outcome("failed", {"pid": pid}, f"{step.process} is not a running process of the service tier")
    if step.signal == "SIGSTOP":
        def resume() -> None:
            if current() == pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signals.SIGCONT)

        ctx.cleanups.append((f"continue {step.process}", resume))
    elif step.signal in ("SIGTERM", "SIGKILL"):
        def restart() -> None:
            from poetkb.demo.service import tier

            if step.process == "postgres":
                # only the database: the service reconnects by itself (a service that does not is the finding),
                # and another step may still hold the service stopped until its own undo
                import time as clock

                deadline = clock.monotonic() + 10.0
                while procs.alive(pid) and clock.monotonic() < deadline:
                    clock.sleep(0.05)
                if procs.alive(cluster.pid()):
                    return
                if cluster.pid() == pid:
                    # the killed postmaster's lock file: its pid may live on as a zombie nobody reaps, which
                    # PostgreSQL would take for a running server; the process is gone, so the file goes too
                    (cluster.data_dir / "postmaster.pid").unlink(missing_ok=True)
                cluster.start()
                return
            tier.up(variant=state.variant, base_port=state.base_port)

        ctx.cleanups.append((f"restart the service tier after {step.process} was stopped", restart))
    os.kill(pid, getattr(signals, step.signal))
    return Outcome("ok", {"pid": pid, "signal": step.signal}, f"{step.signal} to {step.process} (pid {pid})")


# -- the service tier's database ---------------------------------------------------------------------------
_SQL_OPS = _OPS


@register("sql")
def sql_probe(step: Any, ctx: RunContext) -> Outcome:
    from poetkb.chaos import database

    output = database.query(database.resolve_dsn(step.dsn, allow_remote=ctx.allow_remote), step.query,
                            step.timeout_s)
    if "error" in output:
        return Outcome("deviated" if step.expect is not None else "failed", output, output["error"])
    expect = step.expect
    summary = f"{output['row_count']} row(s), value {output['value']!r} in {output['elapsed_ms']} ms"
    if expect is None:
        return Outcome("ok", output, summary)
    problems = []
    if expect.min_rows is not None and output["row_count"] < expect.min_rows:
        problems.append(f"{output['row_count']} rows < {expect.min_rows}")
    if expect.max_rows is not None and output["row_count"] > expect.max_rows:
        problems.append(f"{output['row_count']} rows > {expect.max_rows}")
    if expect.op is not None:
        try:
            number = float(output["value"])
        except (TypeError, ValueError):
            problems.append(f"value {output['value']!r} is not a number")
        else:
            if not _SQL_OPS[expect.op](number, float(expect.value)):
                problems.append(f"value {number:g} {expect.op} {expect.value:g} does not hold")
    if expect.max_latency_ms is not None and output["elapsed_ms"] > expect.max_latency_ms:
        problems.append(f"{output['elapsed_ms']} ms > {expect.max_latency_ms} ms")
    return Outcome("deviated" if problems else "ok", output, "; ".join(problems) or summary)


@register("pg_terminate_backends")
def pg_terminate_backends(step: Any, ctx: RunContext) -> Outcome:
    from poetkb.chaos import database

    count = database.terminate_backends(database.resolve_dsn(step.dsn, allow_remote=ctx.allow_remote),
                                        application_name=step.application_name, limit=step.max_backends,
                                        timeout_s=step.timeout_s)
    return Outcome("ok", {"terminated": count}, f"terminated {count} backend(s)")


def _background(step: Any, ctx: RunContext, start: Callable[[str], Any], what: str) -> Outcome:
    from poetkb.chaos import database

    dsn = database.resolve_dsn(step.dsn, allow_remote=ctx.allow_remote)
    try:
        sessions = start(dsn)
    except EnvironmentProblem as exc:
        return Outcome("failed", {}, exc.message)
    ctx.cleanups.append((f"release {step.name} ({what})", sessions.stop))
    return Outcome("ok", {"pids": list(sessions.pids)}, what)


@register("pg_hold_lock")
def pg_hold_lock(step: Any, ctx: RunContext) -> Outcome:
    from poetkb.chaos import database

    return _background(step, ctx, lambda dsn: database.hold_lock(dsn, step.table, step.mode, step.hold_s),
                       f"{step.mode} lock on {step.table} held for {step.hold_s:g} s")


@register("pg_slow_statements")
def pg_slow_statements(step: Any, ctx: RunContext) -> Outcome:
    from poetkb.chaos import database

    return _background(step, ctx, lambda dsn: database.slow_statements(dsn, step.sessions, step.seconds, step.table),
                       f"{step.sessions} slow statement(s) of {step.seconds:g} s"
                       + (f" reading {step.table}" if step.table else ""))


@register("pg_restart")
def pg_restart(step: Any, ctx: RunContext) -> Outcome:
    from poetkb.chaos import database

    took = database.restart(step.timeout_s)
    return Outcome("ok", {"restart_s": took}, f"PostgreSQL restarted in {took:g} s")
