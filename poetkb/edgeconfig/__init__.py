"""One typed model of edge proxy configurations: NGINX and HAProxy directives with context and source line.

>>> from poetkb.edgeconfig import load_config
>>> config = load_config("nginx.conf")            # proxy inferred from the name and content
>>> [d.args for d in config.find("proxy_next_upstream")]

NGINX files are parsed with crossplane (includes resolved by poetkb, bounded and
with a cap on depth and count); HAProxy files by a small parser of sections,
keywords and arguments (``haproxy -c`` stays the validator of either). Both give
:class:`EdgeConfig`, a tree of :class:`Directive`. Files are untrusted input:
every read is bounded and refuses anything but regular files.
"""

from __future__ import annotations

from poetkb.edgeconfig.load import infer_proxy, load_config, parse_text
from poetkb.edgeconfig.model import Directive, EdgeConfig, ProxyKind

__all__ = ["Directive", "EdgeConfig", "ProxyKind", "infer_proxy", "load_config", "parse_text"]
