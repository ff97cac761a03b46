"""Mutation testing on a user's own configuration, brought up on loopback for each gate.

:func:`own_config_target` gives :func:`poetkb.mutation.run_mutation` a
:class:`~poetkb.mutation.runner.MutationTarget` over a private copy of the
user's file: each mutant is written into the copy, validated by the proxy after
the same rewrite a gate run does, and gated with ``--config`` on the copy (so
every gate brings the mutated configuration up afresh and tears it down). The
user's file is only read.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from poetkb.edgeconfig import load_config
from poetkb.errors import PoetError


def check_config(path: Path, *, proxy: str | None, certs: Any) -> str | None:
    """None when the proxy accepts the rewritten ``path``, else its message (no process is started)."""
    from poetkb.ownedge.bringup import _binary, _validate, free_port
    from poetkb.ownedge.rewrite import Env, rewrite_config

    try:
        config = load_config(path, proxy=proxy)  # type: ignore[arg-type]
        with tempfile.TemporaryDirectory(prefix="poet-check-") as run:
            env = Env(run_dir=Path(run), alloc_port=free_port,
                      cert=lambda full: ((str(certs.server_fullchain), str(certs.server_key),
                                          str(certs.haproxy_fullchain)) if full else
                                         (str(certs.server_leaf), str(certs.server_key), str(certs.haproxy_leaf))),
                      ca_chain=str(certs.ca_chain))
            rewritten = rewrite_config(config, env)
            _validate(config.proxy, _binary(config.proxy), Path(run), rewritten.main, str(path))
    except PoetError as exc:
        return exc.message[-300:]
    return None


def own_config_target(config: Path, *, proxy: str | None = None, work: Path | None = None) -> Any:
    """A mutation target over a copy of ``config`` in ``work`` (a new temporary directory by default)."""
    from poetkb.demo.certs import ensure_certs
    from poetkb.gates.schema import Edge
    from poetkb.mutation.runner import MutationTarget

    parsed = load_config(config, proxy=proxy)  # type: ignore[arg-type]
    scratch = Path(work or tempfile.mkdtemp(prefix="poet-mutate-"))
    scratch.mkdir(parents=True, exist_ok=True)
    copy = scratch / config.name
    shutil.copyfile(config, copy)
    certs = ensure_certs(scratch / "certs")

    return MutationTarget(config=copy, proxy=parsed.proxy,
                          validate=lambda: check_config(copy, proxy=parsed.proxy, certs=certs),
                          reload=lambda: None,  # every gate brings the copy up afresh
                          edge=Edge(config=copy, proxy=parsed.proxy))
