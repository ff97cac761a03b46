"""The own-edge corpus: configurations under tests/fixtures/edges/ and their hand-written expected verdicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

EDGES = Path(__file__).resolve().parent / "fixtures" / "edges"


def _flat(items: list[Any]) -> list[str]:
    out: list[str] = []
    for item in items:
        out.extend(_flat(item) if isinstance(item, list) else [str(item)])
    return out


def load_expected() -> dict[str, dict[str, Any]]:
    """Per configuration: its file, the obligations that must pass, and its broken form."""
    data = yaml.safe_load((EDGES / "expected.yaml").read_text(encoding="utf-8"))
    common = _flat(data["common"])
    out = {}
    for name, spec in data["configs"].items():
        extra = _flat(spec["pass"])
        out[name] = {"path": EDGES / name / spec["file"], "extra": extra, "pass": sorted({*common, *extra}),
                     "broken": spec["broken"]}
    return out


def broken_copy(name: str, spec: dict[str, Any], directory: Path) -> Path:
    """The configuration with its one seeded mistake, written into ``directory``."""
    text = spec["path"].read_text(encoding="utf-8")
    broken = spec["broken"]
    assert text.count(broken["replace"]) >= 1, f"{name}: the broken form's text is not in the file"
    target = directory / name / spec["path"].name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text.replace(broken["replace"], broken["with"]), encoding="utf-8")
    return target
