"""`--ticket FILE`: a Markdown ticket or PR description read section by section as the change's words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from poetkb.cli import main
from poetkb.errors import InputError
from poetkb.rank.ticket import parse_ticket, read_ticket

TICKET = """# Longer upstream timeouts for the reports service

<!-- Describe the change. Delete this comment. -->
Reports render for several minutes and users see 504s.

## Risk
Slow upstreams now hold connections ten times longer.

## Rollout
Canary on one edge node first.

## Screenshots
![504 page](shot.png) gateway banner

## Checklist
- [ ] docs updated
- [x] tested on staging
"""


def test_sections_are_read_and_boilerplate_dropped() -> None:
    """Title, summary, risk and rollout are kept; comments, screenshots and unchecked items are not."""
    ticket = parse_ticket(TICKET)
    assert ticket.title == "Longer upstream timeouts for the reports service"
    assert list(ticket.sections) == ["summary", "risk", "rollout"]
    assert ticket.sections["summary"] == "Reports render for several minutes and users see 504s."
    assert ticket.skipped == ["Screenshots", "Checklist"]
    assert "Delete this comment" not in ticket.text and "gateway banner" not in ticket.text
    assert ticket.text.splitlines()[1] == "summary: Reports render for several minutes and users see 504s."


def test_rank_and_plan_read_a_ticket_file(kb_path: Path, tmp_path: Path) -> None:
    """`poet rank --ticket` ranks the timeout obligation first; `plan test --ticket` plans it."""
    path = tmp_path / "PR.md"
    path.write_text(TICKET, encoding="utf-8")
    result = CliRunner().invoke(main, ["--db", str(kb_path), "rank", "--ticket", str(path), "--top", "3", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["id"] == "resilience.timeout.enforced"
    result = CliRunner().invoke(main, ["--db", str(kb_path), "plan", "test", "--ticket", "-", "--top", "1"],
                                input=TICKET)
    assert result.exit_code == 0 and "resilience.timeout.enforced" in result.output
    assert "Description: Longer upstream timeouts for the reports service" in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x01", "the ticket holds binary data"),
        (b"caf\xe9", "the ticket is not UTF-8 text"),
        (b"<!-- only the template -->\n## Screenshots\nnone\n", "the ticket has no text"),
    ],
)
def test_bad_tickets_are_refused_naming_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    """A binary, non-UTF-8 or empty ticket is an InputError naming the file."""
    path = tmp_path / "t.md"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        read_ticket(path)
    assert info.value.file == str(path)
    with pytest.raises(InputError, match="no such ticket file"):
        read_ticket(tmp_path / "missing.md")
