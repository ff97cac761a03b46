"""What every tool of the MCP server shares: the options, the knowledge base per call, errors, paths.

Tools run on worker threads (the SDK runs synchronous tools with
``anyio.to_thread``), and an SQLite connection belongs to the thread that
opened it, so each call opens the knowledge base file for itself
(:meth:`Session.kb`); opening an existing file is a connect and a schema check.
The file is built or refreshed once, when the server starts.

A :class:`~poetkb.errors.PoetError` raised inside a call becomes an MCP tool
error carrying the message and its hint (``did you mean ...?``), so a bad
argument is an answer the agent can act on, never a crash of the server.

File arguments (diffs, evidence, profiles, metrics) are read only inside the
server's root directory: an agent asking for ``/etc/shadow`` or ``../..`` gets
a tool error, not the file.
"""

from __future__ import annotations

import functools
import inspect
import re
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError

from poetkb.errors import InputError, PoetError
from poetkb.models import PoetModel
from poetkb.safefile import INPUT_FILE_LIMIT, confine, is_within

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer
    from mcp.types import ToolAnnotations

    from poetkb.kb import KnowledgeBase

#: a gate run id as written by poetkb (``20250101T120000Z-1a2b3c``) or another plain file stem
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class ServerOptions(PoetModel):
    """How a server is set up: which knowledge base, which directory files may come from, what it may do.

    ``allow_actions`` registers the tools that act (run a gate, start and stop the demo, record a
    review decision); without it the server is read-only and those tools do not exist.
    """

    db_path: Path | None = None
    root: Path | None = None
    allow_actions: bool = False


class Session:
    """The state one server shares between its tools: where the knowledge base is and the file root."""

    def __init__(self, options: ServerOptions) -> None:
        from poetkb.kb import open as open_kb

        self.options = options
        self.root = (options.root or Path.cwd()).resolve()
        with open_kb(options.db_path) as kb:  # builds or refreshes the file once, up front
            self.db_path = kb.path

    @contextmanager
    def kb(self) -> Iterator[KnowledgeBase]:
        """The knowledge base for one call (opened on the calling thread), with errors made tool errors."""
        from poetkb.kb import KnowledgeBase

        with tool_errors(), KnowledgeBase(self.db_path) as kb:
            yield kb

    def path(self, text: str, *, what: str = "file", directory: bool = False, limit: int = INPUT_FILE_LIMIT) -> Path:
        """A file argument resolved inside the root (relative to it, or absolute but below it).

        Only a regular file of at most ``limit`` bytes (or, with
        ``directory``, a directory) is handed on: a FIFO would block a worker thread forever, a device
        or a huge file would exhaust it.
        """
        candidate = Path(text).expanduser()
        if candidate.is_absolute():
            resolved = candidate.resolve()
            if not is_within(resolved, self.root):
                raise InputError(f"{what} lies outside the directory this server reads ({self.root})", file=text,
                                 hint="pass a path inside it, or start `poet mcp --root DIR` over another directory")
        else:
            resolved = confine(self.root, text, what=what)
        try:
            info = resolved.stat()
        except OSError as exc:
            raise InputError(f"{what} does not exist or cannot be read ({exc.strerror})", file=text) from exc
        if stat.S_ISDIR(info.st_mode) and directory:
            return resolved
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise InputError(f"{what} is {kind}", file=text, hint="pass a regular file")
        if info.st_size > limit:
            raise InputError(f"{what} is {info.st_size:,} bytes, over the limit of {limit:,}", file=text)
        return resolved


def checked_run_id(text: str) -> str:
    """A gate run id checked before it names a file (no separators, no ``..``)."""
    if not _RUN_ID.fullmatch(text) or ".." in text:
        raise InputError(f"not a gate run id: {text!r}", field="run_id",
                         hint="use an id from the gate_runs tool, such as 20250101T120000Z-1a2b3c")
    return text


def bind(tool: Callable[..., Any], session: Session) -> Callable[..., Any]:
    """``tool`` with its first argument bound to ``session``, keeping the signature the SDK builds schemas from.

    The tools are plain module functions taking the session first (easy to read and to test); the SDK
    reads a tool's parameters and return type from its signature, so the bound function shows the
    remaining parameters with their annotations resolved.
    """
    signature = inspect.signature(tool, eval_str=True)
    bound = functools.partial(tool, session)

    def call(**kwargs: Any) -> Any:
        return bound(**kwargs)

    call.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])  # type: ignore[attr-defined]
    call.__name__ = call.__qualname__ = tool.__name__
    call.__doc__ = tool.__doc__
    return call


def add_tool(server: MCPServer, session: Session, tool: Callable[..., Any], annotations: ToolAnnotations) -> str:
    """Register ``tool`` (bound to ``session``) under its own name, its docstring as the description."""
    name = tool.__name__
    server.add_tool(bind(tool, session), name=name, title=name.replace("_", " ").capitalize(),
                    description=inspect.cleandoc(tool.__doc__ or name), annotations=annotations,
                    structured_output=True)
    return name


@contextmanager
def tool_errors() -> Iterator[None]:
    """Turn a PoetError raised inside a tool into an MCP tool error with the same message."""
    try:
        yield
    except PoetError as exc:
        raise ToolError(str(exc)) from exc  # the message and its hint


@contextmanager
def resource_errors() -> Iterator[None]:
    """Turn a PoetError raised while reading a resource into a resource error (not found for unknown ids)."""
    try:
        yield
    except PoetError as exc:
        kind = ResourceNotFoundError if isinstance(exc, LookupError) else ResourceError
        raise kind(str(exc)) from exc
