"""Evidence produced by other tools: access logs, HAR files, metric snapshots, JUnit results, load summaries.

``poet gate evaluate --evidence PATH`` accepts, besides a gate's own evidence
directory, single files (or a directory of them) written elsewhere. Each file's
kind is recognised from its content, not its name: a HAR (``{"log":
{"entries": ...}}``), poetkb captures, a JSON-lines access log, Prometheus text,
JUnit XML, or a load-test summary the load module reads. Each becomes part of
one :class:`Foreign` bundle that every selected check is judged against.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from poetkb.errors import InputError
from poetkb.gates import accesslog
from poetkb.gates.evidence import CheckEvidence
from poetkb.gates.probes import body_record, headers_dict
from poetkb.gates.records import HttpExchange, HttpRequestRecord, HttpResponseRecord
from poetkb.gates.schema import EvidenceFile
from poetkb.safefile import EVIDENCE_FILE_LIMIT, read_bytes
from poetkb.yamlfile import loads_json, strict_json

MAX_FILES = 200
#: all files of one evaluation together (each is also bounded on its own)
TOTAL_LIMIT = 1024 * 1024 * 1024


@dataclass
class Foreign:
    """Evidence files from other tools, read and classified."""

    files: list[EvidenceFile] = field(default_factory=list)
    exchanges: list[HttpExchange] = field(default_factory=list)
    log: accesslog.ParsedLog | None = None
    metrics: dict[str, str] = field(default_factory=dict)
    test_results: list[Path] = field(default_factory=list)
    load_summaries: list[Path] = field(default_factory=list)

    @property
    def kinds(self) -> set[str]:
        return {f.kind for f in self.files}

    def evidence_for(self, check_id: str, kind: str) -> CheckEvidence:
        ev = CheckEvidence(check_id=check_id, kind=kind, exchanges=list(self.exchanges), log=self.log,
                           metrics=dict(self.metrics), test_results=list(self.test_results),
                           load_summaries=list(self.load_summaries), foreign=True)
        ev.files = [f.path for f in self.files]
        return ev


def _har_exchanges(data: Any, shown: str) -> list[HttpExchange]:
    log = data.get("log") if isinstance(data, dict) else None
    entries = log.get("entries") if isinstance(log, dict) else None
    if not isinstance(entries, list):
        raise InputError("HAR file has no log.entries list", file=shown)
    out = []
    for n, entry in enumerate(entries, start=1):
        try:
            req, resp = entry["request"], entry.get("response") or {}
            headers = headers_dict((h["name"], h["value"]) for h in req.get("headers", []))
            started = entry.get("startedDateTime")
            when = datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp() if started else 0.0
            record = HttpRequestRecord(method=req["method"], url=req["url"], headers=headers,
                                       body=(req.get("postData") or {}).get("text"))
            exchange = HttpExchange(step="", seq=n, started=when, elapsed_ms=entry.get("time"), request=record)
            status = int(resp.get("status") or 0)
            if status > 0:
                text = (resp.get("content") or {}).get("text") or ""
                body, size, cut = body_record(text.encode())
                exchange.response = HttpResponseRecord(
                    status=status, http_version=resp.get("httpVersion") or "HTTP/1.1",
                    headers=headers_dict((h["name"], h["value"]) for h in resp.get("headers", [])),
                    body=body, body_size=int((resp.get("content") or {}).get("size") or size), body_truncated=cut)
            else:
                exchange.error, exchange.error_type = str(resp.get("_error") or "no response"), "NoResponse"
            out.append(exchange)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"HAR entry {n} is malformed: {type(exc).__name__}: {exc}", file=shown,
                             field=f"log.entries[{n - 1}]") from exc
    return out


def _classify(path: Path, data: bytes) -> str:
    """``har``, ``captures``, ``access_log``, ``metrics``, ``junit`` or ``load_summary``."""
    head = data[:4096].decode("utf-8", errors="replace").lstrip()
    if head.startswith("<"):
        if "<testsuite" in head or "<testsuites" in head:
            return "junit"
        raise InputError("XML evidence must be JUnit results (<testsuites> or <testsuite>)", file=path)
    if head.startswith("{"):
        first = head.split("\n", 1)[0]
        try:
            obj = strict_json(first)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and "request" in obj and ("seq" in obj or "step" in obj):
            return "captures"
        if isinstance(obj, dict) and ({"status", "uri"} <= obj.keys() or {"status", "request_uri"} <= obj.keys()
                                      or {"status", "path", "method"} <= obj.keys()):
            return "access_log"
        if '"log"' in head[:200] and '"entries"' in head:
            return "har"
        return "load_summary"
    if head.startswith("#") or path.suffix in (".prom", ".metrics"):
        return "metrics"
    if path.suffix == ".har":
        return "har"
    return "load_summary"


_KIND = {"har": "http_capture", "captures": "http_capture", "access_log": "access_log", "metrics": "metrics",
         "junit": "test_results", "load_summary": "load_summary"}


def _listed(paths: list[Path]) -> list[tuple[Path, Path | None]]:
    """Each evidence file with the directory it must stay in (None for a file named on its own)."""
    files: list[tuple[Path, Path | None]] = []
    for path in paths:
        if path.is_dir():
            # everything but hidden names and subdirectories: a FIFO, device or dangling link is named, not skipped
            files.extend((p, path) for p in sorted(path.iterdir()) if not p.name.startswith(".") and not p.is_dir())
        elif path.exists() or path.is_symlink():
            files.append((path, None))
        else:
            raise InputError("evidence path does not exist", file=path, field="evidence")
    return files


def load_foreign(paths: list[Path]) -> Foreign:
    """Read evidence files (directories are read one level deep); InputError names any unreadable one.

    Every file goes through :func:`poetkb.safefile.read_bytes`: regular files only (no FIFO or device), size
    checked before reading, and for files found in a directory, nothing that links out of it. The sha256 in
    the report is of the very bytes judged.
    """
    files = _listed(paths)
    if not files:
        raise InputError("no evidence files found", file=", ".join(str(p) for p in paths), field="evidence",
                         hint="pass an access log, a HAR file, a metrics snapshot, JUnit XML or a load summary")
    if len(files) > MAX_FILES:
        raise InputError(f"{len(files)} evidence files is over the limit of {MAX_FILES}", field="evidence")
    bundle = Foreign()
    total = 0
    for path, root in files:
        shown = str(path)
        data = read_bytes(path, limit=min(EVIDENCE_FILE_LIMIT, TOTAL_LIMIT - total), root=root, display=shown)
        total += len(data)
        kind = _classify(path, data)
        if kind == "har":
            parsed_har = loads_json(data, file=shown)  # InputError names the file and line
            bundle.exchanges.extend(_har_exchanges(parsed_har, shown))
        elif kind == "captures":
            for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
                if line.strip():
                    try:
                        bundle.exchanges.append(HttpExchange.model_validate_json(line))
                    except ValueError as exc:
                        raise InputError("not a valid capture record", file=shown, line=number) from exc
        elif kind == "access_log":
            parsed = accesslog.parse(data)
            if bundle.log is None:
                bundle.log = parsed
            else:
                bundle.log.records.extend(parsed.records)
                bundle.log.problems.extend(parsed.problems)
        elif kind == "metrics":
            bundle.metrics[path.stem] = data.decode("utf-8", errors="replace")
        elif kind == "junit":
            bundle.test_results.append(path)
        else:
            bundle.load_summaries.append(path)
        bundle.files.append(EvidenceFile(path=shown, kind=_KIND[kind], sha256=hashlib.sha256(data).hexdigest(),
                                         bytes=len(data), description=f"given as {kind.replace('_', ' ')}"))
    return bundle
