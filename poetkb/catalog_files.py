"""Where the catalog files are, how one is read, and a fingerprint of them, without parsing them.

Opening a knowledge base built from the shipped catalog checks that the
catalog has not changed since (:func:`fingerprint`); that check must not pay
for parsing YAML or building the validation models, so it lives here, apart
from :mod:`poetkb.catalog` (which parses and validates the files). The loader
reads each file with :func:`read_catalog_bytes` and digests the same bytes with
:func:`_digest_file`, so both fingerprints agree.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from poetkb import safefile
from poetkb.errors import InputError

CATALOG_DIRS = ("obligations", "knowledge/packs", "knowledge/learned", "mappings")


def shipped_catalog_root() -> Path:
    """The catalog that ships with poetkb: inside the wheel, or the source tree in a checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "_catalog"
    if (packaged / "obligations").is_dir():
        return packaged
    return here.parent


def catalog_files(root: Path) -> Iterator[tuple[str, Path]]:
    """Yield (section, path) for every entry below ``root`` named like a catalog file, in a stable order.

    Nothing is filtered by kind here: FIFOs, dangling links and directories
    named ``*.yaml`` are yielded too, so that reading reports them.
    """
    for section in CATALOG_DIRS:
        directory = root / section
        if not directory.is_dir():
            continue
        suffixes = (".json",) if section == "knowledge/learned" else (".yaml", ".yml")
        try:
            names = sorted(entry.name for entry in os.scandir(directory) if entry.name.endswith(suffixes))
        except OSError:
            continue
        for name in names:
            yield section, directory / name


def read_catalog_bytes(path: Path, *, display: str | None = None) -> bytes:
    """The bytes of one catalog file: a regular file of at most CATALOG_FILE_LIMIT bytes (else InputError)."""
    return safefile.read_bytes(path, limit=safefile.CATALOG_FILE_LIMIT, display=display)


def _digest_file(digest: Any, root: Path, path: Path, data: bytes | None) -> None:
    digest.update(path.relative_to(root).as_posix().encode())
    digest.update(b"\0")
    digest.update(data if data is not None else b"\0unreadable\0")
    digest.update(b"\0")


def fingerprint(root: Path) -> str:
    """A hash of every catalog file's name and bytes: changes whenever the catalog does."""
    digest = hashlib.sha256()
    for _, path in catalog_files(root):
        try:
            data: bytes | None = read_catalog_bytes(path)
        except InputError:
            data = None
        _digest_file(digest, root, path, data)
    return digest.hexdigest()
