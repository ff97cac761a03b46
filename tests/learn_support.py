"""Helpers for the learn tests: materialise the sample suite into a temporary directory."""

from __future__ import annotations

import shutil
from pathlib import Path

SUITE = Path(__file__).resolve().parent / "fixtures" / "learn" / "suite"


def materialise_suite(dest: Path) -> Path:
    """Copy tests/fixtures/learn/suite to ``dest`` (dropping the .src suffixes) and return it."""
    shutil.copytree(SUITE, dest)
    for path in sorted(dest.rglob("*.src")):
        path.rename(path.with_suffix(""))
    return dest
