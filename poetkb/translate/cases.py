"""The translation cases: the demo's good configurations, rendered as files, and the independent ones.

The demo's templates render the good configuration for a run directory; here it
is rendered once into a file of its own (ports of the default layout, paths under
the destination) so that it can be translated and gated like any user's file. The
NGINX one is rewritten one directive per line (same directives, comments dropped):
the own-edge bring-up rewrites addresses line by line.
"""

from __future__ import annotations

from pathlib import Path

#: Independent real-world-shaped configurations (tests/fixtures/translate/), each translated to the other proxy.
FIXTURES = ("shop-nginx.conf", "api-gateway-haproxy.cfg", "media-nginx.conf")


def render_demo_good(proxy: str, dest: Path) -> Path:
    """Write the demo's good ``proxy`` configuration into ``dest`` and return its path."""
    import crossplane

    from poetkb.demo.certs import CertFiles
    from poetkb.demo.edge_config import RunPaths, context, render
    from poetkb.demo.layout import DEFAULT_BASE_PORT, ports_for
    from poetkb.demo.overlays import good_knobs

    dest.mkdir(parents=True, exist_ok=True)
    paths = RunPaths(dest / "run")
    ctx = context(proxy, "good", good_knobs(proxy), paths, ports_for(DEFAULT_BASE_PORT), CertFiles(dest / "certs"))
    text = render(proxy, ctx)
    if proxy == "haproxy":
        out = dest / "demo-good-haproxy.cfg"
        out.write_text(text, encoding="utf-8")
        return out
    raw = dest / "demo-good-raw.conf"
    raw.write_text(text, encoding="utf-8")
    parsed = crossplane.parse(str(raw), single=True, check_ctx=False, check_args=False, comments=False)
    out = dest / "demo-good-nginx.conf"
    out.write_text(crossplane.build(parsed["config"][0]["parsed"]) + "\n", encoding="utf-8")
    raw.unlink()
    return out
