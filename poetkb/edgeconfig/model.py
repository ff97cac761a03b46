"""The configuration model: directives with their enclosing context and source line."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import Field

from poetkb.models import PoetModel

ProxyKind = Literal["nginx", "haproxy"]


class Directive(PoetModel):
    """One directive (NGINX) or keyword line (HAProxy), or a block/section holding others.

    ``context`` names the enclosing blocks from the outside in, each as its name
    and arguments (``["http", "server", "location /api"]`` or ``["backend app"]``).
    For HAProxy, ``name`` is the first word of the line (``http-request``,
    ``timeout``, ``option``) and the rest are ``args``; :attr:`keyword` joins
    the words that make a keyword such as ``timeout connect``.
    """

    name: str
    args: list[str] = Field(default_factory=list)
    file: str
    line: int = Field(ge=1)
    context: list[str] = Field(default_factory=list)
    block: list[Directive] | None = None

    @property
    def label(self) -> str:
        """Name and arguments, as a context entry of the directives inside this block."""
        return " ".join([self.name, *self.args])

    def keyword(self, words: int = 2) -> str:
        """The first ``words`` words of the line (``timeout connect``, ``http-request set-header``)."""
        return " ".join([self.name, *self.args][:words])

    def walk(self) -> Iterator[Directive]:
        """This directive, then every directive inside it, depth first, in file order."""
        yield self
        for child in self.block or ():
            yield from child.walk()


class EdgeConfig(PoetModel):
    """A parsed configuration: the proxy, the main file, every file read, and the directive tree."""

    proxy: ProxyKind
    path: str
    files: list[str]
    directives: list[Directive]

    def walk(self) -> Iterator[Directive]:
        """Every directive, depth first, in file order (includes inlined where they stand)."""
        for directive in self.directives:
            yield from directive.walk()

    def find(self, name: str, *, within: str | None = None) -> list[Directive]:
        """Directives called ``name`` (or HAProxy keywords such as ``timeout connect``).

        ``within`` keeps those whose context has an entry starting with it
        (``"server"``, ``"location /api"``, ``"backend"``, ``"backend app"``).
        """
        words = name.split()
        found = []
        for d in self.walk():
            if [d.name, *d.args][: len(words)] != words:
                continue
            if within is not None and not any(c == within or c.startswith(within + " ") for c in d.context):
                continue
            found.append(d)
        return found


Directive.model_rebuild()
