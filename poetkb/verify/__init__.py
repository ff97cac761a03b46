"""Knowledge that is verified: behaviour claims checked against the real proxies, references against an index.

- :mod:`poetkb.verify.probes`: the probe files under ``knowledge/probes/`` (a configuration, requests and
  what must be observed) and the versions they were last verified on;
- :mod:`poetkb.verify.runner`: runs probes against NGINX and HAProxy on loopback, with the demo upstreams;
- :mod:`poetkb.verify.claims`: the claims a catalog makes, which probe checks each, and the verified share;
- :mod:`poetkb.verify.references`: every cited RFC section and documentation anchor, checked offline
  against ``knowledge/references.yaml``.
"""

from __future__ import annotations
