"""How load-test numbers are written in narratives: "412 ms", "1.2%", "180 rps"."""

from __future__ import annotations


def fmt_ms(value: float) -> str:
    """Milliseconds: whole above 100, else up to two decimals."""
    if value >= 100:
        return f"{value:.0f} ms"
    if value >= 10:
        return f"{value:.1f}".rstrip("0").rstrip(".") + " ms"
    return f"{value:.2f}".rstrip("0").rstrip(".") + " ms"


def fmt_rate(value: float) -> str:
    """A fraction as a percentage: 0.021 -> "2.1%"."""
    pct = value * 100
    text = f"{pct:.2f}" if pct < 10 else f"{pct:.1f}"
    return text.rstrip("0").rstrip(".") + "%"


def fmt_rps(value: float) -> str:
    return (f"{value:.1f}".rstrip("0").rstrip(".") if value < 100 else f"{value:.0f}") + " rps"


def fmt_pct(value: float) -> str:
    return f"{value:.1f}%" if abs(value) < 1 else f"{value:.0f}%"
