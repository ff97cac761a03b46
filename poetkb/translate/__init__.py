"""Verified NGINX <-> HAProxy translation of the obligation-relevant subset of an edge configuration.

>>> from poetkb.translate import translate_file
>>> result = translate_file("nginx.conf", to="haproxy")
>>> print(result.text)                       # the HAProxy configuration
>>> result.untranslated                      # what could not be carried over, with file and line

:mod:`~poetkb.translate.model` is the proxy-neutral subset (upstreams and balancing
keys, retries and timeouts, health checks, caching, headers, TLS and mTLS, rate
and connection limits, the JSON access log); ``read_*`` fill it from a parsed
configuration (:mod:`poetkb.edgeconfig`), ``write_*`` write it for the other
proxy, and :mod:`~poetkb.translate.verify` validates the result with the proxy
and gates both configurations on loopback to say where they are equivalent.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ConfigDict

from poetkb.errors import InputError
from poetkb.models import PoetModel
from poetkb.translate.model import EdgeSpec, Untranslated

PROXIES = ("nginx", "haproxy")


class Translation(PoetModel):
    """The translated text, what could not be translated, and (when asked) the proxy's verdict on it."""

    model_config = ConfigDict(**{**PoetModel.model_config, "str_strip_whitespace": False})

    source: str
    source_proxy: str
    target_proxy: str
    text: str
    untranslated: list[Untranslated]
    valid: bool | None = None
    validation_error: str | None = None


def read_spec(path: str | Path, *, proxy: str | None = None) -> EdgeSpec:
    """Parse ``path`` and read its obligation-relevant subset."""
    from poetkb.edgeconfig import load_config

    config = load_config(path, proxy=proxy)  # type: ignore[arg-type]
    if config.proxy == "nginx":
        from poetkb.translate.read_nginx import read_nginx

        return read_nginx(config)
    from poetkb.translate.read_haproxy import read_haproxy

    return read_haproxy(config)


def write_spec(spec: EdgeSpec, to: str) -> str:
    """The configuration text of ``spec`` for proxy ``to``."""
    if to == "haproxy":
        from poetkb.translate.write_haproxy import write_haproxy

        return write_haproxy(spec)
    from poetkb.translate.write_nginx import write_nginx

    return write_nginx(spec)


def translate_file(path: str | Path, *, to: str, proxy: str | None = None, validate: bool = False) -> Translation:
    """Translate the configuration at ``path`` into proxy ``to``; with ``validate``, ask that proxy about it."""
    if to not in PROXIES:
        raise InputError(f"cannot translate to {to!r}", field="--to", hint="use --to nginx or --to haproxy")
    spec = read_spec(path, proxy=proxy)
    if spec.source_proxy == to:
        raise InputError(f"{path} is already an {to} configuration", file=path, field="--to",
                         hint=f"translate it to {'haproxy' if to == 'nginx' else 'nginx'}")
    text = write_spec(spec, to)
    result = Translation(source=str(path), source_proxy=spec.source_proxy, target_proxy=to, text=text,
                         untranslated=spec.untranslated)
    if validate:
        from poetkb.translate.verify import validate as check

        error = check(text, to)
        result = result.model_copy(update={"valid": error is None, "validation_error": error})
    return result


__all__ = ["PROXIES", "EdgeSpec", "Translation", "Untranslated", "read_spec", "translate_file", "write_spec"]
