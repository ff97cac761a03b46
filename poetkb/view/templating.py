"""Templates of the viewer: one Jinja2 environment with autoescaping always on, and the page's one stylesheet.

The stylesheet is inlined into every page (the viewer works offline and loads
nothing from elsewhere); its sha256 goes into the Content-Security-Policy, which
allows that stylesheet and nothing else: no script, no other style, no image,
font or frame from anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import json
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

if TYPE_CHECKING:
    from jinja2 import Environment

VERDICT_LABEL = {"pass": "PASS", "fail": "FAIL", "error": "ERROR", "no-evidence": "NO EVIDENCE",
                 "not-applicable": "NOT APPLICABLE"}


@lru_cache(maxsize=1)
def stylesheet() -> str:
    """The CSS inlined in every page."""
    from importlib.resources import files

    return files("poetkb.view").joinpath("templates", "view.css").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def content_security_policy() -> str:
    """A strict policy: only the inline stylesheet (by hash), same-origin links and forms; nothing runs."""
    digest = base64.b64encode(hashlib.sha256(stylesheet().encode("utf-8")).digest()).decode("ascii")
    return ("default-src 'none'; "
            f"style-src 'sha256-{digest}'; "
            "img-src 'none'; script-src 'none'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def href(*parts: str, **query: Any) -> str:
    """A path from segments, each percent-encoded whole (ids may hold ``#``, ``/`` or worse)."""
    path = "/" + "/".join(quote(str(p), safe="") for p in parts)
    args = {k: v for k, v in query.items() if v not in (None, "")}
    return path + ("?" + urlencode(args) if args else "")


def _pct(value: Any) -> str:
    try:
        return f"{float(value) * 100:.0f}%"
    except (TypeError, ValueError):
        return "-"


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if number.is_integer():
        return f"{int(number):,}"
    return f"{number:,.{digits}f}"


def _pretty(value: Any) -> str:
    """JSON for a <pre> block (escaped by the template like any other text)."""
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


@lru_cache(maxsize=1)
def environment() -> Environment:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(loader=PackageLoader("poetkb.view", "templates"), autoescape=True, trim_blocks=True,
                      lstrip_blocks=True, undefined=StrictUndefined)
    env.globals.update(href=href, verdict_label=VERDICT_LABEL)
    env.filters.update(pct=_pct, num=_num, pretty=_pretty)
    return env


def render(template: str, **context: Any) -> str:
    """Render one page; the stylesheet is passed as trusted markup (it is ours, and hashed in the policy)."""
    from markupsafe import Markup

    return environment().get_template(template).render(css=Markup(stylesheet()), **context)  # noqa: S704
