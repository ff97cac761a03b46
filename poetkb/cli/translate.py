"""`poet translate`: NGINX <-> HAProxy translation of the obligation-relevant subset, verified by gating both."""

from __future__ import annotations

from pathlib import Path

import click

from poetkb.cli.common import emit_json, main, open_kb, write_output


@main.command("translate")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--to", "to", required=True, metavar="nginx|haproxy", help="The proxy to translate into.")
@click.option("--proxy", type=click.Choice(["nginx", "haproxy"]), help="The proxy of FILE (default: inferred).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the translated configuration here (default: print it).")
@click.option("--verify", "verify_", is_flag=True,
              help="Bring both configurations up on loopback, gate them on the same obligations and compare "
                   "(needs --out).")
@click.option("--obligation", "obligations", multiple=True, metavar="ID",
              help="Verify on this obligation only (repeatable; default: every edge obligation).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "md"]), default="text", show_default=True,
              help="How to print what could not be translated and the verification.")
@click.pass_context
def translate(ctx: click.Context, file: Path, to: str, proxy: str | None, out: Path | None, verify_: bool,
              obligations: tuple[str, ...], fmt: str) -> None:
    """Translate FILE into the other proxy's configuration, list what could not be translated, verify it.

    The translated subset: upstreams and balancing keys, retries and timeouts, health
    checks, caching, request and response headers, TLS and mTLS, rate and connection
    limits, the JSON access log. Everything else is listed with its line. The result is
    validated with `nginx -t` / `haproxy -c`. With --verify both configurations are
    gated on loopback on the same obligations; an obligation is equivalent only where
    both pass. Exit code: 0 valid (and, verified, nothing differs), 1 invalid or an
    obligation differs, 2 bad input.
    """
    from poetkb.errors import InputError
    from poetkb.translate import translate_file
    from poetkb.translate.report import markdown, text_summary

    if verify_ and out is None:
        raise InputError("--verify gates the translated file, so it needs --out", field="--out",
                         hint="add --out FILE")
    result = translate_file(file, to=to, proxy=proxy, validate=True)
    verification = None
    if out is not None:
        write_output(result.text, out)
    if verify_ and result.valid:
        from poetkb.translate.verify import verify

        assert out is not None
        verification = verify(open_kb(ctx), file, result.source_proxy, out, to, obligations=obligations)
    if fmt == "json":
        emit_json({"translation": result, "verification": verification})
    elif fmt == "md":
        click.echo(markdown(result, verification), nl=False)
    else:
        if out is None:
            click.echo(result.text, nl=False)
        click.echo(text_summary(result, verification), err=out is None, nl=False)
    if not result.valid or (verification is not None and verification.exit_code):
        ctx.exit(1)
