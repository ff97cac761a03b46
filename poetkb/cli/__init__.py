"""The `poet` command line: a thin layer over the poetkb library.

Every command module registers its commands on :data:`main`. Errors are
handled in one place (:class:`~poetkb.cli.common.PoetGroup`): a
:class:`~poetkb.errors.PoetError` becomes a message on stderr and its exit code
(2 for bad input, 1 for a check or gate that failed), never a traceback.

Command modules are imported only when needed: `poet obligations list` imports
the module of `obligations` and nothing else (no gate, demo, load or learn
code), so a read command starts as fast as the few libraries it uses allow.
Listing the commands (`poet --help`, the CLI reference) imports them all. A new
top-level command goes into :data:`COMMANDS` with its module (a test checks the table).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from importlib import import_module
from typing import Any

# The command line uses no pydantic plugin; looking them up scans every installed package's entry points
# (a tenth of a second or more at start-up). A plugin can still be enabled by setting the variable.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from poetkb.cli.common import main  # noqa: E402

#: top-level command -> the modules whose import registers it (and its subcommands) on `main`
COMMANDS: dict[str, tuple[str, ...]] = {
    "init": ("poetkb.cli.core",),
    "obligations": ("poetkb.cli.core",),
    "kb": ("poetkb.cli.core", "poetkb.cli.verify"),
    "schema": ("poetkb.cli.core",),
    "search": ("poetkb.cli.core",),
    "related": ("poetkb.cli.core",),
    "plan": ("poetkb.cli.plan", "poetkb.cli.load"),
    "rank": ("poetkb.cli.rank",),
    "runbook": ("poetkb.cli.rank",),
    "interpret": ("poetkb.cli.load",),
    "gate": ("poetkb.cli.gate", "poetkb.cli.mutate"),
    "demo": ("poetkb.cli.demo",),
    "learn": ("poetkb.cli.learn",),
    "mcp": ("poetkb.cli.mcp",),
    "view": ("poetkb.cli.view",),
    "chaos": ("poetkb.cli.chaos",),
    "train": ("poetkb.cli.chaos",),
    "scenario": ("poetkb.cli.chaos",),
    "translate": ("poetkb.cli.translate",),
}
#: the command modules, in help order
COMMAND_MODULES = list(dict.fromkeys(m for modules in COMMANDS.values() for m in modules))


class _LazyCommands(dict[str, Any]):
    """``main.commands`` that imports a command's module the first time the command is looked up.

    Looking up one name imports its module only; listing or counting the
    commands imports every module first. Command modules still register
    themselves with ``@main.command()``, which stores into this mapping.
    """

    def _load(self, name: str | None = None) -> None:
        modules = COMMAND_MODULES if name is None else COMMANDS.get(name, ())
        for module in modules:
            import_module(module)  # a dict lookup once imported: a group's extensions always come with it

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        self._load(name)
        return dict.get(self, name, default)

    def __getitem__(self, name: str) -> Any:
        self._load(name)
        return dict.__getitem__(self, name)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self._load(name)
        return dict.__contains__(self, name)

    def __iter__(self) -> Iterator[str]:
        self._load()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self._load()
        return dict.__len__(self)

    def keys(self) -> Any:
        self._load()
        return dict.keys(self)

    def values(self) -> Any:
        self._load()
        return dict.values(self)

    def items(self) -> Any:
        self._load()
        return dict.items(self)


main.commands = _LazyCommands(main.commands)

__all__ = ["main"]
