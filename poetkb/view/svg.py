"""Plots drawn on the server as inline SVG: no script, no external asset, every label escaped.

Each function returns :class:`markupsafe.Markup` ready to drop into a page. Text
(run ids, obligation labels, metric names) always goes through :func:`escape`;
numbers are formatted here; colours come from a fixed palette. Nothing uses a
``style`` attribute, so the page's Content-Security-Policy can forbid inline styles
other than its one stylesheet.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

#: verdict -> fill colour (the same hues as the stylesheet's badges)
VERDICT_FILL = {"pass": "#1a7f37", "fail": "#cf222e", "error": "#9a6700", "no-evidence": "#6e7781"}
#: node kind -> fill colour for the neighbourhood graph
KIND_FILL = {"obligation": "#0969da", "failure_mode": "#cf222e", "recipe": "#1a7f37", "pattern": "#8250df",
             "component": "#57606a", "domain": "#9a6700", "evidence": "#bc4c00", "rule": "#6e7781"}
SERIES_FILL = ("#0969da", "#8250df", "#bc4c00", "#1a7f37")
TEXT = "#1b1f24"
MUTED = "#57606a"
GRID = "#d8dee4"
LIMIT = "#cf222e"


@dataclass(frozen=True)
class TimelinePoint:
    """One run of one obligation: when, with which verdict, and the page that shows it."""

    label: str
    when: str
    verdict: str
    href: str


@dataclass(frozen=True)
class GraphNode:
    """A neighbour in the knowledge graph: its kind, label, the edge that reached it and its page (if any)."""

    kind: str
    label: str
    edge: str
    href: str | None = None


def _num(value: float) -> str:
    """A coordinate or number, short and locale-free."""
    return f"{value:.1f}".rstrip("0").rstrip(".") if math.isfinite(value) else "0"


def _svg(width: int, height: int, title: str, body: list[str]) -> Markup:
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>')
    return Markup(head + "".join(body) + "</svg>")  # noqa: S704 - every piece above is escaped or numeric


def _text(x: float, y: float, text: str, *, size: int = 11, fill: str = TEXT, anchor: str = "start") -> str:
    return (f'<text x="{_num(x)}" y="{_num(y)}" font-size="{size}" fill="{fill}" text-anchor="{anchor}" '
            f'font-family="system-ui, sans-serif">{escape(text)}</text>')


def _link(href: str | None, inner: str) -> str:
    return f'<a href="{escape(href)}">{inner}</a>' if href else inner


def verdict_timeline(points: Sequence[TimelinePoint], *, title: str = "verdict per run, oldest first") -> Markup:
    """One square per run, oldest on the left, coloured by verdict, each a link to its run."""
    if not points:
        return Markup("")
    cell, gap = 18, 4
    width = max(480, len(points) * (cell + gap) + 20)
    body: list[str] = []
    for i, point in enumerate(points):
        x = 10 + i * (cell + gap)
        fill = VERDICT_FILL.get(point.verdict, MUTED)
        square = (f'<rect x="{x}" y="8" width="{cell}" height="{cell}" rx="3" fill="{fill}">'
                  f"<title>{escape(point.when)} {escape(point.label)}: {escape(point.verdict)}</title></rect>")
        body.append(_link(point.href, square))
    body.append(_text(10, 44, points[0].when, size=10, fill=MUTED))
    if len(points) > 1:
        body.append(_text(width - 10, 44, points[-1].when, size=10, fill=MUTED, anchor="end"))
    return _svg(width, 52, title, body)


#: kinds drawn in the left column of the neighbourhood; the rest go right
LEFT_KINDS = ("failure_mode", "recipe", "component", "domain", "evidence")


def neighbourhood(center: str, nodes: Sequence[GraphNode], *, limit: int = 40) -> Markup:
    """A node's direct neighbours in two columns (what it guards and needs left, what links to it right),
    grouped and coloured by kind, each joined to the centre and linked to its page."""
    shown = sorted(list(nodes)[:limit], key=lambda n: (n.kind, n.label))
    left = [n for n in shown if n.kind in LEFT_KINDS]
    right = [n for n in shown if n.kind not in LEFT_KINDS]
    row, width, pad = 19, 900, 24
    height = pad * 2 + row * max(len(left), len(right), 3)
    cx, cy = width / 2, height / 2
    body: list[str] = []
    columns = ((left, 250.0, "end"), (right, width - 250.0, "start"))
    for column, x, _ in columns:
        top = cy - row * (len(column) - 1) / 2
        for i, node in enumerate(column):
            y = top + i * row
            body.append(f'<line x1="{_num(cx)}" y1="{_num(cy)}" x2="{_num(x)}" y2="{_num(y)}" stroke="{GRID}" '
                        f'stroke-width="1.2"><title>{escape(node.edge)}</title></line>')
    for column, x, anchor in columns:
        top = cy - row * (len(column) - 1) / 2
        for i, node in enumerate(column):
            y = top + i * row
            fill = KIND_FILL.get(node.kind, MUTED)
            label = node.label if len(node.label) <= 36 else node.label[:35] + "\u2026"
            dx = -10 if anchor == "end" else 10
            dot = (f'<circle cx="{_num(x)}" cy="{_num(y)}" r="6" fill="{fill}"><title>{escape(node.kind)} '
                   f'{escape(node.label)} ({escape(node.edge)})</title></circle>')
            body.append(_link(node.href, dot + _text(x + dx, y + 4, label, size=11, anchor=anchor)))
    body.append(f'<circle cx="{_num(cx)}" cy="{_num(cy)}" r="10" fill="{KIND_FILL["obligation"]}"/>')
    body.append(_text(cx, cy - 16, center if len(center) <= 40 else center[:39] + "\u2026", size=12,
                      anchor="middle"))
    if len(nodes) > limit:
        body.append(_text(10, height - 6, f"{len(nodes) - limit} more not drawn", size=10, fill=MUTED))
    return _svg(width, height, f"knowledge-graph neighbourhood of {center}", body)


def _axis_max(values: Sequence[float]) -> float:
    top = max([v for v in values if math.isfinite(v)] or [1.0])
    if top <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(top))
    for step in (1, 2, 2.5, 5, 10):
        if top <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def bars_against_limits(title: str, bars: Sequence[tuple[str, float | None, float | None]], *,
                        unit: str = "ms") -> Markup:
    """Bars (label, value, limit): the value as a bar, its limit (SLO) as a red tick; over the limit is red."""
    values = [v for _, v, _ in bars if v is not None] + [lim for _, _, lim in bars if lim is not None]
    if not values:
        return Markup("")
    top = _axis_max(values)
    left, width, row = 70, 300, 26
    height = 24 + row * len(bars) + 16
    body = [_text(left, 14, f"0 to {_num(top)} {unit}; red tick: SLO", size=10, fill=MUTED)]
    for i, (label, value, limit) in enumerate(bars):
        y = 24 + i * row
        body.append(_text(left - 8, y + 14, label, anchor="end"))
        body.append(f'<rect x="{left}" y="{y + 3}" width="{width}" height="{row - 8}" fill="#f6f8fa"/>')
        if value is not None:
            over = limit is not None and value > limit
            fill = LIMIT if over else SERIES_FILL[0]
            w = max(1.0, min(width, width * value / top))
            body.append(f'<rect x="{left}" y="{y + 3}" width="{_num(w)}" height="{row - 8}" fill="{fill}">'
                        f"<title>{escape(label)}: {_num(value)} {escape(unit)}</title></rect>")
            body.append(_text(left + width + 8, y + 14, f"{_num(value)} {unit}" + (" (over SLO)" if over else "")))
        else:
            body.append(_text(left + 6, y + 14, "no data", fill=MUTED))
        if limit is not None:
            x = left + min(width, width * limit / top)
            body.append(f'<line x1="{_num(x)}" y1="{y}" x2="{_num(x)}" y2="{y + row - 2}" stroke="{LIMIT}" '
                        f'stroke-width="2"><title>SLO {escape(label)}: {_num(limit)} {escape(unit)}</title></line>')
    return _svg(left + width + 130, height, title, body)


def line_chart(title: str, xs: Sequence[float], series: Sequence[tuple[str, Sequence[float | None]]], *,
               limit: float | None = None, x_unit: str = "s", y_unit: str = "") -> Markup:
    """Lines over a shared x axis (seconds into the run), with an optional horizontal limit (SLO)."""
    points = [v for _, ys in series for v in ys if v is not None]
    if not xs or not points:
        return Markup("")
    width, height, left, bottom, top_pad = 520, 220, 56, 30, 14
    plot_w, plot_h = width - left - 16, height - bottom - top_pad
    x0, x1 = min(xs), max(xs)
    span = (x1 - x0) or 1.0
    top = _axis_max(points + ([limit] if limit is not None else []))

    def px(x: float) -> float:
        return left + plot_w * (x - x0) / span

    def py(y: float) -> float:
        return top_pad + plot_h * (1 - y / top)

    body = [f'<line x1="{left}" y1="{_num(py(0))}" x2="{left + plot_w}" y2="{_num(py(0))}" stroke="{GRID}"/>',
            f'<line x1="{left}" y1="{top_pad}" x2="{left}" y2="{_num(py(0))}" stroke="{GRID}"/>',
            _text(left - 6, top_pad + 4, f"{_num(top)}{y_unit}", size=10, fill=MUTED, anchor="end"),
            _text(left - 6, py(0), "0", size=10, fill=MUTED, anchor="end"),
            _text(left, height - 8, f"{_num(x0)} {x_unit}", size=10, fill=MUTED),
            _text(left + plot_w, height - 8, f"{_num(x1)} {x_unit}", size=10, fill=MUTED, anchor="end")]
    if limit is not None:
        body.append(f'<line x1="{left}" y1="{_num(py(limit))}" x2="{left + plot_w}" y2="{_num(py(limit))}" '
                    f'stroke="{LIMIT}" stroke-dasharray="5 3"><title>SLO {_num(limit)}{escape(y_unit)}</title></line>')
    for n, (name, ys) in enumerate(series):
        colour = SERIES_FILL[n % len(SERIES_FILL)]
        coords = [f"{_num(px(x))},{_num(py(y))}" for x, y in zip(xs, ys, strict=False) if y is not None]
        if coords:
            body.append(f'<polyline points="{" ".join(coords)}" fill="none" stroke="{colour}" stroke-width="2">'
                        f"<title>{escape(name)}</title></polyline>")
        body.append(_text(left + 8 + n * 120, top_pad + 12, name, size=10, fill=colour))
    return _svg(width, height, title, body)


def histogram(title: str, samples: Sequence[float], *, limit: float | None = None, bins: int = 30,
              unit: str = "ms") -> Markup:
    """The distribution of raw samples (latencies), with the SLO as a red line."""
    values = [v for v in samples if math.isfinite(v)]
    if len(values) < 2:
        return Markup("")
    lo, hi = min(values), max(values + ([limit] if limit is not None else []))
    span = (hi - lo) or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / span * bins))] += 1
    width, height, left, bottom = 520, 180, 40, 28
    plot_w, plot_h = width - left - 16, height - bottom - 12
    peak = max(counts) or 1
    bar_w = plot_w / bins
    body = []
    for i, count in enumerate(counts):
        h = plot_h * count / peak
        body.append(f'<rect x="{_num(left + i * bar_w)}" y="{_num(12 + plot_h - h)}" width="{_num(bar_w - 1)}" '
                    f'height="{_num(h)}" fill="{SERIES_FILL[1]}"><title>{_num(lo + i * span / bins)} to '
                    f'{_num(lo + (i + 1) * span / bins)} {escape(unit)}: {count}</title></rect>')
    if limit is not None:
        x = left + plot_w * (limit - lo) / span
        body.append(f'<line x1="{_num(x)}" y1="8" x2="{_num(x)}" y2="{12 + plot_h}" stroke="{LIMIT}" '
                    f'stroke-width="2"><title>SLO {_num(limit)} {escape(unit)}</title></line>')
    body += [_text(left, height - 8, f"{_num(lo)} {unit}", size=10, fill=MUTED),
             _text(left + plot_w, height - 8, f"{_num(hi)} {unit}", size=10, fill=MUTED, anchor="end"),
             _text(left - 4, 20, str(peak), size=10, fill=MUTED, anchor="end")]
    return _svg(width, height, title, body)
