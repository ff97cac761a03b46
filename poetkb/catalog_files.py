"""Where the catalog files are and a fingerprint of them, without loading them.

Opening a knowledge base built from the shipped catalog checks that the
catalog has not changed since (:func:`fingerprint`); that check must not pay
for parsing YAML or building the validation models, so it lives here, apart
from :mod:`poetkb.catalog` (which loads and validates the files).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

CATALOG_DIRS = ("obligations", "knowledge/packs", "knowledge/learned", "mappings")


def shipped_catalog_root() -> Path:
    """The catalog that ships with poetkb: inside the wheel, or the source tree in a checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "_catalog"
    if (packaged / "obligations").is_dir():
        return packaged
    return here.parent


def catalog_files(root: Path) -> Iterator[tuple[str, Path]]:
    """Yield (section, path) for every catalog file below ``root``, in a stable order."""
    for section in CATALOG_DIRS:
        directory = root / section
        if not directory.is_dir():
            continue
        pattern = ("*.json",) if section == "knowledge/learned" else ("*.yaml", "*.yml")
        files = sorted({p for pat in pattern for p in directory.glob(pat) if p.is_file()})
        for path in files:
            yield section, path


def fingerprint(root: Path) -> str:
    """A hash of every catalog file's name and bytes: changes whenever the catalog does."""
    digest = hashlib.sha256()
    for _, path in catalog_files(root):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()
