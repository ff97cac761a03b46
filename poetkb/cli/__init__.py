"""The `poet` command line: a thin layer over the poetkb library.

Every command module registers its commands on :data:`main`. Errors are
handled in one place (:class:`PoetGroup`): a :class:`~poetkb.errors.PoetError`
becomes a message on stderr and its exit code (2 for bad input, 1 for a check
or gate that failed), never a traceback.
"""

from __future__ import annotations

from importlib import import_module

from poetkb.cli.common import main

#: modules whose import registers commands on `main`, in help order
COMMAND_MODULES = [
    "poetkb.cli.core",
    "poetkb.cli.plan",
    "poetkb.cli.rank",
    "poetkb.cli.load",
    "poetkb.cli.gate",
    "poetkb.cli.mutate",
    "poetkb.cli.demo",
    "poetkb.cli.learn",
    "poetkb.cli.mcp",
    "poetkb.cli.view",
    "poetkb.cli.chaos",
]

for _name in COMMAND_MODULES:
    import_module(_name)

__all__ = ["main"]
