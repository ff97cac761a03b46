"""The evidence viewer: a local, read-only web page over a knowledge base (``poet view``).

- :mod:`poetkb.view.server`: the HTTP server (loopback, GET only, strict headers, bounded requests);
- :mod:`poetkb.view.pages`: routes from paths to pages, id validation, 404s;
- :mod:`poetkb.view.data`: what the pages show, read from the knowledge base;
- :mod:`poetkb.view.evidence`: reports, exchanges, log slices and metric deltas read back from evidence;
- :mod:`poetkb.view.svg`: plots drawn on the server as inline SVG;
- :mod:`poetkb.view.templating`: the Jinja2 environment (autoescaping on), the stylesheet and its CSP hash.

Nothing here is imported by ``import poetkb`` or by other commands; the page needs no
network and runs no script.
"""

from __future__ import annotations
