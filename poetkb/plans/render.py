"""Render plans to Markdown with the Jinja2 templates shipped in ``poetkb/plans/templates``.

Templates are loaded from the package directory, auto-escaping is off (the
output is Markdown, not HTML) and undefined names are errors, so a typo in a
template fails loudly instead of printing an empty string.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).resolve().parent / "templates"


def _code(value: Any) -> str:
    """Inline code that survives backticks inside the value."""
    text = " ".join(str(value).split())
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}" if fence == "`" else f"{fence} {text} {fence}"


def render_markdown(template: str, **context: Any) -> str:
    """Render ``templates/<template>`` with ``context``; the result ends with exactly one newline."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=False,  # noqa: S701 - Markdown output, never served as HTML
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["code"] = _code
    text = env.get_template(template).render(**context)
    lines = [line.rstrip() for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if line == "" and out and out[-1] == "":
            continue  # templates may leave double blank lines around optional sections
        out.append(line)
    return "\n".join(out).strip() + "\n"
