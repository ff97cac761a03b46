"""`poet demo`: bring the demo edge (real NGINX or HAProxy on loopback) up and down, and inspect it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from poetkb.cli.common import emit_json, main

if TYPE_CHECKING:
    from poetkb.demo.state import DemoState


@main.group()
def demo() -> None:
    """Run the demo edge: NGINX or HAProxy on 127.0.0.1 in front of fault-injectable upstreams."""


@demo.command("up")
@click.option("--proxy", type=click.Choice(["nginx", "haproxy"]), default="nginx", show_default=True,
              help="Which edge proxy to run.")
@click.option("--variant", default="good", show_default=True,
              help="The good configuration or a seeded-fault variant (see `poet demo variants`).")
@click.option("--base-port", type=int, envvar="POET_DEMO_BASE_PORT",
              help="First port of the demo's range (default 18080; env POET_DEMO_BASE_PORT).")
@click.option("--tier", type=click.Choice(["edge", "service", "all"]), default="edge", show_default=True,
              help="The edge, the service tier (PostgreSQL, token issuer, service), or both (the edge then "
                   "routes /svc/ to the service).")
@click.option("--service-variant", default="good", show_default=True,
              help="The good service or a seeded-fault service variant (see docs/service.md).")
@click.option("--json", "as_json", is_flag=True, help="Print the demo state as JSON.")
def demo_up(proxy: str, variant: str, base_port: int | None, tier: str, service_variant: str,
            as_json: bool) -> None:
    """Start the demo edge and wait until every listener answers; the same settings again change nothing."""
    from poetkb.demo.lifecycle import load_state, up

    service = None
    if tier in ("service", "all"):
        from poetkb.demo.service.tier import up as service_up

        service = service_up(variant=service_variant, base_port=base_port)
        if tier == "service":
            if as_json:
                emit_json(service)
                return
            _print_service(service)
            return
    before = load_state()
    state = up(proxy=proxy, variant=variant, base_port=base_port,
               service_port=service.ports["service"] if service is not None else None)
    if as_json:
        emit_json({"edge": state, "service": service} if service is not None else state)
        return
    already = before is not None and before.started_at == state.started_at
    click.echo(f"{'already running' if already else 'started'}: {state.proxy} edge, variant {state.variant}"
               + (f" (breaks {', '.join(state.breaks)})" if state.breaks else ""))
    _print_where(state)
    if service is not None:
        click.echo(f"  routes   {state.base_url}/svc/ -> the service")
        _print_service(service)


def _print_service_status() -> None:
    """One line about the service tier, when it runs (its own health is checked by `poet demo up --tier`)."""
    from poetkb.demo import health
    from poetkb.demo.service.tier import load_service_state

    service = load_service_state()
    if service is None:
        return
    ok = health.http_request(service.service_url + "/health", timeout=2).status == 200
    click.echo(f"service tier: {'healthy' if ok else 'UNHEALTHY'}, variant {service.variant}, "
               f"{service.service_url} (postgres 127.0.0.1:{service.ports['postgres']})")


def _print_service(service: object) -> None:
    from poetkb.demo.service.tier import ServiceState

    assert isinstance(service, ServiceState)
    click.echo(f"service tier: variant {service.variant}"
               + (f" (breaks {', '.join(service.breaks)})" if service.breaks else ""))
    click.echo(f"  service  {service.service_url}   admin {service.admin_url}/")
    click.echo(f"  issuer   {service.issuer_url}   jwks {service.jwks_url}")
    click.echo(f"  slow dependency {service.dependency_url}")
    click.echo(f"  postgres {service.dsn}")


def _print_where(state: DemoState) -> None:
    click.echo(f"  http     {state.base_url}   (hosts {state.hosts['default']}, {state.hosts['other']})")
    click.echo(f"  tls      {state.tls_url}")
    click.echo(f"  mtls     {state.mtls_url}   (client cert {state.client_cert})")
    click.echo(f"  metrics  {state.metrics_url}")
    for info in state.upstreams:
        click.echo(f"  upstream {info.name:<9} {info.url}   admin {info.admin_url}/")
    click.echo(f"  access log  {state.access_log}")
    click.echo(f"  error log   {state.error_log}")
    click.echo(f"  config      {state.config_path}")
    click.echo(f"  CA          {state.ca_cert}")


@demo.command("down")
@click.option("--json", "as_json", is_flag=True, help="Print what was stopped as JSON.")
def demo_down(as_json: bool) -> None:
    """Stop every process of the demo and check that none is left."""
    from poetkb.demo.lifecycle import down

    stopped = down()
    if as_json:
        emit_json({"stopped": stopped})
        return
    click.echo(f"stopped: {', '.join(stopped)}" if stopped else "the demo was not running")


@demo.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def demo_status(as_json: bool) -> None:
    """Show whether the demo runs and is healthy; exits 1 when it is not running or not healthy."""
    from poetkb.demo.lifecycle import status
    from poetkb.errors import CheckFailed

    report = status()
    if as_json:
        emit_json(report)
    else:
        _print_service_status()
        if report.stale_pids_cleaned:
            click.echo(f"cleaned stale pid files: {', '.join(report.stale_pids_cleaned)}")
        if report.state is None:
            click.echo(f"not running (run directory {report.run_dir})")
        else:
            word = "healthy" if report.healthy else "UNHEALTHY"
            click.echo(f"{word}: {report.state.proxy} edge, variant {report.state.variant}, "
                       f"started {report.state.started_at}")
            for proc in report.processes:
                click.echo(f"  {'ok ' if proc.alive else 'DEAD'} {proc.name:<14} pid {proc.pid}")
            for check in report.checks:
                click.echo(f"  {'ok ' if check.ok else 'FAIL'} {check.name:<14} {check.url}  {check.detail}")
            _print_where(report.state)
    if not (report.running and report.healthy):
        raise CheckFailed("the demo edge is " + ("not healthy" if report.running else "not running"),
                          hint="start it with `poet demo up`" if not report.running else
                          "see the log files above, or run `poet demo down` then `poet demo up`")


@demo.command("variants")
@click.option("--proxy", type=click.Choice(["nginx", "haproxy"]), help="Only this proxy's variants.")
@click.option("--json", "as_json", is_flag=True, help="Print the variants as JSON.")
def demo_variants(proxy: str | None, as_json: bool) -> None:
    """List the good configuration and every seeded-fault variant with the obligations it breaks."""
    from poetkb.demo.overlays import all_variants

    found = [v for v in all_variants() if proxy is None or v.proxy == proxy]
    if as_json:
        emit_json(found)
        return
    for v in found:
        click.echo(f"{v.proxy:<8} {v.name:<24} {', '.join(v.breaks) or '-'}")
    click.echo(f"{len(found)} variants", err=True)


@demo.command("reload")
@click.option("--json", "as_json", is_flag=True, help="Print the demo state after the reload as JSON.")
def demo_reload(as_json: bool) -> None:
    """Reload the running proxy with its configuration file as it is on disk (validated first; never re-rendered)."""
    from poetkb.demo.lifecycle import reload

    state = reload()
    if as_json:
        emit_json(state)
        return
    click.echo(f"reloaded: {state.proxy} edge, variant {state.variant}")
