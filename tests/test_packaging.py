"""A non-editable install ships the catalog and works from any directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(REPO)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    (found,) = out.glob("poetkb-*.whl")
    return found


def test_wheel_contains_catalog_and_typing_marker(wheel: Path) -> None:
    """The wheel carries obligations, packs and mappings under poetkb/_catalog, and py.typed."""
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "poetkb/py.typed" in names
    assert any(n.startswith("poetkb/_catalog/obligations/") and n.endswith(".yaml") for n in names)
    assert any(n.startswith("poetkb/_catalog/knowledge/packs/") for n in names)
    assert any(n.startswith("poetkb/_catalog/mappings/") for n in names)


def test_installed_wheel_lists_obligations_from_any_directory(wheel: Path, tmp_path: Path) -> None:
    """Installed (not editable) into a fresh target, `poet obligations list --json` works from /tmp-like dirs."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "POET_DB": str(tmp_path / "db" / "kb.sqlite")}
    code = "import poetkb, sys; print(poetkb.__file__)"
    where = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert where.stdout.strip().startswith(str(target))
    result = subprocess.run(
        [sys.executable, "-m", "poetkb", "obligations", "list", "--json"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    ids = {o["id"] for o in json.loads(result.stdout)}
    assert {"cache.vary.honored", "routing.backend.selection", "perf.latency.slo", "data.ids.unique"} <= ids
