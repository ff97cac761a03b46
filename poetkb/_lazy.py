"""Lazy public names for packages: a name is imported from its module the first time it is used.

Keeps ``import poetkb`` (and its subpackages) cheap: heavy modules load only when
a caller touches a name that needs them.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(
    package: str, exports: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module ``__getattr__`` and ``__dir__`` for ``package``.

    ``exports`` maps each public name to ``"module"`` or ``"module:attribute"``
    (when the attribute has another name there). A resolved name is cached in
    ``namespace`` so the lookup runs once.
    """
    names = sorted(exports)

    def __getattr__(name: str) -> Any:
        target = exports.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attr = target.partition(":")
        value = getattr(import_module(module), attr or name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return names

    return __getattr__, __dir__


class LazyModule:
    """A module imported the first time one of its attributes is read.

    Lets a light module name types of a heavier one in annotations (``models.Obligation``) that
    ``typing.get_type_hints`` resolves, without importing it until a value is needed.
    """

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"
