"""Fixtures shared by every test: isolated knowledge base and work directory, a built knowledge base."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point POET_DB and POET_HOME at the test's own tmp dir so no test touches the user's files."""
    home = tmp_path / "poet-home"
    monkeypatch.setenv("POET_DB", str(tmp_path / "kb.sqlite"))
    monkeypatch.setenv("POET_HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    return home


@pytest.fixture(scope="session")
def built_kb_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One knowledge base built from the shipped catalog per session (copied per test by `kb_path`)."""
    from poetkb import store
    from poetkb.catalog import load_catalog, shipped_catalog_root
    from poetkb.kb import SHIPPED

    path = tmp_path_factory.mktemp("kb") / "kb.sqlite"
    store.build(load_catalog(shipped_catalog_root()), path, source=SHIPPED)
    return path


@pytest.fixture
def kb_path(built_kb_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the shipped knowledge base, also set as POET_DB."""
    path = tmp_path / "kb.sqlite"
    shutil.copyfile(built_kb_file, path)
    monkeypatch.setenv("POET_DB", str(path))
    return path


@pytest.fixture
def kb(kb_path: Path) -> Iterator[object]:
    """An open KnowledgeBase over a private copy of the shipped catalog."""
    import poetkb

    base = poetkb.open(kb_path)
    yield base
    base.close()


@pytest.fixture(scope="module")
def shared_home(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One demo run directory per test module; at the end the demo is brought down and no process is left."""
    from poetkb import demo
    from poetkb.demo import procs

    home = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    yield home
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POET_HOME", str(home))
        demo.down()
        assert procs.find_by_marker(f"{home}/demo/") == []


@pytest.fixture
def home(shared_home: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point POET_HOME at the module's shared demo run directory (after the per-test isolation)."""
    monkeypatch.setenv("POET_HOME", str(shared_home))
    return shared_home


@pytest.fixture(scope="module")
def base_port() -> int:
    """A base port whose whole demo port range is free, one per test module."""
    from demo_probes import free_base_port

    return free_base_port()
