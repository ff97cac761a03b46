"""Propose a target profile for a live edge from a few safe GETs, for the user to review.

``poet gate run --target URL --discover`` fetches ``/`` and up to a dozen
same-origin links it names (GET only, bounded in count and time), reads the
status and response headers, and writes a :class:`~poetkb.gates.profile.TargetProfile`
as YAML: the host, a default path that answers 200, cacheable routes where a
cache at the edge shows itself (``X-Cache``, ``X-Cache-Status``, ``Age``),
private responses (``private``, ``no-store``, ``Set-Cookie``), and what was seen
as comments. Nothing is written to the edge and nothing is gated.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin, urlsplit

from poetkb.gates.probes import ensure_allowed, make_client

MAX_PAGES = 12
_LINK = re.compile(r"""(?:href|src)\s*=\s*["']([^"'#]+)["']""", re.I)
_CACHE_MARKERS = ("x-cache", "x-cache-status", "age", "cf-cache-status", "x-proxy-cache")


def _links(base: str, body: str) -> list[str]:
    host = urlsplit(base).netloc
    out: list[str] = []
    for raw in _LINK.findall(body[:200_000]):
        url = urljoin(base + "/", raw)
        parts = urlsplit(url)
        if parts.scheme in ("http", "https") and parts.netloc == host and parts.path not in out:
            out.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    return out


def discover(target: str, *, allow_remote: bool = False, transport: Any = None) -> tuple[Any, list[str]]:
    """``(profile, notes)``: a proposed target profile and one line per page seen."""
    import httpx

    from poetkb.gates.profile import RouteSpec, TargetProfile

    ensure_allowed(target, allow_remote=allow_remote)
    base = target.rstrip("/")
    seen: list[tuple[str, int | None, dict[str, str]]] = []
    queue = ["/"]
    with make_client(base, timeout=5.0, transport=transport) as client:
        while queue and len(seen) < MAX_PAGES:
            path = queue.pop(0)
            try:
                response = client.get(path)
            except httpx.HTTPError as exc:
                seen.append((path, None, {"error": str(exc) or type(exc).__name__}))
                continue
            headers = {k.lower(): v for k, v in response.headers.items()}
            seen.append((path, response.status_code, headers))
            if "html" in headers.get("content-type", ""):
                queue += [p for p in _links(base, response.text) if p not in queue and p not in
                          {s[0] for s in seen}]
    ok = [p for p, status, _ in seen if status == 200]
    def cacheable(status: int | None, h: dict[str, str]) -> bool:
        """Stored by a cache at the edge: a cache marker, and an origin that allows shared storage."""
        cc = h.get("cache-control", "")
        return status == 200 and any(m in h for m in _CACHE_MARKERS) and "set-cookie" not in h \
            and not re.search(r"private|no-store|no-cache", cc) and bool(re.search(r"public|max-age", cc))

    cached = [p for p, status, h in seen if cacheable(status, h)]
    private = [p for p, status, h in seen if status == 200 and (
        re.search(r"private|no-store", h.get("cache-control", "")) or "set-cookie" in h)]
    routes: dict[str, RouteSpec] = {}
    if cached:
        for kind in ("cache_key_stable", "cache_key_complete"):
            routes[kind] = RouteSpec(path=cached[0])
    if private:
        routes["private_not_cached"] = RouteSpec(paths=private[:3])
    host = urlsplit(base).hostname or ""
    profile = TargetProfile(target=base, hosts=[host] if host and not re.fullmatch(r"[\d.:\[\]]+", host) else [],
                            default_path=ok[0] if ok else "/", routes=routes)
    notes = []
    for path, status, h in seen:
        what = h.get("error") or ", ".join(f"{k}: {h[k]}" for k in ("cache-control", "location", *_CACHE_MARKERS)
                                          if k in h) or "no cache headers"
        notes.append(f"GET {path} -> {status if status is not None else 'no answer'} ({what})")
    return profile, notes


def render_yaml(profile: Any, notes: list[str]) -> str:
    """The proposed profile as YAML, with what was seen as comments; review it before use."""
    import yaml

    data = profile.model_dump(exclude_defaults=True, exclude_none=True)
    data.setdefault("default_path", profile.default_path)
    head = ["# target profile proposed by `poet gate run --discover`: review it before use",
            "# pages seen:", *(f"#   {n}" for n in notes),
            "# add routes for rate limits, slow paths and an echo endpoint (echo_path) if you have them;",
            "# fault checks run only with upstream_admin; see docs/own-edge.md"]
    return "\n".join(head) + "\n" + yaml.safe_dump(data, sort_keys=False)
