"""A `poet` command imports its own command module and what it uses, nothing else (start-up is most of its time)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from poetkb import store
from poetkb.catalog import load_catalog

CATALOG = Path(__file__).resolve().parent / "fixtures" / "rank" / "catalog"
#: never needed by a read command or a ranking
HEAVY = ("sklearn", "scipy", "libcst", "jinja2", "httpx", "yaml", "poetkb.catalog", "poetkb.gates", "poetkb.learn",
         "poetkb.load", "poetkb.plans", "poetkb.demo", "poetkb.cli.gate", "poetkb.cli.learn", "poetkb.cli.load",
         "poetkb.cli.demo", "poetkb.cli.plan")


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A knowledge base from the ranking test catalog, built (and its ranking model fitted) once."""
    path = tmp_path_factory.mktemp("cli-imports") / "kb.sqlite"
    store.build(load_catalog(CATALOG), path, source=str(CATALOG))
    import poetkb
    from poetkb.rank import model_store

    with poetkb.open(path) as kb:
        model_store.prepare(kb)
    return path


def imported_by(db: Path, *argv: str) -> tuple[int, set[str]]:
    code = (
        "import json, sys\n"
        "from poetkb.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:], prog_name='poet')\n"
        "except SystemExit as exc:\n"
        "    code = exc.code or 0\n"
        "print(json.dumps([code, sorted(sys.modules)]), file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, "--db", str(db), *argv], capture_output=True, text=True,
                         timeout=120)
    status, modules = json.loads(out.stderr.strip().splitlines()[-1])
    return status, set(modules)


@pytest.mark.parametrize("argv", [
    ("obligations", "list"),
    ("obligations", "show", "t.timeout.enforced"),
    ("search", "timeout"),
    ("kb", "stats"),
    ("related", "t.timeout.enforced"),
    ("rank", "--change", "requests hang and retries pile up"),
])
def test_read_commands_and_rank_import_nothing_heavy(db: Path, argv: tuple[str, ...]) -> None:
    """Read commands and `poet rank` succeed without loading the catalog loader, gates, learn, load or plans code."""
    status, modules = imported_by(db, *argv)
    assert status == 0
    assert sorted(m for m in modules if m in HEAVY or m.split(".")[0] in HEAVY) == []
    if argv[0] != "related":
        assert "networkx" not in modules


def test_help_still_lists_every_command(db: Path) -> None:
    """Listing the commands loads every command module, so `poet --help` shows them all."""
    out = subprocess.run([sys.executable, "-m", "poetkb", "--help"], capture_output=True, text=True, timeout=120,
                         check=True)
    for name in ("demo", "gate", "init", "interpret", "kb", "learn", "obligations", "plan", "rank", "related",
                 "runbook", "schema", "search"):
        assert f"\n  {name} " in out.stdout


def test_the_lazy_command_table_names_each_command_s_module() -> None:
    """poetkb.cli.COMMANDS lists every top-level command with the module that defines it (no command is lost)."""
    from poetkb.cli import COMMANDS, main

    defined = {name: command.callback.__module__ for name, command in main.commands.items()
               if command.callback is not None}
    assert set(main.commands) == set(COMMANDS)
    assert {name: COMMANDS[name][0] for name in defined} == defined


def test_each_group_brings_all_its_subcommands_when_looked_up_alone() -> None:
    """In a fresh process, looking up one group loads every module that adds subcommands to it (`plan load`
    lives in cli/load.py, `gate mutate` in cli/mutate.py, `kb verify` in cli/verify.py)."""
    import json
    import subprocess
    import sys

    import click

    from poetkb.cli import COMMANDS, main

    groups = {name: sorted(cmd.commands) for name, cmd in main.commands.items() if isinstance(cmd, click.Group)}
    assert {"plan", "gate", "kb"} <= set(groups)
    for name, expected in groups.items():
        code = (f"import json; from poetkb.cli import main; print(json.dumps(sorted(main.commands[{name!r}]"
                f".commands)))")
        alone = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
        assert json.loads(alone.stdout) == expected, f"{name}: {COMMANDS[name]}"
