"""Evidence on disk: one directory per gate run, written during collection and read back to evaluate.

Layout of ``.poet/evidence/<run-id>/`` (under :func:`poetkb.paths.work_dir`):

- ``manifest.json``: an :class:`~poetkb.gates.schema.EvidenceManifest` (target, checks, files with sha256);
- ``captures.jsonl``: HTTP exchanges; ``tls.jsonl``: TLS handshakes; ``counters.jsonl``: upstream counters;
- ``access.log``: the bytes the edge appended to its access log during the run (a slice by byte offset);
- ``metrics/*.prom``: Prometheus text snapshots; ``capture.pcap``: loopback packets, with ``--capture``.

:class:`EvidenceWriter` writes a run; :func:`load_run` reads one back. It is
the one reader of evidence directories: it reads only files the manifest
lists, only inside the directory (:func:`poetkb.safefile.confine`, links out
refused), bounded in size, and checks the very bytes it uses against their
recorded size and sha256. It hands each check a :class:`CheckEvidence` bundle
with the problems that affect it, so that a missing, altered, unlisted or
out-of-tree file turns into an ``error`` verdict that names it, never into a
fallback or a pass. Problems name files; they never quote what a file holds.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from poetkb.errors import InputError
from poetkb.gates import accesslog
from poetkb.gates.records import CounterSnapshot, HttpExchange, TlsHandshake
from poetkb.gates.schema import (
    CheckRecord,
    EvidenceFile,
    EvidenceManifest,
    EvidenceRecord,
    LogSlice,
    TargetInfo,
    UpstreamInfo,
)
from poetkb.paths import work_dir
from poetkb.safefile import EVIDENCE_FILE_LIMIT, confine, read_bytes

MANIFEST = "manifest.json"
CAPTURES = "captures.jsonl"
TLS = "tls.jsonl"
COUNTERS = "counters.jsonl"
ACCESS_LOG = "access.log"

FILE_KINDS = {CAPTURES: "http_capture", TLS: "tls_handshake", COUNTERS: "upstream_counters",
              ACCESS_LOG: "access_log"}


def evidence_root() -> Path:
    return work_dir() / "evidence"


def slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]+", "-", text).strip("-")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


class LogTail:
    """Follows an access log by byte offset during a run, and notices rotation or truncation."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []
        try:
            st = path.stat()
        except OSError as exc:
            raise InputError(f"cannot read the access log: {exc.strerror}", file=path, field="access-log",
                             hint="pass --access-log with the path of the edge's JSON access log") from exc
        self.device, self.inode, self.start = st.st_dev, st.st_ino, st.st_size

    def position(self) -> int:
        """The current end of the log (the size of the file)."""
        try:
            st = self.path.stat()
        except OSError:
            self._problem(f"access log {self.path} disappeared during the run (rotated or deleted)")
            return self.start
        if (st.st_dev, st.st_ino) != (self.device, self.inode):
            self._problem(f"access log {self.path} was rotated during the run (a new file replaced it)")
        elif st.st_size < self.start:
            self._problem(f"access log {self.path} was truncated during the run")
        return st.st_size

    def settle(self, *, quiet_s: float = 0.12, max_s: float = 2.0) -> int:
        """Wait (bounded) until the log stops growing, so the lines of the requests just sent are in."""
        deadline = time.monotonic() + max_s
        last = self.position()
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.04)
            now = self.position()
            if now != last:
                last, quiet_since = now, time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_s:
                break
        return last

    def _problem(self, message: str) -> None:
        if message not in self.problems:
            self.problems.append(message)

    def read_slice(self, end: int) -> bytes:
        """The bytes between the run's start offset and ``end`` (empty when the file was replaced)."""
        if self.problems:
            return b""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.start)
                return fh.read(max(0, end - self.start))
        except OSError as exc:
            self._problem(f"cannot read access log {self.path}: {exc.strerror}")
            return b""


class EvidenceWriter:
    """Writes the evidence of one gate run; thread-safe for the line files."""

    def __init__(self, root: Path, run_id: str, target: TargetInfo) -> None:
        self.root = root
        self.run_id = run_id
        self.target = target
        self.checks: list[CheckRecord] = []
        self.problems: list[str] = []
        self.extra_files: dict[str, tuple[str, str]] = {}
        self.log_tail: LogTail | None = None
        self.log_slice: LogSlice | None = None
        self._lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)
        for name in (CAPTURES, TLS, COUNTERS):
            (root / name).touch()

    def _append(self, name: str, obj: Any) -> None:
        line = obj.model_dump_json(exclude_none=True) + "\n"
        with self._lock, (self.root / name).open("a", encoding="utf-8") as fh:
            fh.write(line)

    def exchange(self, exchange: HttpExchange) -> None:
        self._append(CAPTURES, exchange)

    def handshake(self, handshake: TlsHandshake) -> None:
        self._append(TLS, handshake)

    def counters(self, snapshots: list[CounterSnapshot]) -> None:
        for snap in snapshots:
            self._append(COUNTERS, snap)

    def write_file(self, relative: str, data: bytes, kind: str, description: str = "") -> str:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.extra_files[relative] = (kind, description)
        return relative

    def follow_log(self, path: Path) -> None:
        self.log_tail = LogTail(path)

    def log_position(self, *, settle: bool) -> int | None:
        """Offset in the run's slice (0 = where the run started), or None without an access log."""
        if self.log_tail is None:
            return None
        end = self.log_tail.settle() if settle else self.log_tail.position()
        return max(0, end - self.log_tail.start)

    def finish_log(self) -> None:
        if self.log_tail is None:
            return
        end = self.log_tail.settle()
        data = self.log_tail.read_slice(end)
        (self.root / ACCESS_LOG).write_bytes(data)
        tail = self.log_tail
        self.log_slice = LogSlice(source=str(tail.path), start=tail.start, end=tail.start + len(data),
                                  device=tail.device, inode=tail.inode, problems=list(tail.problems))

    def finalize(self) -> EvidenceManifest:
        """Hash every file and write ``manifest.json``."""
        files = []
        for path in sorted(p for p in self.root.rglob("*") if p.is_file() and p.name != MANIFEST):
            rel = path.relative_to(self.root).as_posix()
            kind, description = self.extra_files.get(rel, (FILE_KINDS.get(rel, "other"), ""))
            if rel.startswith("metrics/"):
                kind = "metrics"
            files.append(EvidenceFile(path=rel, kind=kind, sha256=sha256_file(path), bytes=path.stat().st_size,
                                      description=description))
        manifest = EvidenceManifest(run_id=self.run_id, created_at=_now(), target=self.target, checks=self.checks,
                                    files=files, access_log=self.log_slice, problems=self.problems)
        (self.root / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return manifest


def _now() -> str:
    from poetkb.store import now_iso

    return now_iso()


@dataclass
class CheckEvidence:
    """Everything an evaluator may read about one check, already loaded from disk."""

    check_id: str
    kind: str
    exchanges: list[HttpExchange] = field(default_factory=list)
    log: accesslog.ParsedLog | None = None
    counters: list[CounterSnapshot] = field(default_factory=list)
    handshakes: list[TlsHandshake] = field(default_factory=list)
    metrics: dict[str, str] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    upstreams: list[UpstreamInfo] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)
    collect_error: str | None = None
    load_summaries: list[Path] = field(default_factory=list)
    test_results: list[Path] = field(default_factory=list)
    foreign: bool = False
    duration_ms: float | None = None
    #: files this check's own record names (its metrics snapshots, its access-log slice): a problem with any
    #: of them makes the check an error, whatever its evaluator reads
    required: list[str] = field(default_factory=list)

    def steps(self, prefix: str) -> list[HttpExchange]:
        """Exchanges whose step equals ``prefix`` or starts with ``prefix:``."""
        return [e for e in self.exchanges if e.step == prefix or e.step.startswith(prefix + ":")]

    def address_of(self, name: str | None) -> str | None:
        """The ``host:port`` of an upstream given its name (as the X-Upstream header says it)."""
        for upstream in self.upstreams:
            if upstream.name == name:
                return upstream.address
        return None


@dataclass
class LoadedRun:
    """An evidence directory read back: the manifest, the verified bytes of its files, per-file problems.

    ``record`` says what the knowledge base knows of the run: ``recorded`` (its manifest digest matches),
    ``unrecorded`` (no digest to compare with; judged like evidence from another tool), ``mismatch`` (the
    manifest changed after the run: every check is an error) or ``self`` (judged right after collection).
    """

    root: Path
    manifest: EvidenceManifest
    manifest_sha256: str
    problems: dict[str, str]
    data: dict[str, bytes]
    exchanges: dict[str | None, list[HttpExchange]]
    handshakes: dict[str | None, list[TlsHandshake]]
    counters: dict[str | None, list[CounterSnapshot]]
    log_bytes: bytes | None
    record: EvidenceRecord = "self"
    fatal: str | None = None
    _parsed: accesslog.ParsedLog | None = None

    @property
    def foreign(self) -> bool:
        """True when the run's own account of itself cannot be checked (judged like another tool's files)."""
        return self.record == "unrecorded"

    def _log_for(self, start: int, end: int) -> accesslog.ParsedLog:
        """Every line of the run (checks find theirs by the marker in the URI), with the problems of the
        lines written while this check ran: a line can land a little after its check, never before."""
        if self._parsed is None:
            self._parsed = accesslog.parse(self.log_bytes or b"")
        first = (self.log_bytes or b"")[:start].count(b"\n") + 1
        last = (self.log_bytes or b"")[:end].count(b"\n") + 1
        final = (self.log_bytes or b"").count(b"\n") + 1
        return accesslog.ParsedLog(records=self._parsed.records, problems=[
            p for p in self._parsed.problems if first <= p.line <= last or p.line == final])

    def evidence_for(self, record: CheckRecord) -> CheckEvidence:
        """The bundle of one check: its exchanges, log lines, counters, handshakes, metrics and notes.

        Files the check's record names are its own: each must be listed in the manifest and verified, or the
        bundle carries a problem for it (and :func:`poetkb.gates.checks.evaluate` makes the check an error).
        Problems with the shared files (captures, handshakes, counters, the access log) are judged by the
        evaluators that read them, so a damaged access log does not hit a check that judges captures alone.
        """
        ev = CheckEvidence(check_id=record.check_id, kind=record.kind, notes=dict(record.notes),
                           upstreams=list(self.manifest.target.upstreams), collect_error=record.error,
                           duration_ms=record.duration_ms, foreign=self.foreign)
        ev.exchanges = self.exchanges.get(record.check_id, [])
        ev.handshakes = self.handshakes.get(record.check_id, [])
        ev.counters = self.counters.get(record.check_id, [])
        for name in (CAPTURES, TLS, COUNTERS):
            if name in self.problems:
                ev.problems[name] = self.problems[name]
        ev.files = [name for name, items in ((CAPTURES, ev.exchanges), (TLS, ev.handshakes),
                                             (COUNTERS, ev.counters)) if items]
        if record.log_range is not None and self.manifest.access_log is not None:
            if self.manifest.access_log.problems:
                ev.problems[ACCESS_LOG] = "; ".join(self.manifest.access_log.problems)
            elif ACCESS_LOG in self.problems:
                ev.problems[ACCESS_LOG] = self.problems[ACCESS_LOG]
            elif self.log_bytes is not None:
                ev.log = self._log_for(*record.log_range)
                ev.files.append(ACCESS_LOG)
        listed = {entry.path for entry in self.manifest.files}
        for rel in record.files:
            ev.required.append(rel)
            if rel not in listed:
                ev.problems[rel] = (f"evidence file {shown_path(rel)} named by check {record.check_id} is not "
                                    "listed in the manifest, so it was not read")
            elif rel in self.problems:
                ev.problems[rel] = self.problems[rel]
            elif rel.startswith("metrics/") and rel in self.data:
                label = Path(rel).stem.rsplit("--", 1)[-1]
                ev.metrics[label] = self.data[rel].decode("utf-8", errors="replace")
                ev.files.append(rel)
        return ev


def _read_lines(data: bytes | None, model: type[Any], problems: dict[str, str], name: str
                ) -> dict[str | None, list[Any]]:
    out: dict[str | None, list[Any]] = {}
    if name in problems or data is None:
        return out
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = model.model_validate_json(line)
        except ValidationError as exc:
            problems[name] = f"{name} line {number} is not a valid record: {exc.errors()[0]['msg']}"
            return {}
        out.setdefault(item.check, []).append(item)
    return out


#: the manifest is small; a bigger one is not ours
MANIFEST_LIMIT = 16 * 1024 * 1024
#: files read into memory for the checks (others are only verified)
_KEPT = (CAPTURES, TLS, COUNTERS, ACCESS_LOG)


def read_verified(root: Path, entry: EvidenceFile) -> bytes:
    """The bytes of one listed evidence file, read only inside ``root`` and only if they match the manifest.

    Raises :class:`EvidenceProblem` naming the file: outside the directory (a ``..`` path, an absolute path or
    a link out: never read), missing, not a regular file, over the size limit, or not matching its size and
    sha256. The hash is taken of the very bytes returned, so a file changed between check and use cannot slip by.
    """
    name = shown_path(entry.path)
    try:
        path = confine(root, entry.path, what="evidence file")
    except InputError as exc:
        raise EvidenceProblem(f"evidence file {name} lies outside the evidence directory (an absolute or "
                              "'..' path, or a link out of it); it was not read") from exc
    try:
        data = read_bytes(path, limit=EVIDENCE_FILE_LIMIT, root=root, display=entry.path)
    except InputError as exc:
        if "does not exist" in exc.message:
            raise EvidenceProblem(f"evidence file {name} is missing from {root}") from exc
        raise EvidenceProblem(f"evidence file {name} cannot be used: {exc.message.split(': ', 1)[-1]}") from exc
    if len(data) != entry.bytes or hashlib.sha256(data).hexdigest() != entry.sha256:
        raise EvidenceProblem(f"evidence file {name} does not match its sha256 in the manifest "
                              "(changed after the run)")
    return data


def shown_path(path: str, limit: int = 200) -> str:
    """A path from a manifest as a message may show it: printable, and cut when absurdly long."""
    text = "".join(ch if ch.isprintable() else "?" for ch in path)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(path)} characters)"


class EvidenceProblem(Exception):
    """One evidence file cannot be used; the message names it (and never quotes its content)."""


def read_manifest(root: Path) -> tuple[EvidenceManifest, bytes]:
    """The manifest of an evidence directory and its exact bytes (for the digest the knowledge base keeps)."""
    root = Path(root)
    manifest_path = root / MANIFEST
    if not root.is_dir() or not os.path.lexists(manifest_path):
        raise InputError(f"no {MANIFEST} in evidence directory {root}", file=root, field="evidence",
                         hint="pass a directory written by `poet gate run` (.poet/evidence/<run-id>/), "
                              "or a single access log, HAR or metrics file")
    raw = read_bytes(manifest_path, limit=MANIFEST_LIMIT, root=root)
    try:
        manifest = EvidenceManifest.model_validate_json(raw)
    except ValidationError as exc:
        raise InputError(f"{MANIFEST} is not a valid evidence manifest: {exc}".splitlines()[0], file=manifest_path,
                         hint="the directory was not written by this poetkb, or the manifest was edited") from exc
    return manifest, raw


def load_run(root: Path) -> LoadedRun:
    """Read an evidence directory: every listed file is confined to it and verified against its size and sha256.

    Only files the manifest lists are read. A file that is missing, altered, outside the directory or listed
    twice becomes a problem naming it; the checks that need it become errors (see :meth:`LoadedRun.evidence_for`).
    """
    root = Path(root)
    manifest, raw = read_manifest(root)
    problems: dict[str, str] = {}
    data: dict[str, bytes] = {}
    seen: set[str] = set()
    for entry in manifest.files:
        if entry.path in seen:
            problems[entry.path] = f"evidence file {shown_path(entry.path)} is listed twice in the manifest"
            data.pop(entry.path, None)
            continue
        seen.add(entry.path)
        try:
            content = read_verified(root, entry)
        except EvidenceProblem as exc:
            problems[entry.path] = str(exc)
            continue
        if entry.path in _KEPT or entry.path.startswith("metrics/"):
            data[entry.path] = content
    for name in (CAPTURES, TLS, COUNTERS):
        if name not in seen and name not in problems:
            problems[name] = f"evidence file {name} is not listed in the manifest"
    exchanges = _read_lines(data.get(CAPTURES), HttpExchange, problems, CAPTURES)
    handshakes = _read_lines(data.get(TLS), TlsHandshake, problems, TLS)
    counters = _read_lines(data.get(COUNTERS), CounterSnapshot, problems, COUNTERS)
    log_bytes = None
    if manifest.access_log is not None and ACCESS_LOG not in problems:
        if ACCESS_LOG not in seen:
            problems[ACCESS_LOG] = f"evidence file {ACCESS_LOG} is not listed in the manifest"
        else:
            log_bytes = data.get(ACCESS_LOG)
    return LoadedRun(root=root, manifest=manifest, manifest_sha256=hashlib.sha256(raw).hexdigest(),
                     problems=problems, data=data, exchanges=exchanges, handshakes=handshakes, counters=counters,
                     log_bytes=log_bytes)


def new_run_id() -> str:
    """``20250101T120000Z-1a2b3c``: sortable by time, unique per process and moment."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return f"{stamp}-{os.urandom(3).hex()}"
