"""The demo's service tier: a small HTTP service of ours behind the edge, with real PostgreSQL and JWT auth.

``poet demo up --tier service`` (or ``--tier all``, together with the edge)
starts three process families from one run directory
(``poetkb.paths.work_dir() / "service"``):

- **postgres**: a real PostgreSQL cluster made with ``initdb`` at ``up``,
  listening on 127.0.0.1 only (run as the ``postgres`` system user when poetkb
  runs as root); the service migrates it (:mod:`.store`).
- **sidecar**: the local token issuer (its JWKS, key rotation, an outage switch;
  :mod:`.issuer`) and a slow dependency the service calls with a timeout.
- **app**: the service (:mod:`.app`): bearer JWTs verified against the issuer's
  JWKS (:mod:`.auth`), orders and accounts in PostgreSQL through a bounded
  connection pool, a bounded worker pool, and runtime fault injection under
  ``/__poet/``.

Seeded-fault variants (:mod:`.variants`) switch one flaw on each; the gate's
service check kinds (:mod:`poetkb.gates.checks.service`) catch them.
"""

from __future__ import annotations
