"""Read a ticket or pull-request description (Markdown) as the change's words, section by section.

A ticket says what a diff cannot: why the change is made, what its author
fears, how it rolls out. Its Markdown is split at headings; the sections that
describe the change (summary, description, motivation, risk, rollout,
migration, testing, ...) become the change's text, headed by their names so a
reader sees where each word came from. Template boilerplate is dropped: HTML
comments (the instructions of PR templates), unchecked checklist items, and
sections such as screenshots or reviewers.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from pydantic import Field

from poetkb.errors import InputError
from poetkb.models import PoetModel

MAX_TICKET_BYTES = 1_000_000
#: sections that never describe the change
_SKIP = re.compile(r"^(screenshots?|reviewers?|related|links?|checklist|notes? for reviewers|changelog)\b", re.I)
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


class Ticket(PoetModel):
    """A ticket's title and sections, and the text ranking reads from them."""

    source: str
    title: str = ""
    sections: dict[str, str] = Field(default_factory=dict)
    skipped: list[str] = Field(default_factory=list)

    @property
    def text(self) -> str:
        parts = [self.title] if self.title else []
        parts += [f"{name}: {body}" for name, body in self.sections.items() if body]
        return "\n".join(parts)


def parse_ticket(markdown: str, source: str = "ticket") -> Ticket:
    """Split Markdown at its headings; the first level-1 heading is the title, text before any heading the summary."""
    text = re.sub(r"<!--.*?-->", "", markdown, flags=re.S)
    title = ""
    sections: dict[str, list[str]] = {}
    skipped: list[str] = []
    current = "summary"
    fence = False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
        match = None if fence else _HEADING.match(line)
        if match:
            name = match.group(2).strip().rstrip(":")
            if len(match.group(1)) == 1 and not title:
                title = name
                continue
            current = name.lower()
            if _SKIP.match(current):
                skipped.append(name)
            continue
        if _SKIP.match(current) or re.match(r"^\s*[-*]\s+\[ \]", line):
            continue
        stripped = re.sub(r"^\s*[-*]\s+\[[xX]\]\s*", "", line).strip()
        if stripped:
            sections.setdefault(current, []).append(stripped)
    joined = {name: " ".join(lines) for name, lines in sections.items()}
    return Ticket(source=source, title=title, sections=joined, skipped=skipped)


def read_ticket(path: str | Path) -> Ticket:
    """Read a ticket file (``-``: standard input), bounded; InputError for a missing, binary or empty one."""
    shown = str(path)
    if shown == "-":
        data = sys.stdin.buffer.read(MAX_TICKET_BYTES + 1)
        if len(data) > MAX_TICKET_BYTES:
            raise InputError("the ticket is larger than 1 MB", file="<stdin>", hint="pass the ticket's text only")
        shown = "<stdin>"
    else:
        from poetkb import safefile

        if not Path(path).exists():
            raise InputError("no such ticket file", file=shown, hint="pass a Markdown file, or - for standard input")
        data = safefile.read_bytes(Path(path), limit=MAX_TICKET_BYTES, display=shown)
    if b"\x00" in data:
        raise InputError("the ticket holds binary data (NUL bytes)", file=shown, hint="pass a Markdown text file")
    try:
        markdown = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError("the ticket is not UTF-8 text", file=shown, line=line, hint="save it as UTF-8") from exc
    ticket = parse_ticket(markdown, shown)
    if not ticket.text.strip():
        raise InputError("the ticket has no text", file=shown,
                         hint="write a summary, the risk and the rollout under Markdown headings")
    return ticket
