"""Where poetkb keeps its files by default.

- The knowledge base: ``$POET_DB`` if set, else ``$XDG_DATA_HOME/poetkb/kb.sqlite``
  (``~/.local/share/poetkb/kb.sqlite``). It is built from the shipped catalog the
  first time it is needed.
- Per-project working files (demo run directory, gate evidence and reports):
  ``$POET_HOME`` if set, else ``.poet/`` in the current directory.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_db_path() -> Path:
    """The knowledge base used when no path is given."""
    env = os.environ.get("POET_DB")
    if env:
        return Path(env).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "poetkb" / "kb.sqlite"


def work_dir() -> Path:
    """The per-project working directory for demo state, evidence and reports."""
    env = os.environ.get("POET_HOME")
    return Path(env).expanduser() if env else Path.cwd() / ".poet"
